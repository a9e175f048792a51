"""SIP over UDP: one datagram endpoint per listening address (RFC 3261 §18)."""

from __future__ import annotations

import asyncio
import errno
import socket
import struct
import sys
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import structlog

from proxy.sip.errors import SipParseError
from proxy.sip.parser import parse_message

from .address import Address
from .replies import error_reply
from .stats import TransportStats

__all__ = ["UdpEndpoint"]

_log = structlog.get_logger(__name__)

#: Bigger than the Linux default (208 KiB) so a burst is queued, not dropped by the kernel;
#: capped by net.core.rmem_max.
_RECEIVE_BUFFER = 4 * 1024 * 1024
#: datagrams read per readiness callback: the rest wait for the next loop iteration, so timers
#: and the other sockets get their turn
_BATCH = 64
#: the largest UDP payload: anything bigger than ``max_message_size`` is dropped after reading
_RECV_SIZE = 65535
#: the kernel's receive time of each datagram (Linux ``SO_TIMESTAMPNS``, a timespec as
#: ancillary data): how long a datagram queued before sipmask read it, the overload signal
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform.startswith("linux") else 0)
_TIMESPEC = struct.Struct("@qq")
_ANC_SIZE = socket.CMSG_SPACE(_TIMESPEC.size)
#: datagrams queued when the socket's send buffer is full (then dropped, counted)
_SEND_QUEUE_MAX = 4096
#: a plain int: ``socket.MSG_TRUNC`` is an IntFlag, and ``flags & IntFlag`` builds an enum
#: member through Python code (~0.5 us) for every datagram
_MSG_TRUNC = int(socket.MSG_TRUNC)
#: peer addresses remembered (then forgotten all at once: they come from the network)
_SOURCES_MAX = 4096
#: Linux IP_RECVERR / IPV6_RECVERR: ICMP errors (port or host unreachable) for datagrams sent
#: from an unconnected socket are queued on its error queue, with the destination of the
#: datagram that failed, instead of being dropped; read with MSG_ERRQUEUE
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11 if sys.platform.startswith("linux") else 0)
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25 if sys.platform.startswith("linux") else 0)
_MSG_ERRQUEUE = int(getattr(socket, "MSG_ERRQUEUE", 0x2000 if sys.platform.startswith("linux") else 0))
#: error-queue entries read per readiness callback
_ERRQUEUE_BATCH = 64
#: errors a send may report for an earlier datagram (the ICMP error IP_RECVERR keeps pending)
_ASYNC_ERRORS = frozenset((errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH,
                           errno.EHOSTDOWN))

#: (message, source, seconds the datagram queued in the kernel before it was read: measured
#: for INVITEs, which admission control screens on it; 0.0 for other messages)
OnMessage = Callable[..., None]
#: called once the datagrams of one read batch have all been handed to ``on_message``
OnBatchEnd = Callable[[], None]
#: called with the (host, port) a datagram could not reach (an ICMP error came back)
OnUnreachable = Callable[[str, int], None]


class UdpEndpoint:
    """A listening UDP socket: reads each datagram, parses it and hands the message up.

    sipmask reads the socket itself (``loop.add_reader`` + ``recvmsg``) rather than through
    the loop's datagram transport, to get each datagram's kernel receive time: how long it
    waited in the socket's queue is what admission control uses to refuse new calls before
    the backlog makes peers retransmit (proxy/b2bua/overload.py).

    Also the socket that ``SipTransports.send`` writes UDP messages from, so that the source
    port of what sipmask sends is the port it listens on (§18.1.1, RFC 3581).
    """

    def __init__(
        self, on_message: OnMessage, stats: TransportStats, max_message_size: int,
        on_batch_end: OnBatchEnd | None = None,
        on_unreachable: OnUnreachable | None = None,
    ) -> None:
        self._on_message = on_message
        #: a destination answered with ICMP unreachable: its transactions fail at once (the
        #: caller gets failover, not 32 s of Timer B)
        self._on_unreachable = on_unreachable
        self._errors_pending = False
        #: after each read batch (up to ``_BATCH`` datagrams): the SIP stack writes what the
        #: batch's messages queued then, in one burst (see SipStack.on_datagram)
        self._on_batch_end = on_batch_end
        self._stats = stats
        self._max_message_size = max_message_size
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timestamps = False
        self._send_queue: deque[tuple[bytes, tuple[str, int]]] = deque()
        #: one Address per peer socket address, shared by every message and transaction of
        #: that peer (a named tuple is a GC-tracked object, built by Python code)
        self._sources: dict[Any, Address] = {}
        self.family = socket.AF_INET
        self.local: tuple[str, int] = ("", 0)

    async def open(self, host: str, port: int) -> tuple[str, int]:
        """Bind ``host``:``port`` (0: any free port) and start reading; the bound address."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM, flags=socket.AI_PASSIVE)
        if not infos:
            raise OSError(f"cannot resolve {host!r}")
        family, _, proto, _, sockaddr = infos[0]
        sock = socket.socket(family, socket.SOCK_DGRAM, proto)
        try:
            sock.setblocking(False)
            sock.bind(sockaddr)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
            except OSError:
                pass
            if _SO_TIMESTAMPNS:
                try:
                    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
                    self._timestamps = True
                except OSError:
                    pass
            if _IP_RECVERR and self._on_unreachable is not None:
                try:
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
                    else:
                        sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
                except OSError:
                    pass
            loop.add_reader(sock.fileno(), self._readable)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._loop = loop
        self.family = sock.family
        name = sock.getsockname()
        self.local = (name[0], name[1])
        return self.local

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        try:
            self._read_batch(sock)
        finally:
            on_batch_end = self._on_batch_end
            if on_batch_end is not None:
                try:
                    on_batch_end()
                except Exception:  # noqa: BLE001 - one bad datagram or handler must never stop the endpoint
                    _log.exception("transport.handler_failed", transport="udp")

    def _read_batch(self, sock: socket.socket) -> None:
        stats = self._stats
        timestamps = self._timestamps
        for i in range(_BATCH):
            try:
                data, ancdata, flags, addr = sock.recvmsg(_RECV_SIZE, _ANC_SIZE)
            except (BlockingIOError, InterruptedError):
                if i == 0 and self._read_errors(sock):
                    # woken by an error-queue entry alone (a send already took the pending
                    # error): the entries are reported, and the reader armed again
                    self._rearm(sock)
                return
            except OSError:  # an ICMP error reported on the socket
                if self._sock is not sock:
                    return  # closed meanwhile
                if not self._read_errors(sock):
                    stats.send_errors += 1
                self._rearm(sock)
                continue
            delay = 0.0
            # only a new INVITE is screened on its queue delay (the rest pass whatever it is)
            if timestamps and data[:7] == b"INVITE ":
                for _level, kind, cdata in ancdata:
                    if kind == _SO_TIMESTAMPNS and len(cdata) >= _TIMESPEC.size:
                        sec, nsec = _TIMESPEC.unpack_from(cdata)
                        delay = time.time() - sec - nsec * 1e-9
            if flags & _MSG_TRUNC:
                stats.dropped += 1
                continue
            self.datagram_received(data, addr, delay)
            if self._sock is not sock:
                return  # a handler closed the endpoint (shutdown)

    def _rearm(self, sock: socket.socket) -> None:
        """Register the reader again after an error event: libuv (uvloop) stops a poll handle
        that reports POLLERR, which a queued ICMP error raises, and the socket would go deaf."""
        loop = self._loop
        if loop is not None and self._sock is sock:
            loop.remove_reader(sock.fileno())
            loop.add_reader(sock.fileno(), self._readable)

    def _read_errors(self, sock: socket.socket) -> int:
        """Read the socket's error queue; report each unreachable destination. Returns the
        number of entries read (0 without IP_RECVERR: the error is then only counted)."""
        on_unreachable = self._on_unreachable
        if on_unreachable is None or not _MSG_ERRQUEUE:
            return 0
        read = 0
        for _ in range(_ERRQUEUE_BATCH):
            try:
                _, _, _, addr = sock.recvmsg(1, 512, _MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                break
            read += 1
            self._stats.send_errors += 1
            if addr:
                try:
                    on_unreachable(str(addr[0]), int(addr[1]))
                except Exception:  # noqa: BLE001 - one bad datagram or handler must never stop the endpoint
                    _log.exception("transport.handler_failed", transport="udp")
            if self._sock is not sock:
                break
        return read

    def datagram_received(self, data: bytes, addr: Any, delay: float = 0.0) -> None:
        """The hot path: size check, parse, hand up. Nothing here may raise into the loop."""
        stats = self._stats
        if len(data) > self._max_message_size:
            stats.dropped += 1
            return
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self._parse_failed(data, exc, addr)
            return
        except Exception:  # noqa: BLE001 - the parser promises SipParseError only; do not trust it with the loop
            stats.parse_errors += 1
            stats.dropped += 1
            return
        stats.received += 1
        sources = self._sources
        source = sources.get(addr)
        if source is None:
            if len(sources) >= _SOURCES_MAX:
                sources.clear()
            source = sources[addr] = Address("udp", addr[0], addr[1])
        try:
            self._on_message(message, source, delay)
        except Exception:  # noqa: BLE001 - one bad datagram or handler must never stop the endpoint
            _log.exception("transport.handler_failed", transport="udp")

    def _parse_failed(self, data: bytes, exc: SipParseError, addr: Any) -> None:
        stats = self._stats
        if not data.strip(b"\r\n"):
            # CRLF NAT keep-alives some user agents send over UDP: nothing to answer
            stats.keepalives += 1
            return
        stats.parse_errors += 1
        reply = error_reply(exc)
        if reply is None or self._sock is None:
            stats.dropped += 1
            return
        # RFC 3581 §4 behaviour for a reply we build ourselves: back to the packet's source
        if self.sendto(reply, addr[0], addr[1]):
            stats.bad_requests_answered += 1
            stats.sent += 1

    def sendto(self, data: bytes, host: str, port: int) -> bool:
        """Write one datagram to ``host``:``port``; see :meth:`send`."""
        return self.send(data, (host, port))

    def send(self, data: bytes, addr: tuple[str, int]) -> bool:
        """Write one datagram; False when the socket is gone. A full send buffer queues it
        (sent when the socket is writable again); errors the kernel reports are counted."""
        sock = self._sock
        if sock is None:
            return False
        if self._send_queue:
            self._queue(data, addr)
            return True
        try:
            sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._queue(data, addr)
        except OSError as exc:  # unreachable network, ICMP error of an earlier datagram...
            if exc.errno in _ASYNC_ERRORS and self._on_unreachable is not None:
                # most likely the pending ICMP error of an earlier datagram (IP_RECVERR), which
                # the kernel reports on the next call: this datagram was not sent. Read the error
                # queue after this call (reporting re-enters the stack, which may be mid-write)
                # and send this datagram again.
                if self._loop is not None and not self._errors_pending:
                    self._errors_pending = True
                    self._loop.call_soon(self._drain_errors)
                try:
                    sock.sendto(data, addr)
                    return True
                except (BlockingIOError, InterruptedError):
                    self._queue(data, addr)
                    return True
                except OSError:
                    pass
            self._stats.send_errors += 1
        return True

    def _drain_errors(self) -> None:
        self._errors_pending = False
        sock = self._sock
        if sock is not None and self._read_errors(sock):
            self._rearm(sock)

    def _queue(self, data: bytes, addr: tuple[str, int]) -> None:
        queue = self._send_queue
        if len(queue) >= _SEND_QUEUE_MAX:
            self._stats.send_errors += 1
            return
        if not queue and self._loop is not None and self._sock is not None:
            self._loop.add_writer(self._sock.fileno(), self._writable)
        queue.append((data, addr))

    def _writable(self) -> None:
        sock = self._sock
        queue = self._send_queue
        while queue and sock is not None:
            data, addr = queue[0]
            try:
                sock.sendto(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._stats.send_errors += 1
            queue.popleft()
        if self._loop is not None and sock is not None:
            self._loop.remove_writer(sock.fileno())

    def close(self) -> None:
        """Stop reading and close the socket (datagrams still queued for sending are dropped)."""
        sock = self._sock
        if sock is None:
            return
        self._sock = None
        if self._loop is not None and not self._loop.is_closed():
            self._loop.remove_reader(sock.fileno())
            if self._send_queue:
                self._loop.remove_writer(sock.fileno())
        self._send_queue.clear()
        sock.close()
