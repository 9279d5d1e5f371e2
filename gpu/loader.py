"""Checkpoint loading for both models, with the map from official BiRefNet keys to ours.

Weights only ever come from a local path. An official BiRefNet checkpoint (`BiRefNet-*.pth` or
`model.safetensors`) names its backbone after the backbone's original code (Microsoft's Swin,
the PVTv2 authors' code); ours is timm's, so the backbone keys are mapped:

  Swin:   bb.patch_embed.*            → bb.body.patch_embed.*
          bb.layers.{i}.blocks.*      → bb.body.layers.{i}.blocks.*
          bb.layers.{i}.downsample.*  → bb.body.layers.{i+1}.downsample.*   (timm merges at the
                                        start of the next stage; same concat order, same shape)
          bb.norm{i}.*                → bb.norm{i}.*   (per-stage output norms, kept by us)
          *.relative_position_index, *.attn_mask → dropped (derived buffers)
          bb.head.* → dropped (an ImageNet classifier some backbone files still carry)
  PVT v2: bb.patch_embed1.*           → bb.body.patch_embed.*
          bb.patch_embed{n}.*         → bb.body.stages.{n-1}.downsample.*   (n = 2…4)
          bb.block{n}.{j}.*           → bb.body.stages.{n-1}.blocks.{j}.*
          bb.norm{n}.*                → bb.body.stages.{n-1}.norm.*
          *.mlp.dwconv.dwconv.*       → *.mlp.dwconv.*

Decoder and squeeze keys are not mapped: `gpu/models/birefnet_blocks.py` builds the official
module names and layout (deformable ASPP = `aspp1` + `aspp_deforms.{0,1,2}` with kernels 1/3/7,
`conv1` over 5 x 256 channels), and `tests/gpu/test_gpu_checkpoint_layout.py` checks that the
complete official key list (written there from the architecture's facts) loads strictly.
Before loading, `gpu.checkpoint_layout` reads the backbone and the BatchNorm use from the
checkpoint's shapes: `build_birefnet_for` builds the model that fits, and `load_birefnet` says
plainly when the model it was given does not. `module.` (DDP) and `_orig_mod.` (torch.compile)
prefixes are stripped. Anything that still does not fit — missing or unexpected keys, or a
shape mismatch — raises `CheckpointError` naming the keys, instead of loading half a model.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpu.checkpoint_layout import BiRefNetLayout, check_matches, detect_birefnet
from gpu.device import require_torch
from gpu.errors import CheckpointError

_PREFIXES = ("module.", "_orig_mod.")
_DROPPED = ("relative_position_index", "attn_mask")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A flat tensor dict from .pth/.pt (optionally under 'model'/'state_dict') or .safetensors."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(str(path), "no such file")
    torch = require_torch()
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            data: Any = load_file(str(path), device="cpu")
        else:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling and format errors come in many types
        raise CheckpointError(str(path), f"cannot be read ({type(exc).__name__}: {exc})") from exc
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not all(torch.is_tensor(v) for v in data.values()):
        raise CheckpointError(str(path), "it is not a state dict of tensors")
    return {_strip_prefixes(k): v for k, v in data.items()}


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _swin_official_to_ours(key: str) -> str:
    key = re.sub(
        r"^bb\.layers\.(\d+)\.downsample\.",
        lambda m: f"bb.body.layers.{int(m.group(1)) + 1}.downsample.",
        key,
    )
    return re.sub(r"^bb\.(patch_embed|layers)\.", r"bb.body.\1.", key)


def _swin_ours_to_official(key: str) -> str:
    key = re.sub(
        r"^bb\.body\.layers\.(\d+)\.downsample\.",
        lambda m: f"bb.layers.{int(m.group(1)) - 1}.downsample.",
        key,
    )
    return re.sub(r"^bb\.body\.", "bb.", key)


def _pvt_official_to_ours(key: str) -> str:
    key = key.replace("bb.patch_embed1.", "bb.body.patch_embed.")
    key = re.sub(
        r"^bb\.patch_embed(\d)\.",
        lambda m: f"bb.body.stages.{int(m.group(1)) - 1}.downsample.",
        key,
    )
    key = re.sub(
        r"^bb\.block(\d)\.(\d+)\.",
        lambda m: f"bb.body.stages.{int(m.group(1)) - 1}.blocks.{m.group(2)}.",
        key,
    )
    key = re.sub(r"^bb\.norm(\d)\.", lambda m: f"bb.body.stages.{int(m.group(1)) - 1}.norm.", key)
    return key.replace(".mlp.dwconv.dwconv.", ".mlp.dwconv.")


def _pvt_ours_to_official(key: str) -> str:
    key = key.replace("bb.body.patch_embed.", "bb.patch_embed1.")
    key = re.sub(
        r"^bb\.body\.stages\.(\d)\.downsample\.",
        lambda m: f"bb.patch_embed{int(m.group(1)) + 1}.",
        key,
    )
    key = re.sub(
        r"^bb\.body\.stages\.(\d)\.blocks\.(\d+)\.",
        lambda m: f"bb.block{int(m.group(1)) + 1}.{m.group(2)}.",
        key,
    )
    key = re.sub(
        r"^bb\.body\.stages\.(\d)\.norm\.", lambda m: f"bb.norm{int(m.group(1)) + 1}.", key
    )
    return key.replace(".mlp.dwconv.", ".mlp.dwconv.dwconv.")


def _key_maps(backbone: str) -> tuple[Callable[[str], str], Callable[[str], str]]:
    if backbone.startswith("swin"):
        return _swin_official_to_ours, _swin_ours_to_official
    return _pvt_official_to_ours, _pvt_ours_to_official


def birefnet_from_official(state: dict[str, Any], backbone: str) -> dict[str, Any]:
    """Official BiRefNet keys → this implementation's keys (ours pass through unchanged)."""
    if any(k.startswith("bb.body.") for k in state):
        return dict(state)
    to_ours, _ = _key_maps(backbone)
    return {
        to_ours(k): v
        for k, v in state.items()
        if not k.endswith(_DROPPED) and not k.startswith("bb.head.")
    }


def birefnet_to_official(state: dict[str, Any], backbone: str) -> dict[str, Any]:
    """This implementation's keys → the official layout (export, and the loader's tests)."""
    _, to_official = _key_maps(backbone)
    return {to_official(k): v for k, v in state.items()}


def load_into(model: Any, state: dict[str, Any], path: str) -> None:
    """Strict load that explains every misfit instead of loading half a model."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(
        f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(state) & set(expected)
        if tuple(state[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or mismatched:
        raise CheckpointError(path, "keys or shapes differ", missing, unexpected, mismatched)
    model.load_state_dict(state, strict=True)


def load_birefnet(model: Any, path: str | Path) -> Any:
    """Load an official or our-format BiRefNet checkpoint into `model` (in place)."""
    raw = read_checkpoint(path)
    layout = detect_birefnet(raw, str(path))
    check_matches(layout, model.config.backbone, model.config.batch_norm, str(path))
    load_into(model, birefnet_from_official(raw, layout.backbone), str(path))
    return model


def build_birefnet_for(
    path: str | Path, backbone: str | None = None, image_size: int = 1024
) -> tuple[Any, BiRefNetLayout]:
    """Build the BiRefNet the checkpoint describes and load it; `backbone`, when given, must agree.

    Returns the model (eval mode, on the CPU) and the detected layout.
    """
    from gpu.models.birefnet import BiRefNetConfig, build_birefnet

    raw = read_checkpoint(path)
    layout = detect_birefnet(raw, str(path))
    check_matches(layout, backbone or layout.backbone, layout.batch_norm, str(path))
    model = build_birefnet(BiRefNetConfig(layout.backbone, image_size, layout.batch_norm))
    load_into(model, birefnet_from_official(raw, layout.backbone), str(path))
    return model, layout


def load_sam2(model: Any, path: str | Path) -> Any:
    """Load an official SAM2 checkpoint ({'model': state_dict}) into a built `sam2` model."""
    load_into(model, read_checkpoint(path), str(path))
    return model


def save_checkpoint(state: dict[str, Any], path: str | Path, wrap_key: str | None = None) -> None:
    """Save a state dict the way the official repos do (`{'model': …}` for SAM2)."""
    torch = require_torch()
    torch.save({wrap_key: state} if wrap_key else state, str(path))
