"""The typed configuration: one frozen dataclass per TOML section, each field documented.

A field is the TOML key of the same name in its section unless its metadata says otherwise
(:func:`~proxy.config.fields.toml_key`): ``api.listen`` fills ``ApiConfig.host`` and ``.port``,
and ``Config.source`` is not read from the file. ``docs/config.md`` documents these keys, and
``tests/unit/test_config_docs.py`` keeps the two equal.
"""

from __future__ import annotations

import importlib.resources
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from .fields import toml_key

__all__ = [
    "DEFAULT_RULES_FILE",
    "ApiConfig",
    "CallsConfig",
    "Config",
    "Gateway",
    "HookConfig",
    "IPNetwork",
    "ListenSpec",
    "LogConfig",
    "MediaConfig",
    "RtpengineSpec",
    "RouteConfig",
    "SipConfig",
    "StoreConfig",
    "TrunkConfig",
    "WebhookConfig",
]

DEFAULT_RULES_FILE: Final = Path(str(importlib.resources.files("proxy") / "rules" / "default.toml"))
"""The header policy shipped with sipmask as package data (``proxy/rules/default.toml``; pip
installs a wheel's files on the file system, so the resource is a plain path)."""

LOG_LEVELS: Final = ("debug", "info", "warning", "error", "critical")
LOG_FORMATS: Final = ("auto", "json", "console")
REFER_MODES: Final = ("reject", "pass")
STORE_BACKENDS: Final = ("sqlite", "redis")
UNKNOWN_POLICIES: Final = ("reject", "hook", "route")
HOOK_SEND: Final = ("tokens", "numbers")
MEDIA_MODES: Final = ("off", "rtpengine")
MEDIA_ON_UNAVAILABLE: Final = ("reject", "signalling-only")
WEBHOOK_EVENTS: Final = ("call.started", "call.answered", "call.ended", "session.expired")

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True, slots=True)
class _Endpoint:
    """``TRANSPORT:HOST:PORT``, as listen specs and gateways are written."""

    transport: str
    """``udp``, ``tcp`` or ``tls``."""
    host: str
    """A host name or IP address; an IPv6 address without brackets."""
    port: int
    """The port."""

    def __str__(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}:{shown}:{self.port}"


@dataclass(frozen=True, slots=True)
class ListenSpec(_Endpoint):
    """A local socket to listen on: ``udp:127.0.0.1:5060`` or ``tls:[::1]:5061``."""


@dataclass(frozen=True, slots=True)
class Gateway(_Endpoint):
    """A next hop of an outbound route, written like a listen spec."""


@dataclass(frozen=True, slots=True)
class SipConfig:
    """``[sip]``: sockets, timers (RFC 3261 §17 T1/T2/T4) and TLS material."""

    listen: tuple[ListenSpec, ...] = (ListenSpec("udp", "127.0.0.1", 5060),)
    """Sockets to listen on (env ``SIPMASK_LISTEN``)."""
    advertise_host: str | None = None
    """Host written in Via, Contact and Record-Route instead of the listen address (NAT)."""
    t1: float = 0.5
    """RFC 3261 T1, the round-trip estimate, in seconds; less than ``t2``."""
    t2: float = 4.0
    """RFC 3261 T2, the longest retransmit interval of non-INVITE requests, in seconds."""
    t4: float = 5.0
    """RFC 3261 T4, how long a message may live in the network, in seconds."""
    tls_cert: str | None = None
    """PEM certificate chain; required when a listen spec is ``tls``."""
    tls_key: str | None = None
    """PEM private key; required when a listen spec is ``tls``."""
    tls_ca: str | None = None
    """PEM CA bundle to verify TLS peers with (None: the system store)."""
    tcp_idle_timeout_s: float = 300.0
    """Close TCP/TLS connections idle this long, in seconds."""
    tcp_message_timeout_s: float = 10.0
    """A TCP/TLS message that has begun (and an accepted connection's first one) must arrive
    complete within this many seconds, else the connection is closed (slowloris)."""
    tcp_max_connections: int = 0
    """Accepted TCP/TLS connections at once; past it new ones are closed at accept (0: what
    the file-descriptor limit leaves after a reserve of an eighth, at least 64)."""
    tcp_max_connections_per_source: int = 64
    """Accepted TCP/TLS connections at once from one IP address."""
    max_message_size: int = 65535
    """Largest SIP message accepted, in bytes (1024 .. 16777216)."""
    source_rate: float = 100.0
    """New requests a second one source IP may send (retransmissions and ACKs are not
    counted); past it its new INVITEs get 503 + Retry-After and its other requests are
    dropped (0: no per-source limit)."""
    source_burst: float = 200.0
    """Requests one source may send at once above ``source_rate`` (the token bucket's size)."""
    trusted_sources: tuple[IPNetwork, ...] = (
        ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    """Addresses and CIDR networks never rate limited: list the carrier's trunk addresses
    and a dispatcher in front of sipmask here."""


@dataclass(frozen=True, slots=True)
class TrunkConfig:
    """``[[trunks]]``: a peer that may send calls, recognised by source address."""

    name: str
    """A unique name for logs and metrics."""
    sources: tuple[IPNetwork, ...]
    """The addresses and CIDR networks the trunk's packets come from."""
    trust_pai: bool = False
    """Take the caller from P-Asserted-Identity (else From)."""
    default_region: str = "US"
    """Two-letter region used to read national numbers from this trunk."""

    def contains(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        """Whether *ip* is inside one of this trunk's source networks."""
        return any(ip.version == net.version and ip in net for net in self.sources)


@dataclass(frozen=True, slots=True)
class RouteConfig:
    """``[[routes]]``: where B legs go for numbers starting with ``prefix``."""

    prefix: str
    """Digits with an optional ``+`` (ignored when matching); ``""`` matches every number."""
    gateways: tuple[Gateway, ...]
    """Next hops, tried in order."""
    name: str = ""
    """A name for logs and metrics."""


@dataclass(frozen=True, slots=True)
class CallsConfig:
    """``[calls]``: rejection codes, call timers, session timers and REFER handling."""

    unknown_code: int = 404
    """Status for a call with no active pairing (400..699); the same for every reason."""
    unknown_reason: str = "Not Found"
    """Reason phrase sent with ``unknown_code``."""
    untrusted_code: int = 403
    """Status for a request from outside every trunk (400..699)."""
    ring_timeout_s: float = 60.0
    """Give up on an unanswered call after this many seconds."""
    max_duration_s: float = 14400.0
    """Hang up a call after this many seconds."""
    session_expires_s: int = 1800
    """RFC 4028 session interval asked for on the B leg when the caller asked for none (the
    callee refreshes; a callee that supports no timer is unaffected); 0: off, else at least
    ``min_se_s``."""
    min_se_s: int = 90
    """Smallest session interval accepted (RFC 4028 §4: at least 90)."""
    refer: str = "reject"
    """``reject``: REFER is refused; ``pass``: it is relayed to the other leg."""
    max_calls: int = 0
    """Refuse new calls (503) beyond this many at once; 0: no limit."""
    max_cps: float = 0.0
    """Refuse new calls (503 + Retry-After) beyond this many per second; 0: no limit."""
    overload_busy: float = 0.0
    """Shed new INVITEs above this share of loop time spent on SIP (0..1); 0: off."""
    overload_retransmissions: float = 0.2
    """Shed new INVITEs above this many retransmitted requests per new INVITE (AIMD); 0: off."""
    overload_queue_delay_ms: int = 200
    """Refuse new INVITEs that waited longer than this in the UDP receive queue; 0: off."""
    overload_retry_after_s: int = 5
    """Retry-After of overload and ``max_calls``/``max_cps`` refusals, in seconds."""
    failover_timeout_s: float = 4.0
    """Try a route's next gateway when this one sent nothing within this many seconds."""
    unknown_policy: str = "reject"
    """Calls matching no session: ``reject``, ask the ``hook``, or send to ``route``."""
    fallback_route: tuple[Gateway, ...] = ()
    """Gateways for ``unknown_policy = "route"``, tried in order."""


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """``[store]``: where pairings live and the key file that encrypts real numbers."""

    backend: str = "sqlite"
    """``sqlite`` (one process, one file) or ``redis`` (workers sharing a table)."""
    path: str = "sipmask.db"
    """The SQLite file (env ``SIPMASK_STORE_PATH``)."""
    key_file: str = "sipmask.key"
    """The secret that encrypts real numbers and keys the index and tokens."""
    redis_url: str | None = None
    """``redis://HOST:PORT/DB``, ``rediss://...`` or ``unix://PATH``; required with redis."""
    redis_prefix: str = "sipmask:"
    """Prefix of every Redis key sipmask writes (no spaces)."""
    poll_interval_s: float = 0.5
    """How often changes by other processes are picked up, in seconds."""
    retention_days: float = 30.0
    """Days after which ended sessions and CDRs are purged; 0: keep forever."""
    purge_interval_s: float = 3600.0
    """How often a running sipmask purges, in seconds."""


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """``[api]``: the HTTP management API (sessions, pool, health, metrics)."""

    enabled: bool = True
    """False runs SIP only (env ``SIPMASK_API_LISTEN=off``)."""
    host: str = field(default="127.0.0.1", metadata=toml_key("listen"))
    """The address to serve on: the host of TOML ``listen = "HOST:PORT"``."""
    port: int = field(default=8080, metadata=toml_key("listen"))
    """The port to serve on: the port of TOML ``listen = "HOST:PORT"``."""
    default_region: str = "US"
    """Two-letter region used to read numbers sent without ``+country code``."""
    rate_limit_per_token: float = 50.0
    """Requests a second one API token may make (bursts of twice as many); past it 429.
    0 turns the limit off (load tests of the API)."""

    @property
    def listen(self) -> str:
        """``HOST:PORT`` as written in the config (IPv6 in brackets)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class HookConfig:
    """``[hook]``: the HTTP lookup hook asked when no session matches a call."""

    url: str | None = None
    """``http(s)://`` URL to POST to; setting it turns the hook on."""
    send: str = "tokens"
    """``tokens``: the caller goes as a keyed token; ``numbers``: as the real number."""
    timeout_s: float = 1.0
    """Give up on the hook after this many seconds (the call is rejected)."""
    cache_s: float = 30.0
    """Keep each answer this many seconds; 0: no cache."""
    cache_size: int = 10000
    """Most answers kept (least recently used goes first)."""
    secret: str | None = field(default=None, repr=False)
    """Shared secret signing each request (env ``SIPMASK_HOOK_SECRET``)."""
    bearer_token: str | None = field(default=None, repr=False)
    """Sent as ``Authorization: Bearer ...`` (env ``SIPMASK_HOOK_BEARER_TOKEN``)."""
    default_region: str = "US"
    """Two-letter region used to read numbers in answers without ``+country code``."""

    @property
    def enabled(self) -> bool:
        """The hook is on when a URL is configured."""
        return self.url is not None


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """``[[webhooks]]``: an endpoint that receives signed call and session events."""

    url: str
    """``http(s)://`` URL to POST events to."""
    secret: str | None = field(default=None, repr=False)
    """Shared secret signing each event; None sends them unsigned."""
    events: tuple[str, ...] = ()
    """Event types to send; empty: every type."""
    max_attempts: int = 5
    """Tries per event (1..100) on network errors, 5xx and 429."""
    include_numbers: bool = False
    """Add real numbers to events (else tokens only)."""
    timeout_s: float = 5.0
    """Time allowed for one delivery attempt, in seconds."""
    secret_env: str | None = None
    """Name of an environment variable holding ``secret`` instead (not both)."""

    def wants(self, event_type: str) -> bool:
        """Whether this endpoint subscribes to *event_type*."""
        return not self.events or event_type in self.events


@dataclass(frozen=True, slots=True)
class RtpengineSpec:
    """One rtpengine's ng control address, written ``"HOST:PORT"`` or ``"HOST:PORT;weight=N"``."""

    host: str
    """An IP address or host name; an IPv6 address without brackets."""
    port: int
    """The ng port (rtpengine's ``--listen-ng``)."""
    weight: int = 1
    """Share of new calls (1..1000) among the rtpengines that are up."""


@dataclass(frozen=True, slots=True)
class MediaConfig:
    """``[media]``: anchoring the media through rtpengine (off: signalling only)."""

    mode: str = "off"
    """``off`` (signalling only) or ``rtpengine`` (every call's media through rtpengine)."""
    rtpengines: tuple[RtpengineSpec, ...] = ()
    """The ng addresses, ``"HOST:PORT"`` or ``"HOST:PORT;weight=N"``; needed by ``rtpengine``."""
    timeout_s: float = 0.5
    """Wait this long for one answer to one ng request before sending it again."""
    retries: int = 2
    """Sends of a request to one rtpengine after the first (same cookie), before the next."""
    down_s: float = 10.0
    """An rtpengine that timed out gets no new requests for this many seconds."""
    on_unavailable: str = "reject"
    """No rtpengine answers a new call: ``reject`` (503 + Retry-After) or ``signalling-only``."""
    retry_after_s: int = 10
    """``Retry-After`` of the 503 when no rtpengine answers."""
    flags: tuple[str, ...] = ()
    """Extra ng ``flags`` for every offer and answer (the privacy options are always sent)."""

    @property
    def enabled(self) -> bool:
        """Media is anchored when the mode is ``rtpengine``."""
        return self.mode == "rtpengine"


@dataclass(frozen=True, slots=True)
class LogConfig:
    """``[log]``: level and output format."""

    level: str = "info"
    """``debug``, ``info``, ``warning`` (or ``warn``), ``error`` or ``critical``."""
    format: str = "auto"
    """``json``, ``console``, or ``auto`` (console on a terminal, JSON otherwise)."""


TAKEOVER_MODES: Final = ("update", "end")


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    """``[cluster]``: calls that outlive a worker (docs/reliability.md, "Calls that outlive a
    worker")."""

    worker_id: str = ""
    """This worker's name in the store (its dialog records and lease); empty: the host name
    and the first SIP port (``host:5060``). A restarted worker must keep its name to reload
    its calls; two live workers must never share one."""
    persist_dialogs: bool = True
    """Write each established call's dialogs to the store (encrypted), so a restarted worker
    reloads them and a sibling can take them over."""
    flush_interval_s: float = 1.0
    """How often changed dialogs are written; a call answered and ended within it is never
    written (and a worker lost within it loses that call)."""
    lease_s: float = 10.0
    """How long a worker's lease lasts; it is renewed every third of it."""
    takeover_after_s: float = 10.0
    """How long after a worker's lease ended a sibling claims its calls (time for a restart
    to reload them itself); 0: never take over a sibling's calls."""
    takeover: str = "update"
    """What a sibling does with the calls it claims: ``update`` (an UPDATE with its Contact
    to each leg; a leg that refuses ends the call cleanly) or ``end`` (BYE both legs, CDR
    cause ``worker_lost``)."""
    drain_timeout_s: float = 30.0
    """SIGTERM: how long established calls may go on while new calls get 503; then they are
    handed over (written to the store, for a restart or a sibling) or, without
    ``persist_dialogs``, ended with BYE."""


def _default_trunks() -> tuple[TrunkConfig, ...]:
    return (
        TrunkConfig(
            name="loopback",
            sources=(ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128")),
        ),
    )


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration. Build it with :func:`~proxy.config.load_config`."""

    sip: SipConfig = field(default_factory=SipConfig)
    """``[sip]``."""
    trunks: tuple[TrunkConfig, ...] = field(default_factory=_default_trunks)
    """``[[trunks]]``, in file order; default: one ``loopback`` trunk."""
    routes: tuple[RouteConfig, ...] = ()
    """``[[routes]]``."""
    calls: CallsConfig = field(default_factory=CallsConfig)
    """``[calls]``."""
    store: StoreConfig = field(default_factory=StoreConfig)
    """``[store]``."""
    api: ApiConfig = field(default_factory=ApiConfig)
    """``[api]``."""
    log: LogConfig = field(default_factory=LogConfig)
    """``[log]``."""
    hook: HookConfig = field(default_factory=HookConfig)
    """``[hook]``."""
    cluster: ClusterConfig = field(default_factory=ClusterConfig)
    """``[cluster]``."""
    webhooks: tuple[WebhookConfig, ...] = ()
    """``[[webhooks]]``."""
    media: MediaConfig = field(default_factory=MediaConfig)
    """``[media]``."""
    rules_file: Path = DEFAULT_RULES_FILE
    """The header policy file (top-level key), re-read on SIGHUP."""
    source: Path | None = field(default=None, metadata=toml_key(None))
    """The config file this came from (resolved), None without one; not a TOML key."""

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
