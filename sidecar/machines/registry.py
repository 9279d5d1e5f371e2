"""The registry of machine kinds: kind -> provider class, imported only when used.

Adding a kind touches its own module, its config model in `remote_config/model.py` and one
line here — nothing else. Front ends ask `capabilities(kind)` (what a kind can do) instead of
branching on kind names, and `create(...)` builds the provider for a configured machine.
Provider modules are imported lazily so that a kind's heavy client library (boto3, an HTTP
client) is loaded only by a process that actually talks to such a machine.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from sidecar.errors import OrchError

if TYPE_CHECKING:
    from sidecar.layout import Layout
    from sidecar.machines.base import Capabilities, Provider

# kind -> "module:Class". The module must not import its cloud SDK at import time.
_PROVIDERS: dict[str, str] = {
    "local": "sidecar.machines.local.provider:LocalProvider",
    "ssh": "sidecar.machines.ssh_host:SSHHostProvider",
    "ec2": "sidecar.machines.ec2.provider:EC2Provider",
    "codespaces": "sidecar.machines.codespaces:CodespacesProvider",
}


def register(kind: str, target: str) -> None:
    """Plug in a provider ("package.module:Class") for `kind` (also used by extensions)."""
    _PROVIDERS[kind] = target


def kinds() -> list[str]:
    """Every kind this orch can drive."""
    return sorted(_PROVIDERS)


def provider_class(kind: str) -> type[Provider]:
    try:
        target = _PROVIDERS[kind]
    except KeyError:
        raise OrchError(
            f"machines of kind {kind!r} are not supported by this version of orch",
            hint=f"supported kinds: {', '.join(kinds())}",
        ) from None
    module, _, name = target.partition(":")
    cls: type[Provider] = getattr(importlib.import_module(module), name)
    return cls


def capabilities(kind: str) -> Capabilities:
    return provider_class(kind).capabilities


def create(name: str, spec: Any, layout: Layout, project: str) -> Provider:
    """The provider for machine `name` configured as `spec` (its `kind` picks the class)."""
    return provider_class(spec.kind)(name, spec, layout, project)
