"""`python -m sidecar`: the orch language server on stdin/stdout (logs go to stderr).

By default a standard-library bridge to the language server hosted in the orch agent
(`sidecar.bridge`); with `ORCH_NO_AGENT=1` or `ORCH_LSP_HOSTED=0` the server runs in this
process."""

import sys

from sidecar import bridge

if __name__ == "__main__":
    sys.exit(bridge.main() if bridge.hosted() else bridge.run_in_process())
