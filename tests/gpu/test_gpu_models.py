"""Both models build from real code at 256 px, and checkpoints go through the real loader.

The "official" BiRefNet checkpoint is made by the test: a built model's weights renamed to the
official layout (Microsoft Swin / PVTv2 key names, plus the derived buffers and the DDP prefix
official files carry), saved with torch.save, then loaded into a fresh model.
"""

from __future__ import annotations

import pytest
import torch

from gpu.errors import CheckpointError
from gpu.loader import birefnet_to_official, load_birefnet, load_sam2, save_checkpoint
from gpu.models.birefnet import BiRefNetConfig, build_birefnet
from gpu.models.sam2 import Sam2Config, build_sam2_model

SIZE = 256


@pytest.fixture(scope="module")
def swin_pair() -> tuple[torch.nn.Module, torch.nn.Module]:
    torch.manual_seed(0)
    a = build_birefnet(BiRefNetConfig("swin_v1_t", SIZE))
    torch.manual_seed(1)
    b = build_birefnet(BiRefNetConfig("swin_v1_t", SIZE))
    return a, b


def official_checkpoint(model: torch.nn.Module, path, backbone: str) -> dict:
    state = birefnet_to_official(model.state_dict(), backbone)
    if backbone.startswith("swin"):
        # Official Swin checkpoints also carry derived buffers; the loader must drop them.
        state["bb.layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(49, 49).long()
        state["bb.layers.0.blocks.1.attn_mask"] = torch.zeros(4, 49, 49)
    state["bb.head.weight"] = torch.zeros(1000, 8)  # a leftover classifier: dropped too
    save_checkpoint({f"module.{k}": v for k, v in state.items()}, path)
    return state


def test_birefnet_swin_tiny_builds_and_runs(swin_pair) -> None:
    model, _ = swin_pair
    params = sum(p.numel() for p in model.parameters())
    assert 35e6 < params < 45e6, params  # Swin-T trunk (~28 M) + bilateral decoder
    with torch.no_grad():
        out = model(torch.randn(1, 3, SIZE, SIZE))
    assert out.shape == (1, 1, SIZE, SIZE)
    assert torch.isfinite(out).all()


def test_official_swin_layout_has_the_official_names_and_shapes(swin_pair) -> None:
    official = birefnet_to_official(swin_pair[0].state_dict(), "swin_v1_t")
    expected = {
        "bb.patch_embed.proj.weight": (96, 3, 4, 4),
        "bb.layers.0.downsample.reduction.weight": (192, 384),  # MS Swin merges at stage end
        "bb.layers.2.downsample.norm.weight": (1536,),
        "bb.layers.3.blocks.1.attn.relative_position_bias_table": (169, 24),
        "bb.norm3.weight": (768,),
        "squeeze_module.0.conv_in.weight": (64, 1536 + 192 + 384 + 768, 3, 3),
        # Official deformable ASPP: aspp1 + aspp_deforms with kernels 1, 3, 7 (the complete
        # key list is checked in test_gpu_checkpoint_layout.py).
        "squeeze_module.0.dec_att.aspp_deforms.2.atrous_conv.offset_conv.weight": (98, 64, 7, 7),
        "squeeze_module.0.dec_att.conv1.weight": (64, 5 * 256, 1, 1),
        "decoder.ipt_blk5.conv1.weight": (64, 3072, 3, 3),
        "decoder.decoder_block4.conv_in.weight": (64, 1536 + 192, 3, 3),
        "decoder.gdt_convs_attn_2.0.weight": (1, 16, 1, 1),
        "decoder.conv_out1.0.weight": (1, 96 + 24, 1, 1),
    }
    for key, shape in expected.items():
        assert tuple(official[key].shape) == shape, key
    assert "bb.layers.3.downsample.reduction.weight" not in official
    assert not any(".aspp2." in k for k in official)  # the non-deformable ASPP's names


def test_swin_checkpoint_saves_and_loads_through_the_loader(swin_pair, tmp_path) -> None:
    source, target = swin_pair
    path = tmp_path / "BiRefNet-swin_t.pth"
    official_checkpoint(source, path, "swin_v1_t")
    assert not torch.equal(
        source.state_dict()["decoder.conv_out1.0.weight"],
        target.state_dict()["decoder.conv_out1.0.weight"],
    )
    load_birefnet(target, path)
    src, dst = source.state_dict(), target.state_dict()
    assert src.keys() == dst.keys()
    assert all(torch.equal(src[k], dst[k]) for k in src)


def test_pvt_checkpoint_loads_and_reproduces_outputs(tmp_path) -> None:
    torch.manual_seed(0)
    source = build_birefnet(BiRefNetConfig("pvt_v2_b0", SIZE))
    torch.manual_seed(1)
    target = build_birefnet(BiRefNetConfig("pvt_v2_b0", SIZE))
    path = tmp_path / "BiRefNet-pvt_v2_b0.pth"
    official = official_checkpoint(source, path, "pvt_v2_b0")
    assert tuple(official["bb.patch_embed2.proj.weight"].shape) == (64, 32, 3, 3)
    assert "bb.block1.0.mlp.dwconv.dwconv.weight" in official
    assert tuple(official["bb.norm4.weight"].shape) == (256,)
    load_birefnet(target, path)
    x = torch.randn(1, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(source(x), target(x))


def test_wrong_backbone_checkpoint_fails_clearly(swin_pair, tmp_path) -> None:
    pvt = build_birefnet(BiRefNetConfig("pvt_v2_b0", SIZE))
    path = tmp_path / "pvt.pth"
    official_checkpoint(pvt, path, "pvt_v2_b0")
    with pytest.raises(CheckpointError) as info:
        load_birefnet(swin_pair[1], path)
    message = str(info.value)
    # Detected from the checkpoint's shapes before any key is compared.
    assert "it is a pvt_v2_b0 BiRefNet (stem width 32, blocks per stage 2/2/2/2)" in message
    assert "not swin_v1_t" in message and "--birefnet-backbone pvt_v2_b0" in message


def test_shape_mismatch_and_unreadable_files_fail_clearly(swin_pair, tmp_path) -> None:
    state = birefnet_to_official(swin_pair[0].state_dict(), "swin_v1_t")
    state["decoder.conv_out1.0.weight"] = torch.zeros(1, 7, 1, 1)
    save_checkpoint(state, tmp_path / "bad_shape.pth")
    with pytest.raises(CheckpointError, match=r"shape mismatches: decoder\.conv_out1\.0\.weight"):
        load_birefnet(swin_pair[1], tmp_path / "bad_shape.pth")
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_birefnet(swin_pair[1], tmp_path / "garbage.pth")
    with pytest.raises(CheckpointError, match="no such file"):
        load_birefnet(swin_pair[1], tmp_path / "absent.pth")


def test_sam2_hiera_tiny_builds_saves_and_loads(tmp_path) -> None:
    torch.manual_seed(0)
    source = build_sam2_model(Sam2Config(image_size=SIZE), "cpu")
    params = sum(p.numel() for p in source.parameters())
    assert 38e6 < params < 40e6, params  # hiera-tiny: 38.9 M
    path = tmp_path / "sam2.1_hiera_tiny.pt"
    save_checkpoint(source.state_dict(), path, wrap_key="model")  # the official layout
    torch.manual_seed(1)
    target = build_sam2_model(Sam2Config(image_size=SIZE), "cpu")
    load_sam2(target, path)
    src, dst = source.state_dict(), target.state_dict()
    assert all(torch.equal(src[k], dst[k]) for k in src)

    broken = dict(src)
    del broken["image_encoder.neck.convs.0.conv.weight"]
    save_checkpoint(broken, tmp_path / "broken.pt", wrap_key="model")
    with pytest.raises(CheckpointError, match=r"missing keys: image_encoder\.neck"):
        load_sam2(target, tmp_path / "broken.pt")


def test_random_weights_must_be_asked_for() -> None:
    from gpu.engine import Engine, EngineConfig
    from gpu.errors import WeightsRequiredError

    with pytest.raises(WeightsRequiredError, match="--random-weights"):
        Engine(EngineConfig(models=("sam2",), lanes=1, sam2_size=SIZE))
