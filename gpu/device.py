"""Device facts and the small CUDA-or-CPU helpers everything else uses.

One place decides what "the device" is, how autocast is applied (fp16/bf16 on CUDA, plain fp32
on the CPU), what an NVTX range is (torch's NVTX on CUDA, the `nvtx` package or nothing on the
CPU), how the per-process memory fraction is set, and how memory is reported. On a CPU-only
build `torch.cuda.memory_allocated()` silently returns 0, so CPU memory is reported as the
process's resident set instead and labelled as such.

`configure_allocator` sets `PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True` for the service
and the profiling sessions (before torch starts its CUDA allocator) unless the user set an
allocator configuration: expandable segments let the caching allocator grow segments instead
of fragmenting into fixed blocks, which matters when lanes allocate batches of varying size.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
from collections.abc import Iterator, MutableMapping
from typing import Any

from gpu.errors import MissingDependencyError

ALLOC_ENV = "PYTORCH_CUDA_ALLOC_CONF"
ALLOC_DEFAULT = "expandable_segments:True"
# torch >= 2.9 also reads PYTORCH_ALLOC_CONF; a user value under either name is left alone.
_ALLOC_NAMES = (ALLOC_ENV, "PYTORCH_ALLOC_CONF")


def configure_allocator(environ: MutableMapping[str, str] | None = None) -> str:
    """Default the CUDA allocator to expandable segments unless the user configured it.

    Must run before torch initializes CUDA (the entry points call it first). Returns the
    configuration in effect, for /health and the profiling summary.
    """
    env = os.environ if environ is None else environ
    for name in _ALLOC_NAMES:
        if env.get(name):
            return f"{name}={env[name]} (set by the user)"
    env[ALLOC_ENV] = ALLOC_DEFAULT
    return f"{ALLOC_ENV}={ALLOC_DEFAULT} (orch's default)"


def allocator_config() -> str:
    """The allocator configuration this process runs with (as configure_allocator reports)."""
    for name in _ALLOC_NAMES:
        if os.environ.get(name):
            return f"{name}={os.environ[name]}"
    return "torch's default (no PYTORCH_CUDA_ALLOC_CONF)"


def require_torch() -> Any:
    """Import torch lazily with an install hint."""
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingDependencyError("torch") from exc
    return torch


def resolve_device(name: str = "auto") -> Any:
    """'auto' → cuda when available, else cpu; anything else is passed to torch.device."""
    torch = require_torch()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available on this machine")
    if device.type == "cuda" and device.index is None:
        # Pin the index: lane threads call torch.cuda.set_device, which needs one.
        device = torch.device("cuda", torch.cuda.current_device())
    return device


def set_memory_fraction(device: Any, fraction: float | None) -> bool:
    """Cap this process's share of GPU memory; returns whether a cap was applied (CUDA only)."""
    if fraction is None:
        return False
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"memory fraction must be in (0, 1], got {fraction}")
    torch = require_torch()
    if device.type != "cuda":
        return False
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    return True


def autocast(device: Any, dtype_name: str | None) -> contextlib.AbstractContextManager[Any]:
    """fp16/bf16 autocast on CUDA; a no-op elsewhere or when dtype_name is None/'fp32'."""
    torch = require_torch()
    if device.type != "cuda" or dtype_name in (None, "fp32"):
        return contextlib.nullcontext()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}[dtype_name]
    return torch.autocast(device_type="cuda", dtype=dtype)


def default_autocast_dtype(device: Any) -> str | None:
    torch = require_torch()
    if device.type != "cuda":
        return None
    return "bf16" if torch.cuda.is_bf16_supported() else "fp16"


_nvtx_module: Any = None


@contextlib.contextmanager
def nvtx_range(name: str) -> Iterator[None]:
    """An NVTX range for Nsight Systems; a no-op without CUDA (never an error)."""
    torch = require_torch()
    if torch.cuda.is_available():
        torch.cuda.nvtx.range_push(name)
        try:
            yield
        finally:
            torch.cuda.nvtx.range_pop()
        return
    global _nvtx_module
    if _nvtx_module is None:
        try:
            import nvtx as mod
        except ImportError:
            mod = False
        _nvtx_module = mod
    if _nvtx_module:
        with _nvtx_module.annotate(name):
            yield
    else:
        yield


def host_peak_rss_mb() -> float:
    """Peak resident set of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def host_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * resource.getpagesize() / (1024 * 1024)
    except OSError:  # pragma: no cover - non-Linux
        return host_peak_rss_mb()


def memory_stats(device: Any) -> dict[str, Any]:
    """Memory in MiB: CUDA allocator stats on a GPU, the process RSS on the CPU."""
    torch = require_torch()
    stats: dict[str, Any] = {
        "host_rss_mb": round(host_rss_mb(), 1),
        "host_peak_rss_mb": round(host_peak_rss_mb(), 1),
    }
    if device.type == "cuda":
        mib = 1024 * 1024
        free, total = torch.cuda.mem_get_info(device)
        stats.update(
            cuda_allocated_mb=round(torch.cuda.memory_allocated(device) / mib, 1),
            cuda_reserved_mb=round(torch.cuda.memory_reserved(device) / mib, 1),
            cuda_peak_allocated_mb=round(torch.cuda.max_memory_allocated(device) / mib, 1),
            cuda_free_mb=round(free / mib, 1),
            cuda_total_mb=round(total / mib, 1),
        )
    return stats


def device_info(device: Any) -> dict[str, Any]:
    torch = require_torch()
    info: dict[str, Any] = {"type": device.type, "torch": torch.__version__}
    info["allocator"] = allocator_config()
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
    else:
        info["name"] = "cpu"
        info["threads"] = torch.get_num_threads()
    return info
