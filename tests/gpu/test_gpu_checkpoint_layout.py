"""Official BiRefNet checkpoints load strictly: the complete official key list, from facts.

No official code is used. The key names and shapes below are written from the architecture's
published facts (ZhengPeng7/BiRefNet default config; Microsoft's Swin and the PVTv2 authors'
backbone naming):

- Swin-T: 4x4 patch stem of width 96 with a LayerNorm, stages of 2/2/6/2 blocks with 3/6/12/24
  heads and 7x7 windows, MLP ratio 4, qkv with bias, a patch merging (`downsample`, 4C → 2C, no
  bias) at the END of stages 0–2, one output LayerNorm `norm{i}` per stage.
- PVT-v2-b0: overlapping patch stems `patch_embed1..4` (7x7 then 3x3) of widths 32/64/160/256,
  2 blocks per stage, 1/2/5/8 heads, spatial reduction 8/4/2/1 (a conv `sr` + LayerNorm only
  when > 1), MLP ratios 8/8/4/4 with a depth-wise 3x3 conv (`mlp.dwconv.dwconv`), `norm1..4`.
- Decoder (default config): lateral channels = 2 x the stage widths (multi-scale 'cat'), deepest
  first; a squeeze `BasicDecBlk` over stage 4 + the three context stages; `BasicDecBlk` = conv_in
  3x3 → 64, bn_in, deformable ASPP, conv_out 3x3, bn_out; deformable ASPP = `aspp1` (1x1) and
  `aspp_deforms` 0/1/2 with kernels 1/3/7, each a deformable conv (offset conv 2k² outputs with
  bias, modulator conv k² outputs with bias, regular conv 256 outputs without bias) + bn, the
  pooling branch `global_avg_pool` (1x1 conv 64 → 256 without bias at index 1, BN at index 2),
  `conv1` 5x256 → 64 without bias, `bn1`; input-reference blocks `ipt_blk5..1` over 3·2^10,
  3·2^8, 3·2^6, 3·2^4 and 3 patch channels (conv1 → 64, conv_out → c/8); 1x1 lateral blocks;
  multi-scale supervision convs and gradient heads `gdt_convs_*` (3x3 → 16, BN at index 1),
  `gdt_convs_pred_*`, `gdt_convs_attn_*` (1x1 → 1).
- BatchNorm layers exist only when training used a batch size > 1 (otherwise no weights).
- The other backbones, same naming: Swin-S 96 wide, 2/2/18/2 blocks, 3/6/12/24 heads, window 7;
  Swin-B 128, 2/2/18/2, 4/8/16/32, window 12; Swin-L 192, 2/2/18/2, 6/12/24/48, window 12;
  PVT-v2-b1 64/128/320/512 wide, 2/2/2/2 blocks; b2 the same widths, 3/4/6/3; b5 3/6/40/3 with
  MLP ratio 4 in every stage (all PVT: 1/2/5/8 heads, reductions 8/4/2/1).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpu.checkpoint_layout import detect_birefnet
from gpu.errors import CheckpointError
from gpu.loader import birefnet_to_official, build_birefnet_for, load_birefnet, save_checkpoint
from gpu.models.birefnet import BiRefNetConfig, build_birefnet

Shapes = dict[str, tuple[int, ...]]
SIZE = 256
DERIVED = ("relative_position_index",)  # buffers official files carry and we rebuild


def norm(keys: Shapes, prefix: str, ch: int) -> None:
    keys[f"{prefix}.weight"] = (ch,)
    keys[f"{prefix}.bias"] = (ch,)


def batchnorm(keys: Shapes, prefix: str, ch: int) -> None:
    norm(keys, prefix, ch)
    keys[f"{prefix}.running_mean"] = (ch,)
    keys[f"{prefix}.running_var"] = (ch,)
    keys[f"{prefix}.num_batches_tracked"] = ()


def linear(keys: Shapes, prefix: str, cout: int, cin: int, bias: bool = True) -> None:
    keys[f"{prefix}.weight"] = (cout, cin)
    if bias:
        keys[f"{prefix}.bias"] = (cout,)


def conv(keys: Shapes, prefix: str, cout: int, cin: int, k: int, bias: bool = True) -> None:
    keys[f"{prefix}.weight"] = (cout, cin, k, k)
    if bias:
        keys[f"{prefix}.bias"] = (cout,)


def swin_keys(embed: int, depths: list[int], heads: list[int], window: int) -> Shapes:
    keys: Shapes = {}
    conv(keys, "bb.patch_embed.proj", embed, 3, 4)
    norm(keys, "bb.patch_embed.norm", embed)
    for i, (depth, h) in enumerate(zip(depths, heads, strict=True)):
        c = embed * 2**i
        for j in range(depth):
            p = f"bb.layers.{i}.blocks.{j}"
            norm(keys, f"{p}.norm1", c)
            keys[f"{p}.attn.relative_position_bias_table"] = ((2 * window - 1) ** 2, h)
            keys[f"{p}.attn.relative_position_index"] = (window * window, window * window)
            linear(keys, f"{p}.attn.qkv", 3 * c, c)
            linear(keys, f"{p}.attn.proj", c, c)
            norm(keys, f"{p}.norm2", c)
            linear(keys, f"{p}.mlp.fc1", 4 * c, c)
            linear(keys, f"{p}.mlp.fc2", c, 4 * c)
        if i < len(depths) - 1:
            linear(keys, f"bb.layers.{i}.downsample.reduction", 2 * c, 4 * c, bias=False)
            norm(keys, f"bb.layers.{i}.downsample.norm", 4 * c)
        norm(keys, f"bb.norm{i}", c)
    return keys


def pvt_keys(dims: list[int], depths: list[int], mlp: list[int], sr: list[int]) -> Shapes:
    keys: Shapes = {}
    for n in range(1, 5):
        c, cin = dims[n - 1], 3 if n == 1 else dims[n - 2]
        conv(keys, f"bb.patch_embed{n}.proj", c, cin, 7 if n == 1 else 3)
        norm(keys, f"bb.patch_embed{n}.norm", c)
        hidden = c * mlp[n - 1]
        for j in range(depths[n - 1]):
            p = f"bb.block{n}.{j}"
            norm(keys, f"{p}.norm1", c)
            linear(keys, f"{p}.attn.q", c, c)
            linear(keys, f"{p}.attn.kv", 2 * c, c)
            linear(keys, f"{p}.attn.proj", c, c)
            if sr[n - 1] > 1:
                conv(keys, f"{p}.attn.sr", c, c, sr[n - 1])
                norm(keys, f"{p}.attn.norm", c)
            norm(keys, f"{p}.norm2", c)
            linear(keys, f"{p}.mlp.fc1", hidden, c)
            keys[f"{p}.mlp.dwconv.dwconv.weight"] = (hidden, 1, 3, 3)
            keys[f"{p}.mlp.dwconv.dwconv.bias"] = (hidden,)
            linear(keys, f"{p}.mlp.fc2", c, hidden)
        norm(keys, f"bb.norm{n}", c)
    return keys


def dec_blk(keys: Shapes, p: str, cin: int, cout: int, bn: bool) -> None:
    conv(keys, f"{p}.conv_in", 64, cin, 3)
    branches = [("aspp1", 1), ("aspp_deforms.0", 1), ("aspp_deforms.1", 3), ("aspp_deforms.2", 7)]
    for name, k in branches:
        b = f"{p}.dec_att.{name}"
        conv(keys, f"{b}.atrous_conv.offset_conv", 2 * k * k, 64, k)
        conv(keys, f"{b}.atrous_conv.modulator_conv", k * k, 64, k)
        conv(keys, f"{b}.atrous_conv.regular_conv", 256, 64, k, bias=False)
        if bn:
            batchnorm(keys, f"{b}.bn", 256)
    conv(keys, f"{p}.dec_att.global_avg_pool.1", 256, 64, 1, bias=False)
    conv(keys, f"{p}.dec_att.conv1", 64, 5 * 256, 1, bias=False)
    conv(keys, f"{p}.conv_out", cout, 64, 3)
    if bn:
        batchnorm(keys, f"{p}.dec_att.global_avg_pool.2", 256)
        batchnorm(keys, f"{p}.dec_att.bn1", 64)
        batchnorm(keys, f"{p}.bn_in", 64)
        batchnorm(keys, f"{p}.bn_out", cout)


def decoder_keys(stage_widths: list[int], bn: bool) -> Shapes:
    c = [2 * w for w in reversed(stage_widths)]  # lateral channels, deepest first ('cat')
    keys: Shapes = {}
    dec_blk(keys, "squeeze_module.0", c[0] + c[1] + c[2] + c[3], c[0], bn)
    ipt = [(3 * 2**10, c[0] // 8), (3 * 2**8, c[0] // 8), (3 * 2**6, c[1] // 8)]
    ipt += [(3 * 2**4, c[2] // 8), (3, c[3] // 8)]
    for level, (cin, cout) in zip((5, 4, 3, 2, 1), ipt, strict=True):
        conv(keys, f"decoder.ipt_blk{level}.conv1", 64, cin, 3)
        conv(keys, f"decoder.ipt_blk{level}.conv_out", cout, 64, 3)
    dec_blk(keys, "decoder.decoder_block4", c[0] + c[0] // 8, c[1], bn)
    dec_blk(keys, "decoder.decoder_block3", c[1] + c[0] // 8, c[2], bn)
    dec_blk(keys, "decoder.decoder_block2", c[2] + c[1] // 8, c[3], bn)
    dec_blk(keys, "decoder.decoder_block1", c[3] + c[2] // 8, c[3] // 2, bn)
    conv(keys, "decoder.conv_out1.0", 1, c[3] // 2 + c[3] // 8, 1)
    for level, ch in ((4, c[1]), (3, c[2]), (2, c[3])):
        conv(keys, f"decoder.lateral_block{level}.conv", ch, ch, 1)
        conv(keys, f"decoder.conv_ms_spvn_{level}", 1, ch, 1)
        conv(keys, f"decoder.gdt_convs_{level}.0", 16, ch, 3)
        if bn:
            batchnorm(keys, f"decoder.gdt_convs_{level}.1", 16)
        conv(keys, f"decoder.gdt_convs_pred_{level}.0", 1, 16, 1)
        conv(keys, f"decoder.gdt_convs_attn_{level}.0", 1, 16, 1)
    return keys


SWIN_T = swin_keys(96, [2, 2, 6, 2], [3, 6, 12, 24], 7)
PVT_B0 = pvt_keys([32, 64, 160, 256], [2, 2, 2, 2], [8, 8, 4, 4], [8, 4, 2, 1])
OFFICIAL = {
    "swin_v1_t": lambda bn: {**SWIN_T, **decoder_keys([96, 192, 384, 768], bn)},
    "pvt_v2_b0": lambda bn: {**PVT_B0, **decoder_keys([32, 64, 160, 256], bn)},
}


def make_state(shapes: Shapes, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if key.endswith(("num_batches_tracked", "relative_position_index")):
            state[key] = torch.zeros(shape, dtype=torch.long)
        elif key.endswith("running_var"):
            state[key] = torch.ones(shape)
        else:
            state[key] = torch.randn(shape, generator=gen) * 0.02
    return state


def test_the_facts_match_the_issue() -> None:
    keys = OFFICIAL["swin_v1_t"](True)
    att = "decoder.decoder_block4.dec_att"
    offsets = [keys[f"{att}.aspp_deforms.{i}.atrous_conv.offset_conv.weight"][0] for i in range(3)]
    assert offsets == [2, 18, 98]
    assert keys[f"{att}.conv1.weight"] == (64, 1280, 1, 1)
    # 5 deformable-ASPP blocks x 3 listed branches x 10 keys: what a wrong layout misses.
    assert sum(".aspp_deforms." in k for k in keys) == 150


@pytest.mark.parametrize("backbone", ["swin_v1_t", "pvt_v2_b0"])
@pytest.mark.parametrize("bn", [True, False], ids=["batchnorm", "no-batchnorm"])
def test_official_key_list_loads_strictly_and_runs(backbone, bn, tmp_path) -> None:
    shapes = OFFICIAL[backbone](bn)
    state = make_state(shapes)
    path = tmp_path / f"BiRefNet-{backbone}.pth"
    save_checkpoint({f"module.{k}": v for k, v in state.items()}, path)

    layout = detect_birefnet(state)
    assert (layout.backbone, layout.batch_norm) == (backbone, bn)
    model, _ = build_birefnet_for(path, None, SIZE)

    # Our model, in official names, has exactly the official keys and shapes.
    ours = birefnet_to_official(model.state_dict(), backbone)
    expected = {k: s for k, s in shapes.items() if not k.endswith(DERIVED)}
    assert {k: tuple(v.shape) for k, v in ours.items() if not k.endswith(DERIVED)} == expected
    # And the values went where they belong (a mapped backbone key and a decoder key).
    for key in ("decoder.decoder_block2.dec_att.aspp_deforms.2.atrous_conv.offset_conv.weight",
                "bb.norm3.weight" if backbone == "swin_v1_t" else "bb.norm4.weight",
                "bb.layers.1.downsample.reduction.weight" if backbone == "swin_v1_t"
                else "bb.block3.1.mlp.dwconv.dwconv.weight"):  # fmt: skip
        assert torch.equal(ours[key], state[key]), key
    has_bn = any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert has_bn == bn
    with torch.no_grad():
        out = model(torch.randn(1, 3, SIZE, SIZE))
    assert out.shape == (1, 1, SIZE, SIZE) and torch.isfinite(out).all()


def test_old_aspp_layout_fails_with_the_list_of_differences(tmp_path) -> None:
    shapes = OFFICIAL["swin_v1_t"](True)
    old_layout = {"offset_conv": 18, "modulator_conv": 9, "regular_conv": 256}  # all 3x3
    wrong: Shapes = {}
    for key, shape in shapes.items():  # the non-deformable ASPP's names: aspp2..4
        for i in range(3):
            if f".aspp_deforms.{i}." in key:
                key = key.replace(f".aspp_deforms.{i}.", f".aspp{i + 2}.")
                for conv_name, cout in old_layout.items():
                    if f".{conv_name}." in key:
                        shape = (cout, 64, 3, 3) if len(shape) == 4 else (cout,)
        wrong[key] = shape
    path = tmp_path / "wrong-layout.pth"
    save_checkpoint(make_state(wrong), path)
    with pytest.raises(CheckpointError) as info:
        build_birefnet_for(path, None, SIZE)
    err = info.value
    assert len(err.missing) == 150 and len(err.unexpected) == 150
    assert all(".aspp_deforms." in k for k in err.missing)
    assert all(".dec_att.aspp" in k and ".aspp_deforms." not in k for k in err.unexpected)
    message = str(err)
    assert "150 missing keys" in message and "150 unexpected keys" in message
    # Grouped by module, indices as `*`: both the missing and the unexpected branches show.
    assert "decoder.decoder_block*.dec_att.aspp_deforms.*.atrous_conv.offset_conv" in message
    assert "squeeze_module.*.dec_att.aspp*.atrous_conv.offset_conv.{bias,weight} (6)" in message

    # A shape-only difference (a 3x3 kernel where the official one is 7x7) is listed too.
    state = make_state(shapes)
    key = "decoder.decoder_block1.dec_att.aspp_deforms.2.atrous_conv.regular_conv.weight"
    state[key] = torch.zeros(256, 64, 3, 3)
    save_checkpoint(state, tmp_path / "bad-kernel.pth")
    with pytest.raises(CheckpointError, match=r"1 shape mismatches: .*regular_conv\.weight"):
        build_birefnet_for(tmp_path / "bad-kernel.pth", None, SIZE)


def test_backbone_flag_that_disagrees_is_explained(tmp_path) -> None:
    path = tmp_path / "BiRefNet-pvt_v2_b0.pth"
    save_checkpoint(make_state(OFFICIAL["pvt_v2_b0"](True)), path)
    with pytest.raises(CheckpointError) as info:
        build_birefnet_for(path, "swin_v1_l", SIZE)
    message = str(info.value)
    assert "it is a pvt_v2_b0 BiRefNet (stem width 32, blocks per stage 2/2/2/2)" in message
    assert "pass --birefnet-backbone pvt_v2_b0" in message
    # A model built by hand for another backbone gets the same explanation, not a key dump.
    with pytest.raises(CheckpointError, match="not swin_v1_t"):
        load_birefnet(build_birefnet(BiRefNetConfig("swin_v1_t", SIZE)), path)


OTHER_BACKBONES = {
    "swin_v1_s": (swin_keys(96, [2, 2, 18, 2], [3, 6, 12, 24], 7), [96, 192, 384, 768]),
    "swin_v1_b": (swin_keys(128, [2, 2, 18, 2], [4, 8, 16, 32], 12), [128, 256, 512, 1024]),
    "swin_v1_l": (swin_keys(192, [2, 2, 18, 2], [6, 12, 24, 48], 12), [192, 384, 768, 1536]),
    "pvt_v2_b1": (
        pvt_keys([64, 128, 320, 512], [2, 2, 2, 2], [8, 8, 4, 4], [8, 4, 2, 1]),
        [64, 128, 320, 512],
    ),
    "pvt_v2_b2": (
        pvt_keys([64, 128, 320, 512], [3, 4, 6, 3], [8, 8, 4, 4], [8, 4, 2, 1]),
        [64, 128, 320, 512],
    ),
    "pvt_v2_b5": (
        pvt_keys([64, 128, 320, 512], [3, 6, 40, 3], [4, 4, 4, 4], [8, 4, 2, 1]),
        [64, 128, 320, 512],
    ),
}


class Meta:
    """A stand-in value with only a shape: detection reads shapes, nothing else."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


@pytest.mark.parametrize("backbone", list(OTHER_BACKBONES))
def test_every_other_backbone_is_detected_and_has_the_official_keys(backbone) -> None:
    backbone_keys, widths = OTHER_BACKBONES[backbone]
    shapes = {**backbone_keys, **decoder_keys(widths, bn=True)}
    layout = detect_birefnet({k: Meta(s) for k, s in shapes.items()})
    assert (layout.backbone, layout.batch_norm) == (backbone, True)
    # The model we build for it has exactly these keys and shapes (built, not run: Swin-L
    # and PVT-v2-b5 forwards are too slow for a CPU test).
    model = build_birefnet(BiRefNetConfig(backbone, SIZE))
    ours = birefnet_to_official(model.state_dict(), backbone)
    expected = {k: s for k, s in shapes.items() if not k.endswith(DERIVED)}
    assert {k: tuple(v.shape) for k, v in ours.items() if not k.endswith(DERIVED)} == expected


def test_engine_builds_what_the_checkpoint_is(tmp_path) -> None:
    from gpu.engine import Engine, EngineConfig

    path = tmp_path / "BiRefNet-pvt_v2_b0-bs1.pth"
    save_checkpoint(make_state(OFFICIAL["pvt_v2_b0"](False)), path)
    # No --birefnet-backbone: backbone and BatchNorm come from the checkpoint.
    engine = Engine(EngineConfig(models=("birefnet",), lanes=1, birefnet_weights=str(path),
                                 birefnet_size=SIZE))  # fmt: skip
    try:
        described = engine.describe()["models"]["birefnet"]
        assert described["backbone"] == "pvt_v2_b0" and described["batch_norm"] is False
        assert described["detected"].startswith("from the checkpoint (stem width 32")
        [mask] = engine.remove_background([torch.zeros(40, 48, 3, dtype=torch.uint8).numpy()])
        assert mask.shape == (40, 48)
    finally:
        engine.close()
    with pytest.raises(CheckpointError, match="pass --birefnet-backbone pvt_v2_b0"):
        Engine(EngineConfig(models=("birefnet",), birefnet_weights=str(path),
                            birefnet_backbone="swin_v1_t", birefnet_size=SIZE))  # fmt: skip


def test_python_m_gpu_names_the_right_backbone_and_stops(tmp_path) -> None:
    root = Path(__file__).resolve().parents[2]
    path = tmp_path / "BiRefNet-pvt_v2_b0.pth"
    save_checkpoint(make_state(OFFICIAL["pvt_v2_b0"](True)), path)
    proc = subprocess.run(
        [sys.executable, "-m", "gpu", "--models", "birefnet", "--birefnet-weights", str(path),
         "--birefnet-backbone", "swin_v1_l", "--birefnet-size", str(SIZE)],
        capture_output=True, text=True, timeout=120, cwd=root, check=False,
        env={**os.environ, "PYTHONPATH": str(root)},
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "it is a pvt_v2_b0 BiRefNet" in proc.stderr
    assert "pass --birefnet-backbone pvt_v2_b0" in proc.stderr
