"""The inference engine: loaded models + the stream pool, and the two batch operations.

`Engine.remove_background(images)` and `Engine.segment(items)` take decoded RGB images (uint8
HxWx3 numpy arrays) and run them over the lanes (or sequentially, for the reference and the
benchmarks). Weights come from local paths; random weights only when `random_weights=True` was
asked for explicitly, and `Engine.describe()` (served by /health) says so.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpu.device import (
    autocast,
    default_autocast_dtype,
    device_info,
    memory_stats,
    require_torch,
    resolve_device,
)
from gpu.errors import ModelNotLoadedError, WeightsRequiredError
from gpu.streams import BatchScheduler, Lane, StreamPool

MODELS = ("birefnet", "sam2")


@dataclass
class EngineConfig:
    models: tuple[str, ...] = MODELS
    device: str = "auto"
    lanes: int = 4
    max_batch: int | None = None
    memory_fraction: float | None = None
    precision: str = "auto"  # auto (bf16/fp16 on CUDA, fp32 on CPU) | fp32 | fp16 | bf16
    birefnet_backbone: str | None = None  # None: the checkpoint's (swin_v1_l for random weights)
    birefnet_size: int = 1024
    birefnet_weights: str | None = None
    sam2_config: str = "configs/sam2.1/sam2.1_hiera_t.yaml"
    sam2_size: int = 1024
    sam2_weights: str | None = None
    random_weights: bool = False
    timing: bool = False


class Engine:
    """Builds the requested models once and runs batches over the stream pool."""

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.device = resolve_device(config.device)
        self.precision = (
            default_autocast_dtype(self.device) if config.precision == "auto" else config.precision
        )
        self.pool = StreamPool(config.lanes, self.device, config.memory_fraction, config.timing)
        self.scheduler: BatchScheduler[Any, Any] = BatchScheduler(self.pool, config.max_batch)
        self.weights: dict[str, str] = {}
        self.birefnet: Any = None
        self.birefnet_layout: dict[str, Any] = {}
        self.sam2: Any = None
        self._lock = threading.Lock()  # one batch on the lanes at a time
        for name in config.models:
            if name not in MODELS:
                raise ValueError(f"unknown model {name!r}; choose from {MODELS}")
            getattr(self, f"_load_{name}")()

    def _weights_path(self, model: str, path: str | None) -> str | None:
        if path:
            self.weights[model] = path
            return path
        if not self.config.random_weights:
            raise WeightsRequiredError(model)
        self.weights[model] = "random (explicitly requested; outputs are meaningless)"
        return None

    def _load_birefnet(self) -> None:
        from gpu.loader import build_birefnet_for
        from gpu.models.birefnet import DEFAULT_BACKBONE, BiRefNetConfig, build_birefnet

        path = self._weights_path("birefnet", self.config.birefnet_weights)
        backbone, size = self.config.birefnet_backbone, self.config.birefnet_size
        if path:
            # Backbone and BatchNorm come from the checkpoint; a disagreeing flag is an error.
            model, layout = build_birefnet_for(path, backbone, size)
            self.birefnet_layout = {
                "backbone": layout.backbone,
                "batch_norm": layout.batch_norm,
                "detected": f"from the checkpoint ({layout.evidence})",
            }
        else:
            model = build_birefnet(BiRefNetConfig(backbone or DEFAULT_BACKBONE, size))
            self.birefnet_layout = {
                "backbone": model.config.backbone,
                "batch_norm": True,
                "detected": "no checkpoint" if backbone else "no checkpoint: the official default",
            }
        self.birefnet = model.to(self.device).eval()

    def _load_sam2(self) -> None:
        from gpu.loader import load_sam2
        from gpu.models.sam2 import Sam2Config, Sam2Segmenter, build_sam2_model

        path = self._weights_path("sam2", self.config.sam2_weights)
        model = build_sam2_model(Sam2Config(self.config.sam2_config, self.config.sam2_size), "cpu")
        if path:
            load_sam2(model, path)
        self.sam2 = Sam2Segmenter(
            model.to(self.device).eval(), self.device, range(-1, len(self.pool))
        )

    # -- operations -------------------------------------------------------------------------

    def remove_background(self, images: list[np.ndarray], sequential: bool = False) -> list[Any]:
        """RGB uint8 images → foreground masks (uint8 HxW, 0..255), in input order."""
        if self.birefnet is None:
            raise ModelNotLoadedError("birefnet")
        return self._run(images, self._birefnet_fn, sequential)

    def segment(self, items: list[tuple[np.ndarray, Any]], sequential: bool = False) -> list[Any]:
        """(image, Prompt) pairs → {'masks', 'scores'} dicts, in input order."""
        if self.sam2 is None:
            raise ModelNotLoadedError("sam2")
        return self._run(items, self._sam2_fn, sequential)

    def _run(self, items: list[Any], fn: Any, sequential: bool) -> list[Any]:
        with self._lock:
            if sequential:
                return self.scheduler.run_sequential(items, fn)
            return self.scheduler.run(items, fn)

    def _birefnet_fn(self, images: list[np.ndarray], lane: Lane) -> list[np.ndarray]:
        # Grad mode is per thread: lane and server threads must turn autograd off themselves.
        with require_torch().inference_mode():
            return self._birefnet_masks(images, lane)

    def _birefnet_masks(self, images: list[np.ndarray], lane: Lane) -> list[np.ndarray]:
        torch = require_torch()
        import torch.nn.functional as F

        size = self.config.birefnet_size
        batch = torch.stack([preprocess_birefnet(img, size) for img in images])
        x = self.pool.to_device(batch)
        with autocast(self.device, self.precision):
            logits = self.birefnet(x)
        host = []
        for i, img in enumerate(images):
            prob = F.interpolate(
                logits[i : i + 1].float(), size=img.shape[:2], mode="bilinear", align_corners=False
            ).sigmoid()
            host.append(self.pool.to_host((prob[0, 0] * 255).round().to(torch.uint8)))
        lane.synchronize()  # the pinned host buffers are complete only after this
        return [h.numpy().copy() for h in host]

    def _sam2_fn(self, items: list[tuple[np.ndarray, Any]], lane: Lane) -> list[dict[str, Any]]:
        torch = require_torch()
        out = []
        for image, prompt in items:
            with torch.inference_mode(), autocast(self.device, self.precision):
                out.append(self.sam2.segment(image, prompt, lane, self.pool))
        return out

    # -- introspection ----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        models: dict[str, Any] = {}
        if self.birefnet is not None:
            models["birefnet"] = {
                **self.birefnet_layout,
                "image_size": self.config.birefnet_size,
                "weights": self.weights["birefnet"],
            }
        if self.sam2 is not None:
            models["sam2"] = {
                "config": self.config.sam2_config,
                "image_size": self.config.sam2_size,
                "weights": self.weights["sam2"],
            }
        return {
            "device": device_info(self.device),
            "precision": self.precision or "fp32",
            "random_weights": any(w.startswith("random") for w in self.weights.values()),
            "models": models,
            "pool": self.pool.describe(),
            "oom_retries": self.scheduler.oom_retries,
            "memory": memory_stats(self.device),
        }

    def close(self) -> None:
        self.scheduler.close()


def preprocess_birefnet(image: np.ndarray, size: int) -> Any:
    """uint8 HxWx3 → float (3, size, size), resized bilinearly and ImageNet-normalized."""
    from PIL import Image

    from gpu.models.birefnet import IMAGENET_MEAN, IMAGENET_STD

    torch = require_torch()
    resized = np.asarray(Image.fromarray(image).resize((size, size), Image.BILINEAR))
    arr = (resized.astype(np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return torch.from_numpy(arr.transpose(2, 0, 1).astype(np.float32))
