"""The shape of `proxy.pairing.stores` and `proxy.integrations`: a backend never imports a
sibling backend (what both need is in `stores/base.py`), the layers below `integrations`
never import it, `observability` imports nothing from the layers above it, and every Lua
script the Redis store runs is a `.lua` file beside it that some module loads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import proxy
from proxy.pairing.stores.redis.scripts import lua

PROXY = Path(proxy.__file__).parent
REDIS = PROXY / "pairing" / "stores" / "redis"


def _imports(package: Path) -> dict[str, set[str]]:
    """Every module below `package` (by path) -> the absolute names it imports."""
    found: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(PROXY.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        else:
            parts[-1:] = []  # relative imports resolve against the module's package
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = parts[: len(parts) - node.level + 1] if node.level else []
                module = ".".join([*base, *([node.module] if node.module else [])])
                names.add(module)
                names.update(f"{module}.{alias.name}" for alias in node.names)
        found[str(path.relative_to(PROXY))] = names
    return found


def _offenders(package: str, forbidden: tuple[str, ...]) -> list[str]:
    return [
        f"{module} imports {name}"
        for module, names in _imports(PROXY / package).items()
        for name in sorted(names)
        if name.startswith(forbidden)
    ]


@pytest.mark.parametrize(("backend", "sibling"), [("redis", "sqlite"), ("sqlite", "redis")])
def test_a_backend_never_imports_a_sibling_backend(backend: str, sibling: str) -> None:
    assert _offenders(f"pairing/stores/{backend}", (f"proxy.pairing.stores.{sibling}",)) == []


def test_pairing_does_not_import_integrations() -> None:
    assert _offenders("pairing", ("proxy.integrations",)) == []


def test_observability_imports_nothing_from_the_layers_above_it() -> None:
    above = ("proxy.pairing", "proxy.b2bua", "proxy.app", "proxy.integrations", "proxy.api")
    assert _offenders("observability", above) == []


def test_every_lua_file_is_loaded_and_every_loaded_script_is_a_file() -> None:
    named: set[str] = set()
    for path in REDIS.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "lua":
                named.update(arg.value for arg in node.args if isinstance(arg, ast.Constant))
    assert named == {path.stem for path in REDIS.glob("*.lua")}
    assert "redis.call" in lua("common", "create_function", "create")
