"""All of sipmask's SIP transports behind one object: listen, send, close."""

from __future__ import annotations

import asyncio
import resource
import socket
import ssl
from collections.abc import Callable

import structlog

from proxy.sip.message import Request, Response

from .address import Address
from .stats import TransportStats
from .stream import StreamConnection
from .tls import make_client_context
from .udp import UdpEndpoint

__all__ = ["SipTransports"]

_log = structlog.get_logger(__name__)

TRANSPORTS = ("udp", "tcp", "tls")
#: UDP destinations whose route is remembered (then forgotten all at once)
_ROUTES_MAX = 4096
#: File descriptors kept out of reach of accepted connections when their limit is derived from
#: RLIMIT_NOFILE: the API, the store, log files, outgoing connections and sockets still need some.
_FD_RESERVE_MIN = 64
#: Seconds between two log lines about refused connections (each line gives the count since)
_REFUSED_LOG_INTERVAL = 10.0


def default_max_connections() -> int:
    """Accepted TCP/TLS connections allowed when none is configured: what the process's
    file-descriptor limit (RLIMIT_NOFILE) leaves after a reserve of an eighth (at least 64),
    so a flood of connections can never starve the API or the store of descriptors."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft <= 0:
        soft = 65536
    return max(16, soft - max(_FD_RESERVE_MIN, soft // 8))

OnMessage = Callable[[Request | Response, Address], None]
OnSendError = Callable[[Address], None]


class SipTransports:
    """UDP, TCP and TLS listeners plus outgoing connections, feeding one ``on_message``.

    Thin by design (docs/conventions §1): it frames, parses and writes; the only protocol
    decisions it makes are stream framing, answering unparsable requests with 400 and answering
    CRLF keep-alives. Received messages reach ``on_message(message, source)`` where ``source`` is
    the real peer address (rport/received stamping is the transaction layer's job); UDP adds a
    third argument, the seconds the datagram queued in the kernel before it was read (the
    overload signal), so ``on_message`` must accept it. Given ``on_datagram`` and
    ``on_batch_end``, UDP messages go to ``on_datagram`` instead, and ``on_batch_end`` is called
    after each read batch (the SIP stack then writes what the batch queued, in one burst).

    Stream connections are indexed by remote ``(host, port)`` per transport, so a response sent
    to the address a request came from goes back on that connection, and ``send`` to a remote
    that already has a connection (in either direction) reuses it.

    Accepted connections are capped: ``tcp_max_connections`` in all (default: derived from the
    file-descriptor limit, :func:`default_max_connections`) and ``tcp_max_per_source`` per
    remote IP address; one past a cap is closed as soon as it is accepted, counted in
    ``stats.tcp_connections_refused`` and logged (one line per 10 s at most).
    ``tcp_message_timeout`` bounds how long a begun message may take (slowloris).
    """

    def __init__(
        self,
        on_message: OnMessage,
        *,
        max_message_size: int = 65535,
        tcp_idle_timeout: float = 300.0,
        tls_server_context: ssl.SSLContext | None = None,
        tls_client_context: ssl.SSLContext | None = None,
        on_send_error: OnSendError | None = None,
        stats: TransportStats | None = None,
        tcp_connect_timeout: float = 10.0,
        on_datagram: OnMessage | None = None,
        on_batch_end: Callable[[], None] | None = None,
        tcp_max_connections: int | None = None,
        tcp_max_per_source: int = 64,
        tcp_message_timeout: float = 10.0,
    ) -> None:
        #: where received messages go; may be replaced before ``listen`` (the SIP stack is
        #: built after its transports, whose ``send`` it needs)
        self.on_message = on_message
        #: UDP's receiver and its end-of-batch call, when they differ from ``on_message``;
        #: also replaceable before ``listen``
        self.on_datagram = on_datagram
        self.on_batch_end = on_batch_end
        self.max_message_size = max_message_size
        self.tcp_idle_timeout = tcp_idle_timeout
        self.tcp_connect_timeout = tcp_connect_timeout
        self.tcp_max_connections = (default_max_connections() if tcp_max_connections is None
                                    else tcp_max_connections)
        self.tcp_max_per_source = tcp_max_per_source
        self.tcp_message_timeout = tcp_message_timeout
        #: accepted connections counted against the caps: in all, and per remote IP
        self._accepted = 0
        self._per_source: dict[str, int] = {}
        self._refused_since_log = 0
        self._refused_logged_at = -_REFUSED_LOG_INTERVAL
        self._tls_server_context = tls_server_context
        self._tls_client_context = tls_client_context
        self._on_send_error = on_send_error
        self.stats = stats if stats is not None else TransportStats()
        self._udp: list[UdpEndpoint] = []
        self._udp_by_family: dict[int, UdpEndpoint] = {}
        self._servers: list[tuple[str, asyncio.AbstractServer, tuple[str, int]]] = []
        self._connections: dict[tuple[str, str, int], StreamConnection] = {}
        self._all_connections: set[StreamConnection] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        #: destination -> (the UDP socket for its family, its socket address): one lookup per
        #: datagram instead of unbracketing and classifying the host each time; bounded
        #: (destinations come from the network), emptied when the sockets change
        self._udp_routes: dict[Address, tuple[UdpEndpoint, tuple[str, int]]] = {}
        self._closed = False

    # -- listening -----------------------------------------------------------------------------
    async def listen(self, transport: str, host: str, port: int) -> tuple[str, int]:
        """Listen on ``transport`` ("udp", "tcp" or "tls") at ``host``:``port``.

        ``port`` 0 picks a free port. IPv4 and IPv6 literals are accepted (IPv6 without
        brackets). Returns the bound ``(host, port)``. Raises ``OSError`` when the address cannot
        be bound and ``ValueError`` for an unknown transport or TLS without a server context.
        """
        kind = transport.lower()
        host = _unbracket(host)
        loop = asyncio.get_running_loop()
        if kind == "udp":
            endpoint = UdpEndpoint(
                self.on_datagram or self.on_message, self.stats, self.max_message_size,
                self.on_batch_end, self._unreachable,
            )
            await endpoint.open(host, port)
            self._udp.append(endpoint)
            self._udp_by_family.setdefault(endpoint.family, endpoint)
            self._udp_routes.clear()
            return endpoint.local
        if kind not in ("tcp", "tls"):
            raise ValueError(f"unknown transport {transport!r}: expected one of {TRANSPORTS}")
        context = None
        if kind == "tls":
            context = self._tls_server_context
            if context is None:
                raise ValueError("listening on tls needs tls_server_context")
        server = await loop.create_server(
            lambda: self._new_connection(kind), host, port, ssl=context, reuse_address=True
        )
        sockname = server.sockets[0].getsockname()
        bound = (sockname[0], sockname[1])
        self._servers.append((kind, server, bound))
        return bound

    def local_address(self, transport: str) -> tuple[str, int]:
        """The bound ``(host, port)`` of the first listener of ``transport``.

        Raises ``LookupError`` when nothing listens on that transport.
        """
        kind = transport.lower()
        if kind == "udp":
            if self._udp:
                return self._udp[0].local
        else:
            for server_kind, _, bound in self._servers:
                if server_kind == kind:
                    return bound
        raise LookupError(f"no {transport} listener")

    # -- sending -------------------------------------------------------------------------------
    def send(self, message: Request | Response | bytes, dest: Address) -> None:
        """Send ``message`` to ``dest``. Never blocks and never raises.

        UDP goes out of the listening socket of the destination's address family. TCP/TLS reuse
        a connection to ``dest`` (host, port) if one is open or being opened, else open one and
        queue until it is up. Failures are counted in ``stats.send_errors`` and reported through
        ``on_send_error(dest)``.
        """
        try:
            data = message if isinstance(message, bytes) else message.serialise()
            route = self._udp_routes.get(dest)
            if route is not None:  # a UDP destination sent to before: its socket and address
                if route[0].send(data, route[1]):
                    self.stats.sent += 1
                else:
                    self._send_failed(dest)
                return
            kind = dest.transport
            if kind == "udp":
                self._send_udp(data, dest)
            elif kind == "tcp" or kind == "tls":
                self._send_stream(data, dest, kind)
            else:
                lowered = kind.lower()
                if lowered in TRANSPORTS:
                    self.send(data, Address(lowered, dest.host, dest.port))
                else:
                    self._send_failed(dest)
        except Exception:  # noqa: BLE001 - the transports never raise into the SIP stack or the loop
            _log.exception("transport.send_failed", transport=dest.transport)
            self._send_failed(dest)

    def _send_udp(self, data: bytes, dest: Address) -> None:
        """The first datagram to ``dest`` (``send`` takes the cached route after it)."""
        host = _unbracket(dest.host)
        family = _ip_family(host)
        if family is None:
            self._spawn(self._resolve_and_send_udp(data, dest, host))
            return
        endpoint = self._udp_by_family.get(family)
        if endpoint is None:
            self._send_failed(dest)
            return
        routes = self._udp_routes
        if len(routes) >= _ROUTES_MAX:
            routes.clear()
        route = routes[dest] = (endpoint, (host, dest.port))
        if not route[0].send(data, route[1]):
            self._send_failed(dest)
            return
        self.stats.sent += 1

    async def _resolve_and_send_udp(self, data: bytes, dest: Address, host: str) -> None:
        """Host names are resolved off the loop (a plain ``sendto`` would block on DNS)."""
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(host, dest.port, type=socket.SOCK_DGRAM)
        except OSError:
            self._send_failed(dest)
            return
        for family, _, _, _, sockaddr in infos:
            endpoint = self._udp_by_family.get(family)
            if endpoint is not None and endpoint.sendto(data, str(sockaddr[0]), int(sockaddr[1])):
                self.stats.sent += 1
                return
        self._send_failed(dest)

    def _send_stream(self, data: bytes, dest: Address, kind: str) -> None:
        host = _unbracket(dest.host)
        key = (kind, host, dest.port)
        connection = self._connections.get(key)
        if connection is None or not connection.usable:
            if self._closed:
                self._send_failed(dest)
                return
            connection = self._new_connection(kind, (host, dest.port))
            self._connections[key] = connection
            self._spawn(self._connect(connection, Address(kind, host, dest.port)))
        if not connection.write(data):
            self._send_failed(dest)

    async def _connect(self, connection: StreamConnection, dest: Address) -> None:
        loop = asyncio.get_running_loop()
        context: ssl.SSLContext | None = None
        if dest.transport == "tls":
            context = self._tls_client_context
            if context is None:
                context = self._tls_client_context = make_client_context()
        try:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: connection,
                    dest.host,
                    dest.port,
                    ssl=context,
                    server_hostname=dest.host if context is not None else None,
                ),
                self.tcp_connect_timeout,
            )
        except asyncio.CancelledError:
            connection.connect_failed()
            self._forget(connection)
            raise
        except Exception as exc:  # noqa: BLE001 - OSError, ssl.SSLError, TimeoutError...
            _log.info(
                "transport.connect_failed",
                transport=dest.transport,
                host=dest.host,
                port=dest.port,
                error=type(exc).__name__,
            )
            connection.connect_failed()
            self._forget(connection)
            self._send_failed(dest)

    def _unreachable(self, host: str, port: int) -> None:
        """ICMP unreachable for a UDP datagram sent to host:port (already counted)."""
        callback = self._on_send_error
        if callback is not None:
            try:
                callback(Address("udp", host, port))
            except Exception:  # noqa: BLE001 - the transports never raise into the SIP stack or the loop
                _log.exception("transport.send_error_handler_failed")

    def _send_failed(self, dest: Address) -> None:
        self.stats.send_errors += 1
        callback = self._on_send_error
        if callback is not None:
            try:
                callback(dest)
            except Exception:  # noqa: BLE001 - the transports never raise into the SIP stack or the loop
                _log.exception("transport.send_error_handler_failed")

    # -- connections ---------------------------------------------------------------------------
    def _new_connection(self, kind: str, key: tuple[str, int] | None = None) -> StreamConnection:
        return StreamConnection(
            kind,
            self.on_message,
            self.stats,
            max_message_size=self.max_message_size,
            idle_timeout=self.tcp_idle_timeout,
            message_timeout=self.tcp_message_timeout,
            on_open=self._connection_opened,
            on_lost=self._forget,
            key=key,
        )

    def _connection_opened(self, connection: StreamConnection) -> None:
        self._all_connections.add(connection)
        if self._closed:
            connection.abort()
            return
        assert connection.key is not None
        if not connection.outgoing:
            host = connection.key[0]
            per_source = self._per_source.get(host, 0)
            if self._accepted >= self.tcp_max_connections:
                self._refuse(connection, "tcp_max_connections", self.tcp_max_connections)
                return
            if per_source >= self.tcp_max_per_source:
                self._refuse(connection, "tcp_max_connections_per_source", self.tcp_max_per_source)
                return
            self._accepted += 1
            self._per_source[host] = per_source + 1
            connection.counted = True
        # the newest connection to a remote wins: that is where its next request came from
        self._connections[(connection.kind, *connection.key)] = connection

    def _refuse(self, connection: StreamConnection, limit: str, value: int) -> None:
        """Close an accepted connection past a cap at once (RST: nothing is read from it)."""
        connection.abort()
        self.stats.tcp_connections_refused += 1
        self._refused_since_log += 1
        now = asyncio.get_running_loop().time()
        if now - self._refused_logged_at >= _REFUSED_LOG_INTERVAL:
            _log.warning("transport.connections_refused", transport=connection.kind, limit=limit,
                         value=value, refused=self._refused_since_log, open=self._accepted)
            self._refused_logged_at = now
            self._refused_since_log = 0

    def _forget(self, connection: StreamConnection) -> None:
        self._all_connections.discard(connection)
        if connection.counted:
            connection.counted = False
            self._accepted -= 1
            assert connection.key is not None
            host = connection.key[0]
            left = self._per_source.get(host, 1) - 1
            if left > 0:
                self._per_source[host] = left
            else:
                self._per_source.pop(host, None)
        if connection.key is not None:
            key = (connection.kind, *connection.key)
            if self._connections.get(key) is connection:
                del self._connections[key]

    def connection_count(self, transport: str | None = None) -> int:
        """Indexed stream connections (open or opening), optionally of one transport."""
        if transport is None:
            return len(self._connections)
        return sum(1 for kind, _, _ in self._connections if kind == transport)

    # -- lifetime ------------------------------------------------------------------------------
    async def close(self) -> None:
        """Stop listening, close every connection and socket, cancel pending connects."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for _, server, _ in self._servers:
            server.close()
        for connection in list(self._all_connections):
            connection.close()
        for endpoint in self._udp:
            endpoint.close()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for _, server, _ in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2.0)
            except (TimeoutError, OSError):
                pass
        for connection in list(self._all_connections):
            connection.abort()
        await asyncio.sleep(0)  # let connection_lost callbacks run
        self._servers.clear()
        self._udp.clear()
        self._udp_by_family.clear()
        self._udp_routes.clear()
        self._connections.clear()

    def _spawn(self, coro: object) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _ip_family(host: str) -> int | None:
    literal = host.partition("%")[0]  # IPv6 zone index: fe80::1%eth0
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, literal)
        except OSError:
            continue
        return family
    return None


def _unbracket(host: str) -> str:
    if host.startswith("[") and host.endswith("]"):
        return host[1:-1]
    return host
