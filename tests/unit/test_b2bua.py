"""The B2BUA transaction user driven sans-IO: a fake clock, the real transaction layer, a real
SQLite pairing store, and peers that are just bytes in and out (no sockets)."""

from __future__ import annotations

import dataclasses
import gc
import itertools
from pathlib import Path

import pytest
import structlog

from proxy.b2bua.core import B2bua
from proxy.b2bua.policy import default_rules
from proxy.config import Gateway, load_config
from proxy.pairing.cache import PairingCache
from proxy.pairing.crypto import NumberVault
from proxy.pairing.model import Match, Participant
from proxy.pairing.service import PairingService
from proxy.pairing.sqlite_store import SqliteStore
from proxy.sip.ids import SequentialIds
from proxy.sip.message import Request, Response
from proxy.sip.parser import parse_message
from proxy.sip.transaction import Address, TimerConfig, TransactionLayer

CALLER = "+15551230001"
CALLER_V = "+15557770001"
CALLEE = "+15559990001"
CALLEE_V = "+15557770002"
A = Address("udp", "127.0.0.2", 5070)
GW1 = Address("udp", "127.0.0.3", 5080)
GW2 = Address("udp", "127.0.0.4", 5090)
ME = ("127.0.0.1", 5060)

_seq = itertools.count(1)


class Harness:
    """The B2BUA and its transaction layer, with a clock the test moves."""

    def __init__(self, tmp: Path, extra_config: str = "") -> None:
        cfg_file = tmp / "sipmask.toml"
        cfg_file.write_text(
            f"""
[[routes]]
prefix = "+1555999"
gateways = ["udp:{GW1.host}:{GW1.port}", "udp:{GW2.host}:{GW2.port}"]
[calls]
ring_timeout_s = 30
max_duration_s = 600
failover_timeout_s = 2
[store]
path = "{tmp / 'db.sqlite'}"
key_file = "{tmp / 'key'}"
{extra_config}
"""
        )
        self.config = load_config(cfg_file)
        vault = NumberVault.from_key_file(self.config.store.key_file)
        self.store = SqliteStore(self.config.store.path, vault)
        self.now = 1000.0
        self.service = PairingService(self.store, PairingCache(), lambda: self.now)
        self.session = self.store.create_session(
            Participant(CALLER, CALLER_V), Participant(CALLEE, CALLEE_V), now=self.now
        )
        self.service.start()
        self.layer = TransactionLayer(TimerConfig(), SequentialIds("s"))
        self.b2b = B2bua(
            layer=self.layer,
            config=self.config,
            rules=default_rules(),
            pairings=self.service,
            ids=SequentialIds("b"),
            local_address=lambda transport: ME,
            tokenize=vault.token,
            log=structlog.get_logger("test"),
        )
        self.sent: list[tuple[Request | Response, Address]] = []

    def feed(self, raw: str, source: Address) -> list[tuple[Request | Response, Address]]:
        msg = parse_message(raw.replace("\n", "\r\n").encode())
        for event in self.layer.receive(msg, source, self.now):
            self.b2b.handle(event, self.now)
        return self.drain()

    def advance(self, seconds: float) -> list[tuple[Request | Response, Address]]:
        end = self.now + seconds
        while True:
            deadlines = [d for d in (self.layer.next_deadline(), self.b2b.next_deadline()) if d is not None]
            nxt = min(deadlines) if deadlines else None
            if nxt is None or nxt > end:
                break
            self.now = max(self.now, nxt)
            for event in self.layer.handle_timers(self.now):
                self.b2b.handle(event, self.now)
            self.b2b.handle_timers(self.now)
        self.now = end
        return self.drain()

    def drain(self) -> list[tuple[Request | Response, Address]]:
        out = [(s.message, s.dest) for s in self.layer.take_outgoing()]
        # every message crosses the wire: serialise and re-parse it as the peer would
        out = [(parse_message(m.serialise()), d) for m, d in out]
        self.sent.extend(out)
        return out


def invite(frm: str = CALLER, to: str = CALLER_V, extra: str = "", branch: str | None = None, cid: str = "a-call-1") -> str:
    branch = branch or f"z9hG4bKa{next(_seq)}"
    sdp = "v=0\no=alice 1 1 IN IP4 127.0.0.2\ns=alice-secret\nc=IN IP4 127.0.0.2\nt=0 0\nm=audio 6000 RTP/AVP 0\n"
    sdp = sdp.replace("\n", "\r\n")
    return (
        f"INVITE sip:{to}@127.0.0.1:5060 SIP/2.0\n"
        f"Via: SIP/2.0/UDP 127.0.0.2:5070;branch={branch}\n"
        f"From: \"Alice\" <sip:{frm}@127.0.0.2:5070>;tag=atag\n"
        f"To: <sip:{to}@127.0.0.1:5060>\n"
        f"Call-ID: {cid}\n"
        "CSeq: 1 INVITE\n"
        f"Contact: <sip:{frm}@127.0.0.2:5070>\n"
        "Max-Forwards: 70\n"
        f"{extra}"
        "Content-Type: application/sdp\n"
        f"Content-Length: {len(sdp)}\n\n"
    ) + sdp.replace("\r\n", "\n")


def response_to(req: Request, status: int, reason: str, to_tag: str = "btag", extra: str = "", contact: str | None = None) -> str:
    vias = "".join(f"Via: {v}\n" for v in req.headers.get_all("via"))
    to = req.headers.get("to")
    if "tag=" not in (to or "") and status > 100:
        to = f"{to};tag={to_tag}"
    contact_line = f"Contact: <{contact or f'sip:{CALLEE}@127.0.0.3:5080'}>\n" if status < 300 and status > 100 else ""
    return (
        f"SIP/2.0 {status} {reason}\n{vias}From: {req.headers.get('from')}\nTo: {to}\n"
        f"Call-ID: {req.call_id}\nCSeq: {req.headers.get('cseq')}\n{contact_line}{extra}Content-Length: 0\n\n"
    )


def only(out: list[tuple[Request | Response, Address]], kind: type, **want: object) -> list[tuple[Request | Response, Address]]:
    found = [(m, d) for m, d in out if isinstance(m, kind)]
    for key, value in want.items():
        found = [(m, d) for m, d in found if getattr(m, key) == value]
    return found


def everything(msgs: list[tuple[Request | Response, Address]], dest: Address) -> bytes:
    return b"".join(m.serialise() for m, d in msgs if d.host == dest.host)


@pytest.fixture()
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


def answered_call(h: Harness) -> tuple[Request, Request]:
    out = h.feed(invite(extra=f"Remote-Party-ID: <sip:{CALLER}@x>\nDiversion: <sip:{CALLER}@x>\nUser-Agent: Phone-{CALLER}\nX-Secret: {CALLER}\n"), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    h.feed(response_to(b_inv, 180, "Ringing"), GW1)
    out = h.feed(response_to(b_inv, 200, "OK"), GW1)
    assert only(out, Response, status=200)
    a_inv = parse_message(invite().replace("\n", "\r\n").encode())
    out = h.feed(
        "ACK sip:+15557770001@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKack1\n"
        "From: \"Alice\" <sip:+15551230001@127.0.0.2:5070>;tag=atag\n"
        f"To: <sip:+15557770001@127.0.0.1:5060>;tag={a_tag(h)}\nCall-ID: a-call-1\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n",
        A,
    )
    assert only(out, Request, method="ACK"), "the caller's ACK is relayed to the callee"
    return a_inv, b_inv


def a_tag(h: Harness) -> str:
    return [m for m, d in h.sent if isinstance(m, Response) and m.status == 200 and d == A][-1].to_tag or ""


def test_untrusted_source_gets_403(h: Harness) -> None:
    out = h.feed(invite(), Address("udp", "192.0.2.10", 5060))
    assert [m.status for m, _ in only(out, Response) if m.status >= 200] == [403]
    assert not only(out, Request)


def test_unknown_caller_and_wrong_virtual_get_the_same_answer(h: Harness) -> None:
    out1 = h.feed(invite(frm="+15550000000", cid="c1"), A)
    out2 = h.feed(invite(to="+15557779999", cid="c2"), A)
    final1 = [m for m, _ in only(out1, Response) if m.status >= 200]
    final2 = [m for m, _ in only(out2, Response) if m.status >= 200]
    assert [(m.status, m.reason) for m in final1] == [(404, "Not Found")]
    assert [(m.status, m.reason) for m in final2] == [(404, "Not Found")]
    names1 = [n.lower() for n, _ in final1[0].headers]
    names2 = [n.lower() for n, _ in final2[0].headers]
    assert names1 == names2
    assert not only(out1 + out2, Request)


def test_b_leg_is_a_new_dialog_with_virtual_identities_only(h: Harness) -> None:
    out = h.feed(
        invite(extra=f"P-Asserted-Identity: <sip:{CALLER}@carrier>\nRemote-Party-ID: <sip:{CALLER}@x>\n"
               f"Diversion: <sip:{CALLER}@x>\nUser-Agent: Phone-{CALLER}\nX-Secret: {CALLER}\nSupported: 100rel, timer\n"),
        A,
    )
    trying = only(out, Response, status=100)
    assert trying and trying[0][1] == A
    (b_inv, dest), = only(out, Request, method="INVITE")
    assert dest == GW1
    wire = b_inv.serialise()
    assert CALLER.encode() not in wire and b"5551230001" not in wire
    assert b"127.0.0.2" not in wire.split(b"\r\n\r\n")[0], "caller's address must not appear in B's headers"
    assert b_inv.request_uri.user == CALLEE
    assert b_inv.from_.sip_uri().user == CALLEE_V
    assert b_inv.headers.get("p-asserted-identity") == f"<sip:{CALLEE_V}@127.0.0.1>"
    assert b_inv.call_id != "a-call-1" and b_inv.from_tag != "atag"
    for leaked in ("remote-party-id", "diversion", "user-agent", "x-secret"):
        assert b_inv.headers.get(leaked) is None
    assert b_inv.headers.get("supported") == "100rel, timer"
    assert b"o=- 1 1 IN IP4 127.0.0.1" in b_inv.body and b"s=-" in b_inv.body and b"alice" not in b_inv.body


def test_basic_call_relays_answer_ack_and_bye_and_frees_everything(h: Harness) -> None:
    a_inv, b_inv = answered_call(h)
    a_side = everything(h.sent, A)
    assert CALLEE.encode() not in a_side and b"5559990001" not in a_side and b"127.0.0.3" not in a_side
    out = h.feed(
        "BYE sip:x@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKbye1\n"
        "From: <sip:+15551230001@127.0.0.2:5070>;tag=atag\n"
        f"To: <sip:+15557770001@127.0.0.1:5060>;tag={a_tag(h)}\nCall-ID: a-call-1\nCSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n",
        A,
    )
    assert only(out, Response, status=200)[0][1] == A
    (b_bye, dest), = only(out, Request, method="BYE")
    assert dest.host == "127.0.0.3" and b_bye.call_id == b_inv.call_id
    h.feed(response_to(b_bye, 200, "OK"), GW1)
    assert h.b2b.active_calls == 0 and not h.b2b.dialogs
    h.advance(64)
    assert sum(h.layer.counts.values()) == 0, h.layer.counts
    h.service.flush()
    cdrs = h.store.list_cdrs()
    assert [c.outcome for c in cdrs] == ["completed"]


def test_200_ok_carries_no_callee_identity_back(h: Harness) -> None:
    out = h.feed(invite(), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    out = h.feed(
        response_to(b_inv, 200, "OK", extra=f"P-Asserted-Identity: <sip:{CALLEE}@pbx>\nServer: PBX-{CALLEE}\nRemote-Party-ID: <sip:{CALLEE}@pbx>\n"),
        GW1,
    )
    (ok, dest), = only(out, Response, status=200)
    assert dest == A
    wire = ok.serialise()
    assert CALLEE.encode() not in wire and b"5559990001" not in wire and b"127.0.0.3" not in wire
    assert ok.headers.get("p-asserted-identity") == f"<sip:{CALLER_V}@127.0.0.1>"


def test_responses_relayed_to_the_caller_share_their_head_whatever_came_before(tmp_path: Path) -> None:
    """The 1xx/2xx relayed to A carry the A INVITE's Via/From/To (with our tag)/Call-ID/CSeq,
    its Record-Route, our Contact and the virtual identity, whether or not a provisional was
    relayed first (the first one renders the lines the later ones reuse)."""
    rr = "Record-Route: <sip:proxy1.example;lr>\nRecord-Route: <sip:proxy2.example;lr>\n"
    shared = ("via", "from", "to", "call-id", "cseq", "record-route", "contact", "p-asserted-identity")

    def head(msg: Response) -> list[tuple[str, str]]:
        return [(k, v) for k, _, v in msg.headers.keyed() if k in shared]

    relayed: dict[str, list[Response]] = {}
    for flow in ("ringing first", "answered at once"):
        (tmp_path / flow.replace(" ", "_")).mkdir()
        hh = Harness(tmp_path / flow.replace(" ", "_"))
        out = hh.feed(invite(extra=rr, branch="z9hG4bKsame"), A)
        b_inv = only(out, Request, method="INVITE")[0][0]
        got = []
        if flow == "ringing first":
            (ringing, _), = only(hh.feed(response_to(b_inv, 180, "Ringing"), GW1), Response, status=180)
            got.append(ringing)
        (ok, _), = only(hh.feed(response_to(b_inv, 200, "OK", extra="Session-Expires: 1800\n"), GW1), Response, status=200)
        got.append(ok)
        relayed[flow] = got
    ringing, ok = relayed["ringing first"]
    (direct,) = relayed["answered at once"]
    assert head(ringing) == head(ok) == head(direct)
    assert [v for k, v in head(ok) if k == "record-route"] == ["<sip:proxy1.example;lr>", "<sip:proxy2.example;lr>"]
    assert ok.to_tag and ok.to_tag == ringing.to_tag
    assert ok.headers.get("session-expires") == direct.headers.get("session-expires") == "1800"
    assert ringing.headers.get("session-expires") is None  # each response's own lines stay its own
    assert ok.serialise().replace(ok.to_tag.encode(), b"T") == direct.serialise().replace(direct.to_tag.encode(), b"T")


def test_failover_on_503_goes_to_next_gateway(h: Harness) -> None:
    out = h.feed(invite(), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    out = h.feed(response_to(b_inv, 503, "Service Unavailable"), GW1)
    (retry, dest), = only(out, Request, method="INVITE")
    assert dest == GW2
    assert not [m for m, d in out if isinstance(m, Response) and d == A and m.status >= 200]


def test_failover_when_the_gateway_is_silent(h: Harness) -> None:
    h.feed(invite(), A)
    out = h.advance(2.5)
    assert [d for m, d in only(out, Request, method="INVITE")][-1] == GW2


def test_busy_is_relayed(h: Harness) -> None:
    out = h.feed(invite(), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    h.feed(response_to(b_inv, 180, "Ringing"), GW1)
    out = h.feed(response_to(b_inv, 486, "Busy Here"), GW1)
    assert only(out, Request, method="ACK"), "the client transaction ACKs the 486 hop by hop"
    assert [(m.status, d) for m, d in only(out, Response) if m.status >= 200] == [(486, A)]
    assert h.b2b.active_calls == 0


def test_redirect_is_not_relayed_with_its_contacts(h: Harness) -> None:
    out = h.feed(invite(), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    out = h.feed(response_to(b_inv, 180, "Ringing"), GW1)
    out = h.feed(
        response_to(b_inv, 302, "Moved", extra=f"Contact: <sip:{CALLEE}@10.9.9.9>\n"),
        GW1,
    )
    (final, _), = [(m, d) for m, d in only(out, Response) if d == A and m.status >= 200]
    assert final.status == 480 and CALLEE.encode() not in final.serialise()


def test_ring_timeout_answers_480_and_cancels_b(h: Harness) -> None:
    out = h.feed(invite(), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    h.feed(response_to(b_inv, 180, "Ringing"), GW1)
    out = h.advance(31)
    # set: Timer G retransmits the 480 since this caller never ACKs (§17.2.1)
    assert {m.status for m, d in only(out, Response) if d == A and m.status >= 200} == {480}
    assert only(out, Request, method="CANCEL")


def test_cancel_before_any_provisional_waits_for_one(h: Harness) -> None:
    raw = invite(branch="z9hG4bKcx")
    out = h.feed(raw, A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    cancel = (
        "CANCEL sip:+15557770001@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKcx\n"
        "From: \"Alice\" <sip:+15551230001@127.0.0.2:5070>;tag=atag\nTo: <sip:+15557770001@127.0.0.1:5060>\n"
        "Call-ID: a-call-1\nCSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )
    out = h.feed(cancel, A)
    statuses = sorted(m.status for m, d in only(out, Response) if d == A)
    assert statuses == [200, 487]
    assert not only(out, Request, method="CANCEL"), "§9.1: no CANCEL before a provisional"
    out = h.feed(response_to(b_inv, 180, "Ringing"), GW1)
    assert only(out, Request, method="CANCEL")


def test_refer_is_refused_and_glare_gets_491(h: Harness) -> None:
    answered_call(h)
    tag = a_tag(h)

    def req(method: str, branch: str, cseq: int, extra: str = "") -> str:
        return (
            f"{method} sip:x@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK{branch}\n"
            "From: <sip:+15551230001@127.0.0.2:5070>;tag=atag\n"
            f"To: <sip:+15557770001@127.0.0.1:5060>;tag={tag}\nCall-ID: a-call-1\nCSeq: {cseq} {method}\n"
            f"Contact: <sip:+15551230001@127.0.0.2:5070>\nMax-Forwards: 70\n{extra}Content-Length: 0\n\n"
        )

    out = h.feed(req("REFER", "r1", 5, "Refer-To: <sip:+15550001111@x>\n"), A)
    assert [m.status for m, _ in only(out, Response)] == [403]
    out = h.feed(req("INVITE", "ri1", 6), A)
    assert only(out, Request, method="INVITE"), "re-INVITE relayed"
    out = h.feed(req("INVITE", "ri2", 7), A)
    assert 491 in [m.status for m, _ in only(out, Response)]


def test_max_duration_hangs_up_both_legs(h: Harness) -> None:
    answered_call(h)
    out = h.advance(601)
    byes = only(out, Request, method="BYE")
    assert {d.host for _, d in byes} == {"127.0.0.2", "127.0.0.3"}
    assert h.b2b.active_calls == 0


def test_session_timer_without_refresh_ends_the_call(h: Harness) -> None:
    out = h.feed(invite(extra="Supported: timer\nSession-Expires: 90\n"), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    assert b_inv.headers.get("session-expires") == "90"
    h.feed(response_to(b_inv, 200, "OK", extra="Session-Expires: 90;refresher=uac\nRequire: timer\n"), GW1)
    out = h.advance(91)
    assert len(only(out, Request, method="BYE")) >= 1
    assert h.b2b.active_calls == 0


def _in_dialog(h: Harness, method: str, branch: str, cseq: int, extra: str = "", body: str = "") -> str:
    """An in-dialog request from the caller (A) on the answered call."""
    return (
        f"{method} sip:x@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK{branch}\n"
        "From: <sip:+15551230001@127.0.0.2:5070>;tag=atag\n"
        f"To: <sip:+15557770001@127.0.0.1:5060>;tag={a_tag(h)}\nCall-ID: a-call-1\nCSeq: {cseq} {method}\n"
        f"Contact: <sip:+15551230001@127.0.0.2:5070>\nMax-Forwards: 70\n{extra}Content-Length: {len(body)}\n\n{body}"
    )


def _from_callee(b_req: Request, method: str, branch: str, cseq: int, extra: str = "") -> str:
    """An in-dialog request from the callee (B) in the B-leg dialog of ``b_req``."""
    return (
        f"{method} sip:{CALLEE_V}@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bK{branch}\n"
        f"From: {b_req.headers.get('to')};tag=btag\nTo: {b_req.headers.get('from')}\n"
        f"Call-ID: {b_req.call_id}\nCSeq: {cseq} {method}\nContact: <sip:{CALLEE}@127.0.0.3:5080>\n"
        f"Max-Forwards: 70\n{extra}Content-Length: 0\n\n"
    )


def test_options_out_of_dialog_is_answered_locally(h: Harness) -> None:
    out = h.feed(
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKopt1\n"
        "From: <sip:ping@127.0.0.2>;tag=p1\nTo: <sip:127.0.0.1>\nCall-ID: ping-1\nCSeq: 1 OPTIONS\n"
        "Max-Forwards: 70\nContent-Length: 0\n\n",
        A,
    )
    (ok, dest), = only(out, Response)
    assert (ok.status, dest) == (200, A)
    assert "INVITE" in (ok.headers.get("allow") or "")
    assert not only(out, Request), "an OPTIONS ping is not relayed anywhere"


def test_options_in_dialog_crosses_legs_without_identities(h: Harness) -> None:
    answered_call(h)
    out = h.feed(_in_dialog(h, "OPTIONS", "o2", 3, extra=f"User-Agent: Phone-{CALLER}\n"), A)
    (b_opt, dest), = only(out, Request, method="OPTIONS")
    assert dest.host == "127.0.0.3"
    wire = b_opt.serialise()
    assert CALLER.encode() not in wire and b"127.0.0.2" not in wire
    out = h.feed(response_to(b_opt, 200, "OK", extra=f"Server: PBX-{CALLEE}\n"), GW1)
    (ok, dest), = only(out, Response, status=200)
    assert dest == A and CALLEE.encode() not in ok.serialise()


def test_bye_crossing_a_reinvite_frees_both_legs(h: Harness) -> None:
    """A re-INVITEs (hold); before B answers it, B hangs up. A's re-INVITE gets a final answer,
    A gets a BYE, and nothing of the call survives."""
    _, b_inv = answered_call(h)
    out = h.feed(_in_dialog(h, "INVITE", "hold1", 2), A)
    (b_reinv, _), = only(out, Request, method="INVITE")
    out = h.feed(_from_callee(b_inv, "BYE", "bbye1", 1), GW1)
    assert [m.status for m, d in only(out, Response) if d.host == "127.0.0.3"] == [200]
    (a_bye, dest), = only(out, Request, method="BYE")
    assert dest.host == "127.0.0.2"
    # the callee answers its pending re-INVITE (481/487 after its BYE) and A's BYE is answered
    h.feed(response_to(b_reinv, 487, "Request Terminated"), GW1)
    finals = [m.status for m, d in only(h.sent, Response) if d == A and m.cseq.method == "INVITE" and m.cseq.number == 2 and m.status >= 200]
    assert finals and all(s >= 300 for s in finals), finals
    h.feed(response_to(a_bye, 200, "OK"), A)
    h.advance(64)
    assert h.b2b.active_calls == 0 and not h.b2b.dialogs
    assert sum(h.layer.counts.values()) == 0, h.layer.counts


def test_session_timer_refreshed_by_reinvite_keeps_the_call(h: Harness) -> None:
    out = h.feed(invite(extra="Supported: timer\nSession-Expires: 90\n"), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    h.feed(response_to(b_inv, 200, "OK", extra="Session-Expires: 90;refresher=uac\nRequire: timer\n"), GW1)
    h.feed(
        "ACK sip:x@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKack9\n"
        "From: <sip:+15551230001@127.0.0.2:5070>;tag=atag\n"
        f"To: <sip:+15557770001@127.0.0.1:5060>;tag={a_tag(h)}\nCall-ID: a-call-1\nCSeq: 1 ACK\nContent-Length: 0\n\n",
        A,
    )
    h.advance(60)
    out = h.feed(_in_dialog(h, "INVITE", "refresh1", 2, extra="Session-Expires: 90;refresher=uac\n"), A)
    (b_refresh, _), = only(out, Request, method="INVITE")
    h.feed(response_to(b_refresh, 200, "OK", extra="Session-Expires: 90;refresher=uac\nRequire: timer\n"), GW1)
    out = h.advance(60)  # 120 s after the answer, 60 s after the refresh: still up
    assert not only(out, Request, method="BYE")
    assert h.b2b.active_calls == 1
    out = h.advance(40)  # no further refresh: it ends
    assert only(out, Request, method="BYE")
    assert h.b2b.active_calls == 0


def test_trusted_trunk_identity_comes_from_pai(tmp_path: Path) -> None:
    h = Harness(tmp_path, extra_config='[[trunks]]\nname = "carrier"\nsources = ["127.0.0.2/32"]\ntrust_pai = true\n')
    # From carries a number with no pairing; the trusted PAI names the paired caller
    out = h.feed(invite(frm="+15550000000", extra=f"P-Asserted-Identity: <sip:{CALLER}@carrier>\n"), A)
    assert only(out, Request, method="INVITE"), "identity taken from P-Asserted-Identity"


def test_untrusted_trunk_ignores_pai(tmp_path: Path) -> None:
    h = Harness(tmp_path, extra_config='[[trunks]]\nname = "pbx"\nsources = ["127.0.0.2/32"]\ntrust_pai = false\n')
    out = h.feed(invite(frm="+15550000000", extra=f"P-Asserted-Identity: <sip:{CALLER}@carrier>\n"), A)
    assert [m.status for m, _ in only(out, Response) if m.status >= 200] == [404]
    assert not only(out, Request)


def test_national_numbers_are_normalised_with_the_trunk_region(tmp_path: Path) -> None:
    h = Harness(tmp_path, extra_config='[[trunks]]\nname = "us"\nsources = ["127.0.0.0/8"]\ndefault_region = "US"\n')
    out = h.feed(invite(frm="5551230001", to="(555) 777-0001".replace(" ", "")), A)
    (b_inv, _), = only(out, Request, method="INVITE")
    assert b_inv.request_uri.user == CALLEE


def _message(frm: str = CALLER, to: str = CALLER_V, text: str = "running 5 min late", extra: str = "") -> str:
    return (
        f"MESSAGE sip:{to}@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKm{next(_seq)}\n"
        f"From: <sip:{frm}@127.0.0.2:5070>;tag=mtag\nTo: <sip:{to}@127.0.0.1:5060>\nCall-ID: msg-1\n"
        f"CSeq: 1 MESSAGE\nMax-Forwards: 70\n{extra}Content-Type: text/plain\nContent-Length: {len(text)}\n\n{text}"
    )


def test_message_is_masked_through_the_session_and_answered(h: Harness) -> None:
    out = h.feed(_message(extra=f"User-Agent: Phone-{CALLER}\n"), A)
    (b_msg, dest), = only(out, Request, method="MESSAGE")
    assert dest == GW1
    assert b_msg.request_uri.user == CALLEE and b_msg.from_.sip_uri().user == CALLEE_V
    wire = b_msg.serialise()
    assert CALLER.encode() not in wire and b"127.0.0.2" not in wire and b"msg-1" not in wire
    assert b_msg.body == b"running 5 min late" and b_msg.headers.get("content-type") == "text/plain"
    out = h.feed(response_to(b_msg, 202, "Accepted", extra=f"Server: PBX-{CALLEE}\n"), GW1)
    (ok, dest), = only(out, Response)
    assert (ok.status, dest) == (202, A)
    assert CALLEE.encode() not in ok.serialise() and b"127.0.0.3" not in ok.serialise()


def test_message_from_unknown_caller_gets_the_uniform_answer(h: Harness) -> None:
    out = h.feed(_message(frm="+15550000000"), A)
    assert [m.status for m, _ in only(out, Response)] == [404]
    assert not only(out, Request)


def test_message_to_a_silent_gateway_gets_408(h: Harness) -> None:
    h.feed(_message(), A)
    out = h.advance(40)
    assert 408 in [m.status for m, d in only(out, Response) if d == A]


class FakeHook:
    """The B2BUA's ``unknown_lookup``: answers from ``answers`` or parks the ask until the
    test calls ``finish``."""

    def __init__(self, answers: dict[tuple[str, str], object] | None = None) -> None:
        self.answers = answers or {}
        self.asked: list[tuple[str, str, object]] = []

    def cached(self, caller: str, dialed: str) -> object:
        return self.answers.get((caller, dialed), "missing")

    def ask(self, caller: str, dialed: str, done: object) -> None:
        self.asked.append((caller, dialed, done))


STRANGER = "+15550000000"


def _hooked(tmp_path: Path, hook: FakeHook) -> Harness:
    h = Harness(tmp_path, extra_config="")
    h.b2b.calls_cfg = dataclasses.replace(h.b2b.calls_cfg, unknown_policy="hook")
    h.b2b.unknown_lookup = hook
    return h


def test_hook_answer_connects_an_unknown_caller(tmp_path: Path) -> None:
    hook = FakeHook()
    h = _hooked(tmp_path, hook)
    out = h.feed(invite(frm=STRANGER), A)
    assert [m.status for m, _ in only(out, Response)] == [100] and not only(out, Request)
    (caller, dialed, done), = hook.asked
    assert (caller, dialed) == (STRANGER, CALLER_V)
    done(Match("hook", CALLEE, CALLEE_V), h.now)  # type: ignore[operator]
    (b_inv, dest), = only(h.drain(), Request, method="INVITE")
    assert dest == GW1 and b_inv.request_uri.user == CALLEE
    assert STRANGER.encode() not in b_inv.serialise()


def test_hook_reject_and_cached_reject_get_the_uniform_answer(tmp_path: Path) -> None:
    hook = FakeHook({("+15550000001", CALLER_V): None})
    h = _hooked(tmp_path, hook)
    out = h.feed(invite(frm="+15550000001", cid="c1"), A)
    assert [m.status for m, _ in only(out, Response) if m.status >= 200] == [404]
    h.feed(invite(frm=STRANGER, cid="c2"), A)
    hook.asked[0][2](None, h.now)  # type: ignore[operator]
    assert [m.status for m, _ in only(h.drain(), Response) if m.status >= 200] == [404]


def test_cancel_while_the_hook_thinks_gets_487_and_a_late_answer_is_ignored(tmp_path: Path) -> None:
    hook = FakeHook()
    h = _hooked(tmp_path, hook)
    h.feed(invite(frm=STRANGER, branch="z9hG4bKhk"), A)
    out = h.feed(
        "CANCEL sip:+15557770001@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKhk\n"
        f"From: \"Alice\" <sip:{STRANGER}@127.0.0.2:5070>;tag=atag\nTo: <sip:+15557770001@127.0.0.1:5060>\n"
        "Call-ID: a-call-1\nCSeq: 1 CANCEL\nMax-Forwards: 70\nContent-Length: 0\n\n",
        A,
    )
    assert sorted(m.status for m, _ in only(out, Response)) == [200, 487]
    hook.asked[0][2](Match("hook", CALLEE, CALLEE_V), h.now)  # type: ignore[operator]
    assert not only(h.drain(), Request, method="INVITE")
    assert h.b2b.active_calls == 0


def test_fallback_route_policy_sends_unknown_callers_to_the_fallback(tmp_path: Path) -> None:
    h = Harness(tmp_path, extra_config="")
    gw = Gateway("udp", "127.0.0.9", 5099)
    h.b2b.calls_cfg = dataclasses.replace(h.b2b.calls_cfg, unknown_policy="route", fallback_route=(gw,))
    out = h.feed(invite(frm=STRANGER), A)
    (b_inv, dest), = only(out, Request, method="INVITE")
    assert (dest.host, dest.port) == ("127.0.0.9", 5099)
    assert STRANGER.encode() not in b_inv.serialise() and b"5550000000" not in b_inv.serialise()


def test_message_only_session_carries_messages_but_not_calls(h: Harness) -> None:
    h.store.close_session(h.session.id, now=h.now)
    h.store.create_session(Participant(CALLER, CALLER_V), Participant(CALLEE, CALLEE_V),
                           mode="message", now=h.now)
    h.service.poll()
    out = h.feed(invite(), A)
    assert [m.status for m, _ in only(out, Response) if m.status >= 200] == [404]
    assert not only(out, Request)
    out = h.feed(_message(), A)
    assert only(out, Request, method="MESSAGE")


def test_after_the_call_ended_a_2xx_retransmission_is_reacked_and_another_forks_2xx_released(h: Harness) -> None:
    """The ended call is let go at BYE; its B-leg INVITE transaction still lingers (RFC 6026)."""
    _, b_inv = answered_call(h)
    out = h.feed(_in_dialog(h, "BYE", "byeF", 2), A)
    (b_bye, _), = only(out, Request, method="BYE")
    h.feed(response_to(b_bye, 200, "OK"), GW1)
    assert h.b2b.active_calls == 0
    out = h.feed(response_to(b_inv, 200, "OK"), GW1)  # the same 2xx again: ACK only
    assert [m.method for m, _ in only(out, Request)] == ["ACK"]
    out = h.feed(response_to(b_inv, 200, "OK", to_tag="fork2"), GW1)
    assert sorted(m.method for m, _ in only(out, Request)) == ["ACK", "BYE"]
    assert all(m.to_tag == "fork2" for m, _ in only(out, Request))


@pytest.mark.parametrize("flow", [
    test_basic_call_relays_answer_ack_and_bye_and_frees_everything,
    test_busy_is_relayed,
    test_cancel_before_any_provisional_waits_for_one,
    test_ring_timeout_answers_480_and_cancels_b,
    test_bye_crossing_a_reinvite_frees_both_legs,
    test_failover_on_503_goes_to_next_gateway,
])
def test_a_finished_call_leaves_nothing_for_the_cyclic_gc(h: Harness, flow: object) -> None:
    """Calls are freed by reference counting once their transactions end: the cyclic GC's
    pauses grow with what it has to scan (at 1,000 calls/s a full pass over lingering calls
    took ~0.9 s and made peers retransmit)."""
    gc.collect()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        flow(h)  # type: ignore[operator]
        h.advance(200)  # every transaction timer and the ring timer have fired
        gc.collect()
        left = sorted({type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith("proxy.")})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert left == []


def _ack_from_caller(h: Harness, branch: str = "z9hG4bKack1") -> str:
    return (
        f"ACK sip:+15557770001@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch={branch}\n"
        "From: \"Alice\" <sip:+15551230001@127.0.0.2:5070>;tag=atag\n"
        f"To: <sip:+15557770001@127.0.0.1:5060>;tag={a_tag(h)}\nCall-ID: a-call-1\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )


def test_callee_2xx_retransmitted_before_the_callers_late_ack_is_held_never_byed(h: Harness) -> None:
    """RFC 3261 §13.3.1.4 / §13.2.2.4: the callee re-sends its 2xx until it gets an ACK; the
    B2BUA holds it until the caller's ACK (which may carry the answer of a late offer) and
    then ACKs; a retransmitted 2xx of the answered call is never taken for a stray one."""
    out = h.feed(invite(), A)
    (b_inv, _), = only(out, Request, method="INVITE")
    h.feed(response_to(b_inv, 180, "Ringing"), GW1)
    out = h.feed(response_to(b_inv, 200, "OK"), GW1)
    assert only(out, Response, status=200)
    # the caller's ACK is 700 ms late: the callee retransmits its 2xx at T1, 2*T1
    for wait in (0.5, 0.2):
        h.advance(wait)
        out = h.feed(response_to(b_inv, 200, "OK"), GW1)
        assert not only(out, Request), [m.method for m, _ in only(out, Request)]
    assert h.b2b.active_calls == 1
    out = h.feed(_ack_from_caller(h), A)
    (ack, dest), = only(out, Request, method="ACK")
    assert dest == GW1 and ack.call_id == b_inv.call_id
    # further 2xx retransmissions (our ACK lost) are re-ACKed, never BYEd
    h.advance(0.5)
    out = h.feed(response_to(b_inv, 200, "OK"), GW1)
    assert [m.method for m, _ in only(out, Request)] == ["ACK"]
    h.advance(30)
    assert h.b2b.active_calls == 1
    assert not only(h.sent, Request, method="BYE")


def test_callee_2xx_retransmitted_when_the_callers_ack_never_comes_ends_the_call_once(h: Harness) -> None:
    """No ACK from the caller within 64*T1 (§13.3.1.4): both legs are released once, with BYE."""
    out = h.feed(invite(), A)
    (b_inv, _), = only(out, Request, method="INVITE")
    h.feed(response_to(b_inv, 200, "OK"), GW1)
    for _ in range(5):
        h.advance(1)
        out = h.feed(response_to(b_inv, 200, "OK"), GW1)
        assert not only(out, Request, method="BYE")
    h.advance(40)
    byes = only(h.sent, Request, method="BYE")
    assert len({m.branch for m, d in byes if d == GW1}) == 1  # one BYE (and its retransmissions)
    assert h.b2b.active_calls == 0
    h.service.flush()
    (cdr,) = h.store.list_cdrs()
    assert cdr.cause == "no_ack"


def _stray_2xx(call_id: str, contact: str, extra: str = "") -> str:
    """A 2xx to an INVITE of ours that no transaction or dialog of the B2BUA knows."""
    return (
        "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKgone1;rport=5060\n"
        f"From: <sip:{CALLEE_V}@127.0.0.1>;tag=ourtag\nTo: <sip:{CALLEE}@127.0.0.3>;tag=fartag\n"
        f"Call-ID: {call_id}\nCSeq: 7 INVITE\nContact: <{contact}>\n{extra}Content-Length: 0\n\n"
    )


def test_13_2_2_4_a_2xx_of_an_unknown_dialog_is_acked_and_released_with_bye(h: Harness) -> None:
    """A 2xx whose client transaction is gone and whose dialog is unknown: ACK it and send BYE,
    both built from the response itself, to its Contact when that is an IP address."""
    out = h.feed(_stray_2xx("gone-1", f"sip:{CALLEE}@127.0.0.3:5082", "Record-Route: <sip:127.0.0.5:5070;lr>\n"), GW1)
    (ack, ack_dest), = only(out, Request, method="ACK")
    (bye, bye_dest), = only(out, Request, method="BYE")
    # the route set (Record-Route reversed) is the way in: its first hop is where they go
    assert ack_dest == bye_dest == Address("udp", "127.0.0.5", 5070)
    for req in (ack, bye):
        assert req.uri == f"sip:{CALLEE}@127.0.0.3:5082"
        assert req.call_id == "gone-1" and req.from_tag == "ourtag" and req.to_tag == "fartag"
        assert req.headers.get("route") == "<sip:127.0.0.5:5070;lr>"
        assert req.top_via.host == "127.0.0.1" and req.branch != "z9hG4bKgone1"
    assert (ack.cseq.number, ack.cseq.method) == (7, "ACK")
    assert (bye.cseq.number, bye.cseq.method) == (8, "BYE")
    assert ack.branch != bye.branch
    assert h.b2b.active_calls == 0


def test_13_2_2_4_a_stray_2xx_with_a_host_name_contact_is_released_at_its_source(h: Harness) -> None:
    out = h.feed(_stray_2xx("gone-2", f"sip:{CALLEE}@pbx.example.com"), GW1)
    assert sorted((m.method, d) for m, d in only(out, Request)) == [("ACK", GW1), ("BYE", GW1)]


def test_13_2_2_4_another_forks_2xx_after_the_ended_calls_transaction_is_gone_is_released(h: Harness) -> None:
    _, b_inv = answered_call(h)
    out = h.feed(_in_dialog(h, "BYE", "byeG", 2), A)
    (b_bye, _), = only(out, Request, method="BYE")
    h.feed(response_to(b_bye, 200, "OK"), GW1)
    h.advance(64)  # RFC 6026 Timer M: the B-leg INVITE transaction is gone
    assert sum(h.layer.counts.values()) == 0, h.layer.counts
    out = h.feed(response_to(b_inv, 200, "OK", to_tag="fork3"), GW1)
    requests = only(out, Request)
    assert sorted(m.method for m, _ in requests) == ["ACK", "BYE"]
    assert all(m.to_tag == "fork3" and m.call_id == b_inv.call_id and d == GW1 for m, d in requests)


def test_a_2xx_of_a_known_dialog_after_its_transaction_is_gone_starts_nothing(h: Harness) -> None:
    """The call is up; its B-leg INVITE transaction has ended (Timer M): a late copy of the 2xx
    is neither ACKed again nor taken for a stray (the dialog is ours)."""
    _, b_inv = answered_call(h)
    h.advance(40)
    assert h.b2b.active_calls == 1
    out = h.feed(response_to(b_inv, 200, "OK"), GW1)
    assert not only(out, Request)
    assert h.b2b.active_calls == 1
