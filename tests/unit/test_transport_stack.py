"""SipStack over real loopback UDP: what a read batch queues is written after the batch.

The UDP endpoint reads up to ``_BATCH`` datagrams per readiness callback; the stack handles
each one (``on_datagram``) and writes the responses they queued once the batch is done
(``end_batch``), in one burst. Streams and lone datagrams are answered at once.
"""

from __future__ import annotations

import asyncio
import socket
import time

from proxy.sip.ids import SecretIds
from proxy.sip.message import Request, build_response
from proxy.sip.parser import parse_message
from proxy.sip.transaction import Address, RequestReceived, TimerConfig, TransactionLayer
from proxy.transport import SipTransports
from proxy.transport.stack import SipStack

from .test_transport_udp import options, run, until


class Answering:
    """A transaction user answering every request 200, noting the order of events."""

    def __init__(self, layer: TransactionLayer, log: list[str]) -> None:
        self.layer = layer
        self.log = log

    def handle(self, event: object, now: float) -> None:
        if isinstance(event, RequestReceived) and event.transaction is not None:
            self.log.append(f"handled {event.request.call_id}")
            response = build_response(event.request, 200, to_tag="t")
            self.layer.send_response(event.transaction, response, now)

    def next_deadline(self) -> float | None:
        return None

    def handle_timers(self, now: float) -> None:
        pass


async def _stack(log: list[str]) -> tuple[SipTransports, SipStack, list[tuple[float, float]], tuple[str, int]]:
    loop = asyncio.get_running_loop()
    layer = TransactionLayer(TimerConfig(), SecretIds(lambda n: bytes(n)))
    transports = SipTransports(lambda *a: None)
    real_send = transports.send

    def send(message: object, dest: Address) -> None:
        log.append(f"sent {message.call_id}")  # type: ignore[attr-defined]
        real_send(message, dest)  # type: ignore[arg-type]

    stack = SipStack(layer, send, loop)
    stack.attach(Answering(layer, log))
    busy: list[tuple[float, float]] = []
    stack.on_busy = lambda seconds, now: busy.append((seconds, now))
    transports.on_message = stack.on_message
    transports.on_datagram = stack.on_datagram
    transports.on_batch_end = stack.end_batch
    bound = await transports.listen("udp", "127.0.0.1", 0)
    return transports, stack, busy, bound


def test_responses_of_a_read_batch_are_written_after_the_batch() -> None:
    """Five requests that queued in the kernel while the loop was busy are read in one batch:
    all five are handled before the first response is written, each is answered once, and
    the load signal gets one sample for the batch."""

    async def scenario() -> None:
        log: list[str] = []
        transports, _stack_, busy, (host, port) = await _stack(log)
        peer, peer_port = _peer()
        try:
            for n in range(5):
                peer.sendto(options(n, port=peer_port), (host, port))
            time.sleep(0.05)  # noqa: ASYNC251 - the loop is not running: all five wait in the socket queue
            await until(lambda: log.count("sent call-4@test") == 1)
            answers = []
            for _ in range(5):
                await until(lambda: _readable(peer))
                answers.append(parse_message(peer.recv(65535)))
        finally:
            peer.close()
            await transports.close()
        assert log == [f"handled call-{n}@test" for n in range(5)] + [f"sent call-{n}@test" for n in range(5)]
        assert sorted(a.call_id for a in answers) == [f"call-{n}@test" for n in range(5)]
        assert all(getattr(a, "status", None) == 200 for a in answers)
        assert len(busy) == 1 and busy[0][0] > 0

    run(scenario())


def test_a_lone_datagram_is_answered_at_once_and_streams_per_message() -> None:
    """One request, then another after its answer: each batch holds one datagram, answered
    before the next is read. ``on_message`` (streams) writes what each message queued."""

    async def scenario() -> None:
        log: list[str] = []
        transports, stack, busy, (host, port) = await _stack(log)
        peer, peer_port = _peer()
        try:
            for n in range(2):
                peer.sendto(options(n, port=peer_port), (host, port))
                await until(lambda: _readable(peer))
                assert parse_message(peer.recv(65535)).call_id == f"call-{n}@test"
            request = parse_message(options(7, port=peer_port))
            assert isinstance(request, Request)
            stack.on_message(request, Address("udp", "127.0.0.1", peer_port))
            assert log[-1] == "sent call-7@test"  # written before on_message returned
            await until(lambda: _readable(peer))
            assert parse_message(peer.recv(65535)).call_id == "call-7@test"
        finally:
            peer.close()
            await transports.close()
        assert log[:4] == ["handled call-0@test", "sent call-0@test", "handled call-1@test", "sent call-1@test"]
        assert len(busy) == 3

    run(scenario())


def _peer() -> tuple[socket.socket, int]:
    """A non-blocking UDP socket on loopback, and its port."""
    peer = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    peer.bind(("127.0.0.1", 0))
    peer.setblocking(False)
    return peer, peer.getsockname()[1]


def _readable(sock: socket.socket) -> bool:
    try:
        sock.recv(65535, socket.MSG_PEEK)
    except BlockingIOError:
        return False
    return True
