"""One parser per TOML section: raw tables in, typed sections out, ConfigError on a bad value.

Each parser checks its table's keys against the fields of its dataclass (``Source.check_keys``)
and then each value present; absent keys keep the dataclass default.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Final

from .fields import (
    ADDRESS_FORM,
    Source,
    address,
    boolean,
    bounded_number,
    choice,
    hostport,
    http_url,
    integer,
    list_of,
    network,
    positive,
    region,
    seconds_or_zero,
    show,
    string,
    table,
    valid_host,
)
from .model import (
    HOOK_SEND,
    LOG_FORMATS,
    LOG_LEVELS,
    MEDIA_MODES,
    MEDIA_ON_UNAVAILABLE,
    REFER_MODES,
    STORE_BACKENDS,
    TAKEOVER_MODES,
    UNKNOWN_POLICIES,
    WEBHOOK_EVENTS,
    ApiConfig,
    CallsConfig,
    ClusterConfig,
    Config,
    Gateway,
    HookConfig,
    ListenSpec,
    LogConfig,
    MediaConfig,
    RouteConfig,
    RtpengineSpec,
    SipConfig,
    StoreConfig,
    TrunkConfig,
    WebhookConfig,
)

__all__ = ["listen_spec", "log_level", "parse_config"]

_PREFIX: Final = re.compile(r"\+?[0-9]*")


def listen_spec(src: Source, value: Any, key: str) -> ListenSpec:
    """A listen spec, ``"udp|tcp|tls:HOST:PORT"``."""
    return ListenSpec(*address(src, value, key))


def gateway(src: Source, value: Any, key: str) -> Gateway:
    """A gateway, written like a listen spec."""
    return Gateway(*address(src, value, key))


def log_level(src: Source, value: Any, key: str) -> str:
    """A log level; ``warn`` is read as ``warning``."""
    if isinstance(value, str) and value.strip().lower() == "warn":
        return "warning"
    return choice(src, value, key, LOG_LEVELS)


def parse_config(src: Source, raw: Mapping[str, Any], source: Path | None) -> Config:
    """The whole file: every section present, then the top-level ``rules_file``."""
    src.check_keys(raw, Config, "")
    kw: dict[str, Any] = {"source": source}
    if "sip" in raw:
        kw["sip"] = parse_sip(src, table(src, raw["sip"], "sip"))
    if "trunks" in raw:
        trunks = list_of(src, raw["trunks"], "trunks", lambda v, k: parse_trunk(src, v, k))
        seen: set[str] = set()
        for i, trunk in enumerate(trunks):
            if trunk.name in seen:
                raise src.error(f"trunks[{i}].name", f"duplicate trunk name {show(trunk.name)}")
            seen.add(trunk.name)
        if trunks:
            kw["trunks"] = trunks
    if "routes" in raw:
        routes = list_of(src, raw["routes"], "routes", lambda v, k: parse_route(src, v, k))
        prefixes: set[str] = set()
        for i, route in enumerate(routes):
            prefix = route.prefix.lstrip("+")
            if prefix in prefixes:
                raise src.error(f"routes[{i}].prefix", f"duplicate prefix {show(route.prefix)}")
            prefixes.add(prefix)
        kw["routes"] = routes
    if "calls" in raw:
        kw["calls"] = parse_calls(src, table(src, raw["calls"], "calls"))
    if "store" in raw:
        kw["store"] = parse_store(src, table(src, raw["store"], "store"))
    if "log" in raw:
        kw["log"] = parse_log(src, table(src, raw["log"], "log"))
    if "api" in raw:
        kw["api"] = parse_api(src, table(src, raw["api"], "api"))
    if "hook" in raw:
        kw["hook"] = parse_hook(src, table(src, raw["hook"], "hook"))
    if "cluster" in raw:
        kw["cluster"] = parse_cluster(src, table(src, raw["cluster"], "cluster"))
    if "webhooks" in raw:
        kw["webhooks"] = list_of(src, raw["webhooks"], "webhooks",
                                 lambda v, k: parse_webhook(src, v, k))
    if "media" in raw:
        kw["media"] = parse_media(src, table(src, raw["media"], "media"))
    if "rules_file" in raw:
        rules = Path(src.path(string(src, raw["rules_file"], "rules_file").strip()))
        if not rules.is_file():
            raise src.error("rules_file", f"no such file: {rules}")
        kw["rules_file"] = rules
    return Config(**kw)


def parse_sip(src: Source, raw: Mapping[str, Any]) -> SipConfig:
    """``[sip]``; t1 must stay below t2 (RFC 3261 §17)."""
    src.check_keys(raw, SipConfig, "sip")
    kw: dict[str, Any] = {}
    if "listen" in raw:
        listen = list_of(src, raw["listen"], "sip.listen", lambda v, k: listen_spec(src, v, k))
        if not listen:
            raise src.error("sip.listen", f"expected at least one {ADDRESS_FORM}")
        kw["listen"] = listen
    if "advertise_host" in raw:
        host = string(src, raw["advertise_host"], "sip.advertise_host").strip()
        if not valid_host(host.strip("[]")):
            raise src.error("sip.advertise_host", f"expected a host name or IP, got {show(host)}")
        kw["advertise_host"] = host.strip("[]")
    for name in ("t1", "t2", "t4", "tcp_idle_timeout_s", "tcp_message_timeout_s"):
        if name in raw:
            kw[name] = positive(src, raw[name], f"sip.{name}")
    for name in ("tls_cert", "tls_key", "tls_ca"):
        if name in raw:
            kw[name] = src.path(string(src, raw[name], f"sip.{name}"))
    if "max_message_size" in raw:
        kw["max_message_size"] = integer(src, raw["max_message_size"], "sip.max_message_size",
                                         1024, 1 << 24)
    if "tcp_max_connections" in raw:
        kw["tcp_max_connections"] = integer(src, raw["tcp_max_connections"],
                                            "sip.tcp_max_connections", 0, 1 << 20)
    if "tcp_max_connections_per_source" in raw:
        kw["tcp_max_connections_per_source"] = integer(
            src, raw["tcp_max_connections_per_source"], "sip.tcp_max_connections_per_source",
            1, 1 << 20)
    if "source_rate" in raw:
        kw["source_rate"] = bounded_number(src, raw["source_rate"], "sip.source_rate", 0, None)
    if "source_burst" in raw:
        kw["source_burst"] = bounded_number(src, raw["source_burst"], "sip.source_burst", 1, None)
    if "trusted_sources" in raw:
        kw["trusted_sources"] = list_of(src, raw["trusted_sources"], "sip.trusted_sources",
                                        lambda v, k: network(src, v, k))
    sip = replace(SipConfig(), **kw)
    if sip.t1 >= sip.t2:
        raise src.error("sip.t1", f"expected t1 < t2 (RFC 3261 §17), got t1={sip.t1} t2={sip.t2}")
    return sip


def parse_trunk(src: Source, value: Any, key: str) -> TrunkConfig:
    """One ``[[trunks]]`` table; ``name`` and ``sources`` are required."""
    raw = table(src, value, key)
    src.check_keys(raw, TrunkConfig, key)
    if "name" not in raw:
        raise src.error(f"{key}.name", "missing; every trunk needs a name")
    if "sources" not in raw:
        raise src.error(f"{key}.sources", 'missing; expected a list like ["203.0.113.0/24"]')
    name = string(src, raw["name"], f"{key}.name").strip()
    sources = list_of(src, raw["sources"], f"{key}.sources", lambda v, k: network(src, v, k))
    if not sources:
        raise src.error(f"{key}.sources", "expected at least one address or CIDR")
    trust_pai = boolean(src, raw["trust_pai"], f"{key}.trust_pai") if "trust_pai" in raw else False
    trunk_region = "US"
    if "default_region" in raw:
        trunk_region = region(src, raw["default_region"], f"{key}.default_region")
    return TrunkConfig(name=name, sources=sources, trust_pai=trust_pai,
                       default_region=trunk_region)


def parse_route(src: Source, value: Any, key: str) -> RouteConfig:
    """One ``[[routes]]`` table; ``gateways`` is required."""
    raw = table(src, value, key)
    src.check_keys(raw, RouteConfig, key)
    prefix = ""
    if "prefix" in raw:
        prefix = string(src, raw["prefix"], f"{key}.prefix", empty=True).strip()
        if not _PREFIX.fullmatch(prefix):
            raise src.error(
                f"{key}.prefix", f'expected digits with an optional "+", got {show(raw["prefix"])}'
            )
    if "gateways" not in raw:
        raise src.error(f"{key}.gateways", f"missing; expected a list of {ADDRESS_FORM}")
    gateways = list_of(src, raw["gateways"], f"{key}.gateways", lambda v, k: gateway(src, v, k))
    if not gateways:
        raise src.error(f"{key}.gateways", f"expected at least one {ADDRESS_FORM}")
    name = string(src, raw["name"], f"{key}.name", empty=True) if "name" in raw else ""
    return RouteConfig(prefix=prefix, gateways=gateways, name=name)


def parse_calls(src: Source, raw: Mapping[str, Any]) -> CallsConfig:
    """``[calls]``; ``fallback_route`` is required with ``unknown_policy = "route"``."""
    src.check_keys(raw, CallsConfig, "calls")
    kw: dict[str, Any] = {}
    for name in ("unknown_code", "untrusted_code"):
        if name in raw:
            kw[name] = integer(src, raw[name], f"calls.{name}", 400, 699)
    if "unknown_reason" in raw:
        kw["unknown_reason"] = string(src, raw["unknown_reason"], "calls.unknown_reason").strip()
    for name in ("ring_timeout_s", "max_duration_s", "failover_timeout_s"):
        if name in raw:
            kw[name] = positive(src, raw[name], f"calls.{name}")
    if "min_se_s" in raw:
        kw["min_se_s"] = integer(src, raw["min_se_s"], "calls.min_se_s", 90)  # RFC 4028 §4
    if "session_expires_s" in raw:
        kw["session_expires_s"] = integer(src, raw["session_expires_s"],
                                          "calls.session_expires_s", 0)
    if "refer" in raw:
        kw["refer"] = choice(src, raw["refer"], "calls.refer", REFER_MODES)
    if "max_calls" in raw:
        kw["max_calls"] = integer(src, raw["max_calls"], "calls.max_calls", 0)
    if "max_cps" in raw:
        kw["max_cps"] = bounded_number(src, raw["max_cps"], "calls.max_cps", 0.0, None)
    if "overload_busy" in raw:
        kw["overload_busy"] = bounded_number(src, raw["overload_busy"], "calls.overload_busy",
                                             0.0, 1.0)
    if "overload_retransmissions" in raw:
        kw["overload_retransmissions"] = bounded_number(
            src, raw["overload_retransmissions"], "calls.overload_retransmissions", 0.0, None)
    if "overload_queue_delay_ms" in raw:
        kw["overload_queue_delay_ms"] = integer(src, raw["overload_queue_delay_ms"],
                                                "calls.overload_queue_delay_ms", 0, 60_000)
    if "overload_retry_after_s" in raw:
        kw["overload_retry_after_s"] = integer(src, raw["overload_retry_after_s"],
                                               "calls.overload_retry_after_s", 1, 3600)
    if "unknown_policy" in raw:
        kw["unknown_policy"] = choice(src, raw["unknown_policy"], "calls.unknown_policy",
                                      UNKNOWN_POLICIES)
    if "fallback_route" in raw:
        kw["fallback_route"] = _fallback_route(src, raw["fallback_route"], "calls.fallback_route")
    calls = replace(CallsConfig(), **kw)
    if calls.unknown_policy == "route" and not calls.fallback_route:
        raise src.error("calls.fallback_route",
                        f'required when unknown_policy = "route"; expected {ADDRESS_FORM}'
                        " or a list of them")
    if 0 < calls.session_expires_s < calls.min_se_s:
        raise src.error(
            "calls.session_expires_s",
            f"expected 0 (off) or at least min_se_s ({calls.min_se_s}), got "
            f"{calls.session_expires_s}",
        )
    return calls


def _fallback_route(src: Source, value: Any, key: str) -> tuple[Gateway, ...]:
    if isinstance(value, list):
        gateways = list_of(src, value, key, lambda v, k: gateway(src, v, k))
        if not gateways:
            raise src.error(key, f"expected at least one {ADDRESS_FORM}")
        return gateways
    return (gateway(src, value, key),)


def parse_store(src: Source, raw: Mapping[str, Any]) -> StoreConfig:
    """``[store]``; ``redis_url`` is required with ``backend = "redis"``."""
    src.check_keys(raw, StoreConfig, "store")
    kw: dict[str, Any] = {}
    if "backend" in raw:
        kw["backend"] = choice(src, raw["backend"], "store.backend", STORE_BACKENDS)
    for name in ("path", "key_file"):
        if name in raw:
            kw[name] = src.path(string(src, raw[name], f"store.{name}").strip())
    if "redis_url" in raw:
        url = string(src, raw["redis_url"], "store.redis_url").strip()
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise src.error(
                "store.redis_url",
                f'expected "redis://HOST:PORT/DB", "rediss://..." or "unix://PATH", got {show(url)}',
            )
        kw["redis_url"] = url
    if "redis_prefix" in raw:
        prefix = string(src, raw["redis_prefix"], "store.redis_prefix")
        if any(ch.isspace() for ch in prefix):
            raise src.error("store.redis_prefix",
                            f"expected a key prefix without spaces, got {show(prefix)}")
        kw["redis_prefix"] = prefix
    for name in ("poll_interval_s", "purge_interval_s"):
        if name in raw:
            kw[name] = positive(src, raw[name], f"store.{name}")
    if "retention_days" in raw:
        days = raw["retention_days"]
        if isinstance(days, bool) or not isinstance(days, (int, float)) \
                or not math.isfinite(days) or days < 0:
            raise src.error("store.retention_days",
                            f"expected a number of days, 0 (keep forever) or more, got {show(days)}")
        kw["retention_days"] = float(days)
    store = replace(StoreConfig(), **kw)
    if store.backend == "redis" and store.redis_url is None:
        raise src.error("store.redis_url", 'required when backend = "redis"')
    return store


def parse_api(src: Source, raw: Mapping[str, Any]) -> ApiConfig:
    """``[api]``; ``listen = "HOST:PORT"`` fills ``host`` and ``port``."""
    src.check_keys(raw, ApiConfig, "api")
    kw: dict[str, Any] = {}
    if "enabled" in raw:
        kw["enabled"] = boolean(src, raw["enabled"], "api.enabled")
    if "listen" in raw:
        kw["host"], kw["port"] = hostport(src, raw["listen"], "api.listen")
    if "default_region" in raw:
        kw["default_region"] = region(src, raw["default_region"], "api.default_region")
    if "rate_limit_per_token" in raw:
        rate = raw["rate_limit_per_token"]
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) \
                or not math.isfinite(rate) or rate < 0:
            raise src.error("api.rate_limit_per_token",
                            f"expected requests a second, 0 (off) or more, got {show(rate)}")
        kw["rate_limit_per_token"] = float(rate)
    return replace(ApiConfig(), **kw)


def parse_hook(src: Source, raw: Mapping[str, Any]) -> HookConfig:
    """``[hook]``."""
    src.check_keys(raw, HookConfig, "hook")
    kw: dict[str, Any] = {}
    if "url" in raw:
        kw["url"] = http_url(src, raw["url"], "hook.url")
    if "send" in raw:
        kw["send"] = choice(src, raw["send"], "hook.send", HOOK_SEND)
    if "timeout_s" in raw:
        kw["timeout_s"] = positive(src, raw["timeout_s"], "hook.timeout_s")
    if "cache_s" in raw:
        kw["cache_s"] = seconds_or_zero(src, raw["cache_s"], "hook.cache_s")
    if "cache_size" in raw:
        kw["cache_size"] = integer(src, raw["cache_size"], "hook.cache_size", 1)
    for name in ("secret", "bearer_token"):
        if name in raw:
            kw[name] = string(src, raw[name], f"hook.{name}")
    if "default_region" in raw:
        kw["default_region"] = region(src, raw["default_region"], "hook.default_region")
    return replace(HookConfig(), **kw)


def parse_webhook(src: Source, value: Any, key: str) -> WebhookConfig:
    """One ``[[webhooks]]`` table; ``url`` is required, ``secret`` and ``secret_env`` exclusive."""
    raw = table(src, value, key)
    src.check_keys(raw, WebhookConfig, key)
    if "url" not in raw:
        raise src.error(f"{key}.url", 'missing; expected "https://HOST/PATH"')
    kw: dict[str, Any] = {"url": http_url(src, raw["url"], f"{key}.url")}
    if "secret" in raw:
        kw["secret"] = string(src, raw["secret"], f"{key}.secret")
    if "secret_env" in raw:
        kw["secret_env"] = string(src, raw["secret_env"], f"{key}.secret_env").strip()
        if "secret" in raw:
            raise src.error(f"{key}.secret_env", "expected either secret or secret_env, not both")
    if "events" in raw:
        kw["events"] = list_of(src, raw["events"], f"{key}.events",
                               lambda v, k: choice(src, v, k, WEBHOOK_EVENTS))
    if "max_attempts" in raw:
        kw["max_attempts"] = integer(src, raw["max_attempts"], f"{key}.max_attempts", 1, 100)
    if "include_numbers" in raw:
        kw["include_numbers"] = boolean(src, raw["include_numbers"], f"{key}.include_numbers")
    if "timeout_s" in raw:
        kw["timeout_s"] = positive(src, raw["timeout_s"], f"{key}.timeout_s")
    return WebhookConfig(**kw)


def parse_log(src: Source, raw: Mapping[str, Any]) -> LogConfig:
    """``[log]``."""
    src.check_keys(raw, LogConfig, "log")
    kw: dict[str, Any] = {}
    if "level" in raw:
        kw["level"] = log_level(src, raw["level"], "log.level")
    if "format" in raw:
        kw["format"] = choice(src, raw["format"], "log.format", LOG_FORMATS)
    return replace(LogConfig(), **kw)


def parse_cluster(src: Source, raw: Mapping[str, Any]) -> ClusterConfig:
    """``[cluster]``."""
    src.check_keys(raw, ClusterConfig, "cluster")
    kw: dict[str, Any] = {}
    if "worker_id" in raw:
        worker = string(src, raw["worker_id"], "cluster.worker_id", empty=True).strip()
        if any(ch.isspace() for ch in worker) or len(worker) > 128:
            raise src.error("cluster.worker_id",
                            f"expected a name without spaces (at most 128 characters), got {show(worker)}")
        kw["worker_id"] = worker
    if "persist_dialogs" in raw:
        kw["persist_dialogs"] = boolean(src, raw["persist_dialogs"], "cluster.persist_dialogs")
    for name in ("flush_interval_s", "lease_s", "drain_timeout_s"):
        if name in raw:
            kw[name] = positive(src, raw[name], f"cluster.{name}")
    if "takeover_after_s" in raw:
        kw["takeover_after_s"] = seconds_or_zero(src, raw["takeover_after_s"], "cluster.takeover_after_s")
    if "takeover" in raw:
        kw["takeover"] = choice(src, raw["takeover"], "cluster.takeover", TAKEOVER_MODES)
    return replace(ClusterConfig(), **kw)


_RTPENGINE_FORM: Final = '"HOST:PORT" or "HOST:PORT;weight=N" (e.g. "127.0.0.1:2223;weight=2")'


def rtpengine_spec(src: Source, value: Any, key: str) -> RtpengineSpec:
    """One ``media.rtpengines`` entry: ``"HOST:PORT"`` with an optional ``;weight=N`` (1..1000)."""
    if not isinstance(value, str):
        raise src.error(key, f"expected {_RTPENGINE_FORM}, got {show(value)}")
    text, _, param = value.strip().partition(";")
    weight = 1
    if param:
        name, _, number = param.partition("=")
        if name.strip() != "weight" or not number.strip().isdigit() \
                or not 1 <= int(number) <= 1000:
            raise src.error(key, f"expected {_RTPENGINE_FORM} with a weight of 1..1000, "
                                 f"got {show(value)}")
        weight = int(number)
    host, port = hostport(src, text, key)
    return RtpengineSpec(host, port, weight)


def parse_media(src: Source, raw: Mapping[str, Any]) -> MediaConfig:
    """``[media]``; ``mode = "rtpengine"`` needs at least one ``rtpengines`` entry."""
    src.check_keys(raw, MediaConfig, "media")
    kw: dict[str, Any] = {}
    if "mode" in raw:
        kw["mode"] = choice(src, raw["mode"], "media.mode", MEDIA_MODES)
    if "rtpengines" in raw:
        kw["rtpengines"] = list_of(src, raw["rtpengines"], "media.rtpengines",
                                   lambda v, k: rtpengine_spec(src, v, k))
    if "timeout_s" in raw:
        kw["timeout_s"] = positive(src, raw["timeout_s"], "media.timeout_s")
    if "retries" in raw:
        kw["retries"] = integer(src, raw["retries"], "media.retries", 0, 10)
    if "down_s" in raw:
        kw["down_s"] = seconds_or_zero(src, raw["down_s"], "media.down_s")
    if "on_unavailable" in raw:
        kw["on_unavailable"] = choice(src, raw["on_unavailable"], "media.on_unavailable",
                                      MEDIA_ON_UNAVAILABLE)
    if "retry_after_s" in raw:
        kw["retry_after_s"] = integer(src, raw["retry_after_s"], "media.retry_after_s", 0, 86400)
    if "flags" in raw:
        kw["flags"] = list_of(src, raw["flags"], "media.flags",
                              lambda v, k: string(src, v, k))
    media = replace(MediaConfig(), **kw)
    if media.enabled and not media.rtpengines:
        raise src.error("media.rtpengines", 'at least one is needed with mode = "rtpengine"')
    return media
