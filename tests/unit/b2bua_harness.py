"""The B2BUA driven sans-IO for its tests: a fake clock, the real transaction layer, a real
SQLite pairing store, and peers that are just bytes in and out (no sockets); the messages the
peers send, and the steps of a call the tests share."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path

import structlog

from proxy.b2bua import B2bua, default_rules
from proxy.config import load_config
from proxy.pairing.cache import PairingCache
from proxy.pairing.crypto import NumberVault
from proxy.pairing.model import Participant
from proxy.pairing.service import PairingService
from proxy.pairing.stores.sqlite import SqliteStore
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

    def __init__(self, tmp: Path, extra_config: str = "", calls_config: str = "") -> None:
        cfg_file = tmp / "sipmask.toml"
        cfg_file.write_text(
            f"""
[[routes]]
prefix = "+1555999"
gateways = ["udp:{GW1.host}:{GW1.port}", "udp:{GW2.host}:{GW2.port}"]
[calls]
ring_timeout_s = 30
failover_timeout_s = 2
{calls_config or "max_duration_s = 600"}
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

    def feed(self, raw: str, source: Address, delay: float = 0.0) -> list[tuple[Request | Response, Address]]:
        """``delay``: how long the datagram waited in the socket before it was read."""
        msg = parse_message(raw.replace("\n", "\r\n").encode())
        for event in self.layer.receive(msg, source, self.now, delay):
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


def in_dialog_request(h: Harness, method: str, branch: str, cseq: int, extra: str = "", body: str = "") -> str:
    """An in-dialog request from the caller (A) on the answered call."""
    return (
        f"{method} sip:x@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK{branch}\n"
        "From: <sip:+15551230001@127.0.0.2:5070>;tag=atag\n"
        f"To: <sip:+15557770001@127.0.0.1:5060>;tag={a_tag(h)}\nCall-ID: a-call-1\nCSeq: {cseq} {method}\n"
        f"Contact: <sip:+15551230001@127.0.0.2:5070>\nMax-Forwards: 70\n{extra}Content-Length: {len(body)}\n\n{body}"
    )


def from_callee(b_req: Request, method: str, branch: str, cseq: int, extra: str = "") -> str:
    """An in-dialog request from the callee (B) in the B-leg dialog of ``b_req``."""
    return (
        f"{method} sip:{CALLEE_V}@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.3:5080;branch=z9hG4bK{branch}\n"
        f"From: {b_req.headers.get('to')};tag=btag\nTo: {b_req.headers.get('from')}\n"
        f"Call-ID: {b_req.call_id}\nCSeq: {cseq} {method}\nContact: <sip:{CALLEE}@127.0.0.3:5080>\n"
        f"Max-Forwards: 70\n{extra}Content-Length: 0\n\n"
    )


def ack_from_caller(h: Harness, branch: str = "z9hG4bKack1") -> str:
    return (
        f"ACK sip:+15557770001@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch={branch}\n"
        "From: \"Alice\" <sip:+15551230001@127.0.0.2:5070>;tag=atag\n"
        f"To: <sip:+15557770001@127.0.0.1:5060>;tag={a_tag(h)}\nCall-ID: a-call-1\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n"
    )


def message_request(frm: str = CALLER, to: str = CALLER_V, text: str = "running 5 min late", extra: str = "") -> str:
    return (
        f"MESSAGE sip:{to}@127.0.0.1:5060 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKm{next(_seq)}\n"
        f"From: <sip:{frm}@127.0.0.2:5070>;tag=mtag\nTo: <sip:{to}@127.0.0.1:5060>\nCall-ID: msg-1\n"
        f"CSeq: 1 MESSAGE\nMax-Forwards: 70\n{extra}Content-Type: text/plain\nContent-Length: {len(text)}\n\n{text}"
    )


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


def hooked(tmp_path: Path, hook: FakeHook) -> Harness:
    h = Harness(tmp_path, extra_config="")
    h.b2b.calls_cfg = dataclasses.replace(h.b2b.calls_cfg, unknown_policy="hook")
    h.b2b.unknown_lookup = hook
    return h
