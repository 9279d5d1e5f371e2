"""What a BiRefNet checkpoint is, read from its keys and shapes: backbone and BatchNorm use.

Official checkpoints do not say which backbone they were trained with, and the official code
builds its `BatchNorm2d` layers only when training used a batch size > 1 (an `nn.Identity`,
with no weights, otherwise). Both are visible in the state dict:

- backbone family: the stem convolution's kernel — 4x4 patches for Swin
  (`bb.patch_embed.proj.weight`), 7x7 overlapping patches for PVT v2
  (`bb.patch_embed1.proj.weight`); our own key names (`bb.body.…`) are read too;
- the variant: the stem's width (its output channels) and the number of blocks in each of
  the four stages, matched against `BACKBONE_FACTS` (e.g. Swin-T: 96, 2/2/6/2);
- BatchNorm: whether any decoder/squeeze norm (`bn_in`, `bn_out`, `bn1`, a branch's `bn`, the
  pooling branch's `global_avg_pool.2`, `gdt_convs_*.1`) has weights.

It looks only at the keys and the `.shape` of the values; nothing is built or loaded here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gpu.errors import CheckpointError
from gpu.models.birefnet import BACKBONE_FACTS

_STEMS = {
    # key of the stem conv weight → family (official names first, then ours)
    "bb.patch_embed.proj.weight": None,  # Swin (official) or either family (ours): by kernel
    "bb.patch_embed1.proj.weight": "pvt",
    "bb.body.patch_embed.proj.weight": None,
}
_BLOCK = (
    re.compile(r"^bb\.(?:body\.)?(?:layers|stages)\.(\d)\.blocks\.(\d+)\."),  # Swin, ours
    re.compile(r"^bb\.block(\d)\.(\d+)\."),  # PVT v2, official (1-based stages)
)
_BN = re.compile(
    r"^(squeeze_module|decoder)\..*"
    r"(\.bn_in|\.bn_out|\.bn1|\.bn|global_avg_pool\.2|gdt_convs_\d\.1)\.(weight|running_mean)$"
)


@dataclass(frozen=True)
class BiRefNetLayout:
    backbone: str
    batch_norm: bool
    evidence: str  # what the detection saw, for messages: "stem width 96, blocks 2/2/6/2"


def detect_birefnet(state: Mapping[str, Any], path: str = "checkpoint") -> BiRefNetLayout:
    """The backbone and BatchNorm use of a BiRefNet state dict (official or our key names)."""
    stem_key = next((k for k in _STEMS if k in state), None)
    if stem_key is None:
        raise CheckpointError(
            path,
            "it has no BiRefNet backbone stem (bb.patch_embed.proj.weight or "
            "bb.patch_embed1.proj.weight); is it a BiRefNet checkpoint?",
        )
    shape = tuple(state[stem_key].shape)
    kernel = shape[-1] if len(shape) == 4 else None
    family = _STEMS[stem_key] or {4: "swin", 7: "pvt"}.get(kernel or 0)
    if family is None:
        raise CheckpointError(path, f"its backbone stem {stem_key} {shape} is neither Swin nor PVT")
    width = shape[0]
    depths = _depths(state)
    evidence = f"stem width {width}, blocks per stage {'/'.join(map(str, depths))}"
    matches = [
        name
        for name, (w, d) in BACKBONE_FACTS.items()
        if name.startswith(family) and w == width and d == depths
    ]
    if not matches:
        known = ", ".join(
            f"{n} ({w}, {'/'.join(map(str, d))})" for n, (w, d) in BACKBONE_FACTS.items()
        )
        raise CheckpointError(
            path, f"its {family} backbone ({evidence}) is none of the supported ones: {known}"
        )
    batch_norm = any(_BN.match(k) for k in state)
    return BiRefNetLayout(matches[0], batch_norm, evidence)


def _depths(state: Mapping[str, Any]) -> tuple[int, ...]:
    """Blocks per stage: one more than the highest block index seen in each stage."""
    counts = [0, 0, 0, 0]
    for key in state:
        for pattern in _BLOCK:
            m = pattern.match(key)
            if m:
                stage = int(m.group(1)) - (1 if pattern is _BLOCK[1] else 0)
                if 0 <= stage < 4:
                    counts[stage] = max(counts[stage], int(m.group(2)) + 1)
    return tuple(counts)


def check_matches(layout: BiRefNetLayout, backbone: str, batch_norm: bool, path: str) -> None:
    """Say clearly when a model built for `backbone`/`batch_norm` cannot take this checkpoint."""
    if layout.backbone != backbone:
        raise CheckpointError(
            path,
            f"it is a {layout.backbone} BiRefNet ({layout.evidence}), not {backbone}; pass "
            f"--birefnet-backbone {layout.backbone}, or leave the flag out to use the "
            "checkpoint's backbone",
        )
    if layout.batch_norm != batch_norm:
        has = "has" if layout.batch_norm else "has no"
        raise CheckpointError(
            path,
            f"it {has} BatchNorm weights but the model was built with batch_norm={batch_norm}; "
            "build it from the checkpoint (gpu.loader.build_birefnet_for)",
        )
