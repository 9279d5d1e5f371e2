"""`python -m sidecar`: the orch language server on stdin/stdout (logs go to stderr)."""

import logging
import os

# As the CLI does: no scan of installed packages for pydantic plugins (importlib.metadata,
# ~20 ms of the start); orch uses none.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from sidecar.server import build_server

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    # pygls logs every message at INFO; the "debug" log level (initializationOptions) shows it.
    logging.getLogger("pygls").setLevel(logging.WARNING)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    build_server().start_io()
