"""The starter `orch.toml` that `orch config init` and "Create orch.toml" write (pure).

Every key in it is optional; the commented lines show the common ones with values that work,
so uncommenting one is all a first edit takes.
"""

from __future__ import annotations


def starter_toml(project_name: str) -> str:
    name = project_name.replace("\\", "\\\\").replace('"', '\\"')
    return f"""\
# orch.toml: where this project's heavy work runs. Every key is optional; hover a key in
# VS Code to see what it does, or run `orch config schema`.

[project]
name = "{name}"
# default_machine = "gpu"   # which [machines.NAME] Up and jobs use; default: "local"

# An existing server you can reach over SSH:
# [machines.gpu]
# kind = "ssh"
# host = "10.0.0.5"
# user = "ubuntu"

[sync]
# remote_dir = "~/work/{name}"   # where the project lives on the machine
# exclude = ["data/", "*.ckpt"]   # on top of .gitignore

# Forward a port of the machine to this computer while it runs:
# [[ports]]
# local = 8888
# remote = 8888
"""
