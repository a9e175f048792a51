"""The Lua scripts of the Redis store, read once from the ``.lua`` files beside this module.

Each file is one script or one set of helpers that scripts share (`common.lua`: the key
prefix, deadlines and status changes; `create_function.lua`: inserting a session, shared by
create and allocation); a script is registered as its helpers followed by its own text, so
Redis runs it as one atomic unit. The files travel as package data (pyproject.toml).
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files

__all__ = ["lua"]

_PACKAGE = __name__.rpartition(".")[0]


def lua(*names: str) -> str:
    """The text of ``NAME.lua`` for each of `names`, joined in that order (helpers first)."""
    return "".join(_read(name) for name in names)


@cache
def _read(name: str) -> str:
    return files(_PACKAGE).joinpath(f"{name}.lua").read_text(encoding="utf-8")
