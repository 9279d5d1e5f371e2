"""`python -m gpu`: build the engine and serve the HTTP API (127.0.0.1:55441 by default)."""

from __future__ import annotations

import argparse
import logging
import sys

from gpu import DEFAULT_HOST, DEFAULT_PORT
from gpu.cli_args import add_engine_args, engine_config_from_args
from gpu.device import configure_allocator
from gpu.errors import GpuServiceError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gpu", description=__doc__)
    parser.add_argument("--host", default=DEFAULT_HOST, help="bind address (loopback by default)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT)
    parser.add_argument("--max-body-mb", type=float, default=32.0)
    parser.add_argument("--max-pixels", type=int, default=4096 * 4096)
    parser.add_argument("--max-batch-items", type=int, default=16)
    add_engine_args(parser)
    parser.add_argument(
        "--slow-ms",
        type=float,
        default=2000.0,
        help="log requests slower than this (ms) with their timings by stage; 0 turns it off",
    )
    args = parser.parse_args(argv)
    allocator = configure_allocator()  # before torch touches CUDA
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        import uvicorn

        from gpu.engine import Engine
        from gpu.imaging import Limits
        from gpu.service import create_app

        engine = Engine(engine_config_from_args(args))
    except (GpuServiceError, ValueError, RuntimeError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    limits = Limits(int(args.max_body_mb * 1024 * 1024), args.max_pixels, args.max_batch_items)
    print(
        f"gpu service on http://{args.host}:{args.port} ({engine.device}; {allocator})", flush=True
    )
    app = create_app(engine, limits, slow_ms=args.slow_ms)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
