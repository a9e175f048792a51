"""Admission control (proxy/b2bua/overload.py) with a fake clock, and its 503 in the B2BUA."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.b2bua.overload import Admission
from proxy.config import ConfigError, load_config
from proxy.sip.message import Request, Response
from proxy.sip.parser import parse_message
from proxy.transport import Address

from .b2bua_harness import CALLER_V, A, Harness, invite, only


def test_rate_gate_admits_max_cps_per_second() -> None:
    gate = Admission(max_cps=10, busy_target=0)
    now = 100.0
    admitted = 0
    for i in range(300):  # 100 new calls per second for 3 s
        admitted += gate.admit(now + i * 0.01)
    assert 28 <= admitted <= 41, admitted  # 10/s for 3 s, plus the initial burst of 10
    assert gate.refused == 300 - admitted


def test_busy_gate_shrinks_admission_when_saturated_and_recovers() -> None:
    gate = Admission(busy_target=0.8)
    now = 0.0
    for _ in range(50):  # 5 s fully busy: the loop never idles
        gate.record_busy(0.1, now)
        now += 0.1
    assert gate.busy_ratio > 0.99
    low = gate.fraction
    assert low < 0.2
    taken = sum(gate.admit(now) for _ in range(1000))
    assert abs(taken - 1000 * low) <= 1, (taken, low)
    for _ in range(100):  # 10 s mostly idle: back to admitting everything
        gate.record_busy(0.01, now)
        now += 0.1
    assert gate.fraction == 1.0
    assert all(gate.admit(now) for _ in range(100))


def test_disabled_gates_admit_everything() -> None:
    gate = Admission(max_cps=0, busy_target=0)
    for i in range(50):
        gate.record_busy(1.0, float(i))
    assert all(gate.admit(50.0) for _ in range(1000)) and gate.refused == 0


def test_b2bua_answers_503_with_retry_after_when_not_admitted(tmp_path: Path) -> None:
    h = Harness(tmp_path, extra_config="")
    h.b2b.admission = Admission(max_cps=1, busy_target=0)
    first = h.feed(invite(cid="c1"), A)
    assert only(first, Request, method="INVITE"), "the first call is admitted"
    raw = invite(cid="c2")
    second = h.feed(raw, A)
    # §8.2.7: refused statelessly, a 503 alone (no 100 Trying), To tag the layer's own
    assert [(m.status, m.headers.get("retry-after"), d) for m, d in only(second, Response)] == [(503, "5", A)]
    refusal = only(second, Response)[0][0]
    assert refusal.to_tag == h.layer.stateless_tag
    assert not only(second, Request), "a refused call never reaches a gateway"
    assert h.b2b.active_calls == 1 and h.b2b.counters.get("overload") == 1
    assert h.layer.counts["server_invite"] == 1, "no transaction for the refused call"
    # the caller's ACK for the 503 is absorbed by the layer
    via = refusal.headers.get("via")
    ack = (f"ACK sip:{CALLER_V}@127.0.0.1:5060 SIP/2.0\nVia: {via}\nFrom: {refusal.headers.get('from')}\n"
           f"To: {refusal.headers.get('to')}\nCall-ID: c2\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n")
    assert h.feed(ack, A) == [] and h.layer.stateless_acks == 1


def test_retransmission_gate_sheds_when_peers_retransmit_and_recovers() -> None:
    gate = Admission(retrans_target=0.2)
    now, retrans = 0.0, 0
    # keeping up: 100 new INVITEs per second, 1 retransmission per second (1%)
    for i in range(300):
        now += 0.01
        retrans += 1 if i % 100 == 0 else 0
        assert gate.admit(now, retrans)
    assert gate.fraction == 1.0
    # one stall (a GC pass): a burst of retransmissions in one window sheds nothing
    retrans += 200
    for _ in range(60):
        now += 0.01
        assert gate.admit(now, retrans)
    assert gate.fraction == 1.0
    # falling behind: every new INVITE comes with two retransmissions of older ones
    for _ in range(1500):
        now += 0.01
        retrans += 2
        gate.admit(now, retrans)
    assert gate.retrans_ratio > 1.0 and gate.fraction < 0.2
    assert gate.refused > 500
    # caught up again: the fraction grows back to admitting everything
    for _ in range(3000):
        now += 0.01
        gate.admit(now, retrans)
    assert gate.fraction == 1.0 and gate.retrans_ratio == 0.0


OPTIONS_REPLAY = (
    "OPTIONS sip:127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKreplay\n"
    "From: <sip:probe@127.0.0.2>;tag=p\nTo: <sip:127.0.0.1:5060>\nCall-ID: replayed\n"
    "CSeq: 1 OPTIONS\nMax-Forwards: 70\nContent-Length: 0\n\n"
)


def test_b2bua_sheds_new_calls_when_invites_are_retransmitted(tmp_path: Path) -> None:
    """Retransmitted INVITEs (the caller's T1 fired before sipmask answered) are the overload
    signal: after a window full of them, new calls get 503 + Retry-After."""
    h = Harness(tmp_path)
    h.b2b.admission = Admission(retrans_target=0.2)
    refused = 0
    for i in range(150):
        raw = invite(cid=f"c{i}", branch=f"z9hG4bKr{i}")
        # sipmask is behind: the original waited 1.1 s in the socket, its copies (sent at T1
        # and 2*T1) were already queued behind it when it was handled
        h.feed(raw, A, delay=1.1)
        h.feed(raw, A, delay=0.6)  # the same INVITE again: a retransmission, absorbed by the layer
        h.feed(raw, A, delay=0.1)
        h.now += 0.02
        out = [m for m, d in h.sent if isinstance(m, Response) and m.status == 503 and d == A]
        refused = len({m.call_id for m in out})
    # the copies of admitted INVITEs are absorbed as retransmissions; those of refused ones
    # (no transaction) are screened, and refused, again
    assert h.layer.request_retransmissions >= 200
    assert h.layer.late_retransmissions >= 200
    assert refused > 10, refused
    assert h.layer.refused_statelessly >= refused
    assert all(m.headers.get("retry-after") == "5" for m, _ in h.sent
               if isinstance(m, Response) and m.status == 503)


def test_queue_delay_gate_sheds_on_a_standing_queue_not_on_a_stall() -> None:
    gate = Admission(max_cps=0, retrans_target=0, delay_target=0.2)
    now = 10.0
    # a stall: INVITEs read 0.9 s late, then the queue drains within the window: all admitted
    for i in range(100):
        now += 0.01
        assert gate.admit(now, None, max(0.0, 0.9 - i * 0.02))
    assert not gate.delay_shedding and gate.stale == 0
    # a standing queue: a whole window of INVITEs that waited 0.3-0.5 s
    for i in range(105):
        now += 0.01
        gate.admit(now, None, 0.3 + (i % 3) * 0.1)
    assert gate.delay_shedding
    # from then on, what waited past the target is refused, what did not is admitted
    now += 0.01
    assert not gate.admit(now, None, 0.25) and gate.admit(now, None, 0.15)
    assert gate.stale >= 1 and gate.refused == gate.stale
    # a window in which nothing waited past the target ends the shedding
    for _ in range(220):  # (the window open when it began still held late INVITEs)
        now += 0.01
        gate.admit(now, None, 0.05)
    assert not gate.delay_shedding and gate.admit(now, None, 0.3)
    assert Admission(delay_target=0).admit(1.0, None, 10.0), "0 turns the gate off"


def test_b2bua_refuses_statelessly_an_invite_that_queued_too_long(tmp_path: Path) -> None:
    """The layer passes the transport's queue delay to the B2BUA's door (``screen``)."""
    h = Harness(tmp_path)
    assert h.b2b.admission.delay_target == 0.2, "on by default (calls.overload_queue_delay_ms)"

    def feed(cid: str, delay: float) -> list[tuple[Request | Response, Address]]:
        msg = parse_message(invite(cid=cid).replace("\n", "\r\n").encode())
        for event in h.layer.receive(msg, A, h.now, delay):
            h.b2b.handle(event, h.now)
        return h.drain()

    for i in range(9):  # a standing queue: a window of INVITEs that all waited 0.35 s
        assert only(feed(f"q{i}", 0.35), Request, method="INVITE"), "admitted while it may be a stall"
        h.now += 0.12
    out = feed("late", 0.35)
    assert [(m.status, m.to_tag) for m, _ in only(out, Response)] == [(503, h.layer.stateless_tag)]
    assert not only(out, Request) and h.b2b.admission.stale == 1
    assert only(feed("prompt", 0.05), Request, method="INVITE"), "a prompt INVITE is bridged"


def test_calls_overload_queue_delay_ms_is_validated(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[calls]\noverload_queue_delay_ms = 50\n")
    assert load_config(cfg).calls.overload_queue_delay_ms == 50
    cfg.write_text("[calls]\noverload_queue_delay_ms = -1\n")
    with pytest.raises(ConfigError, match="calls.overload_queue_delay_ms"):
        load_config(cfg)


@pytest.mark.parametrize("case", ["loss", "replay"])
def test_retransmissions_that_are_not_sipmask_being_late_never_shed_calls(tmp_path: Path, case: str) -> None:
    """Loss: the caller's INVITE copies arrive after sipmask answered (its 100 Trying was
    lost), at T1 and 2*T1. Replay: one source sends the same OPTIONS 20 times a second. Neither
    is sipmask's own load: every new call from anyone is admitted."""
    h = Harness(tmp_path)
    h.b2b.admission = Admission(retrans_target=0.2)
    for i in range(150):
        raw = invite(cid=f"c{i}", branch=f"z9hG4bKl{i}")
        h.feed(raw, A, delay=0.001)
        if case == "loss":
            h.now += 0.5
            h.feed(raw, A, delay=0.001)  # reached the socket 0.5 s after sipmask answered
            h.now += 1.0
            h.feed(raw, A, delay=0.001)
        else:
            for _ in range(3):
                h.feed(OPTIONS_REPLAY, A)
                h.now += 0.05
    assert h.layer.request_retransmissions >= 200
    assert h.layer.late_retransmissions == 0
    assert not [m for m, d in h.sent if isinstance(m, Response) and m.status == 503]
