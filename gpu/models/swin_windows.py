"""Shifted-window attention in the order of the official Swin code, for timm's Swin blocks.

BiRefNet's Swin backbone is Microsoft's original code. When a stage's feature map is not a
multiple of the window (Swin-T at 1024 px: 256 % 7 = 4), that code first pads the map to whole
windows and then applies the cyclic shift to the padded map, masking the shifted regions with
-inf. timm rolls the unpadded map and pads afterwards, which gives different numbers with the
same weights. `use_official_window_order` swaps each timm block's `_attn` for the official
order, so official BiRefNet weights reproduce the official outputs; when no padding is needed
the two orders coincide. The weights and the attention module itself are timm's, unchanged.
"""

from __future__ import annotations

from types import MethodType
from typing import Any

import torch
import torch.nn.functional as F

_MASKS: dict[tuple[int, int, int, int, int, int, str, torch.dtype], torch.Tensor] = {}


def partition(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """(B, H, W, C) → (B * H/wh * W/ww, wh * ww, C), windows in row-major order per image."""
    b, h, w, c = x.shape
    x = x.view(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, c)


def unpartition(windows: torch.Tensor, wh: int, ww: int, h: int, w: int) -> torch.Tensor:
    c = windows.shape[-1]
    x = windows.view(-1, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def shift_mask(
    hp: int, wp: int, window: tuple[int, int], shift: tuple[int, int], x: torch.Tensor
) -> torch.Tensor:
    """The (num_windows, N, N) 0/-inf mask of the official code, for a padded hp x wp map."""
    key = (hp, wp, *window, *shift, str(x.device), x.dtype)
    if key not in _MASKS:
        (wh, ww), (sh, sw) = window, shift
        img = torch.zeros((1, hp, wp, 1), device=x.device)
        region = 0
        for hs in (slice(0, -wh), slice(-wh, -sh), slice(-sh, None)):
            for ws in (slice(0, -ww), slice(-ww, -sw), slice(-sw, None)):
                img[:, hs, ws, :] = region
                region += 1
        ids = partition(img, wh, ww).squeeze(-1)
        diff = ids.unsqueeze(1) - ids.unsqueeze(2)
        mask = torch.zeros_like(diff).masked_fill(diff != 0, float("-inf"))
        _MASKS[key] = mask.to(x.dtype)
    return _MASKS[key]


def official_window_attention(block: Any, x: torch.Tensor) -> torch.Tensor:
    """(B, H, W, C), already normed → attended (B, H, W, C): pad, then shift, as MS Swin."""
    _, h, w, _ = x.shape
    wh, ww = block.window_size
    sh, sw = block.shift_size
    x = F.pad(x, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))
    hp, wp = x.shape[1], x.shape[2]
    mask = None
    if sh or sw:
        x = torch.roll(x, shifts=(-sh, -sw), dims=(1, 2))
        mask = shift_mask(hp, wp, (wh, ww), (sh, sw), x)
    out = unpartition(block.attn(partition(x, wh, ww), mask=mask), wh, ww, hp, wp)
    if sh or sw:
        out = torch.roll(out, shifts=(sh, sw), dims=(1, 2))
    return out[:, :h, :w, :].contiguous()


def use_official_window_order(swin: Any) -> int:
    """Patch every block of a timm SwinTransformer; returns how many were patched."""
    count = 0
    for stage in swin.layers:
        for block in stage.blocks:
            block._attn = MethodType(official_window_attention, block)
            count += 1
    return count
