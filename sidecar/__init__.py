"""The orch sidecar: everything that performs I/O (ssh, sync, jobs, machines, debug, profiling),
the Orchestrator facade both front ends call (`app.py`), the language server (`server/`) and
the `orch` command (`cli/`)."""

import warnings

# asyncssh still names cryptography's DSA types at import; the warning says nothing a user can
# act on and otherwise fills the editor's Orch output at every start (orch never offers DSA).
warnings.filterwarnings("ignore", message="DSA is deprecated", module=r"asyncssh\.")

__version__ = "0.1.0"
