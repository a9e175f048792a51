"""A session's call policy in the call path, sans-IO with a fake clock (the harness's wall
clock is its `now`: 1000.0 is Thursday 1970-01-01 00:16:40 UTC): calling windows and one-way
sessions get the uniform answer with the reason counted, the session's ring timeout and call
limit replace the config's, and a single-use session closes when its call is answered."""

from __future__ import annotations

import asyncio
from pathlib import Path

from proxy.pairing.model import Participant
from proxy.pairing.policy import parse_policy
from proxy.sip.message import Request, Response

from .b2bua_harness import (
    CALLEE,
    CALLEE_V,
    CALLER,
    CALLER_V,
    GW1,
    A,
    Harness,
    ack_from_caller,
    invite,
    only,
    response_to,
)


def with_policy(tmp_path: Path, **policy: object) -> Harness:
    """The harness, its session replaced by one with `policy` (the same numbers)."""
    h = Harness(tmp_path)
    h.service.close(h.session.id)
    h.session = h.service.create(Participant(CALLER, CALLER_V), Participant(CALLEE, CALLEE_V),
                                 policy=parse_policy(policy))
    return h


def window(start: str, end: str, days: str = "thu") -> dict[str, str]:
    return {"days": days, "from": start, "to": end, "tz": "UTC"}


def refused(h: Harness, out: list[tuple[Request | Response, object]]) -> bool:
    """The caller got the uniform answer and no INVITE left toward the callee."""
    code = h.b2b.calls_cfg.unknown_code
    return bool(only(out, Response, status=code)) and not only(out, Request, method="INVITE")


def test_a_call_inside_its_window_is_bridged(tmp_path: Path) -> None:
    h = with_policy(tmp_path, calling_windows=[window("00:00", "01:00")])
    out = h.feed(invite(), A)
    assert only(out, Request, method="INVITE")
    assert "outside_window" not in h.b2b.counters


def test_a_call_outside_its_window_gets_the_uniform_answer(tmp_path: Path) -> None:
    h = with_policy(tmp_path, calling_windows=[window("01:00", "02:00"),
                                               window("00:00", "24:00", days="fri-wed")])
    assert refused(h, h.feed(invite(), A))
    assert h.b2b.counters["outside_window"] == 1
    assert h.b2b.counters.get("no_pairing", 0) == 0  # the reason is kept, the answer is not
    h.now += 3600  # 01:16:40: inside the first window now
    assert only(h.feed(invite(cid="a-call-2"), A), Request, method="INVITE")


def test_the_wrong_direction_of_a_one_way_session_gets_the_uniform_answer(tmp_path: Path) -> None:
    h = with_policy(tmp_path, direction="b_to_a")  # the caller is A: it may not call
    assert refused(h, h.feed(invite(), A))
    assert h.b2b.counters["wrong_direction"] == 1


def test_the_allowed_direction_of_a_one_way_session_is_bridged(tmp_path: Path) -> None:
    h = with_policy(tmp_path, direction="a_to_b")
    assert only(h.feed(invite(), A), Request, method="INVITE")


def test_the_sessions_ring_timeout_replaces_the_configs(tmp_path: Path) -> None:
    h = with_policy(tmp_path, ring_timeout_s=5)  # the config says 30
    (b_inv, _), = only(h.feed(invite(), A), Request, method="INVITE")
    h.feed(response_to(b_inv, 180, "Ringing"), GW1)
    assert not only(h.advance(4.9), Response, status=480)
    out = h.advance(0.2)
    assert only(out, Response, status=480) and only(out, Request, method="CANCEL")


def test_the_sessions_call_limit_replaces_the_configs(tmp_path: Path) -> None:
    h = with_policy(tmp_path, max_call_s=60)  # the config says 600
    (b_inv, _), = only(h.feed(invite(), A), Request, method="INVITE")
    h.feed(response_to(b_inv, 200, "OK"), GW1)
    h.feed(ack_from_caller(h), A)
    assert not only(h.advance(59), Request, method="BYE")
    byes = only(h.advance(2), Request, method="BYE")
    assert {dest.host for _, dest in byes} == {A.host, GW1.host} and h.b2b.active_calls == 0


def test_a_single_use_session_closes_when_its_call_is_answered(tmp_path: Path) -> None:
    h = with_policy(tmp_path, single_use=True)
    (b_inv, _), = only(h.feed(invite(), A), Request, method="INVITE")
    h.feed(response_to(b_inv, 180, "Ringing"), GW1)
    assert h.session.id in h.service.cache  # ringing is not using it up
    h.feed(response_to(b_inv, 200, "OK"), GW1)
    assert h.session.id not in h.service.cache
    h.service.flush()
    assert h.store.get_session(h.session.id).status == "closed"
    h.service.poll()  # the close comes back on the feed: still not routed
    assert refused(h, h.feed(invite(cid="a-call-2", branch="z9hG4bKsecond"), A))
    assert h.b2b.active_calls == 1  # the first call goes on


def test_a_single_use_session_survives_an_unanswered_call(tmp_path: Path) -> None:
    h = with_policy(tmp_path, single_use=True)
    (b_inv, _), = only(h.feed(invite(), A), Request, method="INVITE")
    h.feed(response_to(b_inv, 486, "Busy Here"), GW1)
    h.service.flush()
    assert h.store.get_session(h.session.id).status == "open"
    assert only(h.feed(invite(cid="a-call-2", branch="z9hG4bKagain"), A), Request, method="INVITE")


def test_a_single_use_close_waiting_for_the_flush_is_not_routed_again_by_a_poll(
        tmp_path: Path) -> None:
    h = with_policy(tmp_path, single_use=True)
    (b_inv, _), = only(h.feed(invite(), A), Request, method="INVITE")
    h.feed(response_to(b_inv, 200, "OK"), GW1)
    h.store.update_session(h.session.id, ttl_s=3600, now=h.now)  # another process's change
    h.service.poll()
    assert h.session.id not in h.service.cache


def test_the_async_flush_closes_a_used_session_too(tmp_path: Path) -> None:
    """The running proxy flushes through a worker thread (`flush_async`)."""
    h = with_policy(tmp_path, single_use=True)
    (b_inv, _), = only(h.feed(invite(), A), Request, method="INVITE")
    h.feed(response_to(b_inv, 200, "OK"), GW1)

    async def run(fn, *args):  # the app's runner, without the thread
        return fn(*args)

    asyncio.run(h.service.flush_async(run))
    assert h.store.get_session(h.session.id).status == "closed"
    asyncio.run(h.service.poll_async(run))
    assert h.session.id not in h.service.cache
