"""The GPU image service that runs on the remote machine.

Background removal (BiRefNet) and promptable segmentation (SAM2) behind an HTTP API on
127.0.0.1:55441, a pool of CUDA-stream lanes that spreads a batch over several streams, and
profiling sessions (torch.profiler, NVTX, Nsight Systems when present). Everything also runs
on a CPU-only machine: a lane is then a no-op context and the GPU-only paths are skipped.

torch is imported lazily by the modules that need it (`gpu.device.require_torch`), so importing
this package is cheap; `gpu` never imports `sidecar` and the sidecar never imports `gpu`.
"""

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 55441
