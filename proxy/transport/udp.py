"""SIP over UDP: one datagram endpoint per listening address (RFC 3261 §18)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any, cast

import structlog

from proxy.sip.errors import SipParseError
from proxy.sip.message import Request, Response
from proxy.sip.parser import parse_message

from .address import Address
from .replies import error_reply
from .stats import TransportStats

__all__ = ["UdpEndpoint"]

_log = structlog.get_logger(__name__)

#: Bigger than the Linux default (208 KiB) so a burst is queued, not dropped by the kernel;
#: capped by net.core.rmem_max.
_RECEIVE_BUFFER = 4 * 1024 * 1024

OnMessage = Callable[[Request | Response, Address], None]


class UdpEndpoint(asyncio.DatagramProtocol):
    """A listening UDP socket: parses each datagram and hands the message up.

    Also the socket that ``SipTransports.send`` writes UDP messages from, so that the source
    port of what sipmask sends is the port it listens on (§18.1.1, RFC 3581).
    """

    def __init__(self, on_message: OnMessage, stats: TransportStats, max_message_size: int) -> None:
        self._on_message = on_message
        self._stats = stats
        self._max_message_size = max_message_size
        self.transport: asyncio.DatagramTransport | None = None
        self.family = socket.AF_INET
        self.local: tuple[str, int] = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Remember the socket, its family and the bound address; enlarge the receive buffer."""
        # uvloop's transports do not subclass asyncio's ABCs: no isinstance check
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.family = sock.family
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECEIVE_BUFFER)
            except OSError:
                pass
        sockname = transport.get_extra_info("sockname")
        if sockname:
            self.local = (sockname[0], sockname[1])

    def datagram_received(self, data: bytes, addr: Any) -> None:
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
        except Exception:  # the parser promises SipParseError only; do not trust it with the loop
            stats.parse_errors += 1
            stats.dropped += 1
            return
        stats.received += 1
        try:
            self._on_message(message, Address("udp", addr[0], addr[1]))
        except Exception:
            _log.exception("transport.handler_failed", transport="udp")

    def _parse_failed(self, data: bytes, exc: SipParseError, addr: Any) -> None:
        stats = self._stats
        if not data.strip(b"\r\n"):
            # CRLF NAT keep-alives some user agents send over UDP: nothing to answer
            stats.keepalives += 1
            return
        stats.parse_errors += 1
        reply = error_reply(exc)
        if reply is None or self.transport is None:
            stats.dropped += 1
            return
        # RFC 3581 §4 behaviour for a reply we build ourselves: back to the packet's source
        self.transport.sendto(reply, addr)
        stats.bad_requests_answered += 1
        stats.sent += 1

    def sendto(self, data: bytes, host: str, port: int) -> bool:
        """Write one datagram; False when the socket is gone."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return False
        transport.sendto(data, (host, port))
        return True

    def error_received(self, exc: Exception) -> None:
        """ICMP errors (port unreachable...) for earlier sends: counted, nothing more to do."""
        self._stats.send_errors += 1

    def close(self) -> None:
        """Close the socket."""
        if self.transport is not None:
            self.transport.close()
