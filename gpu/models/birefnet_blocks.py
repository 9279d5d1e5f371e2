"""BiRefNet's decoder building blocks, with the official module names and layout.

Attribute names (`conv_in`, `bn_in`, `dec_att`, `aspp1`, `aspp_deforms`, `global_avg_pool`,
`atrous_conv`, `offset_conv`, `modulator_conv`, `regular_conv`, …) and the order of submodules
are those of the official implementation (ZhengPeng7/BiRefNet, default config), so an official
checkpoint's decoder keys load unchanged; only the backbone keys need the map in `gpu.loader`.

The official deformable ASPP is a 1x1 deformable branch `aspp1`, then a list `aspp_deforms` of
three deformable branches with kernels 1, 3 and 7 (offset convs with 2, 18 and 98 outputs),
then image pooling, all fused by `conv1` over 5 x 256 channels. (The official non-deformable
`ASPP`, with `aspp1` 1x1 and dilated 3x3 `aspp2..4`, is not used by the default config.)

BatchNorm: the official code builds each `BatchNorm2d` only when training used a batch size
> 1, and an `nn.Identity` (no weights) otherwise; `batch_norm=False` builds that variant.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def deform_conv2d(*args: Any, **kwargs: Any) -> Any:
    """torchvision's modulated deformable convolution, imported when first used."""
    from torchvision.ops import deform_conv2d as op

    return op(*args, **kwargs)


def norm2d(channels: int, batch_norm: bool) -> nn.Module:
    """BatchNorm2d, or a weightless Identity for checkpoints trained without BatchNorm."""
    return nn.BatchNorm2d(channels) if batch_norm else nn.Identity()


class DeformableConv2d(nn.Module):
    """Modulated deformable conv (DCNv2): offsets and a 0..2 modulator predicted from the input."""

    def __init__(self, cin: int, cout: int, kernel_size: int = 3, padding: int = 1) -> None:
        super().__init__()
        taps = kernel_size * kernel_size
        self.padding = padding
        self.offset_conv = nn.Conv2d(cin, 2 * taps, kernel_size, 1, padding, bias=True)
        self.modulator_conv = nn.Conv2d(cin, taps, kernel_size, 1, padding, bias=True)
        self.regular_conv = nn.Conv2d(cin, cout, kernel_size, 1, padding, bias=False)
        # Zero offsets and a modulator of exactly 1 at start: it begins as a plain convolution.
        for conv in (self.offset_conv, self.modulator_conv):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        offset = self.offset_conv(x)
        modulator = 2.0 * torch.sigmoid(self.modulator_conv(x))
        return deform_conv2d(
            x,
            offset,
            self.regular_conv.weight,
            self.regular_conv.bias,
            padding=(self.padding, self.padding),
            mask=modulator,
        )


class _ASPPBranch(nn.Module):
    """One deformable branch: k x k deformable conv ('same' padding) → norm → ReLU."""

    def __init__(self, cin: int, planes: int, kernel_size: int, batch_norm: bool) -> None:
        super().__init__()
        self.atrous_conv = DeformableConv2d(cin, planes, kernel_size, kernel_size // 2)
        self.bn = norm2d(planes, batch_norm)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.bn(self.atrous_conv(x)))


# Kernel sizes of the official `aspp_deforms` list (its `parallel_block_sizes`).
DEFORM_KERNELS = (1, 3, 7)


class ASPPDeformable(nn.Module):
    """`aspp1` (1x1) + `aspp_deforms` (1x1, 3x3, 7x7) + image pooling, fused back to `cin`."""

    def __init__(self, cin: int = 64, inter: int = 256, batch_norm: bool = True) -> None:
        super().__init__()
        self.aspp1 = _ASPPBranch(cin, inter, 1, batch_norm)
        self.aspp_deforms = nn.ModuleList(
            _ASPPBranch(cin, inter, k, batch_norm) for k in DEFORM_KERNELS
        )
        self.global_avg_pool = nn.Sequential(
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Conv2d(cin, inter, 1, stride=1, bias=False),
            norm2d(inter, batch_norm),
            nn.ReLU(inplace=True),
        )
        self.conv1 = nn.Conv2d(inter * (2 + len(DEFORM_KERNELS)), cin, 1, bias=False)
        self.bn1 = norm2d(cin, batch_norm)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = [self.aspp1(x), *(branch(x) for branch in self.aspp_deforms)]
        pooled = F.interpolate(
            self.global_avg_pool(x), size=x.shape[2:], mode="bilinear", align_corners=True
        )
        fused = self.conv1(torch.cat([*branches, pooled], dim=1))
        return self.dropout(self.relu(self.bn1(fused)))


class BasicDecBlk(nn.Module):
    """conv → BN → ReLU → deformable ASPP → conv → BN (channel_inter fixed at 64)."""

    def __init__(self, cin: int, cout: int, inter: int = 64, batch_norm: bool = True) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(cin, inter, 3, 1, padding=1)
        self.relu_in = nn.ReLU(inplace=True)
        self.dec_att = ASPPDeformable(inter, batch_norm=batch_norm)
        self.conv_out = nn.Conv2d(inter, cout, 3, 1, padding=1)
        self.bn_in = norm2d(inter, batch_norm)
        self.bn_out = norm2d(cout, batch_norm)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu_in(self.bn_in(self.conv_in(x)))
        return self.bn_out(self.conv_out(self.dec_att(x)))


class BasicLatBlk(nn.Module):
    """The lateral (skip) projection: a 1x1 convolution."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 1, 1, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class SimpleConvs(nn.Module):
    """Two 3x3 convolutions: encodes image patches fed into each decoder stage."""

    def __init__(self, cin: int, cout: int, inter: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, inter, 3, 1, 1)
        self.conv_out = nn.Conv2d(inter, cout, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.conv1(x))


def image_to_patches(image: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Fold the image into a grid of patches of `ref`'s size, stacked on channels.

    'b c (hg h) (wg w) -> b (c hg wg) h w': the input reference of the bilateral decoder.
    """
    b, c, height, width = image.shape
    h, w = ref.shape[-2:]
    hg, wg = height // h, width // w
    patches = image.reshape(b, c, hg, h, wg, w).permute(0, 1, 2, 4, 3, 5)
    return patches.reshape(b, c * hg * wg, h, w)


def resize(x: torch.Tensor, size: Any) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=True)
