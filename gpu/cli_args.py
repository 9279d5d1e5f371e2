"""Command-line options shared by `python -m gpu` (the service) and `python -m gpu.profiling`."""

from __future__ import annotations

import argparse

from gpu.engine import EngineConfig

# Kept here (not imported from gpu.models.birefnet) so that parsing flags needs no torch.
BACKBONE_NAMES = [
    "swin_v1_t", "swin_v1_s", "swin_v1_b", "swin_v1_l",
    "pvt_v2_b0", "pvt_v2_b1", "pvt_v2_b2", "pvt_v2_b5",
]  # fmt: skip


def add_engine_args(parser: argparse.ArgumentParser, default_models: str = "birefnet,sam2") -> None:
    g = parser.add_argument_group("models and device")
    g.add_argument("--models", default=default_models, help="comma list of birefnet,sam2")
    g.add_argument("--device", default="auto", help="auto (cuda if available), cuda, cuda:1, cpu")
    g.add_argument("--lanes", type=int, default=4, help="stream lanes (CUDA streams on a GPU)")
    g.add_argument("--max-batch", type=int, default=None, help="items per lane micro-batch")
    g.add_argument("--memory-fraction", type=float, default=None, help="per-process GPU cap")
    g.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    g.add_argument(
        "--birefnet-backbone",
        default=None,
        choices=BACKBONE_NAMES,
        help="default: the checkpoint's backbone, detected from its shapes (swin_v1_l, the "
        "official default, with --random-weights); a value the checkpoint disagrees with is "
        "an error",
    )
    g.add_argument("--birefnet-size", type=int, default=1024)
    g.add_argument("--birefnet-weights", default=None, help="local BiRefNet checkpoint")
    g.add_argument("--sam2-config", default="configs/sam2.1/sam2.1_hiera_t.yaml")
    g.add_argument("--sam2-size", type=int, default=1024)
    g.add_argument("--sam2-weights", default=None, help="local SAM2 checkpoint ({'model': …})")
    g.add_argument(
        "--random-weights",
        action="store_true",
        help="build models without weights (tests/benchmarks only; /health reports it)",
    )


def engine_config_from_args(args: argparse.Namespace) -> EngineConfig:
    return EngineConfig(
        models=tuple(m.strip() for m in args.models.split(",") if m.strip()),
        device=args.device,
        lanes=args.lanes,
        max_batch=args.max_batch,
        memory_fraction=args.memory_fraction,
        precision=args.precision,
        birefnet_backbone=args.birefnet_backbone,
        birefnet_size=args.birefnet_size,
        birefnet_weights=args.birefnet_weights,
        sam2_config=args.sam2_config,
        sam2_size=args.sam2_size,
        sam2_weights=args.sam2_weights,
        random_weights=args.random_weights,
    )
