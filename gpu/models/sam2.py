"""SAM2 (Segment Anything 2) through Meta's `sam2` package: building, and prompting per lane.

The architecture comes from the package's shipped hydra configs (hiera-tiny by default); weights
come from a local checkpoint loaded by `gpu.loader.load_sam2`. The image size is configurable
(1024 in the official models; 256 in the CPU tests), and the predictor's backbone feature sizes
follow it. Each lane gets its own `SAM2ImagePredictor` over the shared model, since a predictor
holds the current image's features; the image tensor reaches the device through the pool's
pinned, non-blocking copy instead of the predictor's blocking one.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpu.errors import BadPromptError, MissingDependencyError

DEFAULT_CONFIG = "configs/sam2.1/sam2.1_hiera_t.yaml"


@dataclass(frozen=True)
class Sam2Config:
    config: str = DEFAULT_CONFIG
    image_size: int = 1024

    def __post_init__(self) -> None:
        if self.image_size % 64:
            raise ValueError(f"SAM2 image_size must be a multiple of 64, got {self.image_size}")


@dataclass
class Prompt:
    """Points (x, y in pixels) with labels (1 foreground, 0 background) and/or one box."""

    points: list[list[float]] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    box: list[float] | None = None
    multimask: bool = False

    @classmethod
    def parse(cls, raw: Any, width: int, height: int) -> Prompt:
        if not isinstance(raw, dict):
            raise BadPromptError("prompt must be a JSON object with 'points'/'labels' or 'box'")
        points, labels, box = raw.get("points") or [], raw.get("labels"), raw.get("box")
        if not points and box is None:
            raise BadPromptError("give at least one point ('points') or a 'box'")
        if not _is_numeric_rows(points, 2):
            raise BadPromptError("'points' must be a list of [x, y] pairs of numbers")
        labels = [1] * len(points) if labels is None else labels
        if len(labels) != len(points) or any(lab not in (0, 1) for lab in labels):
            raise BadPromptError("'labels' must give 0 or 1 for each point")
        if box is not None and not _is_numeric_rows([box], 4):
            raise BadPromptError("'box' must be [x0, y0, x1, y1] in pixels")
        if box is not None and not (box[0] < box[2] and box[1] < box[3]):
            raise BadPromptError("'box' must have x0 < x1 and y0 < y1")
        for x, y in [*points, *([box[:2], box[2:]] if box else [])]:
            if not (0 <= x <= width and 0 <= y <= height):
                raise BadPromptError(
                    f"prompt coordinate ({x}, {y}) is outside the {width}x{height} image"
                )
        return cls(
            [list(map(float, p)) for p in points], list(labels), box, bool(raw.get("multimask"))
        )


def _is_numeric_rows(rows: Any, width: int) -> bool:
    return isinstance(rows, list) and all(
        isinstance(r, list | tuple)
        and len(r) == width
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in r)
        for r in rows
    )


def build_sam2_model(config: Sam2Config, device: Any) -> Any:
    """The real SAM2 architecture from the package's config, random weights, eval mode."""
    try:
        from sam2.build_sam import build_sam2
    except ImportError as exc:
        raise MissingDependencyError(
            "sam2", "SAM2_BUILD_CUDA=0 pip install --no-build-isolation sam2==1.1.0"
        ) from exc
    overrides = [] if config.image_size == 1024 else [f"++model.image_size={config.image_size}"]
    return build_sam2(
        config.config, ckpt_path=None, device=str(device), hydra_overrides_extra=overrides
    )


class Sam2Segmenter:
    """Image + prompt → masks, one predictor per lane over one shared model."""

    def __init__(self, model: Any, device: Any, lane_indices: range | list[int] = ()) -> None:
        self.model = model
        self.device = device
        self._predictors: dict[int, Any] = {}
        # SAM2Transforms calls torch.jit.script, which is not thread-safe: build the
        # predictors up front (and under a lock for any lane added later).
        self._lock = threading.Lock()
        for index in lane_indices:
            self.predictor(index)

    def predictor(self, lane_index: int) -> Any:
        with self._lock:
            return self._predictor_locked(lane_index)

    def _predictor_locked(self, lane_index: int) -> Any:
        if lane_index not in self._predictors:
            from sam2.sam2_image_predictor import SAM2ImagePredictor

            pred = SAM2ImagePredictor(self.model)
            s = self.model.image_size
            pred._bb_feat_sizes = [(s // 4, s // 4), (s // 8, s // 8), (s // 16, s // 16)]
            self._predictors[lane_index] = pred
        return self._predictors[lane_index]

    def set_image(self, pred: Any, image: np.ndarray, pool: Any) -> None:
        """SAM2ImagePredictor.set_image, but with the pool's pinned non-blocking copy."""
        pred.reset_predictor()
        pred._orig_hw = [image.shape[:2]]
        tensor = pool.to_device(pred._transforms(image)[None, ...])
        backbone_out = self.model.forward_image(tensor)
        _, feats, _, _ = self.model._prepare_backbone_features(backbone_out)
        if self.model.directly_add_no_mem_embed:
            feats[-1] = feats[-1] + self.model.no_mem_embed
        shaped = [
            f.permute(1, 2, 0).view(1, -1, *size)
            for f, size in zip(feats[::-1], pred._bb_feat_sizes[::-1], strict=True)
        ][::-1]
        pred._features = {"image_embed": shaped[-1], "high_res_feats": shaped[:-1]}
        pred._is_image_set = True

    def segment(self, image: np.ndarray, prompt: Prompt, lane: Any, pool: Any) -> dict[str, Any]:
        """→ {'masks': bool array (C, H, W), 'scores': float array (C,)}."""
        pred = self.predictor(lane.index)
        self.set_image(pred, image, pool)
        masks, scores, _ = pred.predict(
            point_coords=np.asarray(prompt.points, dtype=np.float32) if prompt.points else None,
            point_labels=np.asarray(prompt.labels, dtype=np.int32) if prompt.points else None,
            box=np.asarray(prompt.box, dtype=np.float32) if prompt.box else None,
            multimask_output=prompt.multimask,
        )
        return {"masks": masks > 0.5, "scores": np.asarray(scores, dtype=np.float32)}
