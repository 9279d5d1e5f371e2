"""The Swin window order matches the official code's (pad, then shift), checked independently.

The reference below is written from the official algorithm with explicit loops over windows
and plain attention math (no shared helpers), using a real timm block's weights. It also
shows why the adapter exists: timm's own order differs once a map needs padding.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gpu.models.swin_windows import official_window_attention


@pytest.fixture(scope="module")
def blocks():
    import timm

    swin = timm.create_model(
        "swin_tiny_patch4_window7_224", pretrained=False, num_classes=0,
        img_size=256, strict_img_size=False, always_partition=True,
    )  # fmt: skip
    return swin.layers[0].blocks[0].eval(), swin.layers[0].blocks[1].eval()  # plain, shifted


def reference(block, x: torch.Tensor) -> torch.Tensor:
    ws, shift = block.window_size[0], block.shift_size[0]
    b, h, w, c = x.shape
    heads = block.attn.num_heads
    xp = F.pad(x, (0, 0, 0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws))
    hp, wp = xp.shape[1:3]
    region = torch.zeros(hp, wp)
    if shift:
        xp = torch.roll(xp, (-shift, -shift), (1, 2))
        bands = [(0, hp - ws), (hp - ws, hp - shift), (hp - shift, hp)]
        wbands = [(0, wp - ws), (wp - ws, wp - shift), (wp - shift, wp)]
        for i, (h0, h1) in enumerate(bands):
            for j, (w0, w1) in enumerate(wbands):
                region[h0:h1, w0:w1] = 3 * i + j
    table = block.attn.relative_position_bias_table
    coords = torch.stack(torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")).flatten(
        1
    )
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    bias = table[rel[..., 0] * (2 * ws - 1) + rel[..., 1]].permute(2, 0, 1)  # heads, N, N
    out = torch.zeros_like(xp)
    for bi in range(b):
        for top in range(0, hp, ws):
            for left in range(0, wp, ws):
                tokens = xp[bi, top : top + ws, left : left + ws].reshape(-1, c)
                q, k, v = (
                    block.attn.qkv(tokens).reshape(-1, 3, heads, c // heads).permute(1, 2, 0, 3)
                )
                logits = (q * (c // heads) ** -0.5) @ k.transpose(-1, -2) + bias
                ids = region[top : top + ws, left : left + ws].reshape(-1)
                logits = logits.masked_fill((ids[:, None] != ids[None, :])[None], float("-inf"))
                att = (logits.softmax(-1) @ v).permute(1, 0, 2).reshape(-1, c)
                out[bi, top : top + ws, left : left + ws] = block.attn.proj(att).reshape(ws, ws, c)
    if shift:
        out = torch.roll(out, (shift, shift), (1, 2))
    return out[:, :h, :w]


@pytest.mark.parametrize("size", [10, 14, 16])
def test_official_order_matches_the_reference(blocks, size) -> None:
    x = torch.randn(2, size, size, 96)
    with torch.no_grad():
        for block in blocks:
            got = official_window_attention(block, x)
            assert torch.allclose(got, reference(block, x), atol=1e-5), (size, block.shift_size)


def test_timm_order_differs_only_when_padding_is_needed(blocks) -> None:
    shifted = blocks[1]
    timm_attn = type(shifted)._attn  # the unpatched method
    with torch.no_grad():
        padded = torch.randn(1, 10, 10, 96)  # 10 % 7 != 0
        assert not torch.allclose(timm_attn(shifted, padded), reference(shifted, padded), atol=1e-3)
        whole = torch.randn(1, 14, 14, 96)  # whole windows: both orders agree
        assert torch.allclose(timm_attn(shifted, whole), reference(shifted, whole), atol=1e-5)


def test_birefnet_swin_blocks_use_the_official_order() -> None:
    from gpu.models.birefnet import Backbone

    bb = Backbone("swin_v1_t", 256)
    blocks = [blk for stage in bb.body.layers for blk in stage.blocks]
    assert len(blocks) == 12  # depths 2-2-6-2
    assert all(blk._attn.__func__ is official_window_attention for blk in blocks)
