"""The ng client (proxy/media/ng.py) against fake rtpengines on loopback: cookies, retries
under one cookie, replies matched by cookie, failover, marking down, ping; and the reply
decoder, which must read rtpengine's unsorted dictionaries."""

from __future__ import annotations

import asyncio
import functools
import inspect
import random
from collections.abc import Callable, Coroutine
from typing import Any

import bencodepy  # type: ignore[import-untyped]
import pytest

from proxy.media.ng import NgClient, NgError, NgUnavailable


class FakeEngine(asyncio.DatagramProtocol):
    """An ng server: records each datagram, answers through ``reply`` (None: stay silent)."""

    def __init__(self, reply: Callable[[bytes, dict[bytes, Any], int], bytes | None]) -> None:
        self.reply = reply
        self.received: list[tuple[bytes, dict[bytes, Any]]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        cookie, _, body = data.partition(b" ")
        command = bencodepy.decode(body)
        self.received.append((cookie, command))
        answer = self.reply(cookie, command, len(self.received))
        if answer is not None and self.transport is not None:
            self.transport.sendto(cookie + b" " + answer, addr)

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def engine(reply: Callable[[bytes, dict[bytes, Any], int], bytes | None]) -> FakeEngine:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_datagram_endpoint(lambda: FakeEngine(reply),
                                                   local_addr=("127.0.0.1", 0))
    return proto


def pong(cookie: bytes, command: dict[bytes, Any], n: int) -> bytes:
    # rtpengine's own key order: "sdp" before "result" (bencode.py reads any order; bencode2 and fastbencode refuse it)
    if command[b"command"] == b"ping":
        return b"d6:result4:ponge"
    return b"d3:sdp5:v=0\r\n6:result2:oke"


def silent(cookie: bytes, command: dict[bytes, Any], n: int) -> bytes | None:
    return None


def on_a_loop(test: Callable[[list[Any]], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    """Run an async test on a fresh loop; what it puts in its list is closed afterwards (no
    async plugin: a bare ``async def test`` would be collected and never awaited)."""

    @functools.wraps(test)
    def run() -> None:
        async def main() -> None:
            closing: list[Any] = []
            try:
                await test(closing)
            finally:
                for thing in closing:
                    thing.close()

        asyncio.run(main())

    run.__signature__ = inspect.Signature()  # type: ignore[attr-defined]
    return run


def client(*engines: FakeEngine, weights: tuple[int, ...] = (), **kw: Any) -> NgClient:
    specs = [("127.0.0.1", e.port, weights[i] if weights else 1) for i, e in enumerate(engines)]
    kw.setdefault("timeout_s", 0.05)
    kw.setdefault("retries", 2)
    return NgClient(specs, rng=random.Random(7), **kw)


@on_a_loop
async def test_a_reply_in_rtpengines_key_order_is_read(closing: list[Any]) -> None:
    e = await engine(pong)
    c = client(e)
    closing += [e, c]
    reply, answered = await c.request({"command": "offer", "call-id": "k", "sdp": b"v=0"})
    assert reply == {"sdp": "v=0\r\n", "result": "ok"} and answered is c.engines[0]
    assert e.received[0][1] == {b"command": b"offer", b"call-id": b"k", b"sdp": b"v=0"}


@on_a_loop
async def test_each_request_has_its_own_cookie(closing: list[Any]) -> None:
    e = await engine(pong)
    c = client(e)
    closing += [e, c]
    await asyncio.gather(*(c.request({"command": "ping"}) for _ in range(5)))
    cookies = [cookie for cookie, _ in e.received]
    assert len(set(cookies)) == 5


@on_a_loop
async def test_a_lost_request_is_retried_under_the_same_cookie(closing: list[Any]) -> None:
    def second_time(cookie: bytes, command: dict[bytes, Any], n: int) -> bytes | None:
        return pong(cookie, command, n) if n == 2 else None

    e = await engine(second_time)
    c = client(e)
    closing += [e, c]
    reply, _ = await c.request({"command": "offer"})
    assert reply["result"] == "ok"
    first, second = (cookie for cookie, _ in e.received)
    assert first == second, "same cookie: rtpengine answers a repeat from its cache"
    assert c.counts["requests"] == 2 and c.counts["timeouts"] == 0


@on_a_loop
async def test_replies_are_matched_by_cookie_not_by_order(closing: list[Any]) -> None:
    held: list[tuple[bytes, Any]] = []

    def hold(cookie: bytes, command: dict[bytes, Any], n: int) -> bytes | None:
        held.append((cookie, command[b"call-id"]))
        return None

    e = await engine(hold)
    c = client(e, timeout_s=1.0)
    closing += [e, c]
    first = asyncio.ensure_future(c.request({"command": "query", "call-id": "one"}))
    second = asyncio.ensure_future(c.request({"command": "query", "call-id": "two"}))
    while len(held) < 2:
        await asyncio.sleep(0.005)
    # answer the second first, plus a reply nobody asked for
    for cookie, call_id in [held[1], (b"nobody_1", b"x"), held[0]]:
        c.reply_received(cookie + b" d7:call-id" + bytes([48 + len(call_id)]) + b":" + call_id
                         + b"6:result2:oke")
    assert (await first)[0]["call-id"] == "one"
    assert (await second)[0]["call-id"] == "two"
    assert c.counts["stray_replies"] == 1


@on_a_loop
async def test_silence_fails_over_to_the_next_and_marks_the_first_down(closing: list[Any]) -> None:
    now = [100.0]
    dead = await engine(silent)
    alive = await engine(pong)
    c = client(dead, alive, weights=(1000, 1), clock=lambda: now[0], down_s=10.0)
    closing += [dead, alive, c]
    reply, answered = await c.request({"command": "offer"})
    assert answered is c.engines[1] and reply["result"] == "ok"
    assert len(dead.received) == 3, "first send + 2 retries before giving up on it"
    assert c.counts["timeouts"] == 1 and not c.up(c.engines[0])
    await c.request({"command": "offer"})
    assert len(dead.received) == 3, "marked down: no new request for it"
    now[0] += 10.0
    assert c.up(c.engines[0]), "tried again after down_s"


@on_a_loop
async def test_a_sticky_request_does_not_fail_over(closing: list[Any]) -> None:
    dead = await engine(silent)
    alive = await engine(pong)
    c = client(dead, alive)
    closing += [dead, alive, c]
    with pytest.raises(NgUnavailable):
        await c.request({"command": "answer"}, sticky=c.engines[0])
    assert alive.received == []


@on_a_loop
async def test_all_silent_is_unavailable_within_the_timeouts(closing: list[Any]) -> None:
    e1, e2 = await engine(silent), await engine(silent)
    c = client(e1, e2)
    closing += [e1, e2, c]
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NgUnavailable):
        await c.request({"command": "offer"})
    assert loop.time() - started < 2 * 3 * 0.05 + 0.5
    assert c.counts["unavailable"] == 1
    with pytest.raises(NgUnavailable):  # both marked down: refused at once
        await c.request({"command": "offer"})
    assert len(e1.received) + len(e2.received) == 6


@on_a_loop
async def test_nothing_listening_fails_fast_on_icmp_unreachable(closing: list[Any]) -> None:
    e = await engine(pong)
    port = e.port
    e.close()  # the port is free now: the kernel answers ICMP port unreachable
    c = NgClient([("127.0.0.1", port, 1)], timeout_s=1.0, retries=2)
    closing.append(c)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(NgUnavailable):
        await c.request({"command": "ping"})
    assert loop.time() - started < 1.5, "refused before the second attempt's timeout"
    assert c.counts["refused"] == 1 and c.counts["timeouts"] == 0


@on_a_loop
async def test_an_error_result_raises_with_its_reason_and_no_failover(closing: list[Any]) -> None:
    def refuse(cookie: bytes, command: dict[bytes, Any], n: int) -> bytes:
        return b"d6:result5:error12:error-reason12:Unknown calle"

    bad, good = await engine(refuse), await engine(pong)
    c = client(bad, good, weights=(1000, 1))
    closing += [bad, good, c]
    with pytest.raises(NgError, match="Unknown call"):
        await c.request({"command": "delete"})
    assert good.received == [] and c.counts["errors"] == 1


@on_a_loop
async def test_ping_is_true_when_one_answers(closing: list[Any]) -> None:
    dead, alive = await engine(silent), await engine(pong)
    c = client(dead, alive)
    closing += [dead, alive, c]
    assert await c.ping() is True
    c2 = client(dead)
    closing.append(c2)
    assert await c2.ping() is False


@pytest.mark.parametrize("bad", [b"", b"i", b"i01e", b"5:abc", b"l", b"d1:a", b"x", b"1:ab",
                                 b"l" * 2000 + b"e" * 2000, b"i1ei2e", b"le", b"4:spam"])
def test_a_reply_that_is_not_one_bencoded_dict_is_counted_not_taken(bad: bytes) -> None:
    """A datagram whose body does not decode to one dictionary resolves no request (the
    request retries or fails over as for no reply) and is counted."""
    loop = asyncio.new_event_loop()
    try:
        c = NgClient([("127.0.0.1", 9, 1)])
        future: asyncio.Future[Any] = loop.create_future()
        c._pending[b"k1"] = (c.engines[0], future)
        c.reply_received(b"k1 " + bad)
        assert not future.done() and c.counts["stray_replies"] == 1
        c.reply_received(b"k1 d6:result2:oke")
        assert future.result() == {"result": "ok"}
    finally:
        loop.close()
