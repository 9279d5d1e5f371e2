"""`python -m sidecar`: the orch language server on stdin/stdout (logs go to stderr)."""

import logging

from sidecar.server import build_server

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    build_server().start_io()
