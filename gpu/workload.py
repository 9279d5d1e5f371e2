"""Synthetic, seeded workloads for profiling sessions and benchmarks.

Images are deterministic (a smooth gradient with a bright disc and a little noise), so two runs
of the same session see the same pixels; SAM2 items carry a point on the disc and a box around it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gpu.engine import Engine
from gpu.models.sam2 import Prompt


def synthetic_image(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    cy, cx = rng.uniform(0.3, 0.7, size=2)
    disc = ((yy - cy) ** 2 + (xx - cx) ** 2) < 0.05
    base = np.stack([xx, yy, 1 - xx], axis=2) * 160 + disc[..., None] * 90
    noise = rng.normal(0, 6, size=(size, size, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def synthetic_prompt(size: int, seed: int) -> Prompt:
    rng = np.random.default_rng(seed)
    cy, cx = rng.uniform(0.3, 0.7, size=2) * (size - 1)
    half = 0.2 * size
    box = [
        max(0.0, cx - half),
        max(0.0, cy - half),
        min(size - 1.0, cx + half),
        min(size - 1.0, cy + half),
    ]
    return Prompt(points=[[float(cx), float(cy)]], labels=[1], box=box)


def make_batch(model: str, batch_size: int, size: int, seed: int = 0) -> list[Any]:
    """One batch of inputs for `model`: images (birefnet) or (image, prompt) pairs (sam2)."""
    images = [synthetic_image(size, seed + i) for i in range(batch_size)]
    if model == "birefnet":
        return images
    if model == "sam2":
        return [(img, synthetic_prompt(size, seed + i)) for i, img in enumerate(images)]
    raise ValueError(f"unknown model {model!r}")


def batch_runner(engine: Engine, model: str, sequential: bool) -> Callable[[list[Any]], list[Any]]:
    op = engine.remove_background if model == "birefnet" else engine.segment
    return lambda batch: op(batch, sequential=sequential)
