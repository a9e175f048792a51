"""docs/config.md documents every config key of the model, and nothing else.

As the API test does for OpenAPI: the sections and keys come from the dataclasses (the keys
the loader accepts), the documented ones from the headings and tables of docs/config.md.
Where the documented default is a TOML literal it must equal the model's default.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
import typing
from pathlib import Path
from typing import Any

import pytest

from proxy.config import Config
from proxy.config.fields import table_keys

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"
ENV_MODULES = [Path(__file__).resolve().parents[2] / "proxy" / "config" / name
               for name in ("env.py", "load.py")]

_HEADING = re.compile(r"^## `(\[\[|\[)?([a-z_]+)(?:\]\]|\])?`")
_ROW = re.compile(r"^\| `([a-z_0-9]+)` \| (.*?) \|")


def _documented() -> dict[str, dict[str, str]]:
    """Heading as written (``[sip]``, ``[[trunks]]``, ``rules_file``) -> key -> default cell."""
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("## "):
            match = _HEADING.match(line)
            current = None
            if match:
                brackets, name = match.groups()
                heading = f"{brackets}{name}{']' * len(brackets)}" if brackets else name
                current = sections.setdefault(heading, {})
            continue
        row = _ROW.match(line)
        if row and current is not None:
            assert row.group(1) not in current, f"{row.group(1)} documented twice"
            current[row.group(1)] = row.group(2)
    return sections


def _model() -> dict[str, type[Any] | None]:
    """Heading -> the dataclass of that section (None for a top-level scalar key)."""
    hints = typing.get_type_hints(Config)
    fields = {f.name: f for f in dataclasses.fields(Config)}
    out: dict[str, type[Any] | None] = {}
    for key in table_keys(Config):
        hint = hints[fields[key].name]
        args = typing.get_args(hint)
        if dataclasses.is_dataclass(hint):
            out[f"[{key}]"] = typing.cast(type[Any], hint)
        elif typing.get_origin(hint) is tuple and args and dataclasses.is_dataclass(args[0]):
            out[f"[[{key}]]"] = typing.cast(type[Any], args[0])
        else:
            out[key] = None
    return out


def test_every_section_is_documented_and_nothing_else() -> None:
    assert sorted(_documented()) == sorted(_model())


@pytest.mark.parametrize("heading", sorted(_model()))
def test_every_key_is_documented_and_nothing_else(heading: str) -> None:
    cls = _model()[heading]
    documented = _documented().get(heading, {})
    if cls is None:
        assert documented == {}, f"{heading} is a key: no table under it"
        return
    assert sorted(documented) == sorted(table_keys(cls)), heading


#: defaults the section parser gives where the dataclass has none (a field that comes before
#: required ones, and is built positionally)
_PARSER_DEFAULTS = {("RouteConfig", "prefix"): ""}


def _default(cls: type[Any], key: str) -> Any:
    """The model's default for *key*: its field's, or (a key filling several fields, like
    ``api.listen``) the attribute of that name of a default instance."""
    if (cls.__name__, key) in _PARSER_DEFAULTS:
        return _PARSER_DEFAULTS[cls.__name__, key]
    for f in dataclasses.fields(cls):
        if f.name == key:
            if f.default_factory is not dataclasses.MISSING:
                return f.default_factory()
            return f.default
    return getattr(cls(), key)


def _as_toml(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_as_toml(v) for v in value]
    if dataclasses.is_dataclass(value) or isinstance(value, (ipaddress.IPv4Network, ipaddress.IPv6Network)):
        return str(value)
    return value


@pytest.mark.parametrize("heading", sorted(h for h, c in _model().items() if c is not None))
def test_documented_defaults_match_the_model(heading: str) -> None:
    cls = _model()[heading]
    assert cls is not None
    for key, cell in _documented().get(heading, {}).items():
        if key not in table_keys(cls):
            continue  # reported by test_every_key_is_documented_and_nothing_else
        default = _default(cls, key)
        where = f"{heading} {key}: documented {cell}, model {default!r}"
        if cell == "(required)":
            assert default is dataclasses.MISSING, where
        elif cell.startswith("none"):
            assert default in (None, ()), where
        elif re.fullmatch(r"`[^`]+`", cell):
            assert tomllib.loads(f"v = {cell[1:-1]}")["v"] == _as_toml(default), where
        else:
            assert default is not dataclasses.MISSING, where


def test_every_environment_variable_is_documented() -> None:
    names = {name for module in ENV_MODULES
             for name in re.findall(r'"(SIPMASK_[A-Z_]+)"', module.read_text(encoding="utf-8"))}
    assert "SIPMASK_CONFIG" in names and "SIPMASK_LISTEN" in names
    doc = DOC.read_text(encoding="utf-8")
    assert {name for name in names if f"`{name}`" not in doc} == set()
