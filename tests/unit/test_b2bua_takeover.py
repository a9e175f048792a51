"""Calls that outlive a worker, sans-IO (proxy/b2bua/snapshot.py, takeover.py): an established
call's record, rebuilt by a fresh B2BUA (a restarted worker, or a sibling that continues it with
UPDATEs or ends it), and the drain's refusal of new calls."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from proxy.b2bua.snapshot import CSEQ_MARGIN, DialogJournal
from proxy.sip.message import Request, Response

from .b2bua_harness import (
    CALLEE,
    CALLEE_V,
    CALLER,
    GW1,
    A,
    Harness,
    answered_call,
    from_callee,
    in_dialog_request,
    invite,
    only,
    response_to,
)

#: the wall clock at the harness's monotonic 0
WALL = 1_700_000_000.0


def confirmed_record(h: Harness) -> tuple[dict[str, Any], Request]:
    """Bridge one call on ``h``, confirm it, and take its record from the journal."""
    h.b2b.journal = DialogJournal()
    h.b2b.wall_clock = lambda now: now + WALL
    _, b_inv = answered_call(h)
    records, deleted = h.b2b.journal.take(h.b2b.wall_clock)
    assert deleted == []
    assert len(records) == 1
    (record,) = records.values()
    return json.loads(json.dumps(record)), b_inv  # what the store gives back: JSON


def successor(tmp_path: Path, name: str, wall_now: float) -> Harness:
    """A fresh B2BUA on the same store (a restarted worker or a sibling), its monotonic clock
    elsewhere (50.0) at the wall-clock moment ``wall_now``."""
    (tmp_path / name).mkdir()
    (tmp_path / name / "key").write_bytes((tmp_path / "key").read_bytes())
    h = Harness(tmp_path / name)
    h.b2b.journal = DialogJournal()
    h.now = 50.0  # another process: another monotonic clock
    h.b2b.wall_clock = lambda now: now - 50.0 + wall_now
    return h


def test_the_journal_writes_a_confirmed_call_once_and_deletes_it_when_it_ends(h_tmp: Path) -> None:
    h = Harness(h_tmp)
    record, _ = confirmed_record(h)
    assert record["v"] == 1 and record["a"]["remote_tag"] == "atag" and record["b"]["remote_tag"] == "btag"
    assert h.b2b.journal is not None
    assert h.b2b.journal.take(lambda now: now) == ({}, [])  # nothing changed since
    h.feed(in_dialog_request(h, "BYE", "bye1", 2), A)
    assert h.b2b.journal.take(lambda now: now) == ({}, [record["id"]])


def test_a_call_that_ends_before_the_flush_is_never_written(h_tmp: Path) -> None:
    h = Harness(h_tmp)
    h.b2b.journal = DialogJournal()
    answered_call(h)
    h.feed(in_dialog_request(h, "BYE", "bye1", 2), A)
    assert h.b2b.journal.take(lambda now: now) == ({}, [])


def test_a_restarted_worker_continues_the_call_both_ways(h_tmp: Path) -> None:
    old = Harness(h_tmp)
    record, b_inv = confirmed_record(old)
    new = successor(h_tmp, "restarted", WALL + old.now)
    calls, failed = new.b2b.adopt([record], new.now, WALL + old.now, refresh=False)
    assert failed == 0 and len(calls) == 1
    assert new.drain() == []  # a restart sends nothing: the peers reach it where they did
    # the callee's re-INVITE crosses to the caller with the A leg's dialog, then BYE from A
    out = new.feed(from_callee(b_inv, "INFO", "info1", 5), GW1)
    (info, dest), = only(out, Request, method="INFO")
    assert dest == A and info.call_id == "a-call-1" and info.to_tag == "atag"
    assert info.cseq.number > CSEQ_MARGIN  # above anything the old worker may have sent
    new.feed(response_to(info, 200, "OK"), A)
    out = new.feed(caller_request(record, "BYE", "bye9", 3), A)
    assert only(out, Response, status=200)
    (bye, dest), = only(out, Request, method="BYE")
    assert dest == GW1 and bye.call_id == b_inv.call_id
    cdrs = cdrs_of(new)
    assert [(c.outcome, c.cause) for c in cdrs] == [("completed", "bye_a")]
    # answered on the old worker's clock, ended on the new one's: the duration is the call's
    assert cdrs[0].answered_at == pytest.approx(record["answered_at"])
    assert new.b2b.journal is not None
    assert new.b2b.journal.take(lambda now: now) == ({}, [record["id"]])


def caller_request(record: dict[str, Any], method: str, branch: str, cseq: int) -> str:
    """An in-dialog request from the caller in the A-leg dialog of ``record``."""
    return (
        f"{method} sip:x@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK{branch}\n"
        "From: <sip:+15551230001@127.0.0.2:5070>;tag=atag\n"
        f"To: <sip:+15557770001@127.0.0.1:5060>;tag={record['a']['local_tag']}\nCall-ID: a-call-1\n"
        f"CSeq: {cseq} {method}\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )


def test_a_sibling_sends_each_leg_an_update_with_its_contact(h_tmp: Path) -> None:
    old = Harness(h_tmp)
    record, _ = confirmed_record(old)
    sib = successor(h_tmp, "sibling", WALL + old.now)
    sib.b2b.adopt([record], sib.now, WALL + old.now, refresh=True)
    out = sib.drain()
    updates = only(out, Request, method="UPDATE")
    assert {d for _, d in updates} == {A, GW1}
    for update, dest in updates:
        assert update.body == b"" and update.headers.get("contact") == (
            f"<sip:{'+15557770001' if dest == A else CALLEE_V}@127.0.0.1:5060>")
    to_a = next(u for u, d in updates if d == A)
    to_b = next(u for u, d in updates if d == GW1)
    assert to_a.uri == f"sip:{CALLER}@127.0.0.2:5070" and to_a.to_tag == "atag"
    # each leg sees only its own dialog: no real number of the other party in anything sent
    assert CALLEE not in to_a.serialise().decode() and CALLER not in to_b.serialise().decode()
    assert to_b.uri == f"sip:{CALLEE}@127.0.0.3:5080"
    sib.feed(response_to(to_a, 200, "OK", contact=f"sip:{CALLER}@127.0.0.2:5070"), A)
    sib.feed(response_to(to_b, 200, "OK"), GW1)
    assert sib.b2b.active_calls == 1  # continued
    out = sib.feed(caller_request(record, "BYE", "bye9", 3), A)
    assert only(out, Request, method="BYE")
    assert [c.cause for c in cdrs_of(sib)] == ["bye_a"]


def test_a_leg_refusing_the_update_ends_the_call_cleanly(h_tmp: Path) -> None:
    old = Harness(h_tmp)
    record, _ = confirmed_record(old)
    sib = successor(h_tmp, "sibling", WALL + old.now)
    sib.b2b.adopt([record], sib.now, WALL + old.now, refresh=True)
    updates = only(sib.drain(), Request, method="UPDATE")
    to_b = next(u for u, d in updates if d == GW1)
    out = sib.feed(response_to(to_b, 501, "Not Implemented"), GW1)
    byes = only(out, Request, method="BYE")
    assert {d for _, d in byes} == {A, GW1}
    assert sib.b2b.active_calls == 0
    assert [(c.outcome, c.cause) for c in cdrs_of(sib)] == [("completed", "worker_lost")]


def test_an_update_never_answered_ends_the_call(h_tmp: Path) -> None:
    old = Harness(h_tmp)
    record, _ = confirmed_record(old)
    sib = successor(h_tmp, "sibling", WALL + old.now)
    sib.b2b.adopt([record], sib.now, WALL + old.now, refresh=True)
    sib.drain()
    out = sib.advance(40.0)  # Timer F, 64*T1
    assert {d for m, d in only(out, Request, method="BYE")} == {A, GW1}
    assert [c.cause for c in cdrs_of(sib)] == ["worker_lost"]


def test_end_lost_byes_both_legs_and_an_unusable_record_is_counted(h_tmp: Path) -> None:
    old = Harness(h_tmp)
    record, _ = confirmed_record(old)
    sib = successor(h_tmp, "sibling", WALL + old.now)
    broken = dict(record, a={"transport": "udp"})
    calls, failed = sib.b2b.adopt([record, broken, {"v": 99}], sib.now, WALL + old.now,
                                  refresh=False)
    assert (len(calls), failed) == (1, 2)
    sib.b2b.end_lost(calls[0], sib.now)
    out = sib.drain()
    assert {d for _, d in only(out, Request, method="BYE")} == {A, GW1}
    assert [c.cause for c in cdrs_of(sib)] == ["worker_lost"]
    assert sib.b2b.counters["takeover_unusable"] == 2


def test_max_duration_counts_from_the_original_answer(h_tmp: Path) -> None:
    old = Harness(h_tmp)  # max_duration_s = 600
    record, _ = confirmed_record(old)
    # taken over 500 s after the answer: 100 s of the call's allowance are left
    sib = successor(h_tmp, "sibling", WALL + old.now + 500)
    sib.b2b.adopt([record], sib.now, WALL + old.now + 500, refresh=False)
    assert not only(sib.advance(99.0), Request, method="BYE")
    assert {d for _, d in only(sib.advance(2.0), Request, method="BYE")} == {A, GW1}
    assert [c.cause for c in cdrs_of(sib)] == ["max_duration"]


def test_draining_refuses_new_calls_with_503(h_tmp: Path) -> None:
    h = Harness(h_tmp)
    h.b2b.draining = True
    out = h.feed(invite(), A)
    (resp, _), = only(out, Response)
    assert resp.status == 503 and resp.headers.get("retry-after")
    assert not only(out, Request, method="INVITE")


@pytest.fixture()
def h_tmp(tmp_path: Path) -> Path:
    return tmp_path


def cdrs_of(h: Harness) -> list[Any]:
    h.service.flush()
    return h.store.list_cdrs()


class _Relay:
    """The media relay as the B2BUA sees it, remembering what it was told."""

    def __init__(self) -> None:
        self.adopted: list[tuple[str, str]] = []
        self.deleted: list[str] = []

    def offer(self, *args: Any) -> None: ...

    def answer(self, *args: Any) -> None: ...

    def delete(self, call_key: str) -> None:
        self.deleted.append(call_key)

    def holder(self, call_key: str) -> str | None:
        return "127.0.0.1:2223"

    def adopt(self, call_key: str, holder: str) -> None:
        self.adopted.append((call_key, holder))


def test_an_anchored_call_keeps_its_rtpengine_session_over_a_restart(h_tmp: Path) -> None:
    """The record names the rtpengine holding the call's session; the restarted worker sends
    that rtpengine the call's delete when the call ends (no session left behind)."""
    old = Harness(h_tmp)
    old.b2b.journal = DialogJournal()
    old.b2b.wall_clock = lambda now: now + WALL
    answered_call(old)
    (call,) = old.b2b.calls.values()
    call.media_key = call.id  # as media anchoring sets it
    records, _ = old.b2b.journal.take(old.b2b.wall_clock, _Relay())
    (record,) = records.values()
    assert record["media"] == [call.id, "127.0.0.1:2223"]
    new = successor(h_tmp, "restarted", WALL + old.now)
    relay = _Relay()
    new.b2b.media = relay
    new.b2b.adopt([json.loads(json.dumps(record))], new.now, WALL + old.now, refresh=False)
    assert relay.adopted == [(call.id, "127.0.0.1:2223")]
    new.feed(caller_request(record, "BYE", "bye9", 3), A)
    assert relay.deleted == [call.id]
