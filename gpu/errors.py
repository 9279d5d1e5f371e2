"""Errors of the GPU service, each carrying what failed and what to do next.

The HTTP layer maps them to status codes (`http_status`), the CLI prints `str(error)`; no
error message ever needs a traceback to be understood.
"""

from __future__ import annotations

import re


class GpuServiceError(Exception):
    """Base class: `http_status` is what the HTTP API answers for it."""

    http_status = 500


class MissingDependencyError(GpuServiceError):
    """torch, timm, sam2 or another optional package is not installed."""

    def __init__(self, package: str, hint: str = "pip install 'orch[gpu]'") -> None:
        super().__init__(f"{package} is not installed; install the GPU extra: {hint}")
        self.package = package


class CheckpointError(GpuServiceError):
    """A checkpoint is missing, unreadable, or does not fit the model it is loaded into."""

    def __init__(
        self,
        path: str,
        reason: str,
        missing: list[str] | None = None,
        unexpected: list[str] | None = None,
        mismatched: list[str] | None = None,
    ) -> None:
        self.path = path
        self.missing = missing or []
        self.unexpected = unexpected or []
        self.mismatched = mismatched or []
        parts = [f"checkpoint {path!r} does not fit: {reason}"]
        for label, keys in (("missing keys", self.missing), ("unexpected keys", self.unexpected)):
            if keys:
                parts.append(f"{len(keys)} {label}: {summarize_keys(keys)}")
        if self.mismatched:
            keys = self.mismatched
            shown = ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
            parts.append(f"{len(keys)} shape mismatches: {shown}")
        parts.append("check the model variant/backbone matches the checkpoint")
        super().__init__("; ".join(parts))


def summarize_keys(keys: list[str], limit: int = 8) -> str:
    """State-dict keys grouped by module, indices as `*`: the differences at a glance.

    ['a.0.conv.weight', 'a.1.conv.weight', 'a.1.conv.bias'] → 'a.*.conv.{bias,weight} (3)';
    a group of one key is shown as the key itself. The full lists stay on the exception.
    """
    groups: dict[str, tuple[set[str], list[str]]] = {}
    for key in sorted(keys):
        module, _, leaf = key.rpartition(".")
        leaves, members = groups.setdefault(re.sub(r"\d+", "*", module), (set(), []))
        leaves.add(leaf)
        members.append(key)
    shown = []
    for pattern, (leaves, members) in list(groups.items())[:limit]:
        if len(members) == 1:
            shown.append(members[0])
        else:
            leaf = next(iter(leaves)) if len(leaves) == 1 else "{" + ",".join(sorted(leaves)) + "}"
            shown.append(f"{pattern}.{leaf} ({len(members)})")
    more = len(groups) - limit
    return ", ".join(shown) + (f" (+{more} more groups)" if more > 0 else "")


class WeightsRequiredError(GpuServiceError):
    """No weights path was given and random weights were not explicitly requested."""

    def __init__(self, model: str) -> None:
        super().__init__(
            f"no weights for {model}: pass a checkpoint path (--{model}-weights PATH), "
            "or --random-weights to build it with random weights (tests and benchmarks only)"
        )
        self.model = model


class GpuOutOfMemoryError(GpuServiceError):
    """CUDA ran out of memory even after retrying with the smallest batch."""

    http_status = 507

    def __init__(self, batch_size: int, detail: str) -> None:
        super().__init__(
            f"CUDA out of memory even with a batch of {batch_size}: {detail}; lower the image "
            "size or the number of lanes, or raise the memory fraction (--memory-fraction)"
        )
        self.batch_size = batch_size


class BadInputError(GpuServiceError):
    """The request's image or prompt cannot be used; the message says why."""

    http_status = 400


class PayloadTooLargeError(BadInputError):
    http_status = 413


class BadPromptError(BadInputError):
    http_status = 422


class ModelNotLoadedError(GpuServiceError):
    http_status = 503

    def __init__(self, model: str) -> None:
        super().__init__(f"model {model!r} is not loaded in this service; start it with it enabled")
        self.model = model
