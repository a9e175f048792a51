"""Validators of single TOML values, and the key check shared with the rules file.

Each validator takes the raw value and its dotted key path and returns the typed value or
raises :class:`ConfigError` naming the file, the key and the expected form. The key check
(:func:`check_keys`, :func:`table_keys`) serves every TOML file sipmask reads: the config and
the rules file (``proxy.b2bua.policy``), whose errors share :class:`LocatedError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import math
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Final, TypeVar

import phonenumbers

__all__ = [
    "ADDRESS_FORM",
    "ConfigError",
    "LocatedError",
    "Source",
    "check_keys",
    "parse_address",
    "parse_hostport",
    "table_keys",
    "toml_key",
]

TRANSPORTS: Final = ("udp", "tcp", "tls")
ADDRESS_FORM: Final = '"udp|tcp|tls:HOST:PORT"'
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_TOML_KEY: Final = "sipmask.toml_key"

T = TypeVar("T")


# --------------------------------------------------------------------------------------------
# Errors and keys, shared by every TOML file sipmask reads
# --------------------------------------------------------------------------------------------


class LocatedError(Exception):
    """A problem in a file, naming where it is and what was expected.

    Attributes:
        file: the file as given (or "environment" for a bad ``SIPMASK_*`` variable).
        key: the dotted key path (``routes[0].gateways[1]``), or None for file-level problems.
        problem: what is wrong, without the location prefix.
    """

    def __init__(self, file: str | None, key: str | None, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {problem}" if where else problem)


class ConfigError(LocatedError):
    """A configuration problem, naming the file, the key and what was expected."""


def toml_key(name: str | None) -> dict[str, str | None]:
    """Field metadata: the field is written *name* in the TOML file (None: not read from it).

    Fields without it are written as their own name.
    """
    return {_TOML_KEY: name}


def table_keys(cls: type[Any]) -> tuple[str, ...]:
    """The keys a TOML table for dataclass *cls* may hold, in field order, each once.

    A field's key is its name, or what its :func:`toml_key` metadata says; fields that are not
    ``__init__`` arguments (derived values) are never keys.
    """
    keys: dict[str, None] = {}
    for f in dataclasses.fields(cls):
        key = f.metadata.get(_TOML_KEY, f.name)
        if key is not None and f.init:
            keys[key] = None
    return tuple(keys)


def check_keys(
    file: str,
    table: Mapping[str, Any],
    allowed: Sequence[str],
    where: str,
    error: type[LocatedError],
    listing: str = "known keys",
) -> None:
    """Raise *error* for the first key of *table* not in *allowed*, with a "did you mean".

    *where* is the table's key path ("" for the top level); with no close match the message
    lists *allowed* after *listing*.
    """
    for key in table:
        if key in allowed:
            continue
        path = f"{where}.{key}" if where else key
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f'; did you mean "{close[0]}"?' if close else f"; {listing}: {', '.join(allowed)}"
        raise error(file, path, f"unknown key{hint}")


class Source:
    """Where values come from: the file name for messages and the base for relative paths."""

    __slots__ = ("base", "file")

    def __init__(self, file: str, base: Path | None) -> None:
        self.file = file
        self.base = base

    def error(self, key: str | None, problem: str) -> ConfigError:
        """A :class:`ConfigError` in this file at *key*."""
        return ConfigError(self.file, key, problem)

    def path(self, value: str) -> str:
        """*value* relative to the file's directory (as given when absolute or no file)."""
        if self.base is None or os.path.isabs(value):
            return value
        return str(self.base / value)

    def check_keys(self, table: Mapping[str, Any], cls: type[Any], where: str) -> None:
        """Every key of *table* is a key of dataclass *cls* (:func:`table_keys`)."""
        check_keys(self.file, table, table_keys(cls), where, ConfigError)


# --------------------------------------------------------------------------------------------
# Values: each takes the source, the raw value and its key path
# --------------------------------------------------------------------------------------------


def show(value: Any) -> str:
    """*value* as a message shows it: strings quoted TOML-style, tables and lists by kind."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def table(src: Source, value: Any, key: str) -> Mapping[str, Any]:
    """A TOML table."""
    if not isinstance(value, dict):
        raise src.error(key, f"expected a table, got {show(value)}")
    return value


def string(src: Source, value: Any, key: str, *, empty: bool = False) -> str:
    """A single-line string, non-blank unless *empty*."""
    if not isinstance(value, str):
        raise src.error(key, f"expected a string, got {show(value)}")
    if not empty and not value.strip():
        raise src.error(key, "expected a non-empty string")
    if "\r" in value or "\n" in value:
        raise src.error(key, "expected a single line, got a line break")
    return value


def choice(src: Source, value: Any, key: str, choices: Sequence[str]) -> str:
    """One of *choices*, in any case (returned lower case)."""
    text = string(src, value, key).strip().lower()
    if text not in choices:
        raise src.error(key, f"expected one of {', '.join(choices)}, got {show(value)}")
    return text


def boolean(src: Source, value: Any, key: str) -> bool:
    """``true`` or ``false``."""
    if not isinstance(value, bool):
        raise src.error(key, f"expected true or false, got {show(value)}")
    return value


def integer(src: Source, value: Any, key: str, lo: int, hi: int | None = None) -> int:
    """An integer in [lo, hi] (hi None: no upper bound)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise src.error(key, f"expected an integer, got {show(value)}")
    if value < lo or (hi is not None and value > hi):
        rng = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise src.error(key, f"expected an integer {rng}, got {value}")
    return value


def positive(src: Source, value: Any, key: str) -> float:
    """A finite number of seconds above 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise src.error(key, f"expected a positive number of seconds, got {show(value)}")
    if not math.isfinite(value) or value <= 0:
        raise src.error(key, f"expected a positive number of seconds, got {value}")
    return float(value)


def bounded_number(src: Source, value: Any, key: str, lo: float, hi: float | None) -> float:
    """A finite number in [lo, hi] (hi None: no upper bound)."""
    want = f"a number from {lo:g} to {hi:g}" if hi is not None else f"a number >= {lo:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise src.error(key, f"expected {want}, got {show(value)}")
    if value < lo or (hi is not None and value > hi):
        raise src.error(key, f"expected {want}, got {value}")
    return float(value)


def seconds_or_zero(src: Source, value: Any, key: str) -> float:
    """A finite number of seconds, 0 (off) or more."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise src.error(key, f"expected a number of seconds, 0 (off) or more, got {show(value)}")
    return float(value)


def list_of(src: Source, value: Any, key: str, item: Callable[[Any, str], T]) -> tuple[T, ...]:
    """A TOML list, each element checked by ``item(element, "key[i]")``."""
    if not isinstance(value, list):
        raise src.error(key, f"expected a list, got {show(value)}")
    return tuple(item(v, f"{key}[{i}]") for i, v in enumerate(value))


def region(src: Source, value: Any, key: str) -> str:
    """A two-letter region that phonenumbers knows, in any case (returned upper case)."""
    text = string(src, value, key).strip().upper()
    if text not in phonenumbers.SUPPORTED_REGIONS:
        raise src.error(key, f'expected a two-letter region such as "US" or "GB", got {show(value)}')
    return text


def http_url(src: Source, value: Any, key: str) -> str:
    """An ``http://`` or ``https://`` URL with a host and no spaces."""
    form = '"http://HOST[:PORT]/PATH" or "https://..."'
    url = string(src, value, key).strip()
    scheme, sep, rest = url.partition("://")
    host = rest.split("/", 1)[0].rpartition("@")[2]
    if not sep or scheme.lower() not in ("http", "https") or not host or any(
            ch.isspace() for ch in url):
        raise src.error(key, f"expected {form}, got {show(url)}")
    return url


def valid_host(host: str) -> bool:
    """Whether *host* is an IP address or a DNS host name."""
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return bool(_HOSTNAME.fullmatch(host))


def parse_address(text: str) -> tuple[str, str, int]:
    """Split ``"udp:HOST:PORT"`` (IPv6 as ``udp:[::1]:5060``) into (transport, host, port).

    Raises:
        ValueError: with the reason, when *text* is not of that form.
    """
    transport, sep, rest = text.strip().partition(":")
    transport = transport.lower()
    if not sep or transport not in TRANSPORTS:
        raise ValueError("transport must be udp, tcp or tls")
    if rest.startswith("["):
        host, close, tail = rest[1:].partition("]")
        if not close or not tail.startswith(":"):
            raise ValueError("missing port")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError("bad IPv6 address in brackets") from None
        port_text = tail[1:]
    else:
        host, sep, port_text = rest.rpartition(":")
        if not sep:
            raise ValueError("missing port")
        if ":" in host:
            raise ValueError("IPv6 addresses need brackets")
        if not valid_host(host):
            raise ValueError("bad host")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError("port must be 1..65535")
    return transport, host, int(port_text)


def parse_hostport(text: str) -> tuple[str, int]:
    """Split ``"HOST:PORT"`` (IPv6 as ``[::1]:8080``) into (host, port).

    Raises:
        ValueError: with the reason, when *text* is not of that form.
    """
    _, host, port = parse_address("tcp:" + text)
    return host, port


def address(src: Source, value: Any, key: str) -> tuple[str, str, int]:
    """``"udp|tcp|tls:HOST:PORT"`` as (transport, host, port)."""
    if not isinstance(value, str):
        raise src.error(key, f"expected {ADDRESS_FORM}, got {show(value)}")
    try:
        return parse_address(value)
    except ValueError as exc:
        raise src.error(key, f"expected {ADDRESS_FORM}, got {show(value)} ({exc})") from None


def hostport(src: Source, value: Any, key: str) -> tuple[str, int]:
    """``"HOST:PORT"`` (the API's listen address) as (host, port)."""
    form = '"HOST:PORT" (e.g. "127.0.0.1:8080", "[::1]:8080")'
    if not isinstance(value, str):
        raise src.error(key, f"expected {form}, got {show(value)}")
    try:
        return parse_hostport(value.strip())
    except ValueError as exc:
        raise src.error(key, f"expected {form}, got {show(value)} ({exc})") from None


def network(src: Source, value: Any, key: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """An address or CIDR network (host bits allowed)."""
    if not isinstance(value, str):
        raise src.error(key, f'expected an address or CIDR like "10.0.0.0/8", got {show(value)}')
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise src.error(
            key, f'expected an address or CIDR like "10.0.0.0/8", got {show(value)}'
        ) from None
