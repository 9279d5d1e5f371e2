"""The base of every command's parameter model (pydantic), apart from `core` so that starting
the language server does not import pydantic: the command areas, which define their models
at import, load after the `initialize` reply (see `sidecar.server.build_server`)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Base of every command's parameters: unknown keys are an error, not silently ignored."""

    # Built at a command's first call (pydantic's `defer_build`): loading ~40 models at once
    # would otherwise delay the first status read.
    model_config = ConfigDict(extra="forbid", defer_build=True)


class NoParams(Params):
    pass
