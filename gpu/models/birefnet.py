"""BiRefNet (Zheng et al., 2024): bilateral reference for high-resolution dichotomous segmentation.

Written here, faithful to the official implementation's default configuration:
- a hierarchical backbone from timm (Swin v1 or PVT v2) with a LayerNorm on each output stage
  and, for Swin, the official pad-then-shift window order (`gpu.models.swin_windows`);
- multi-scale input ('cat'): the backbone also sees the image at half size and each stage's
  features are concatenated with the upsampled half-size features (channels ×2);
- context ('cxt', 3): stages 1–3 are resized to stage 4 and concatenated to it, then squeezed
  by one `BasicDecBlk`;
- the decoder with *inward* reference (image patches folded onto channels and encoded by
  `SimpleConvs` at every level: `ipt_blk5…1`) and *outward* reference (gradient-attention maps
  `gdt_convs_*`/`gdt_convs_attn_*` multiplying each level's features), deformable-ASPP decoder
  blocks (official layout: `aspp1` + `aspp_deforms` with kernels 1/3/7, see
  `gpu.models.birefnet_blocks`) and 1x1 lateral blocks.
The official default backbone is Swin-L (`swin_v1_l`); BatchNorm layers exist only when the
checkpoint was trained with a batch size > 1 (`BiRefNetConfig.batch_norm`; `gpu.checkpoint_layout`
reads both from a checkpoint).
Training-only heads (`conv_ms_spvn_*`, `gdt_convs_pred_*`) exist so official checkpoints load
strictly, but inference returns only the final logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gpu.models.birefnet_blocks import (
    BasicDecBlk,
    BasicLatBlk,
    SimpleConvs,
    image_to_patches,
    norm2d,
    resize,
)
from gpu.models.swin_windows import use_official_window_order

# Official backbone name → (timm architecture, per-stage channels deepest first).
BACKBONES: dict[str, tuple[str, list[int]]] = {
    "swin_v1_t": ("swin_tiny_patch4_window7_224", [768, 384, 192, 96]),
    "swin_v1_s": ("swin_small_patch4_window7_224", [768, 384, 192, 96]),
    "swin_v1_b": ("swin_base_patch4_window12_384", [1024, 512, 256, 128]),
    "swin_v1_l": ("swin_large_patch4_window12_384", [1536, 768, 384, 192]),
    "pvt_v2_b0": ("pvt_v2_b0", [256, 160, 64, 32]),
    "pvt_v2_b1": ("pvt_v2_b1", [512, 320, 128, 64]),
    "pvt_v2_b2": ("pvt_v2_b2", [512, 320, 128, 64]),
    "pvt_v2_b5": ("pvt_v2_b5", [512, 320, 128, 64]),
}

# Architecture facts of each official backbone: (stem width, blocks per stage). They tell the
# backbones apart in a checkpoint (`gpu.checkpoint_layout`); the widths double per Swin stage.
BACKBONE_FACTS: dict[str, tuple[int, tuple[int, int, int, int]]] = {
    "swin_v1_t": (96, (2, 2, 6, 2)),
    "swin_v1_s": (96, (2, 2, 18, 2)),
    "swin_v1_b": (128, (2, 2, 18, 2)),
    "swin_v1_l": (192, (2, 2, 18, 2)),
    "pvt_v2_b0": (32, (2, 2, 2, 2)),
    "pvt_v2_b1": (64, (2, 2, 2, 2)),
    "pvt_v2_b2": (64, (3, 4, 6, 3)),
    "pvt_v2_b5": (64, (3, 6, 40, 3)),
}
DEFAULT_BACKBONE = "swin_v1_l"  # the official config's default

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class BiRefNetConfig:
    backbone: str = DEFAULT_BACKBONE
    image_size: int = 1024  # square input side; must be a multiple of 32
    batch_norm: bool = True  # False: the official no-BatchNorm variant (trained at batch size 1)

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"unknown backbone {self.backbone!r}; choose from {list(BACKBONES)}")
        if self.image_size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {self.image_size}")

    @property
    def channels(self) -> list[int]:
        """Lateral channels after the multi-scale 'cat' (×2), deepest first."""
        return [2 * c for c in BACKBONES[self.backbone][1]]


class Backbone(nn.Module):
    """A timm Swin/PVT-v2 trunk returning four NCHW stages (finest first), each normed."""

    def __init__(self, backbone: str, image_size: int) -> None:
        super().__init__()
        try:
            import timm
        except ImportError as exc:  # pragma: no cover - environment
            from gpu.errors import MissingDependencyError

            raise MissingDependencyError("timm") from exc
        arch, channels = BACKBONES[backbone]
        self.kind = "swin" if backbone.startswith("swin") else "pvt"
        kwargs: dict[str, Any] = {"pretrained": False, "num_classes": 0}
        if self.kind == "swin":
            # The half-size pass of the multi-scale input needs a size-agnostic Swin, and the
            # official Swin never shrinks its windows for small maps (always_partition).
            kwargs.update(img_size=image_size, strict_img_size=False, always_partition=True)
        self.body = timm.create_model(arch, **kwargs)
        # Only the trunk is used; drop the classifier's final norm/head so keys stay clean.
        for unused in ("norm", "head"):
            if hasattr(self.body, unused):
                setattr(self.body, unused, nn.Identity())
        if self.kind == "swin":
            use_official_window_order(self.body)  # pad-then-shift, see swin_windows.py
            # Official Swin backbones norm each returned stage (norm0…norm3); timm's does not.
            for i, c in enumerate(reversed(channels)):
                self.add_module(f"norm{i}", nn.LayerNorm(c))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if self.kind == "pvt":
            x = self.body.patch_embed(x)
            outs = []
            for stage in self.body.stages:
                x = stage(x)
                outs.append(x)
            return outs
        x = self.body.patch_embed(x)  # NHWC
        outs = []
        for i, layer in enumerate(self.body.layers):
            x = layer(x)
            outs.append(getattr(self, f"norm{i}")(x).permute(0, 3, 1, 2).contiguous())
        return outs


class Decoder(nn.Module):
    """The bilateral-reference decoder (inward: image patches; outward: gradient attention)."""

    def __init__(self, channels: list[int], batch_norm: bool = True) -> None:
        super().__init__()
        c = channels
        ipt_in = [3 * 2**i for i in (10, 8, 6, 4, 0)]  # patch grids 32², 16², 8², 4², 1²
        ipt_out = [c[0] // 8, c[0] // 8, c[1] // 8, c[2] // 8, c[3] // 8]
        for level, (cin, cout) in zip(
            (5, 4, 3, 2, 1), zip(ipt_in, ipt_out, strict=True), strict=True
        ):
            self.add_module(f"ipt_blk{level}", SimpleConvs(cin, cout, inter=64))
        bn = batch_norm
        self.decoder_block4 = BasicDecBlk(c[0] + ipt_out[0], c[1], batch_norm=bn)
        self.decoder_block3 = BasicDecBlk(c[1] + ipt_out[1], c[2], batch_norm=bn)
        self.decoder_block2 = BasicDecBlk(c[2] + ipt_out[2], c[3], batch_norm=bn)
        self.decoder_block1 = BasicDecBlk(c[3] + ipt_out[3], c[3] // 2, batch_norm=bn)
        self.conv_out1 = nn.Sequential(nn.Conv2d(c[3] // 2 + ipt_out[4], 1, 1, 1, 0))
        self.lateral_block4 = BasicLatBlk(c[1], c[1])
        self.lateral_block3 = BasicLatBlk(c[2], c[2])
        self.lateral_block2 = BasicLatBlk(c[3], c[3])
        n = 16
        for level, ch in ((4, c[1]), (3, c[2]), (2, c[3])):
            # Multi-scale supervision and gradient-prediction heads: training only.
            self.add_module(f"conv_ms_spvn_{level}", nn.Conv2d(ch, 1, 1, 1, 0))
            self.add_module(
                f"gdt_convs_{level}",
                nn.Sequential(nn.Conv2d(ch, n, 3, 1, 1), norm2d(n, bn), nn.ReLU(inplace=True)),
            )
            self.add_module(f"gdt_convs_pred_{level}", nn.Sequential(nn.Conv2d(n, 1, 1, 1, 0)))
            self.add_module(f"gdt_convs_attn_{level}", nn.Sequential(nn.Conv2d(n, 1, 1, 1, 0)))

    def _inward(self, level: int, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
        patches = image_to_patches(x, ref)
        return getattr(self, f"ipt_blk{level}")(resize(patches, ref.shape[2:]))

    def _outward(self, level: int, p: torch.Tensor) -> torch.Tensor:
        gdt = getattr(self, f"gdt_convs_{level}")(p)
        return p * getattr(self, f"gdt_convs_attn_{level}")(gdt).sigmoid()

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        x, x1, x2, x3, x4 = features
        p = self.decoder_block4(torch.cat([x4, self._inward(5, x, x4)], 1))
        p = self._outward(4, p)
        for level, skip, lateral, block in (
            (4, x3, self.lateral_block4, self.decoder_block3),
            (3, x2, self.lateral_block3, self.decoder_block2),
        ):
            q = resize(p, skip.shape[2:]) + lateral(skip)
            p = block(torch.cat([q, self._inward(level, x, q)], 1))
            p = self._outward(level - 1, p)
        q = resize(p, x1.shape[2:]) + self.lateral_block2(x1)
        p = self.decoder_block1(torch.cat([q, self._inward(2, x, q)], 1))
        p = resize(p, x.shape[2:])
        return self.conv_out1(torch.cat([p, self._inward(1, x, p)], 1))


class BiRefNet(nn.Module):
    """Image (B,3,S,S), ImageNet-normalized → foreground logits (B,1,S,S)."""

    def __init__(self, config: BiRefNetConfig | None = None) -> None:
        super().__init__()
        self.config = config or BiRefNetConfig()
        c = self.config.channels
        self.bb = Backbone(self.config.backbone, self.config.image_size)
        cxt = c[1:][::-1]  # stages 1..3 concatenated onto stage 4
        bn = self.config.batch_norm
        self.squeeze_module = nn.Sequential(BasicDecBlk(c[0] + sum(cxt), c[0], batch_norm=bn))
        self.decoder = Decoder(c, batch_norm=bn)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.bb(x)
        half = resize(x, (x.shape[2] // 2, x.shape[3] // 2))
        feats = [
            torch.cat([f, resize(g, f.shape[2:])], 1)
            for f, g in zip(feats, self.bb(half), strict=True)
        ]
        x1, x2, x3, x4 = feats
        x4 = torch.cat(
            [resize(x1, x4.shape[2:]), resize(x2, x4.shape[2:]), resize(x3, x4.shape[2:]), x4], 1
        )
        return [x1, x2, x3, self.squeeze_module(x4)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder([x, *self.encode(x)])


def build_birefnet(config: BiRefNetConfig | None = None) -> BiRefNet:
    """The architecture with random weights, in eval mode; load weights with `gpu.loader`."""
    return BiRefNet(config).eval()
