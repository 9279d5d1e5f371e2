"""`python -m sidecar`: the orch language server on stdin/stdout (logs go to stderr)."""

import logging

from sidecar.server import build_server

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # pygls logs every message at INFO; the "debug" log level (initializationOptions) shows it.
    logging.getLogger("pygls").setLevel(logging.WARNING)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    build_server().start_io()
