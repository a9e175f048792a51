"""Media anchoring in the B2BUA (proxy/b2bua/media.py), with a fake relay the test answers:
the caller's offer and the callee's answer go through the relay before they cross, each end
of a call deletes its session, and a relay that fails gets the configured answer."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from proxy.sip.message import Request, Response
from proxy.sip.transaction import Address

from .b2bua_harness import (
    GW1,
    GW2,
    A,
    Harness,
    ack_from_caller,
    in_dialog_request,
    invite,
    only,
    response_to,
)

Done = Callable[[bytes | None, float], None]

RELAY_OFFER = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.9\r\ns=-\r\nc=IN IP4 127.0.0.9\r\nt=0 0\r\n"
               b"m=audio 40000 RTP/AVP 0\r\n")
RELAY_ANSWER = RELAY_OFFER.replace(b"40000", b"40010")
# "\n" line ends: the harness turns every "\n" of a message into CRLF (Content-Length counts CRLF)
CALLEE_SDP = ("v=0\no=bob 2 2 IN IP4 127.0.0.3\ns=bob-secret\nc=IN IP4 127.0.0.3\n"
              "t=0 0\nm=audio 7000 RTP/AVP 0\n")


class FakeMedia:
    """The B2BUA's ``media``: records each request; the test calls its ``done``."""

    def __init__(self) -> None:
        self.offers: list[tuple[str, str, str, bytes, Done]] = []
        self.answers: list[tuple[str, str, str, bytes, Done]] = []
        self.deleted: list[str] = []

    def offer(self, call_key: str, from_tag: str, to_tag: str, sdp: bytes, done: Done) -> None:
        self.offers.append((call_key, from_tag, to_tag, sdp, done))

    def answer(self, call_key: str, from_tag: str, to_tag: str, sdp: bytes, done: Done) -> None:
        self.answers.append((call_key, from_tag, to_tag, sdp, done))

    def delete(self, call_key: str) -> None:
        self.deleted.append(call_key)


def anchored(tmp_path: Path, on_unavailable: str = "reject") -> tuple[Harness, FakeMedia]:
    h = Harness(tmp_path)
    media = FakeMedia()
    h.b2b.media = media
    h.b2b.config = dataclasses.replace(
        h.b2b.config, media=dataclasses.replace(h.b2b.config.media, mode="rtpengine",
                                                on_unavailable=on_unavailable))
    return h, media


def with_sdp(raw: str, sdp: str = CALLEE_SDP) -> str:
    head = raw.replace("Content-Length: 0\n\n", "")
    return f"{head}Content-Type: application/sdp\nContent-Length: {crlf_len(sdp)}\n\n{sdp}"


def crlf_len(text: str) -> int:
    return len(text.replace("\n", "\r\n"))


def reinvite_from_caller(h: Harness, branch: str) -> str:
    raw = in_dialog_request(h, "INVITE", branch, 2, "Content-Type: application/sdp\n", HOLD_SDP)
    return raw.replace(f"Content-Length: {len(HOLD_SDP)}", f"Content-Length: {crlf_len(HOLD_SDP)}")


def finals_to_a(out: list[tuple[Request | Response, Address]]) -> list[Response]:
    return [m for m, d in out if isinstance(m, Response) and d == A and m.status >= 200]


def offered_call(h: Harness, media: FakeMedia) -> Request:
    """The caller's INVITE, its offer answered by the relay: the B-leg INVITE it produced."""
    out = h.feed(invite(), A)
    assert not only(out, Request, method="INVITE"), "the B INVITE waits for the relay"
    media.offers[-1][4](RELAY_OFFER, h.now)
    (b_inv, dest), = only(h.drain(), Request, method="INVITE")
    assert dest == GW1
    return b_inv


def test_the_callee_gets_the_relays_offer_not_the_callers(tmp_path: Path) -> None:
    h, media = anchored(tmp_path)
    b_inv = offered_call(h, media)
    (key, from_tag, to_tag, sdp, _), = media.offers
    assert b"m=audio 6000" in sdp, "the relay sees the caller's SDP"
    assert from_tag != to_tag and key not in ("a-call-1", b_inv.call_id)
    assert b"m=audio 40000" in b_inv.body and b"127.0.0.9" in b_inv.body
    assert b"6000" not in b_inv.body and b"127.0.0.2" not in b_inv.body


def test_the_caller_gets_the_relays_answer_only_once_the_relay_answered(tmp_path: Path) -> None:
    h, media = anchored(tmp_path)
    b_inv = offered_call(h, media)
    out = h.feed(with_sdp(response_to(b_inv, 200, "OK")), GW1)
    assert not finals_to_a(out), "the 200 waits for the relay's answer"
    (key, from_tag, to_tag, sdp, done), = media.answers
    assert (key, from_tag, to_tag) == media.offers[0][:3] and b"m=audio 7000" in sdp
    done(RELAY_ANSWER, h.now)
    (ok,), = [finals_to_a(h.drain())]
    assert ok.status == 200 and b"m=audio 40010" in ok.body
    assert b"7000" not in ok.body and b"127.0.0.3" not in ok.body
    assert only(h.feed(ack_from_caller(h), A), Request, method="ACK")


def test_early_media_183_goes_through_the_relay_and_a_stale_one_is_dropped(tmp_path: Path) -> None:
    h, media = anchored(tmp_path)
    b_inv = offered_call(h, media)
    h.feed(with_sdp(response_to(b_inv, 183, "Session Progress")), GW1)
    h.feed(with_sdp(response_to(b_inv, 200, "OK")), GW1)
    early, final = media.answers
    final[4](RELAY_ANSWER, h.now)
    assert [m.status for m in finals_to_a(h.drain())] == [200]
    early[4](RELAY_ANSWER, h.now)  # answered after the 200 went: never sent
    assert not [m for m, d in h.drain() if isinstance(m, Response) and d == A]


def test_bye_deletes_the_session(tmp_path: Path) -> None:
    h, media = anchored(tmp_path)
    b_inv = offered_call(h, media)
    h.feed(with_sdp(response_to(b_inv, 200, "OK")), GW1)
    media.answers[0][4](RELAY_ANSWER, h.now)
    h.drain()
    h.feed(ack_from_caller(h), A)
    assert media.deleted == []
    bye = ack_from_caller(h, "z9hG4bKbye1").replace("ACK", "BYE").replace("CSeq: 1 BYE", "CSeq: 2 BYE")
    h.feed(bye, A)
    assert media.deleted == [media.offers[0][0]]


@pytest.mark.parametrize("end", ["busy", "cancel_while_offering", "ring_timeout"])
def test_every_other_end_deletes_the_session(tmp_path: Path, end: str) -> None:
    h, media = anchored(tmp_path)
    if end == "cancel_while_offering":
        h.feed(invite(branch="z9hG4bKc1"), A)
        cancel = invite(branch="z9hG4bKc1").replace("INVITE sip", "CANCEL sip").replace("CSeq: 1 INVITE", "CSeq: 1 CANCEL")
        out = h.feed(cancel.split("Content-Type")[0] + "Content-Length: 0\n\n", A)
        assert [m.status for m in finals_to_a(out)] == [200, 487]
        media.offers[0][4](RELAY_OFFER, h.now)  # the relay answers after the call ended
        assert not only(h.drain(), Request, method="INVITE"), "no B leg for a cancelled call"
    else:
        b_inv = offered_call(h, media)
        if end == "busy":
            h.feed(response_to(b_inv, 486, "Busy Here"), GW1)
        else:
            h.advance(31)
    assert media.deleted == [media.offers[0][0]]
    assert h.b2b.active_calls == 0


def test_no_relay_rejects_a_new_call_with_503_and_retry_after(tmp_path: Path) -> None:
    h, media = anchored(tmp_path)
    h.feed(invite(), A)
    media.offers[0][4](None, h.now)
    out = h.drain()
    (final,) = finals_to_a(out)
    assert final.status == 503 and final.headers.get("retry-after") == "10"
    assert not only(out, Request, method="INVITE")
    assert media.deleted == [] and h.b2b.counters["media_unavailable"] == 1
    assert h.b2b.active_calls == 0


def test_no_relay_in_signalling_only_mode_connects_the_call_unanchored(tmp_path: Path) -> None:
    h, media = anchored(tmp_path, on_unavailable="signalling-only")
    h.feed(invite(), A)
    media.offers[0][4](None, h.now)
    (b_inv, _), = only(h.drain(), Request, method="INVITE")
    assert b"m=audio 6000" in b_inv.body and b"alice-secret" not in b_inv.body, "sanitised only"
    assert h.b2b.counters["media_unanchored"] == 1
    out = h.feed(with_sdp(response_to(b_inv, 200, "OK")), GW1)
    assert [m.status for m in finals_to_a(out)] == [200] and not media.answers
    assert media.deleted == []


def test_a_failed_answer_to_a_2xx_ends_the_call_cleanly(tmp_path: Path) -> None:
    h, media = anchored(tmp_path)
    b_inv = offered_call(h, media)
    h.feed(with_sdp(response_to(b_inv, 200, "OK")), GW1)
    media.answers[0][4](None, h.now)
    out = h.drain()
    assert [m.status for m in finals_to_a(out)] == [503]
    to_b = [m.method for m, d in out if isinstance(m, Request) and d == GW1]
    assert to_b == ["ACK", "BYE"], "the callee's 2xx is ACKed and released"
    assert media.deleted == [media.offers[0][0]] and h.b2b.active_calls == 0


def test_failover_sends_the_relays_offer_to_the_next_gateway(tmp_path: Path) -> None:
    h, media = anchored(tmp_path)
    b_inv = offered_call(h, media)
    out = h.feed(response_to(b_inv, 503, "Service Unavailable"), GW1)
    (retry, dest), = only(out, Request, method="INVITE")
    assert dest == GW2 and b"m=audio 40000" in retry.body and b"6000" not in retry.body
    assert len(media.offers) == 1, "one session for the call, whichever gateway answers"


def test_an_error_while_resuming_ends_the_call_not_the_process(tmp_path: Path) -> None:
    h, media = anchored(tmp_path)
    h.feed(invite(), A)

    def broken(body: bytes) -> bytes:
        raise RuntimeError("a bug in the SDP policy")

    h.b2b._sdp = broken  # type: ignore[method-assign]
    media.offers[0][4](RELAY_OFFER, h.now)  # outside handle: the guard still catches it
    out = h.drain()
    assert [m.status for m in finals_to_a(out)] == [500]
    assert not only(out, Request, method="INVITE")
    assert media.deleted == [media.offers[0][0]] and h.b2b.active_calls == 0


def confirmed_call(h: Harness, media: FakeMedia) -> Request:
    b_inv = offered_call(h, media)
    h.feed(with_sdp(response_to(b_inv, 200, "OK")), GW1)
    media.answers[0][4](RELAY_ANSWER, h.now)
    h.drain()
    h.feed(ack_from_caller(h), A)
    return b_inv


HOLD_SDP = CALLEE_SDP.replace("bob 2 2", "alice 1 2").replace("127.0.0.3", "127.0.0.2") \
    .replace("7000", "6000") + "a=sendonly\n"


def test_a_reinvite_offer_and_its_answer_go_through_the_relay(tmp_path: Path) -> None:
    h, media = anchored(tmp_path)
    confirmed_call(h, media)
    out = h.feed(reinvite_from_caller(h, "re1"), A)
    assert not only(out, Request, method="INVITE"), "the re-INVITE waits for the relay"
    key, from_tag, to_tag, sdp, done = media.offers[1]
    assert (key, from_tag, to_tag) == media.offers[0][:3], "the caller's side, same session"
    assert sdp.endswith(b"a=sendonly\r\n")
    done(RELAY_OFFER + b"a=sendonly\r\n", h.now)
    (out_inv, dest), = only(h.drain(), Request, method="INVITE")
    assert dest == GW1 and b"40000" in out_inv.body and b"6000" not in out_inv.body
    out = h.feed(with_sdp(response_to(out_inv, 200, "OK", to_tag="btag")), GW1)
    assert not finals_to_a(out), "the 200 waits for the relay's answer"
    media.answers[1][4](RELAY_ANSWER, h.now)
    (ok,) = finals_to_a(h.drain())
    assert ok.status == 200 and b"40010" in ok.body and b"7000" not in ok.body


def test_a_failed_reoffer_is_refused_and_the_call_goes_on(tmp_path: Path) -> None:
    h, media = anchored(tmp_path)
    confirmed_call(h, media)
    h.feed(reinvite_from_caller(h, "re2"), A)
    media.offers[1][4](None, h.now)
    out = h.drain()
    assert [m.status for m in finals_to_a(out)] == [503] and not only(out, Request)
    assert h.b2b.active_calls == 1 and media.deleted == []


def test_a_failed_reanswer_gets_500_and_the_peers_2xx_is_acked(tmp_path: Path) -> None:
    h, media = anchored(tmp_path)
    confirmed_call(h, media)
    h.feed(reinvite_from_caller(h, "re3"), A)
    media.offers[1][4](RELAY_OFFER, h.now)
    (out_inv, _), = only(h.drain(), Request, method="INVITE")
    h.feed(with_sdp(response_to(out_inv, 200, "OK", to_tag="btag")), GW1)
    media.answers[1][4](None, h.now)
    out = h.drain()
    assert [m.status for m in finals_to_a(out)] == [500]
    assert [m.method for m, d in out if isinstance(m, Request) and d == GW1] == ["ACK"]
    assert h.b2b.active_calls == 1
