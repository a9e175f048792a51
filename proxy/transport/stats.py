"""Counters kept by the transports (plain ints: read them from a metrics collector)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

__all__ = ["TransportStats"]


@dataclass(slots=True)
class TransportStats:
    """What the transports did since start-up.

    Attributes:
        received: SIP messages parsed and handed to ``on_message``.
        sent: SIP messages handed to the operating system (including automatic 400s).
        parse_errors: datagrams or framed stream messages that failed to parse or frame.
        bad_requests_answered: malformed requests answered with 400 (or 505/513).
        dropped: input discarded without an answer (garbage, oversized, unanswerable errors).
        tcp_connections_open: TCP and TLS connections open now.
        tcp_connections_accepted: TCP and TLS connections accepted by listeners since start-up.
        tcp_connections_refused: accepted TCP/TLS connections closed at once because a limit
            was reached (all connections, or those of one source address).
        tcp_message_timeouts: TCP/TLS connections closed because a message (or an accepted
            connection's first one) did not arrive complete in time.
        keepalives: CRLF keep-alives received (answered on streams, ignored on UDP).
        send_errors: messages that could not be sent (no route, failed connect, full buffers,
            ICMP errors reported on UDP sockets).
    """

    received: int = 0
    sent: int = 0
    parse_errors: int = 0
    bad_requests_answered: int = 0
    dropped: int = 0
    tcp_connections_open: int = 0
    tcp_connections_accepted: int = 0
    tcp_connections_refused: int = 0
    tcp_message_timeouts: int = 0
    keepalives: int = 0
    send_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters by name."""
        return asdict(self)
