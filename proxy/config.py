"""sipmask configuration: one TOML file plus ``SIPMASK_*`` environment overrides.

Every key is optional; with no file sipmask listens on ``udp:127.0.0.1:5060``, trusts calls
from loopback only and keeps its pairings in ``./sipmask.db``. Errors name the file, the key
(a dotted path such as ``routes[0].gateways[1]``) and the expected form::

    sipmask.toml: routes[0].gateways[1]: expected "udp|tcp|tls:HOST:PORT", got "foo"

Unknown keys are errors, with a "did you mean" suggestion, so a typo never silently falls back
to a default. Relative paths written in the file are taken relative to the file's directory;
relative paths from the environment or defaults are relative to the working directory.

Environment (applied after the file): ``SIPMASK_CONFIG`` (file, when no path is passed),
``SIPMASK_LOG_LEVEL``, ``SIPMASK_LOG_FORMAT``, ``SIPMASK_STORE_PATH``, ``SIPMASK_LISTEN``
(comma-separated listen specs), ``SIPMASK_API_LISTEN`` (``HOST:PORT`` or ``off``),
``SIPMASK_HOOK_SECRET`` and ``SIPMASK_HOOK_BEARER_TOKEN`` (the lookup hook's credentials), and
the variables that ``webhooks[*].secret_env`` names. The key reference with examples is
``docs/config.md``.
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
import importlib.resources
from pathlib import Path
from typing import Any, Final, TypeVar

import phonenumbers

__all__ = [
    "ApiConfig",
    "CallsConfig",
    "HookConfig",
    "Config",
    "ConfigError",
    "DEFAULT_RULES_FILE",
    "Gateway",
    "ListenSpec",
    "LogConfig",
    "RouteConfig",
    "SipConfig",
    "StoreConfig",
    "TrunkConfig",
    "WebhookConfig",
    "load_config",
    "parse_address",
]

DEFAULT_RULES_FILE: Final = Path(str(importlib.resources.files("proxy") / "rules" / "default.toml"))
"""The header policy shipped with sipmask as package data (``proxy/rules/default.toml``; pip
installs a wheel's files on the file system, so the resource is a plain path)."""

TRANSPORTS: Final = ("udp", "tcp", "tls")
LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS: Final = ("auto", "json", "console")
REFER_MODES: Final = ("reject", "pass")
STORE_BACKENDS: Final = ("sqlite", "redis")
UNKNOWN_POLICIES: Final = ("reject", "hook", "route")
HOOK_SEND: Final = ("tokens", "numbers")
WEBHOOK_EVENTS: Final = ("call.started", "call.answered", "call.ended", "session.expired")
_ADDRESS_FORM: Final = '"udp|tcp|tls:HOST:PORT"'
_ENV_FILE: Final = "environment"
_HOSTNAME = re.compile(
    r"(?=.{1,253}\Z)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
)
_PREFIX = re.compile(r"\+?[0-9]*")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ConfigError(Exception):
    """A configuration problem, naming where it is and what was expected.

    Attributes:
        file: the config file as given (or "environment" for a bad ``SIPMASK_*`` variable).
        key: the dotted key path (``routes[0].gateways[1]``), or None for file-level problems.
        problem: what is wrong, without the location prefix.
    """

    def __init__(self, file: str | None, key: str | None, problem: str) -> None:
        self.file = file
        self.key = key
        self.problem = problem
        where = ": ".join(part for part in (file, key) if part)
        super().__init__(f"{where}: {problem}" if where else problem)


# --------------------------------------------------------------------------------------------
# Typed configuration
# --------------------------------------------------------------------------------------------


def _format_hostport(transport: str, host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"{transport}:{shown}:{port}"


@dataclass(frozen=True, slots=True)
class ListenSpec:
    """A local socket to listen on: ``udp:127.0.0.1:5060`` or ``tls:[::1]:5061``.

    ``host`` holds an IPv6 address without brackets.
    """

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        return _format_hostport(self.transport, self.host, self.port)


@dataclass(frozen=True, slots=True)
class Gateway:
    """A next hop of an outbound route, written like a listen spec."""

    transport: str
    host: str
    port: int

    def __str__(self) -> str:
        return _format_hostport(self.transport, self.host, self.port)


@dataclass(frozen=True, slots=True)
class SipConfig:
    """``[sip]``: sockets, timers (RFC 3261 §17 T1/T2/T4) and TLS material."""

    listen: tuple[ListenSpec, ...] = (ListenSpec("udp", "127.0.0.1", 5060),)
    advertise_host: str | None = None
    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    tcp_idle_timeout_s: float = 300.0
    max_message_size: int = 65535


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    """``[[trunks]]``: a peer that may send calls, recognised by source address."""

    name: str
    sources: tuple[IPNetwork, ...]
    trust_pai: bool = False
    default_region: str = "US"

    def contains(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether *ip* is inside one of this trunk's source networks."""
        return any(ip.version == net.version and ip in net for net in self.sources)


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """``[[routes]]``: where B legs go for numbers starting with ``prefix``."""

    prefix: str
    gateways: tuple[Gateway, ...]
    name: str = ""


@dataclass(frozen=True, slots=True)
class CallsConfig:
    """``[calls]``: rejection codes, call timers, session timers and REFER handling."""

    unknown_code: int = 404
    unknown_reason: str = "Not Found"
    untrusted_code: int = 403
    ring_timeout_s: float = 60.0
    max_duration_s: float = 14400.0
    session_expires_s: int = 0
    min_se_s: int = 90
    refer: str = "reject"
    max_calls: int = 0
    max_cps: float = 0.0
    overload_busy: float = 0.0
    overload_retransmissions: float = 0.2
    overload_queue_delay_ms: int = 200
    overload_retry_after_s: int = 5
    failover_timeout_s: float = 4.0
    unknown_policy: str = "reject"
    fallback_route: tuple[Gateway, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """``[store]``: where pairings live and the key file that encrypts real numbers."""

    backend: str = "sqlite"
    path: str = "sipmask.db"
    key_file: str = "sipmask.key"
    redis_url: str | None = None
    redis_prefix: str = "sipmask:"
    poll_interval_s: float = 0.5
    retention_days: float = 30.0
    purge_interval_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """``[api]``: the HTTP management API (sessions, pool, health, metrics)."""

    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8080
    default_region: str = "US"

    @property
    def listen(self) -> str:
        """``HOST:PORT`` as written in the config (IPv6 in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class HookConfig:
    """``[hook]``: the HTTP lookup hook asked when no session matches a call.

    ``secret`` and ``bearer_token`` may also come from ``SIPMASK_HOOK_SECRET`` and
    ``SIPMASK_HOOK_BEARER_TOKEN``.
    """

    url: str | None = None
    send: str = "tokens"
    timeout_s: float = 1.0
    cache_s: float = 30.0
    cache_size: int = 10000
    secret: str | None = field(default=None, repr=False)
    bearer_token: str | None = field(default=None, repr=False)
    default_region: str = "US"

    @property
    def enabled(self) -> bool:
        """The hook is on when a URL is configured."""
        return self.url is not None


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """``[[webhooks]]``: an endpoint that receives signed call and session events.

    ``events`` empty means every event type. ``secret`` may come from the environment
    variable named by ``secret_env``.
    """

    url: str
    secret: str | None = field(default=None, repr=False)
    events: tuple[str, ...] = ()
    max_attempts: int = 5
    include_numbers: bool = False
    timeout_s: float = 5.0
    secret_env: str | None = None

    def wants(self, event_type: str) -> bool:
        """Whether this endpoint subscribes to *event_type*."""
        return not self.events or event_type in self.events


@dataclass(frozen=True, slots=True)
class LogConfig:
    """``[log]``: level and output format."""

    level: str = "info"
    format: str = "auto"


def _default_trunks() -> tuple[TrunkConfig, ...]:
    return (
        TrunkConfig(
            name="loopback",
            sources=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        ),
    )


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. Build it with :func:`load_config`."""

    sip: SipConfig = field(default_factory=SipConfig)
    trunks: tuple[TrunkConfig, ...] = field(default_factory=_default_trunks)
    routes: tuple[RouteConfig, ...] = ()
    calls: CallsConfig = field(default_factory=CallsConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    log: LogConfig = field(default_factory=LogConfig)
    hook: HookConfig = field(default_factory=HookConfig)
    webhooks: tuple[WebhookConfig, ...] = ()
    rules_file: Path = DEFAULT_RULES_FILE
    source: Path | None = None

    def trunk_for(self, ip: str) -> TrunkConfig | None:
        """The first trunk whose sources contain *ip*, or None (also for a malformed ip)."""
        try:
            addr = ipaddress.ip_address(ip.strip("[]").split("%", 1)[0])
        except ValueError:
            return None
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        for trunk in self.trunks:
            if trunk.contains(addr):
                return trunk
        return None

    def route_for(self, number: str) -> RouteConfig | None:
        """The route with the longest prefix matching *number* (``+`` ignored on both sides).

        A route with prefix ``""`` matches every number; None when nothing matches.
        """
        digits = number[1:] if number.startswith("+") else number
        best: RouteConfig | None = None
        best_len = -1
        for route in self.routes:
            prefix = route.prefix[1:] if route.prefix.startswith("+") else route.prefix
            if len(prefix) > best_len and digits.startswith(prefix):
                best, best_len = route, len(prefix)
        return best


# --------------------------------------------------------------------------------------------
# Parsing helpers: each takes the raw value and its key path and raises ConfigError
# --------------------------------------------------------------------------------------------

T = TypeVar("T")


class _Ctx:
    """Where values come from: the file name for messages and the base for relative paths."""

    def __init__(self, file: str, base: Path | None) -> None:
        self.file = file
        self.base = base

    def error(self, key: str | None, problem: str) -> ConfigError:
        return ConfigError(self.file, key, problem)

    def path(self, value: str) -> str:
        if self.base is None or os.path.isabs(value):
            return value
        return str(self.base / value)


def _show(value: Any) -> str:
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _check_keys(ctx: _Ctx, table: Mapping[str, Any], allowed: Sequence[str], where: str) -> None:
    for key in table:
        if key in allowed:
            continue
        path = f"{where}.{key}" if where else key
        close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
        hint = f'; did you mean "{close[0]}"?' if close else f"; known keys: {', '.join(allowed)}"
        raise ctx.error(path, f"unknown key{hint}")


def _table(ctx: _Ctx, value: Any, key: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ctx.error(key, f"expected a table, got {_show(value)}")
    return value


def _str(ctx: _Ctx, value: Any, key: str, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ctx.error(key, f"expected a string, got {_show(value)}")
    if not empty and not value.strip():
        raise ctx.error(key, "expected a non-empty string")
    if "\r" in value or "\n" in value:
        raise ctx.error(key, "expected a single line, got a line break")
    return value


def _choice(ctx: _Ctx, value: Any, key: str, choices: Sequence[str]) -> str:
    text = _str(ctx, value, key).strip().lower()
    if text not in choices:
        raise ctx.error(key, f"expected one of {', '.join(choices)}, got {_show(value)}")
    return text


def _bool(ctx: _Ctx, value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ctx.error(key, f"expected true or false, got {_show(value)}")
    return value


def _int(ctx: _Ctx, value: Any, key: str, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ctx.error(key, f"expected an integer, got {_show(value)}")
    if value < lo or (hi is not None and value > hi):
        rng = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise ctx.error(key, f"expected an integer {rng}, got {value}")
    return value


def _positive(ctx: _Ctx, value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ctx.error(key, f"expected a positive number of seconds, got {_show(value)}")
    if not math.isfinite(value) or value <= 0:
        raise ctx.error(key, f"expected a positive number of seconds, got {value}")
    return float(value)


def _bounded_number(ctx: _Ctx, value: Any, key: str, lo: float, hi: float | None) -> float:
    """A finite number in [lo, hi] (hi None: no upper bound)."""
    want = f"a number from {lo:g} to {hi:g}" if hi is not None else f"a number >= {lo:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ctx.error(key, f"expected {want}, got {_show(value)}")
    if value < lo or (hi is not None and value > hi):
        raise ctx.error(key, f"expected {want}, got {value}")
    return float(value)


def _list(ctx: _Ctx, value: Any, key: str, item: Callable[[Any, str], T]) -> tuple[T, ...]:
    if not isinstance(value, list):
        raise ctx.error(key, f"expected a list, got {_show(value)}")
    return tuple(item(v, f"{key}[{i}]") for i, v in enumerate(value))


def _valid_host(host: str) -> bool:
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
        if not _valid_host(host):
            raise ValueError("bad host")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError("port must be 1..65535")
    return transport, host, int(port_text)


def _address(ctx: _Ctx, value: Any, key: str) -> tuple[str, str, int]:
    if not isinstance(value, str):
        raise ctx.error(key, f"expected {_ADDRESS_FORM}, got {_show(value)}")
    try:
        return parse_address(value)
    except ValueError as exc:
        raise ctx.error(key, f"expected {_ADDRESS_FORM}, got {_show(value)} ({exc})") from None


def _listen(ctx: _Ctx, value: Any, key: str) -> ListenSpec:
    return ListenSpec(*_address(ctx, value, key))


def _gateway(ctx: _Ctx, value: Any, key: str) -> Gateway:
    return Gateway(*_address(ctx, value, key))


def _network(ctx: _Ctx, value: Any, key: str) -> IPNetwork:
    if not isinstance(value, str):
        raise ctx.error(key, f'expected an address or CIDR like "10.0.0.0/8", got {_show(value)}')
    try:
        return ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ctx.error(
            key, f'expected an address or CIDR like "10.0.0.0/8", got {_show(value)}'
        ) from None


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------

_SIP_KEYS: Final = (
    "listen", "advertise_host", "t1", "t2", "t4", "tls_cert", "tls_key", "tls_ca",
    "tcp_idle_timeout_s", "max_message_size",
)
_TRUNK_KEYS: Final = ("name", "sources", "trust_pai", "default_region")
_ROUTE_KEYS: Final = ("prefix", "gateways", "name")
_CALLS_KEYS: Final = (
    "unknown_code", "unknown_reason", "untrusted_code", "ring_timeout_s", "max_duration_s",
    "session_expires_s", "min_se_s", "refer", "max_calls", "failover_timeout_s",
    "max_cps", "overload_busy", "overload_retransmissions", "overload_queue_delay_ms", "overload_retry_after_s", "unknown_policy", "fallback_route",
)
_STORE_KEYS: Final = ("backend", "path", "key_file", "redis_url", "redis_prefix",
                      "poll_interval_s", "retention_days", "purge_interval_s")
_LOG_KEYS: Final = ("level", "format")
_API_KEYS: Final = ("enabled", "listen", "default_region")
_HOOK_KEYS: Final = ("url", "send", "timeout_s", "cache_s", "cache_size", "secret",
                     "bearer_token", "default_region")
_WEBHOOK_KEYS: Final = ("url", "secret", "secret_env", "events", "max_attempts",
                        "include_numbers", "timeout_s")
_TOP_KEYS: Final = ("sip", "trunks", "routes", "calls", "store", "log", "rules_file", "api",
                    "hook", "webhooks")


def _parse_sip(ctx: _Ctx, raw: Mapping[str, Any]) -> SipConfig:
    _check_keys(ctx, raw, _SIP_KEYS, "sip")
    d = SipConfig()
    kw: dict[str, Any] = {}
    if "listen" in raw:
        listen = _list(ctx, raw["listen"], "sip.listen", lambda v, k: _listen(ctx, v, k))
        if not listen:
            raise ctx.error("sip.listen", f"expected at least one {_ADDRESS_FORM}")
        kw["listen"] = listen
    if "advertise_host" in raw:
        host = _str(ctx, raw["advertise_host"], "sip.advertise_host").strip()
        if not _valid_host(host.strip("[]")):
            raise ctx.error("sip.advertise_host", f"expected a host name or IP, got {_show(host)}")
        kw["advertise_host"] = host.strip("[]")
    for name in ("t1", "t2", "t4", "tcp_idle_timeout_s"):
        if name in raw:
            kw[name] = _positive(ctx, raw[name], f"sip.{name}")
    for name in ("tls_cert", "tls_key", "tls_ca"):
        if name in raw:
            kw[name] = ctx.path(_str(ctx, raw[name], f"sip.{name}"))
    if "max_message_size" in raw:
        kw["max_message_size"] = _int(ctx, raw["max_message_size"], "sip.max_message_size",
                                      1024, 1 << 24)
    sip = replace(d, **kw)
    if sip.t1 >= sip.t2:
        raise ctx.error("sip.t1", f"expected t1 < t2 (RFC 3261 §17), got t1={sip.t1} t2={sip.t2}")
    return sip


def _parse_trunk(ctx: _Ctx, value: Any, key: str) -> TrunkConfig:
    raw = _table(ctx, value, key)
    _check_keys(ctx, raw, _TRUNK_KEYS, key)
    if "name" not in raw:
        raise ctx.error(f"{key}.name", "missing; every trunk needs a name")
    if "sources" not in raw:
        raise ctx.error(f"{key}.sources", 'missing; expected a list like ["203.0.113.0/24"]')
    name = _str(ctx, raw["name"], f"{key}.name").strip()
    sources = _list(ctx, raw["sources"], f"{key}.sources", lambda v, k: _network(ctx, v, k))
    if not sources:
        raise ctx.error(f"{key}.sources", "expected at least one address or CIDR")
    trust_pai = _bool(ctx, raw["trust_pai"], f"{key}.trust_pai") if "trust_pai" in raw else False
    region = "US"
    if "default_region" in raw:
        region = _str(ctx, raw["default_region"], f"{key}.default_region").strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ctx.error(
                f"{key}.default_region",
                f'expected a two-letter region like "US" or "GB", got {_show(raw["default_region"])}',
            )
    return TrunkConfig(name=name, sources=sources, trust_pai=trust_pai, default_region=region)


def _parse_route(ctx: _Ctx, value: Any, key: str) -> RouteConfig:
    raw = _table(ctx, value, key)
    _check_keys(ctx, raw, _ROUTE_KEYS, key)
    prefix = ""
    if "prefix" in raw:
        prefix = _str(ctx, raw["prefix"], f"{key}.prefix", empty=True).strip()
        if not _PREFIX.fullmatch(prefix):
            raise ctx.error(
                f"{key}.prefix", f'expected digits with an optional "+", got {_show(raw["prefix"])}'
            )
    if "gateways" not in raw:
        raise ctx.error(f"{key}.gateways", f"missing; expected a list of {_ADDRESS_FORM}")
    gateways = _list(ctx, raw["gateways"], f"{key}.gateways", lambda v, k: _gateway(ctx, v, k))
    if not gateways:
        raise ctx.error(f"{key}.gateways", f"expected at least one {_ADDRESS_FORM}")
    name = _str(ctx, raw["name"], f"{key}.name", empty=True) if "name" in raw else ""
    return RouteConfig(prefix=prefix, gateways=gateways, name=name)


def _parse_calls(ctx: _Ctx, raw: Mapping[str, Any]) -> CallsConfig:
    _check_keys(ctx, raw, _CALLS_KEYS, "calls")
    kw: dict[str, Any] = {}
    for name in ("unknown_code", "untrusted_code"):
        if name in raw:
            kw[name] = _int(ctx, raw[name], f"calls.{name}", 400, 699)
    if "unknown_reason" in raw:
        kw["unknown_reason"] = _str(ctx, raw["unknown_reason"], "calls.unknown_reason").strip()
    for name in ("ring_timeout_s", "max_duration_s", "failover_timeout_s"):
        if name in raw:
            kw[name] = _positive(ctx, raw[name], f"calls.{name}")
    if "min_se_s" in raw:
        kw["min_se_s"] = _int(ctx, raw["min_se_s"], "calls.min_se_s", 90)  # RFC 4028 §4
    if "session_expires_s" in raw:
        kw["session_expires_s"] = _int(ctx, raw["session_expires_s"], "calls.session_expires_s", 0)
    if "refer" in raw:
        kw["refer"] = _choice(ctx, raw["refer"], "calls.refer", REFER_MODES)
    if "max_calls" in raw:
        kw["max_calls"] = _int(ctx, raw["max_calls"], "calls.max_calls", 0)
    if "max_cps" in raw:
        kw["max_cps"] = _bounded_number(ctx, raw["max_cps"], "calls.max_cps", 0.0, None)
    if "overload_busy" in raw:
        kw["overload_busy"] = _bounded_number(ctx, raw["overload_busy"], "calls.overload_busy", 0.0, 1.0)
    if "overload_retransmissions" in raw:
        kw["overload_retransmissions"] = _bounded_number(
            ctx, raw["overload_retransmissions"], "calls.overload_retransmissions", 0.0, None)
    if "overload_queue_delay_ms" in raw:
        kw["overload_queue_delay_ms"] = _int(ctx, raw["overload_queue_delay_ms"],
                                             "calls.overload_queue_delay_ms", 0, 60_000)
    if "overload_retry_after_s" in raw:
        kw["overload_retry_after_s"] = _int(ctx, raw["overload_retry_after_s"],
                                            "calls.overload_retry_after_s", 1, 3600)
    if "unknown_policy" in raw:
        kw["unknown_policy"] = _choice(ctx, raw["unknown_policy"], "calls.unknown_policy",
                                       UNKNOWN_POLICIES)
    if "fallback_route" in raw:
        kw["fallback_route"] = _fallback_route(ctx, raw["fallback_route"], "calls.fallback_route")
    calls = replace(CallsConfig(), **kw)
    if calls.unknown_policy == "route" and not calls.fallback_route:
        raise ctx.error("calls.fallback_route",
                        f'required when unknown_policy = "route"; expected {_ADDRESS_FORM}'
                        " or a list of them")
    if 0 < calls.session_expires_s < calls.min_se_s:
        raise ctx.error(
            "calls.session_expires_s",
            f"expected 0 (off) or at least min_se_s ({calls.min_se_s}), got "
            f"{calls.session_expires_s}",
        )
    return calls


def _fallback_route(ctx: _Ctx, value: Any, key: str) -> tuple[Gateway, ...]:
    if isinstance(value, list):
        gateways = _list(ctx, value, key, lambda v, k: _gateway(ctx, v, k))
        if not gateways:
            raise ctx.error(key, f"expected at least one {_ADDRESS_FORM}")
        return gateways
    return (_gateway(ctx, value, key),)


def _http_url(ctx: _Ctx, value: Any, key: str) -> str:
    form = '"http://HOST[:PORT]/PATH" or "https://..."'
    url = _str(ctx, value, key).strip()
    scheme, sep, rest = url.partition("://")
    host = rest.split("/", 1)[0].rpartition("@")[2]
    if not sep or scheme.lower() not in ("http", "https") or not host or any(
            ch.isspace() for ch in url):
        raise ctx.error(key, f"expected {form}, got {_show(url)}")
    return url


def _seconds_or_zero(ctx: _Ctx, value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value < 0:
        raise ctx.error(key, f"expected a number of seconds, 0 (off) or more, got {_show(value)}")
    return float(value)


def _region(ctx: _Ctx, value: Any, key: str) -> str:
    region = _str(ctx, value, key).strip().upper()
    if region not in phonenumbers.SUPPORTED_REGIONS:
        raise ctx.error(key, f'expected a two-letter region such as "US" or "GB", got {_show(value)}')
    return region


def _parse_hook(ctx: _Ctx, raw: Mapping[str, Any]) -> HookConfig:
    _check_keys(ctx, raw, _HOOK_KEYS, "hook")
    kw: dict[str, Any] = {}
    if "url" in raw:
        kw["url"] = _http_url(ctx, raw["url"], "hook.url")
    if "send" in raw:
        kw["send"] = _choice(ctx, raw["send"], "hook.send", HOOK_SEND)
    if "timeout_s" in raw:
        kw["timeout_s"] = _positive(ctx, raw["timeout_s"], "hook.timeout_s")
    if "cache_s" in raw:
        kw["cache_s"] = _seconds_or_zero(ctx, raw["cache_s"], "hook.cache_s")
    if "cache_size" in raw:
        kw["cache_size"] = _int(ctx, raw["cache_size"], "hook.cache_size", 1)
    for name in ("secret", "bearer_token"):
        if name in raw:
            kw[name] = _str(ctx, raw[name], f"hook.{name}")
    if "default_region" in raw:
        kw["default_region"] = _region(ctx, raw["default_region"], "hook.default_region")
    return replace(HookConfig(), **kw)


def _parse_webhook(ctx: _Ctx, value: Any, key: str) -> WebhookConfig:
    raw = _table(ctx, value, key)
    _check_keys(ctx, raw, _WEBHOOK_KEYS, key)
    if "url" not in raw:
        raise ctx.error(f"{key}.url", 'missing; expected "https://HOST/PATH"')
    kw: dict[str, Any] = {"url": _http_url(ctx, raw["url"], f"{key}.url")}
    if "secret" in raw:
        kw["secret"] = _str(ctx, raw["secret"], f"{key}.secret")
    if "secret_env" in raw:
        kw["secret_env"] = _str(ctx, raw["secret_env"], f"{key}.secret_env").strip()
        if "secret" in raw:
            raise ctx.error(f"{key}.secret_env", "expected either secret or secret_env, not both")
    if "events" in raw:
        kw["events"] = _list(ctx, raw["events"], f"{key}.events",
                             lambda v, k: _choice(ctx, v, k, WEBHOOK_EVENTS))
    if "max_attempts" in raw:
        kw["max_attempts"] = _int(ctx, raw["max_attempts"], f"{key}.max_attempts", 1, 100)
    if "include_numbers" in raw:
        kw["include_numbers"] = _bool(ctx, raw["include_numbers"], f"{key}.include_numbers")
    if "timeout_s" in raw:
        kw["timeout_s"] = _positive(ctx, raw["timeout_s"], f"{key}.timeout_s")
    return WebhookConfig(**kw)


def _parse_store(ctx: _Ctx, raw: Mapping[str, Any]) -> StoreConfig:
    _check_keys(ctx, raw, _STORE_KEYS, "store")
    kw: dict[str, Any] = {}
    if "backend" in raw:
        kw["backend"] = _choice(ctx, raw["backend"], "store.backend", STORE_BACKENDS)
    for name in ("path", "key_file"):
        if name in raw:
            kw[name] = ctx.path(_str(ctx, raw[name], f"store.{name}").strip())
    if "redis_url" in raw:
        url = _str(ctx, raw["redis_url"], "store.redis_url").strip()
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise ctx.error(
                "store.redis_url",
                f'expected "redis://HOST:PORT/DB", "rediss://..." or "unix://PATH", got {_show(url)}',
            )
        kw["redis_url"] = url
    if "redis_prefix" in raw:
        prefix = _str(ctx, raw["redis_prefix"], "store.redis_prefix")
        if any(ch.isspace() for ch in prefix):
            raise ctx.error("store.redis_prefix",
                            f"expected a key prefix without spaces, got {_show(prefix)}")
        kw["redis_prefix"] = prefix
    for name in ("poll_interval_s", "purge_interval_s"):
        if name in raw:
            kw[name] = _positive(ctx, raw[name], f"store.{name}")
    if "retention_days" in raw:
        days = raw["retention_days"]
        if isinstance(days, bool) or not isinstance(days, (int, float)) \
                or not math.isfinite(days) or days < 0:
            raise ctx.error("store.retention_days",
                            f"expected a number of days, 0 (keep forever) or more, got {_show(days)}")
        kw["retention_days"] = float(days)
    store = replace(StoreConfig(), **kw)
    if store.backend == "redis" and store.redis_url is None:
        raise ctx.error("store.redis_url", 'required when backend = "redis"')
    return store


def parse_hostport(text: str) -> tuple[str, int]:
    """Split ``"HOST:PORT"`` (IPv6 as ``[::1]:8080``) into (host, port).

    Raises:
        ValueError: with the reason, when *text* is not of that form.
    """
    _, host, port = parse_address("tcp:" + text)
    return host, port


def _parse_api(ctx: _Ctx, raw: Mapping[str, Any]) -> ApiConfig:
    _check_keys(ctx, raw, _API_KEYS, "api")
    kw: dict[str, Any] = {}
    if "enabled" in raw:
        kw["enabled"] = _bool(ctx, raw["enabled"], "api.enabled")
    if "listen" in raw:
        kw["host"], kw["port"] = _api_listen(ctx, raw["listen"], "api.listen")
    if "default_region" in raw:
        region = _str(ctx, raw["default_region"], "api.default_region").strip().upper()
        if region not in phonenumbers.SUPPORTED_REGIONS:
            raise ctx.error("api.default_region",
                            f'expected a two-letter region such as "US" or "GB", got {_show(region)}')
        kw["default_region"] = region
    return replace(ApiConfig(), **kw)


def _api_listen(ctx: _Ctx, value: Any, key: str) -> tuple[str, int]:
    form = '"HOST:PORT" (e.g. "127.0.0.1:8080", "[::1]:8080")'
    if not isinstance(value, str):
        raise ctx.error(key, f"expected {form}, got {_show(value)}")
    try:
        return parse_hostport(value.strip())
    except ValueError as exc:
        raise ctx.error(key, f"expected {form}, got {_show(value)} ({exc})") from None


def _parse_log(ctx: _Ctx, raw: Mapping[str, Any]) -> LogConfig:
    _check_keys(ctx, raw, _LOG_KEYS, "log")
    kw: dict[str, Any] = {}
    if "level" in raw:
        kw["level"] = _log_level(ctx, raw["level"], "log.level")
    if "format" in raw:
        kw["format"] = _choice(ctx, raw["format"], "log.format", LOG_FORMATS)
    return replace(LogConfig(), **kw)


def _log_level(ctx: _Ctx, value: Any, key: str) -> str:
    if isinstance(value, str) and value.strip().lower() == "warn":
        return "warning"
    return _choice(ctx, value, key, LOG_LEVELS)


def _parse(ctx: _Ctx, raw: Mapping[str, Any], source: Path | None) -> Config:
    _check_keys(ctx, raw, _TOP_KEYS, "")
    kw: dict[str, Any] = {"source": source}
    if "sip" in raw:
        kw["sip"] = _parse_sip(ctx, _table(ctx, raw["sip"], "sip"))
    if "trunks" in raw:
        trunks = _list(ctx, raw["trunks"], "trunks", lambda v, k: _parse_trunk(ctx, v, k))
        seen: set[str] = set()
        for i, trunk in enumerate(trunks):
            if trunk.name in seen:
                raise ctx.error(f"trunks[{i}].name", f"duplicate trunk name {_show(trunk.name)}")
            seen.add(trunk.name)
        if trunks:
            kw["trunks"] = trunks
    if "routes" in raw:
        routes = _list(ctx, raw["routes"], "routes", lambda v, k: _parse_route(ctx, v, k))
        prefixes: set[str] = set()
        for i, route in enumerate(routes):
            prefix = route.prefix.lstrip("+")
            if prefix in prefixes:
                raise ctx.error(f"routes[{i}].prefix", f"duplicate prefix {_show(route.prefix)}")
            prefixes.add(prefix)
        kw["routes"] = routes
    if "calls" in raw:
        kw["calls"] = _parse_calls(ctx, _table(ctx, raw["calls"], "calls"))
    if "store" in raw:
        kw["store"] = _parse_store(ctx, _table(ctx, raw["store"], "store"))
    if "log" in raw:
        kw["log"] = _parse_log(ctx, _table(ctx, raw["log"], "log"))
    if "api" in raw:
        kw["api"] = _parse_api(ctx, _table(ctx, raw["api"], "api"))
    if "hook" in raw:
        kw["hook"] = _parse_hook(ctx, _table(ctx, raw["hook"], "hook"))
    if "webhooks" in raw:
        kw["webhooks"] = _list(ctx, raw["webhooks"], "webhooks",
                               lambda v, k: _parse_webhook(ctx, v, k))
    if "rules_file" in raw:
        rules = Path(ctx.path(_str(ctx, raw["rules_file"], "rules_file").strip()))
        if not rules.is_file():
            raise ctx.error("rules_file", f"no such file: {rules}")
        kw["rules_file"] = rules
    return Config(**kw)


def _apply_env(config: Config, env: Mapping[str, str]) -> Config:
    ctx = _Ctx(_ENV_FILE, None)
    if (level := env.get("SIPMASK_LOG_LEVEL")) is not None:
        config = replace(config, log=replace(config.log,
                                             level=_log_level(ctx, level, "SIPMASK_LOG_LEVEL")))
    if (fmt := env.get("SIPMASK_LOG_FORMAT")) is not None:
        config = replace(config, log=replace(
            config.log, format=_choice(ctx, fmt, "SIPMASK_LOG_FORMAT", LOG_FORMATS)))
    if (path := env.get("SIPMASK_STORE_PATH")) is not None:
        config = replace(config, store=replace(
            config.store, path=_str(ctx, path, "SIPMASK_STORE_PATH").strip()))
    if (api_listen := env.get("SIPMASK_API_LISTEN")) is not None:
        text = api_listen.strip()
        if text.lower() in ("off", "none", "disabled"):
            config = replace(config, api=replace(config.api, enabled=False))
        else:
            host, port = _api_listen(ctx, text, "SIPMASK_API_LISTEN")
            config = replace(config, api=replace(config.api, enabled=True, host=host, port=port))
    if (listen := env.get("SIPMASK_LISTEN")) is not None:
        specs = tuple(
            _listen(ctx, item.strip(), f"SIPMASK_LISTEN[{i}]")
            for i, item in enumerate(listen.split(","))
            if item.strip()
        )
        if not specs:
            raise ctx.error("SIPMASK_LISTEN", f"expected comma-separated {_ADDRESS_FORM}")
        config = replace(config, sip=replace(config.sip, listen=specs))
    return _apply_secret_env(config, env, ctx)


def _apply_secret_env(config: Config, env: Mapping[str, str], ctx: _Ctx) -> Config:
    """Secrets kept out of the file: the hook's, and each webhook's ``secret_env``."""
    hook = config.hook
    if (secret := env.get("SIPMASK_HOOK_SECRET")) is not None:
        hook = replace(hook, secret=_str(ctx, secret, "SIPMASK_HOOK_SECRET"))
    if (bearer := env.get("SIPMASK_HOOK_BEARER_TOKEN")) is not None:
        hook = replace(hook, bearer_token=_str(ctx, bearer, "SIPMASK_HOOK_BEARER_TOKEN"))
    webhooks = list(config.webhooks)
    for i, hook_cfg in enumerate(webhooks):
        if hook_cfg.secret_env is not None:
            secret = env.get(hook_cfg.secret_env)
            if not secret:
                raise ConfigError(_ENV_FILE, f"webhooks[{i}].secret_env",
                                  f"environment variable {hook_cfg.secret_env} is not set")
            webhooks[i] = replace(hook_cfg, secret=_str(ctx, secret, hook_cfg.secret_env))
    return replace(config, hook=hook, webhooks=tuple(webhooks))


def _check_unknown_policy(config: Config, file: str) -> None:
    if config.calls.unknown_policy == "hook" and not config.hook.enabled:
        raise ConfigError(file, "hook.url", 'required when calls.unknown_policy = "hook"')


def _check_tls(config: Config, file: str) -> None:
    if not any(spec.transport == "tls" for spec in config.sip.listen):
        return
    for name in ("tls_cert", "tls_key"):
        if getattr(config.sip, name) is None:
            raise ConfigError(file, f"sip.{name}", "required when listening on tls (a PEM file)")


def load_config(
    path: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] = os.environ,
) -> Config:
    """Load and validate the configuration.

    Args:
        path: the TOML file. None means ``$SIPMASK_CONFIG`` if set, else all defaults.
        env: the environment to read ``SIPMASK_*`` overrides from.

    Raises:
        ConfigError: unreadable file, bad TOML, unknown key or invalid value.
    """
    if path is None:
        path = env.get("SIPMASK_CONFIG") or None
    if path is None:
        config = Config()
        file = _ENV_FILE
    else:
        file = os.fspath(path)
        source = Path(file)
        try:
            with open(source, "rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(file, None, f"cannot read: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(file, None, f"invalid TOML: {exc}") from None
        except UnicodeDecodeError:
            raise ConfigError(file, None, "invalid TOML: not UTF-8 text") from None
        ctx = _Ctx(file, source.resolve().parent)
        config = _parse(ctx, raw, source.resolve())
    config = _apply_env(config, env)
    _check_tls(config, file)
    _check_unknown_policy(config, file)
    return config
