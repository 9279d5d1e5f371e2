"""GPU profiling sessions run as jobs on the machine (`orch profile`): the workload runs
remotely under `python -m gpu.profiling`; the sidecar only starts it, streams its output, and
fetches the trace and summary. The sidecar never imports torch or the gpu package."""
