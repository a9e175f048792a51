"""The B2BUA's media relay over a fake rtpengine (proxy/media/bridge.py): the privacy options
on every offer and answer, results handed back through ``done`` and then a flush, answer and
delete sticky to the rtpengine of the call, a delete that waits for the offer in flight."""

from __future__ import annotations

import asyncio
from typing import Any

from proxy.config import MediaConfig
from proxy.media.bridge import MediaBridge
from proxy.media.ng import NgClient

from .test_media_ng import FakeEngine, engine, on_a_loop


def ok_sdp(cookie: bytes, command: dict[bytes, Any], n: int) -> bytes:
    return b"d3:sdp9:v=0 relay6:result2:oke" if command[b"command"] != b"delete" \
        else b"d6:result2:oke"


def bridge(*engines: FakeEngine, flags: tuple[str, ...] = ()) -> tuple[MediaBridge, list[str]]:
    flushes: list[str] = []
    client = NgClient([("127.0.0.1", e.port, 1) for e in engines], timeout_s=0.05, retries=1)
    return MediaBridge(client, MediaConfig(flags=flags), flush=lambda: flushes.append("f")), flushes


async def settle(media: MediaBridge) -> None:
    for _ in range(100):
        if not media._inflight:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("requests still in flight")


@on_a_loop
async def test_offer_and_answer_carry_the_privacy_options(closing: list[Any]) -> None:
    e = await engine(ok_sdp)
    media, flushes = bridge(e, flags=("SIP source address",))
    closing += [e, media.client]
    got: list[bytes | None] = []
    media.offer("k1", "ta", "tb", b"v=0 caller", lambda sdp, now: got.append(sdp))
    await settle(media)
    media.answer("k1", "ta", "tb", b"v=0 callee", lambda sdp, now: got.append(sdp))
    await settle(media)
    assert got == [b"v=0 relay", b"v=0 relay"] and flushes == ["f", "f"]
    offer, answer = (command for _, command in e.received)
    for command, name, sdp in ((offer, b"offer", b"v=0 caller"), (answer, b"answer", b"v=0 callee")):
        assert command[b"command"] == name and command[b"sdp"] == sdp
        assert (command[b"call-id"], command[b"from-tag"], command[b"to-tag"]) == (b"k1", b"ta", b"tb")
        assert command[b"replace"] == [b"origin", b"session connection"]
        assert command[b"ICE"] == b"remove" and command[b"generate RTCP"] == b"on"
        assert command[b"flags"] == [b"SIP source address"]
    assert media.sessions == 1


@on_a_loop
async def test_a_delete_waits_for_the_offer_in_flight_and_goes_to_its_rtpengine(
        closing: list[Any]) -> None:
    slow_answers: list[bytes] = []

    def slow(cookie: bytes, command: dict[bytes, Any], n: int) -> bytes | None:
        if command[b"command"] == b"offer" and n == 1:
            return None  # lost: the retry 50 ms later is answered
        slow_answers.append(command[b"command"])
        return ok_sdp(cookie, command, n)

    e = await engine(slow)
    media, _ = bridge(e)
    closing += [e, media.client]
    media.offer("k1", "ta", "tb", b"v=0", lambda sdp, now: None)
    media.delete("k1")  # the call was cancelled while its offer was out
    await settle(media)
    assert slow_answers == [b"offer", b"delete"] and media.sessions == 0


@on_a_loop
async def test_failures_come_back_as_none_and_an_answer_without_session_is_not_sent(
        closing: list[Any]) -> None:
    def silent(cookie: bytes, command: dict[bytes, Any], n: int) -> None:
        return None

    e = await engine(silent)
    media, flushes = bridge(e)
    closing += [e, media.client]
    got: list[bytes | None] = []
    media.offer("k1", "ta", "tb", b"v=0", lambda sdp, now: got.append(sdp))
    await settle(media)
    media.answer("k1", "ta", "tb", b"v=0", lambda sdp, now: got.append(sdp))
    media.delete("k1")
    await settle(media)
    assert got == [None, None] and flushes == ["f", "f"]
    assert [c[b"command"] for _, c in e.received] == [b"offer", b"offer"], "no answer, no delete"
    assert media.counts["failed"] == 2


@on_a_loop
async def test_a_done_that_raises_is_logged_and_the_stack_still_flushed(closing: list[Any]) -> None:
    e = await engine(ok_sdp)
    media, flushes = bridge(e)
    closing += [e, media.client]

    def broken(sdp: bytes | None, now: float) -> None:
        raise RuntimeError("resume failed")

    media.offer("k1", "ta", "tb", b"v=0", broken)
    await settle(media)
    assert flushes == ["f"]
