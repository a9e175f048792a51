"""SIP over UDP through real loopback sockets (RFC 3261 §18, RFC 3581)."""

from __future__ import annotations

import asyncio
import random
import socket
import sys
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar, cast

import pytest

from proxy.sip.message import Request, Response, build_response
from proxy.sip.parser import parse_message
from proxy.transport import Address, SipTransports, TransportStats

T = TypeVar("T")

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None  # type: ignore[assignment]

LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skipif(uvloop is None, reason="no uvloop"))]


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="kernel has no IPv6 loopback")


def run(coro: Coroutine[Any, Any, T], loop: str = "asyncio", timeout: float = 10.0) -> T:
    """Run a test coroutine on a fresh loop with a hard timeout."""

    async def guarded() -> T:
        return await asyncio.wait_for(coro, timeout)

    factory = uvloop.new_event_loop if loop == "uvloop" else None
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(guarded())


def options(n: int = 1, host: str = "127.0.0.1", port: int = 5099, transport: str = "UDP") -> bytes:
    via_host = f"[{host}]" if ":" in host else host
    return (
        f"OPTIONS sip:sipmask@{via_host} SIP/2.0\r\n"
        f"Via: SIP/2.0/{transport} {via_host}:{port};branch=z9hG4bK-{n};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{via_host}>;tag=f{n}\r\n"
        f"To: <sip:sipmask@{via_host}>\r\n"
        f"Call-ID: call-{n}@test\r\n"
        f"CSeq: {n} OPTIONS\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


class UdpPeer(asyncio.DatagramProtocol):
    """A bare UDP socket that queues what it receives."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[tuple[bytes, tuple[str, int]]] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's ABCs: no isinstance check
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.queue.put_nowait((data, (addr[0], addr[1])))

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    async def recv(self, timeout: float = 2.0) -> tuple[bytes, tuple[str, int]]:
        return await asyncio.wait_for(self.queue.get(), timeout)


async def udp_peer(host: str = "127.0.0.1") -> tuple[UdpPeer, tuple[str, int]]:
    loop = asyncio.get_running_loop()
    transport, peer = await loop.create_datagram_endpoint(UdpPeer, local_addr=(host, 0))
    sockname = transport.get_extra_info("sockname")
    return peer, (sockname[0], sockname[1])


def echo_server(
    received: list[tuple[Request | Response, Address]] | None = None,
) -> tuple[SipTransports, list[tuple[Request | Response, Address]]]:
    """Transports that answer every request with 200 OK, sent back to the source address."""
    got: list[tuple[Request | Response, Address]] = received if received is not None else []

    def on_message(message: Request | Response, source: Address, delay: float = 0.0) -> None:
        got.append((message, source))
        if isinstance(message, Request):
            transports.send(build_response(message, 200, to_tag="srv"), source)

    transports = SipTransports(on_message)
    return transports, got


async def until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    """Wait until ``predicate()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.002)


async def _close(*things: SipTransports | UdpPeer) -> None:
    for thing in things:
        if isinstance(thing, SipTransports):
            await thing.close()
        elif thing.transport is not None:
            thing.transport.close()


# -- round trips -------------------------------------------------------------------------------


@pytest.mark.parametrize("loop", LOOPS)
def test_udp_options_answered_from_listening_port(loop: str) -> None:
    async def scenario() -> None:
        server, got = echo_server()
        host, port = await server.listen("udp", "127.0.0.1", 0)
        assert host == "127.0.0.1" and port > 0
        assert server.local_address("udp") == (host, port)
        peer, peer_addr = await udp_peer()
        try:
            peer.send(options(1, port=peer_addr[1]), (host, port))
            data, source = await peer.recv()
            # §18.1.1 / RFC 3581: the reply leaves from the port sipmask listens on
            assert source == (host, port)
            reply = parse_message(data)
            assert isinstance(reply, Response) and reply.status == 200
            assert reply.headers.get("via") == f"SIP/2.0/UDP 127.0.0.1:{peer_addr[1]};branch=z9hG4bK-1;rport"
            assert reply.call_id == "call-1@test"
            message, source_address = got[0]
            assert isinstance(message, Request) and message.method == "OPTIONS"
            assert source_address == Address("udp", "127.0.0.1", peer_addr[1])
            assert server.stats.received == 1 and server.stats.sent == 1
        finally:
            await _close(server, peer)

    run(scenario(), loop)


@needs_ipv6
def test_udp_ipv6_round_trip() -> None:
    async def scenario() -> None:
        server, got = echo_server()
        await server.listen("udp", "127.0.0.1", 0)  # both families: replies pick the v6 socket
        host, port = await server.listen("udp", "::1", 0)
        assert host == "::1"
        peer, peer_addr = await udp_peer("::1")
        try:
            peer.send(options(6, host="::1", port=peer_addr[1]), (host, port))
            data, source = await peer.recv()
            assert source == ("::1", port)
            reply = parse_message(data)
            assert isinstance(reply, Response) and reply.status == 200
            assert got[0][1] == Address("udp", "::1", peer_addr[1])  # no brackets
            # bracketed host in a destination is accepted as well
            server.send(options(7, host="::1"), Address("udp", "[::1]", peer_addr[1]))
            data, _ = await peer.recv()
            assert parse_message(data).call_id == "call-7@test"
        finally:
            await _close(server, peer)

    run(scenario())


def test_udp_send_resolves_host_names_and_reports_missing_family() -> None:
    async def scenario() -> None:
        failed: list[Address] = []
        server = SipTransports(lambda m, s, *_: None, on_send_error=failed.append)
        await server.listen("udp", "127.0.0.1", 0)
        peer, peer_addr = await udp_peer()
        try:
            server.send(options(3), Address("udp", "localhost", peer_addr[1]))
            data, _ = await peer.recv()
            assert parse_message(data).call_id == "call-3@test"
            # no IPv6 listener: cannot send from the right socket, so it is an error, not a guess
            dest = Address("udp", "::1", 5060)
            server.send(options(4), dest)
            assert failed == [dest] and server.stats.send_errors == 1
            server.send(options(5), Address("carrier-pigeon", "127.0.0.1", 1))
            assert server.stats.send_errors == 2
        finally:
            await _close(server, peer)

    run(scenario())


def test_udp_sends_reuse_a_destinations_route_until_the_sockets_close() -> None:
    """The socket and socket address of a destination are worked out once (bracketed IPv6
    or not, which family): later datagrams to it take them from a table. Closing the
    transports forgets the table: a send then fails cleanly (counted, reported)."""

    async def scenario() -> None:
        failed: list[Address] = []
        server = SipTransports(lambda m, s, *_: None, on_send_error=failed.append)
        await server.listen("udp", "127.0.0.1", 0)
        peer, peer_addr = await udp_peer()
        dest = Address("udp", "127.0.0.1", peer_addr[1])
        try:
            for n in (1, 2, 3):
                server.send(options(n), dest)
                data, _ = await peer.recv()
                assert parse_message(data).call_id == f"call-{n}@test"
            assert server.stats.sent == 3 and len(server._udp_routes) == 1
        finally:
            await _close(server, peer)
        assert server._udp_routes == {}
        server.send(options(4), dest)
        assert failed == [dest] and server.stats.send_errors == 1

    run(scenario())


# -- malformed input ---------------------------------------------------------------------------

BAD_MAX_FORWARDS = (
    b"INVITE sip:+15550001111@sipmask SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-bad;rport\r\n"
    b"Via: SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-lower\r\n"
    b"Max-Forwards: lots\r\n"
    b"From: <sip:+15550002222@carrier>;tag=abc\r\n"
    b"To: <sip:+15550001111@sipmask>\r\n"
    b"Call-ID: bad-1@test\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def test_udp_malformed_request_answered_with_400_naming_the_problem() -> None:
    async def scenario() -> None:
        server, got = echo_server()
        host, port = await server.listen("udp", "127.0.0.1", 0)
        peer, _ = await udp_peer()
        try:
            peer.send(BAD_MAX_FORWARDS, (host, port))
            data, source = await peer.recv()
            assert source == (host, port)
            assert data.startswith(b"SIP/2.0 400 Invalid Max-Forwards header\r\n")
            reply = parse_message(data)
            assert isinstance(reply, Response)
            # §8.2.6.1: every Via copied, in order
            assert reply.headers.get_all("via") == [
                "SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-bad;rport",
                "SIP/2.0/UDP 10.0.0.9:5060;branch=z9hG4bK-lower",
            ]
            assert reply.call_id == "bad-1@test" and str(reply.cseq) == "1 INVITE"
            assert reply.to_tag  # §8.2.6.2
            assert got == []
            assert server.stats.parse_errors == 1 and server.stats.bad_requests_answered == 1
            assert server.stats.received == 0
        finally:
            await _close(server, peer)

    run(scenario())


def test_udp_garbage_dropped_and_counted() -> None:
    junk = [
        b"\x00\x01\x02 not sip at all",
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n",  # no From/To/...
        b"SIP/2.0 200 OK\r\nMax-Forwards: x\r\n\r\n",  # responses are never answered
        b"ACK sip:x@y SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: <sip:c@d>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",  # ACK: never answered
        options(9) + b"x" * 2000,  # larger than max_message_size below
    ]

    async def scenario() -> None:
        got: list[object] = []
        server = SipTransports(lambda m, s, *_: got.append(m), max_message_size=1500)
        host, port = await server.listen("udp", "127.0.0.1", 0)
        peer, _ = await udp_peer()
        try:
            for datagram in junk:
                peer.send(datagram, (host, port))
            peer.send(b"\r\n\r\n", (host, port))  # CRLF NAT keep-alive: ignored, not an error
            peer.send(options(10), (host, port))
            await until(lambda: len(got) == 1)
            stats = server.stats
            assert stats.dropped == len(junk)
            assert stats.parse_errors == len(junk) - 1  # the oversized one is never parsed
            assert stats.keepalives == 1 and stats.bad_requests_answered == 0
            assert peer.queue.empty()
        finally:
            await _close(server, peer)

    run(scenario())


def test_udp_handler_exception_does_not_stop_the_endpoint() -> None:
    async def scenario() -> None:
        calls: list[str] = []

        def on_message(message: Request | Response, source: Address, delay: float = 0.0) -> None:
            calls.append(message.call_id)
            if len(calls) == 1:
                raise RuntimeError("bug above the transport")

        server = SipTransports(on_message)
        host, port = await server.listen("udp", "127.0.0.1", 0)
        peer, _ = await udp_peer()
        try:
            peer.send(options(1), (host, port))
            peer.send(options(2), (host, port))
            await until(lambda: len(calls) == 2)
        finally:
            await _close(server, peer)

    run(scenario())


def _junk(rng: random.Random, i: int) -> bytes:
    kind = i % 5
    if kind == 0:
        return rng.randbytes(rng.randint(1, 600))
    if kind == 1:  # a valid message cut short
        good = options(i)
        return good[: rng.randint(1, len(good) - 25)]
    if kind == 2:  # header lines shuffled into the start line
        return b"Via: SIP/2.0/UDP x\r\n" + options(i)
    if kind == 3:  # answerable: everything a 400 needs, broken CSeq method
        return options(i).replace(f"CSeq: {i} OPTIONS".encode(), f"CSeq: {i} INVITE".encode())
    return bytes(b ^ 0x55 for b in options(i))


@pytest.mark.parametrize("loop", LOOPS)
def test_udp_garbage_flood_does_not_stop_good_traffic(loop: str) -> None:
    rounds, junk_per_round = 100, 30

    async def scenario() -> None:
        got: list[str] = []
        stats = TransportStats()
        server = SipTransports(lambda m, s, *_: got.append(m.call_id), stats=stats)
        host, port = await server.listen("udp", "127.0.0.1", 0)
        peer, _ = await udp_peer()
        rng = random.Random(3261)
        sent = 0

        def handled() -> int:
            return stats.received + stats.dropped + stats.bad_requests_answered

        try:
            for r in range(rounds):
                for j in range(junk_per_round):
                    peer.send(_junk(rng, r * junk_per_round + j), (host, port))
                peer.send(options(100_000 + r), (host, port))
                sent += junk_per_round + 1
                # paced by what the server has handled, so the kernel never drops for us
                await until(lambda sent=sent: handled() == sent, timeout=5.0)
            assert got == [f"call-{100_000 + r}@test" for r in range(rounds)]
            assert stats.parse_errors == rounds * junk_per_round
            assert stats.bad_requests_answered == rounds * junk_per_round // 5
        finally:
            await _close(server, peer)

    run(scenario(), loop, timeout=15.0)


# -- queue delay (the overload signal) ---------------------------------------------------------


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_TIMESTAMPNS is Linux's")
@pytest.mark.parametrize("loop", LOOPS)
def test_udp_reports_how_long_each_invite_queued_before_it_was_read(loop: str) -> None:
    """The kernel's receive time of each INVITE (SO_TIMESTAMPNS) gives how long it waited in
    the socket queue: what admission control refuses new calls on (proxy/b2bua/overload.py).
    Other requests are not screened: their delay is not computed (0.0)."""

    def invite(n: int, port: int) -> bytes:
        return options(n, port=port).replace(b"OPTIONS", b"INVITE")

    async def scenario() -> None:
        delays: list[tuple[str, float]] = []
        server = SipTransports(lambda m, s, delay=0.0: delays.append((m.call_id, delay)))
        host, port = await server.listen("udp", "127.0.0.1", 0)
        peer, peer_addr = await udp_peer()
        try:
            peer.send(invite(1, peer_addr[1]), (host, port))
            await until(lambda: len(delays) == 1)
            peer.send(invite(2, peer_addr[1]), (host, port))
            peer.send(options(3, port=peer_addr[1]), (host, port))
            time.sleep(0.3)  # noqa: ASYNC251 - the loop is busy elsewhere: the datagrams wait in the kernel
            await until(lambda: len(delays) == 3)
        finally:
            await _close(server, peer)
        (_, prompt), (cid, queued), (other_cid, other) = delays
        assert cid == "call-2@test" and other_cid == "call-3@test"
        assert queued >= 0.29, queued
        assert 0.0 <= prompt < queued, (prompt, queued)
        assert other == 0.0

    run(scenario(), loop)


def test_udp_send_queue_keeps_order_when_the_socket_buffer_is_full() -> None:
    """A full send buffer (EAGAIN) queues datagrams, in order, until the socket is writable;
    past the queue's bound they are dropped and counted, never raised."""
    from proxy.transport import udp

    class FullOnce:
        def __init__(self) -> None:
            self.sent: list[bytes] = []
            self.full = True

        def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
            if self.full:
                raise BlockingIOError
            self.sent.append(data)
            return len(data)

        def fileno(self) -> int:
            return 99

    class Loop:
        def __init__(self) -> None:
            self.writers: dict[int, Callable[[], None]] = {}

        def add_writer(self, fd: int, callback: Callable[[], None]) -> None:
            self.writers[fd] = callback

        def remove_writer(self, fd: int) -> None:
            del self.writers[fd]

    stats = TransportStats()
    endpoint = udp.UdpEndpoint(lambda *a: None, stats, 65535)
    sock, loop = FullOnce(), Loop()
    endpoint._sock, endpoint._loop = sock, loop  # type: ignore[assignment]
    assert endpoint.sendto(b"1", "127.0.0.1", 5060) and endpoint.sendto(b"2", "127.0.0.1", 5060)
    assert sock.sent == [] and 99 in loop.writers, "queued, waiting for the socket"
    sock.full = False
    assert endpoint.sendto(b"3", "127.0.0.1", 5060)
    assert sock.sent == [], "behind the queue, not ahead of it"
    loop.writers[99]()
    assert sock.sent == [b"1", b"2", b"3"] and loop.writers == {}
    sock.full = True
    for _ in range(udp._SEND_QUEUE_MAX + 5):
        endpoint.sendto(b"x", "127.0.0.1", 5060)
    assert stats.send_errors == 5


def test_udp_sources_are_one_address_per_peer_and_the_memory_of_them_is_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Messages from one peer socket carry one shared Address (built once, not per datagram);
    two peers get their own; the table of them is bounded (addresses come from the network)."""
    import proxy.transport.udp as udp

    monkeypatch.setattr(udp, "_SOURCES_MAX", 2)

    async def scenario() -> None:
        sources: list[Address] = []
        server = SipTransports(lambda m, s, delay=0.0: sources.append(s))
        host, port = await server.listen("udp", "127.0.0.1", 0)
        peers = [await udp_peer() for _ in range(3)]
        (endpoint,) = server._udp
        try:
            for n, (peer, addr) in enumerate(peers[:2] * 2 + peers[2:]):
                peer.send(options(n, port=addr[1]), (host, port))
                await until(lambda n=n: len(sources) == n + 1)
        finally:
            await _close(server, *(peer for peer, _ in peers))
        first, second, first_again, second_again, third = sources
        assert first == Address("udp", "127.0.0.1", peers[0][1][1])
        assert second == Address("udp", "127.0.0.1", peers[1][1][1]) != first
        assert first_again is first and second_again is second
        assert third == Address("udp", "127.0.0.1", peers[2][1][1])
        assert len(endpoint._sources) == 1  # full at the third peer: forgotten all at once

    run(scenario())


async def until_true(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


@pytest.mark.parametrize("loop", LOOPS)
def test_udp_icmp_port_unreachable_is_reported_for_its_destination_and_loses_nothing(loop: str) -> None:
    """A datagram to a closed port draws ICMP port unreachable: the transports report that
    destination at once (IP_RECVERR), so its transactions can fail over without waiting for
    Timer B, and the next datagrams, to that or another peer, still go out."""
    async def scenario() -> None:
        errors: list[Address] = []
        got: list[Request | Response] = []
        server = SipTransports(lambda m, s, d=0.0: got.append(m), on_send_error=errors.append)
        await server.listen("udp", "127.0.0.1", 0)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as gone:
            gone.bind(("127.0.0.1", 0))
            dead_port = gone.getsockname()[1]
        peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        peer.bind(("127.0.0.1", 0))
        peer.setblocking(False)
        try:
            dead = Address("udp", "127.0.0.1", dead_port)
            server.send(options(1), dead)
            deadline = asyncio.get_running_loop().time() + 2
            while not errors and asyncio.get_running_loop().time() < deadline:
                await asyncio.sleep(0.01)
            assert errors == [dead]
            # a datagram sent right after a fresh ICMP error is not lost to the pending error
            server.send(options(2), dead)
            server.send(options(3), Address("udp", "127.0.0.1", peer.getsockname()[1]))
            loop_ = asyncio.get_running_loop()
            data = await asyncio.wait_for(loop_.sock_recv(peer, 65535), 2)
            assert b"call-3@test" in data
            await asyncio.sleep(0.1)
            assert errors == [dead, dead]
            # and the socket still reads (libuv stops a poll handle on POLLERR)
            peer.sendto(options(4), ("127.0.0.1", server.local_address("udp")[1]))
            await until_true(lambda: len(got) == 1)
        finally:
            peer.close()
            await server.close()

    run(scenario(), loop)


def test_udp_damaged_request_line_answered_400_when_the_headers_allow_else_dropped() -> None:
    # RFC 4475 §3.1.2.7 (ltgtruri) and §3.1.2.9 (lwsstart): answered 400, not dropped nor 404
    def damaged(start: bytes, n: int, *, call_id: bool = True, method: str = "INVITE") -> bytes:
        return (
            start + b"\r\n"
            b"Via: SIP/2.0/UDP 127.0.0.1:5099;branch=z9hG4bK-d%d;rport\r\n" % n
            + b"From: <sip:a@127.0.0.1>;tag=f\r\nTo: <sip:b@127.0.0.1>\r\n"
            + (b"Call-ID: dmg-%d@test\r\n" % n if call_id else b"")
            + b"CSeq: 1 %s\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n" % method.encode()
        )

    async def scenario() -> None:
        server, got = echo_server()
        host, port = await server.listen("udp", "127.0.0.1", 0)
        peer, _ = await udp_peer()
        try:
            peer.send(damaged(b"INVITE <sip:user@127.0.0.1> SIP/2.0", 1), (host, port))
            data, _ = await peer.recv()
            assert data.startswith(b"SIP/2.0 400 Bad Request-URI\r\n")
            reply = parse_message(data)
            assert reply.call_id == "dmg-1@test" and reply.to_tag
            peer.send(damaged(b"INVITE  sip:user@127.0.0.1  SIP/2.0", 2), (host, port))
            data, _ = await peer.recv()
            assert data.startswith(b"SIP/2.0 400 Malformed request line\r\n")
            # no Call-ID: no response can be built; an ACK: never answered
            peer.send(damaged(b"INVITE <sip:user@127.0.0.1> SIP/2.0", 3, call_id=False), (host, port))
            peer.send(damaged(b"ACK  sip:user@127.0.0.1 SIP/2.0", 4, method="ACK"), (host, port))
            peer.send(damaged(b"A(K sip:user@127.0.0.1 SIP/2.0", 5, method="ACK"), (host, port))
            peer.send(options(6), (host, port))
            data, _ = await peer.recv()
            assert data.startswith(b"SIP/2.0 200 OK\r\n")  # the three above got nothing
            stats = server.stats
            assert stats.bad_requests_answered == 2 and stats.dropped == 3
            assert stats.parse_errors == 5 and len(got) == 1
        finally:
            await _close(server, peer)

    run(scenario())
