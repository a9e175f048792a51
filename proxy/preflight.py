"""Start-up checks: everything ``sipmask run`` needs from the host, tried before it serves.

``sipmask check-config`` and ``sipmask run`` both call :func:`preflight`; each problem comes
back as a `ConfigError` naming the config key and what is wrong, which the CLI prints as one
line and exits 2, so that a port taken by Asterisk, a listen address that is not on this host,
a TLS file that is missing or a Redis that is down never end in a traceback::

    sipmask: sipmask.toml: sip.listen[0]: udp:0.0.0.0:5060: cannot bind: address already in use
    (is Asterisk or another SIP server running? choose another port in sip.listen)

Each socket is bound the way the transports bind it (UDP plainly, TCP/TLS and the API with
``SO_REUSEADDR``) and released at once; nothing is sent. `bind_problem` words an ``OSError``
of a bind, also for a bind that fails in `proxy.app.start` after the checks passed (another
program took the port in between).
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

import redis

from .b2bua.policy import RulesError, load_rules
from .config import Config, ConfigError
from .pairing.crypto import KEY_ENV, VaultError, load_vault

__all__ = ["bind_problem", "preflight", "redacted_url"]

#: how long the store may take to answer its ping, in seconds
_STORE_TIMEOUT_S = 2.0


def preflight(config: Config, env: Mapping[str, str] = os.environ) -> list[ConfigError]:
    """Every problem `config` would meet at start-up on this host, in config order (empty: none)."""
    file = str(config.source) if config.source else None
    problems: list[ConfigError] = []
    for key, problem in (*_sip_sockets(config), *_tls_files(config), *_api_socket(config),
                         *_key_file(config, env), *_store(config), *_rules(config)):
        problems.append(ConfigError(file, key, problem))
    return problems


def bind_problem(endpoint: str, exc: OSError, *, port_key: str) -> str:
    """What a failed bind of `endpoint` (``udp:HOST:PORT``) means, with what to do about it."""
    if isinstance(exc, socket.gaierror):
        return f"{endpoint}: cannot resolve the host: {exc.strerror or exc}"
    code = exc.errno
    if code == errno.EADDRINUSE:
        hint = ("is Asterisk or another SIP server running?" if port_key.startswith("sip.")
                else "is another sipmask or web server running?")
        return f"{endpoint}: cannot bind: address already in use ({hint} choose another port in {port_key})"
    if code == errno.EADDRNOTAVAIL:
        nat = "; sip.advertise_host for NAT" if port_key.startswith("sip.") else ""
        return (f"{endpoint}: cannot bind: the address is not on this host (use one of its "
                f"addresses, or 0.0.0.0 / [::] for all{nat})")
    if code == errno.EACCES:
        return (f"{endpoint}: cannot bind: permission denied (ports below 1024 need root or "
                f"CAP_NET_BIND_SERVICE)")
    return f"{endpoint}: cannot bind: {exc.strerror or exc}"


def redacted_url(url: str) -> str:
    """`url` without its password (a Redis URL may carry one)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


# -- sockets --------------------------------------------------------------------------------------

def _try_bind(host: str, port: int, kind: int, reuse: bool) -> None:
    """Bind a socket of `kind` to host:port as the transports would, then close it."""
    infos = socket.getaddrinfo(host or None, port, type=kind, flags=socket.AI_PASSIVE)
    family, _, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(sockaddr)
        if kind == socket.SOCK_STREAM:
            sock.listen(1)


def _sip_sockets(config: Config) -> list[tuple[str, str]]:
    out = []
    for i, spec in enumerate(config.sip.listen):
        kind = socket.SOCK_DGRAM if spec.transport == "udp" else socket.SOCK_STREAM
        try:
            _try_bind(spec.host, spec.port, kind, reuse=kind == socket.SOCK_STREAM)
        except OSError as exc:
            out.append((f"sip.listen[{i}]", bind_problem(str(spec), exc, port_key="sip.listen")))
    return out


def _api_socket(config: Config) -> list[tuple[str, str]]:
    api = config.api
    if not api.enabled:
        return []
    try:
        _try_bind(api.host, api.port, socket.SOCK_STREAM, reuse=True)
    except OSError as exc:
        return [("api.listen", bind_problem(api.listen, exc, port_key="api.listen"))]
    return []


# -- files ----------------------------------------------------------------------------------------

def _unreadable(path: str) -> str | None:
    """Why `path` cannot be read, or None."""
    try:
        with open(path, "rb"):
            return None
    except OSError as exc:
        return f"cannot read {path}: {exc.strerror or exc}"


def _tls_files(config: Config) -> list[tuple[str, str]]:
    sip = config.sip
    wanted = ["tls_ca"]
    if any(spec.transport == "tls" for spec in sip.listen):
        wanted[:0] = ["tls_cert", "tls_key"]
    out = []
    for name in wanted:
        path = getattr(sip, name)
        if path is not None and (problem := _unreadable(path)):
            out.append((f"sip.{name}", problem))
    if out or "tls_cert" not in wanted or not (sip.tls_cert and sip.tls_key):
        return out
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(sip.tls_cert, sip.tls_key)
    except (ssl.SSLError, OSError) as exc:
        out.append(("sip.tls_key", f"{sip.tls_key} is not a PEM private key matching sip.tls_cert "
                                   f"{sip.tls_cert} ({getattr(exc, 'reason', None) or exc})"))
    return out


def _directory_problem(path: Path) -> str | None:
    """Why a file cannot be created at `path`, or None."""
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        return f"directory {parent} does not exist (create it, or choose another path)"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"directory {parent} is not writable, so {path.name} cannot be created there"
    return None


def _key_file(config: Config, env: Mapping[str, str]) -> list[tuple[str, str]]:
    key_file = Path(config.store.key_file)
    if not env.get(KEY_ENV, "").strip() and not key_file.exists():
        problem = _directory_problem(key_file)
        return [("store.key_file", f"{key_file}: {problem}")] if problem else []
    try:
        load_vault(key_file, env=env, create=False)
    except VaultError as exc:
        key = KEY_ENV if env.get(KEY_ENV, "").strip() else "store.key_file"
        return [(key, str(exc))]
    return []


def _store(config: Config) -> list[tuple[str, str]]:
    store = config.store
    if store.backend == "sqlite":
        path = Path(store.path)
        if path.exists():
            if not os.access(path, os.R_OK | os.W_OK):
                return [("store.path", f"{path}: not readable and writable by this user")]
            return []
        problem = _directory_problem(path)
        return [("store.path", f"{path}: {problem}")] if problem else []
    if not store.redis_url:
        return [("store.redis_url", 'required with backend "redis"')]
    try:
        client = redis.Redis.from_url(store.redis_url, socket_connect_timeout=_STORE_TIMEOUT_S,
                                      socket_timeout=_STORE_TIMEOUT_S)
        try:
            client.ping()
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError) as exc:
        return [("store.redis_url", f"{redacted_url(store.redis_url)}: cannot reach the store "
                                    f"({type(exc).__name__}: {exc}; is Redis running?)")]
    return []


def _rules(config: Config) -> list[tuple[str, str]]:
    try:
        load_rules(config.rules_file)
    except RulesError as exc:
        return [("rules_file", str(exc))]
    return []
