"""A seeded fuzzer of the sans-IO stack: ``python -m loadtest.fuzz --messages 1000000 --seed N``.

Generates SIP messages with plain :mod:`random` (fast enough for millions; hypothesis is not)
and drives them through sipmask for real, as the transports do: bytes ->
:func:`proxy.sip.parser.parse_message` -> :meth:`TransactionLayer.receive` -> :meth:`B2bua.handle`,
with a fake clock advanced between messages (the layer's and the B2BUA's timers fire), the
outgoing queue drained and every message sipmask would send serialised and re-parsed (what
sipmask emits must always parse; the 400 the transports build for a message that did not parse
is checked the same way).

The mix: new INVITEs that match a pairing (mutated: header values replaced by garbage,
non-UTF-8, huge or empty, headers dropped/duplicated/reordered, bodies broken, start lines
damaged), in-dialog requests from the caller on calls set up earlier (BYE, re-INVITE, UPDATE,
INFO, PRACK, CANCEL, ACK) and from the callee on the B-leg dialogs, responses from the callee
side for the B-leg transactions sipmask opened (Via/Call-ID/tags taken from what it sent),
retransmissions of earlier inputs, and raw random bytes.

Internal errors (any one exits 1): an exception escaping parse (other than SipParseError),
receive, handle or the timers; the B2BUA's guard firing (``internal_error`` in
proxy/b2bua/guard.py: an error inside a call's handling that it had to clean up after); a
message sipmask emits that does not re-parse; a real number of the pairing (in any spelling:
the national ten digits are inside +1555..., 1555... and 555...) in anything sent to the other
party; state left behind (calls, dialogs, transactions) once every timer has run.

The run is cut into epochs of ``--epoch`` messages; each has its own generator
(``random.Random(f"{seed}:{epoch}")``) and a fresh B2BUA and transaction layer, and ends with a
wind-down (the clock moved past every timer, all state checked gone): memory stays bounded and
a failure is replayed from the start of its epoch only: ``--save-failures DIR`` writes one JSON
file per failure, ``--replay FILE`` re-runs its epoch up to the message and reports it again.
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
import traceback
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from proxy.b2bua import B2bua, default_rules
from proxy.config import load_config
from proxy.observability.logging import configure_logging
from proxy.pairing.cache import PairingCache
from proxy.pairing.crypto import NumberVault
from proxy.pairing.model import Participant
from proxy.pairing.service import PairingService
from proxy.pairing.stores.sqlite import SqliteStore
from proxy.sip.errors import SipParseError
from proxy.sip.ids import SequentialIds
from proxy.sip.message import Request, Response
from proxy.sip.parser import parse_message
from proxy.sip.transaction import Address, TimerConfig, TransactionLayer
from proxy.transport.replies import error_reply

CALLER, CALLER_V = "+15551230001", "+15557770001"
CALLEE, CALLEE_V = "+15559990001", "+15557770002"
#: the national ten digits: inside every spelling (+1555..., 1555..., 555...)
CALLER_DIGITS, CALLEE_DIGITS = CALLER[2:].encode(), CALLEE[2:].encode()
A = Address("udp", "127.0.0.2", 5070)
GW1 = Address("udp", "127.0.0.3", 5080)
GW2 = Address("udp", "127.0.0.4", 5090)
GATEWAYS = {(GW1.host, GW1.port): GW1, (GW2.host, GW2.port): GW2}
ME = ("127.0.0.1", 5060)
CATEGORIES = ("invite", "in_dialog_a", "in_dialog_b", "response", "retransmit", "raw")
_WEIGHTS = (22, 18, 7, 38, 6, 9)
_WIND_DOWN_S = 3600.0

_SDP = (
    "v=0\r\no=alice 1 1 IN IP4 127.0.0.2\r\ns=-\r\nc=IN IP4 127.0.0.2\r\nt=0 0\r\n"
    "m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
)
_TOKENS = [
    b"", b"<", b">", b"<sip:", b"\xff\xfe", b"sip:@", b";tag=", b";tag", b"*", b"<sip:x@[::1>", b"1 INVITE",
    b"99999999999999999999", b"-1", b"0", b"<tel:+1>", b'"\\', b",", b"<sip:a@b>,", b";branch=", b"SIP/2.0/UDP",
    b"SIP/2.0/UDP 127.0.0.2:99999", b"SIP/2.0/TCP [::1]:5060;branch=z9hG4bK1;received=x", b"\x00", b"\t",
    b"%00", b"sip:%ff@127.0.0.1", b"<sips:a@b;lr>", b"a" * 300, b";expires=abc", b"timer", b"100rel",
    b"foo, bar", b"application/sdp", b"multipart/mixed;boundary=x", b"text/plain", b"1 BYE", b"2 INVITE",
    b"4294967296 INVITE", b'"a\\\x00" <sip:x@y>', b"<sip:x@y>;;;", b"sip:x@y;maddr=", b"\xc3\x28",
]
_NAMES = ["Via", "From", "To", "Call-ID", "CSeq", "Contact", "Max-Forwards", "Content-Type", "Content-Length",
          "Route", "Record-Route", "Require", "Supported", "Session-Expires", "Min-SE", "RSeq", "RAck",
          "P-Asserted-Identity", "Remote-Party-ID", "Diversion", "User-Agent", "X-Info", "Allow", "Expires",
          "Refer-To", "Replaces", "Privacy", "v", "f", "t", "i", "m", "l", "c", "k", "Subject"]


def _garbage(rng: random.Random, number: str) -> bytes:
    r = rng.random()
    if r < 0.35:
        return rng.choice(_TOKENS)
    if r < 0.55:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))).replace(b"\r", b"").replace(b"\n", b"")
    if r < 0.65:
        return b"x" * rng.choice((1000, 5000, 70000))
    if r < 0.85:  # the sender's own real number, where the other party must never see it
        return rng.choice((b"<sip:%s@127.0.0.2>", b'"%s" <sip:x@y>', b"%s", b"tel:%s", b"<sip:%s@x>;tag=n"))\
            % rng.choice((number, number[1:], number[2:])).encode()
    return "".join(rng.choice("abc;=<>@:\"\\ ,%") for _ in range(rng.randrange(1, 20))).encode()


def mutate(rng: random.Random, raw: bytes, number: str) -> bytes:
    """1-4 random damages to ``raw`` (a well-formed message)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    start, headers = lines[0], lines[1:]
    for _ in range(rng.randrange(1, 5)):
        op = rng.random()
        i = rng.randrange(len(headers)) if headers else 0
        if not headers:
            headers.append(b"X: y")
        name = headers[i].split(b":", 1)[0]
        if op < 0.25:
            headers[i] = name + b": " + _garbage(rng, number)
        elif op < 0.35:
            headers[i] = headers[i] + _garbage(rng, number)
        elif op < 0.45:
            del headers[i]
        elif op < 0.52:
            headers.insert(i, headers[i])
        elif op < 0.57:
            rng.shuffle(headers)
        elif op < 0.65:
            headers.insert(rng.randrange(len(headers) + 1),
                           rng.choice(_NAMES).encode() + b": " + _garbage(rng, number))
        elif op < 0.70:
            headers[i] = rng.choice((name.lower(), name.upper(), name + b" ", b" " + name, b"", b"X\x00Y"))\
                + b":" + headers[i].split(b":", 1)[-1]
        elif op < 0.74:  # folding, LF-only lines
            headers[i] = headers[i].replace(b" ", b"\r\n ", 1) if rng.random() < 0.5 else headers[i] + b"\n"
        elif op < 0.84:
            start = _damage_start(rng, start)
        else:
            body = _damage_body(rng, body, number)
            if rng.random() < 0.5:
                headers = [h for h in headers if not h.lower().startswith((b"content-length", b"l:"))]
                headers.append(b"Content-Length: " + str(len(body)).encode())
    return b"\r\n".join([start, *headers]) + (sep or b"\r\n\r\n") + body


def _damage_start(rng: random.Random, start: bytes) -> bytes:
    parts = start.split(b" ")
    r = rng.random()
    if r < 0.2:
        return start.lower()
    if r < 0.4 and len(parts) > 1:
        parts[rng.randrange(len(parts))] = rng.choice(_TOKENS)
        return b" ".join(parts)
    if r < 0.5:
        return start.replace(b"SIP/2.0", rng.choice((b"SIP/3.0", b"SIP/2", b"sip/2.0", b"")))
    if r < 0.6:
        return start.replace(b" ", b"  ")
    if r < 0.7:
        return start + b" extra"
    if r < 0.8:
        return rng.choice((b"", b" ", b"\x00", b"INVITE", b"SIP/2.0 200", b"SIP/2.0 99 X", b"SIP/2.0 1000 X"))
    return start[: rng.randrange(len(start) + 1)]


def _damage_body(rng: random.Random, body: bytes, number: str) -> bytes:
    r = rng.random()
    lines = body.split(b"\r\n")
    if r < 0.2:
        return body[: rng.randrange(len(body) + 1)]
    if r < 0.4 and lines:
        lines[rng.randrange(len(lines))] = rng.choice((
            b"o=" + number.encode() + b" 1 1 IN IP4 127.0.0.2", b"s=" + number.encode(), b"c= IP4 1.2.3.4",
            b"a=:0 PCMU/8000", b"m=audio x RTP/AVP", b"c=IN IP6 ::1", b"o=", b"=", b"\xff\xfe", b"v=1",
            b"i=" + number.encode(), b"u=sip:" + number.encode() + b"@x", b"e=" + number.encode(),
        ))
        return b"\r\n".join(lines)
    if r < 0.5 and lines:
        del lines[rng.randrange(len(lines))]
        return b"\r\n".join(lines)
    if r < 0.6:
        return b"\r\n".join(reversed(lines))
    if r < 0.7:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(0, 200)))
    if r < 0.8:
        return (b"--x\r\nContent-Type: text/plain\r\n\r\ncall " + number.encode() + b"\r\n--x\r\n"
                b"Content-Type: application/sdp\r\n\r\n" + body + b"\r\n--x--\r\n")
    if r < 0.9:
        return body.replace(b"\r\n", b"\n")
    return body * rng.randrange(2, 50)


@dataclass
class Pending:
    """An INVITE of the caller's not yet answered finally (the A side may CANCEL it)."""

    call_id: str
    branch: str
    from_tag: str
    cseq: int


@dataclass
class DialogA:
    """The caller's side of a call sipmask answered: To tag from its 2xx."""

    call_id: str
    from_tag: str
    to_tag: str
    cseq: int
    acked: bool = False


@dataclass
class DialogB:
    """The callee's side of a B leg sipmask set up: the INVITE it sent, the tag the callee gave."""

    invite: Request
    to_tag: str
    dest: Address
    cseq: int = 100


@dataclass
class Failure:
    kind: str
    detail: str
    epoch: int
    index: int
    category: str
    data: bytes
    source: Address

    def as_json(self, seed: int, epoch_size: int) -> dict[str, Any]:
        return {"kind": self.kind, "detail": self.detail, "seed": seed, "epoch_size": epoch_size,
                "epoch": self.epoch, "index": self.index, "message": self.epoch * epoch_size + self.index,
                "category": self.category, "source": [self.source.transport, self.source.host, self.source.port],
                "input_b64": base64.b64encode(self.data).decode(), "input": self.data.decode("latin-1")}


@dataclass
class Stats:
    messages: int = 0
    by_category: dict[str, Counter[str]] = field(default_factory=lambda: {c: Counter() for c in CATEGORIES})
    responses: Counter[str] = field(default_factory=Counter)
    requests: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    calls: int = 0
    cdrs: int = 0
    max_active_calls: int = 0
    rss_mb: list[float] = field(default_factory=list)

    def merge(self, other: Stats) -> None:
        self.messages += other.messages
        for c in CATEGORIES:
            self.by_category[c].update(other.by_category[c])
        self.responses.update(other.responses)
        self.requests.update(other.requests)
        self.errors.update(other.errors)
        self.calls += other.calls
        self.cdrs += other.cdrs
        self.max_active_calls = max(self.max_active_calls, other.max_active_calls)


class World:
    """The pairing store (kept over the whole run) and the config."""

    def __init__(self, workdir: Path) -> None:
        cfg = workdir / "sipmask.toml"
        cfg.write_text(
            f'[[routes]]\nprefix = "+1555999"\ngateways = ["udp:{GW1.host}:{GW1.port}", "udp:{GW2.host}:{GW2.port}"]\n'
            "[calls]\nring_timeout_s = 30\nmax_duration_s = 300\nfailover_timeout_s = 2\nsession_expires_s = 90\n"
            f'[store]\npath = "{workdir / "db.sqlite"}"\nkey_file = "{workdir / "key"}"\n'
        )
        self.config = load_config(cfg)
        self.vault = NumberVault.from_key_file(self.config.store.key_file)
        self.store = SqliteStore(self.config.store.path, self.vault)
        self.now = 1000.0
        self.service = PairingService(self.store, PairingCache(), lambda: self.now)
        self.store.create_session(Participant(CALLER, CALLER_V), Participant(CALLEE, CALLEE_V), now=self.now)
        self.service.start()


class Epoch:
    """One epoch: a fresh B2BUA and transaction layer, the generator and the checks."""

    def __init__(self, world: World, seed: int, epoch: int, stats: Stats, failures: list[Failure]) -> None:
        self.world, self.epoch, self.stats, self.failures = world, epoch, stats, failures
        self.rng = random.Random(f"{seed}:{epoch}")
        # the clock an epoch starts at depends on the epoch only (an epoch spans < 10,000 s):
        # a replay, or another job running it, sees the same times
        world.now = max(world.now, 1000.0 + epoch * 100_000.0)
        self.layer = TransactionLayer(TimerConfig(), SequentialIds(f"s{epoch}-"))
        self.b2b = B2bua(layer=self.layer, config=world.config, rules=default_rules(), pairings=world.service,
                         ids=SequentialIds(f"b{epoch}-"), local_address=lambda transport: ME,
                         tokenize=world.vault.token, log=structlog.get_logger("fuzz"))
        self.guard: list[str] = []
        report = self.b2b._report

        def _report(exc: Exception) -> None:  # the guard fired: note what it caught, then count it
            frames = traceback.extract_tb(exc.__traceback__)[-4:]
            where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in reversed(frames))
            self.guard.append(f"{type(exc).__name__} at {where}")
            report(exc)

        self.b2b._report = _report  # type: ignore[method-assign]
        self.n = 0
        self.category = ""
        self.data = b""
        self.source = A
        self.pending: deque[Pending] = deque(maxlen=32)
        self.dialogs_a: deque[DialogA] = deque(maxlen=32)
        self.dialogs_b: deque[DialogB] = deque(maxlen=32)
        self.b_requests: deque[tuple[Request, Address]] = deque(maxlen=64)
        self.history: deque[tuple[bytes, Address]] = deque(maxlen=64)
        self.b_tags: dict[str, str] = {}
        self.calls_before = self.b2b.counters.get("calls", 0)

    # ------------------------------------------------------------------ driving
    def fail(self, kind: str, detail: str) -> None:
        self.stats.errors[kind] += 1
        if self.stats.errors[kind] <= 40:  # the first ones of each kind tell the story
            self.failures.append(
                Failure(kind, detail[:2000], self.epoch, self.n, self.category, self.data, self.source))

    def step(self, stop_at: int | None = None) -> None:
        rng = self.rng
        self.category, self.data = "timers", b""  # what the timers send before the next message
        self.advance(rng.expovariate(20.0) if rng.random() > 0.01 else rng.uniform(2.0, 40.0))
        self.category = rng.choices(CATEGORIES, _WEIGHTS)[0]
        data, source = self.generate(self.category)
        self.data, self.source = data, source
        self.history.append((data, source))
        self.deliver(data, source)
        self.n += 1

    def deliver(self, data: bytes, source: Address) -> None:
        counts = self.stats.by_category[self.category]
        counts["messages"] += 1
        self.stats.messages += 1
        now = self.world.now
        try:
            msg = parse_message(data)
        except SipParseError as exc:
            counts["parse_error"] += 1
            try:
                reply = error_reply(exc)
            except Exception as exc2:  # noqa: BLE001 - what the fuzzer is for
                self.fail("crash:error_reply", _exc_text(exc2))
                return
            if reply is not None:
                counts["parse_error_400"] += 1
                self.check_emitted(reply, source, "the transports' 400 (proxy/transport/replies.py)")
            return
        except Exception as exc:  # noqa: BLE001 - what the fuzzer is for
            self.fail("crash:parse_message", _exc_text(exc))
            return
        counts["parsed"] += 1
        try:
            events = self.layer.receive(msg, source, now)
        except Exception as exc:  # noqa: BLE001
            self.fail("crash:layer.receive", _exc_text(exc))
            return
        for event in events:
            try:
                self.b2b.handle(event, now)
            except Exception as exc:  # noqa: BLE001
                self.fail("crash:b2bua.handle", _exc_text(exc))
        self.drain()

    def advance(self, seconds: float) -> None:
        world = self.world
        end = world.now + seconds
        while True:
            deadlines = [d for d in (self.layer.next_deadline(), self.b2b.next_deadline()) if d is not None]
            nxt = min(deadlines) if deadlines else None
            if nxt is None or nxt > end:
                break
            world.now = max(world.now, nxt)
            try:
                events = self.layer.handle_timers(world.now)
            except Exception as exc:  # noqa: BLE001
                self.fail("crash:layer.handle_timers", _exc_text(exc))
                events = []
            for event in events:
                try:
                    self.b2b.handle(event, world.now)
                except Exception as exc:  # noqa: BLE001
                    self.fail("crash:b2bua.handle", _exc_text(exc))
            try:
                self.b2b.handle_timers(world.now)
            except Exception as exc:  # noqa: BLE001
                self.fail("crash:b2bua.handle_timers", _exc_text(exc))
            self.drain()
        world.now = end

    def drain(self) -> None:
        if self.guard:
            for text in self.guard:
                self.fail("guard:internal_error", text)
            self.guard.clear()
        for send in self.layer.take_outgoing():
            try:
                wire = send.message.serialise()
            except Exception as exc:  # noqa: BLE001
                self.fail("emitted:serialise", _exc_text(exc))
                continue
            msg = self.check_emitted(wire, send.dest, "the transaction layer's queue")
            if msg is not None:
                self.observe(msg, send.dest)
        active = self.b2b.active_calls
        if active > self.stats.max_active_calls:
            self.stats.max_active_calls = active

    def check_emitted(self, wire: bytes, dest: Address, origin: str) -> Request | Response | None:
        try:
            msg = parse_message(wire)
        except Exception as exc:  # noqa: BLE001 - SipParseError too: sipmask must emit what parses
            self.fail("emitted:unparseable",
                      f"{_exc_text(exc)} [from {origin}]\n--- emitted to {dest}:\n{wire.decode('latin-1')}")
            return None
        to_callee = (dest.host, dest.port) in GATEWAYS
        digits = CALLER_DIGITS if to_callee else CALLEE_DIGITS
        if not to_callee and dest != A:
            # to where a peer's (fuzzed) Contact pointed: whose side that is, only the peer knows
            self.stats.requests["(to another address)"] += 1
        elif digits in wire:
            head, _, body = wire.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            if digits in lines[0]:
                where, line = "start_line", lines[0]
            elif digits in head:
                line = next(ln for ln in lines if digits in ln)
                where = "header:" + line.split(b":", 1)[0].strip().lower().decode("latin-1")
            else:
                where, line = "body", next((ln for ln in body.splitlines() if digits in ln), body[:100])
            self.fail(f"leak:{where}", f"to {'callee' if to_callee else 'caller'}: {line.decode('latin-1')}"
                      f"\n--- {lines[0].decode('latin-1')}")
        if isinstance(msg, Response):
            self.stats.responses[str(msg.status)] += 1
        else:
            self.stats.requests[msg.method] += 1
        return msg

    # ------------------------------------------------------------------ what sipmask sent
    def observe(self, msg: Request | Response, dest: Address) -> None:
        """Learn from what sipmask sent: B-leg requests to answer, A-side dialogs to talk in."""
        try:
            if isinstance(msg, Request):
                if (dest.host, dest.port) in GATEWAYS and msg.method != "ACK":
                    self.b_requests.append((msg, dest))
                    if msg.method == "INVITE" and not msg.to_tag:
                        self.b_tags.setdefault(msg.call_id, f"bt{self.rng.randrange(1 << 30)}")
                return
            if dest == A and msg.cseq.method == "INVITE" and 200 <= msg.status < 300 and msg.to_tag:
                cid, ftag = msg.call_id, msg.from_tag or ""
                if not any(d.call_id == cid and d.to_tag == msg.to_tag for d in self.dialogs_a):
                    self.dialogs_a.append(DialogA(cid, ftag, msg.to_tag, msg.cseq.number))
        except SipParseError:
            return  # a header of the peer's echoed back; the re-parse check judged the message

    # ------------------------------------------------------------------ generators
    def generate(self, category: str) -> tuple[bytes, Address]:
        rng = self.rng
        if category == "response" and self.b_requests:
            raw, src, own = self.response(), self._last_dest, CALLEE
        elif category == "in_dialog_b" and self.dialogs_b:
            raw, src, own = self.from_callee(), self._last_dest, CALLEE
        elif category == "in_dialog_a" and (self.dialogs_a or self.pending):
            raw, src, own = self.from_caller(), A, CALLER
        elif category == "retransmit" and self.history:
            return rng.choice(self.history)
        elif category == "raw":
            n = rng.randrange(0, 600)
            if rng.random() < 0.5:
                return bytes(rng.randrange(256) for _ in range(n)), rng.choice((A, GW1))
            base = self.invite()
            cut = rng.randrange(len(base))
            return base[:cut] + bytes(rng.randrange(256) for _ in range(n // 4)) + base[cut:], A
        else:
            self.category = "invite"
            raw, src, own = self.invite(), A, CALLER
        if rng.random() < 0.45:
            raw = mutate(rng, raw, own)
        return raw, src

    def invite(self) -> bytes:
        rng = self.rng
        k = rng.randrange(1 << 40)
        cid, branch, ftag = f"fz{self.epoch}-{k}@127.0.0.2", f"z9hG4bKf{k}", f"ft{k}"
        self.pending.append(Pending(cid, branch, ftag, 1))
        sdp = _SDP
        extra = rng.choice(("", "Supported: timer, 100rel\r\n", "Session-Expires: 1800\r\n", "Require: 100rel\r\n",
                            f"P-Asserted-Identity: <sip:{CALLER}@127.0.0.2>\r\nPrivacy: id\r\n",
                            "Record-Route: <sip:127.0.0.9;lr>\r\n"))
        frm = CALLER if rng.random() < 0.95 else "+15550000000"
        return (
            f"INVITE sip:{CALLER_V}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch={branch}\r\n"
            f'From: "Alice" <sip:{frm}@127.0.0.2:5070>;tag={ftag}\r\nTo: <sip:{CALLER_V}@127.0.0.1:5060>\r\n'
            f"Call-ID: {cid}\r\nCSeq: 1 INVITE\r\nContact: <sip:{frm}@127.0.0.2:5070>\r\nMax-Forwards: 70\r\n"
            f"User-Agent: fuzz\r\n{extra}Content-Type: application/sdp\r\nContent-Length: {len(sdp)}\r\n\r\n{sdp}"
        ).encode("utf-8", "surrogateescape")

    def from_caller(self) -> bytes:
        rng = self.rng
        if self.pending and (not self.dialogs_a or rng.random() < 0.15):
            p = rng.choice(self.pending)  # CANCEL a pending INVITE (same branch, §9.1)
            return (
                f"CANCEL sip:{CALLER_V}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.2:5070;branch={p.branch}\r\n"
                f'From: "Alice" <sip:{CALLER}@127.0.0.2:5070>;tag={p.from_tag}\r\n'
                f"To: <sip:{CALLER_V}@127.0.0.1:5060>\r\n"
                f"Call-ID: {p.call_id}\r\nCSeq: {p.cseq} CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            ).encode()
        d = rng.choice(self.dialogs_a)
        unacked = [x for x in self.dialogs_a if not x.acked]
        if unacked and rng.random() < 0.6:
            d = unacked[-1]
            method = "ACK"
        else:
            method = rng.choice(("BYE", "INVITE", "UPDATE", "INFO", "PRACK", "CANCEL", "ACK", "OPTIONS", "REFER",
                                 "NOTIFY", "MESSAGE", "FOO"))
        if method == "ACK":
            d.acked = True
            cseq = d.cseq
        else:
            d.cseq += 1
            cseq = d.cseq
        body = _SDP if method in ("INVITE", "UPDATE") and rng.random() < 0.7 else ""
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        extra = f"RAck: 1 {cseq - 1} INVITE\r\n" if method == "PRACK" else ""
        if method == "BYE" and rng.random() < 0.8:
            self.dialogs_a.remove(d)
        return (
            f"{method} sip:{CALLER_V}@127.0.0.1:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bKd{rng.randrange(1 << 40)}\r\n"
            f'From: "Alice" <sip:{CALLER}@127.0.0.2:5070>;tag={d.from_tag}\r\n'
            f"To: <sip:{CALLER_V}@127.0.0.1:5060>;tag={d.to_tag}\r\nCall-ID: {d.call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:{CALLER}@127.0.0.2:5070>\r\nMax-Forwards: 70\r\n{extra}{ctype}"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode("utf-8", "surrogateescape")

    _last_dest = GW1

    def response(self) -> bytes:
        rng = self.rng
        i = len(self.b_requests) - 1 - min(int(rng.expovariate(0.3)), len(self.b_requests) - 1)
        req, dest = self.b_requests[i]
        self._last_dest = dest
        method = req.method
        if method == "INVITE":
            status = rng.choice((100, 180, 180, 183, 200, 200, 200, 200, 302, 404, 408, 480, 486, 487, 500, 503,
                                 603, rng.randrange(100, 700)))
        else:
            status = rng.choice((200, 200, 200, 481, 408, 500, rng.randrange(100, 700)))
        if status >= 200 and rng.random() < 0.8:
            del self.b_requests[i]
        vias = "".join(f"Via: {v}\r\n" for v in req.headers.get_all("via"))
        to = req.headers.get("to") or ""
        tag = self.b_tags.get(req.call_id, "bt0") if rng.random() < 0.95 else f"fork{rng.randrange(9)}"
        if status > 100 and ";tag=" not in to:
            to = f"{to};tag={tag}"
        contact = f"Contact: <sip:{CALLEE}@{dest.host}:{dest.port}>\r\n" if status < 400 and status > 100 else ""
        body = _SDP.replace("alice", "bob") if method == "INVITE" and status in (183, 200) else ""
        extra = ""
        if status in (180, 183) and rng.random() < 0.3:
            extra = "Require: 100rel\r\nRSeq: 1\r\n"
        if method == "INVITE" and 200 <= status < 300:
            self.dialogs_b.append(DialogB(req, tag, dest))
        reason = rng.choice(("OK", "X", f"Busy {CALLEE}", "")) if rng.random() < 0.2 else "Reason"
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        return (
            f"SIP/2.0 {status} {reason}\r\n{vias}From: {req.headers.get('from')}\r\nTo: {to}\r\n"
            f"Call-ID: {req.call_id}\r\nCSeq: {req.headers.get('cseq')}\r\n{contact}{extra}{ctype}"
            f"Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode("utf-8", "surrogateescape")

    def from_callee(self) -> bytes:
        rng = self.rng
        d = rng.choice(self.dialogs_b)
        self._last_dest = d.dest
        method = rng.choice(("BYE", "INVITE", "UPDATE", "INFO", "OPTIONS", "ACK", "NOTIFY"))
        d.cseq += 1
        if method == "BYE" and rng.random() < 0.8:
            self.dialogs_b.remove(d)
        inv = d.invite
        body = _SDP.replace("alice", "bob") if method in ("INVITE", "UPDATE") else ""
        ctype = "Content-Type: application/sdp\r\n" if body else ""
        target = (inv.headers.get("contact") or "sip:127.0.0.1:5060").strip("<>")
        return (
            f"{method} {target} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {d.dest.host}:{d.dest.port};branch=z9hG4bKc{rng.randrange(1 << 40)}\r\n"
            f"From: {inv.headers.get('to')};tag={d.to_tag}\r\nTo: {inv.headers.get('from')}\r\n"
            f"Call-ID: {inv.call_id}\r\nCSeq: {d.cseq} {method}\r\n"
            f"Contact: <sip:{CALLEE}@{d.dest.host}:{d.dest.port}>\r\n"
            f"Max-Forwards: 70\r\n{ctype}Content-Length: {len(body)}\r\n\r\n{body}"
        ).encode("utf-8", "surrogateescape")

    # ------------------------------------------------------------------ the end of an epoch
    def wind_down(self) -> None:
        """Move the clock past every timer; nothing may be left."""
        self.category, self.data, self.source = "wind_down", b"", A
        self.advance(_WIND_DOWN_S)
        self.advance(_WIND_DOWN_S)
        self.stats.calls += self.b2b.counters.get("calls", 0) - self.calls_before
        try:
            self.stats.cdrs += self.world.service.flush()
        except Exception as exc:  # noqa: BLE001
            self.fail("crash:flush", _exc_text(exc))
        left = {k: v for k, v in self.layer.counts.items() if v}
        if self.b2b.active_calls or self.b2b.dialogs or left:
            self.fail("stuck:state_left", f"calls={self.b2b.active_calls} dialogs={len(self.b2b.dialogs)} "
                      f"transactions={left}")


def _exc_text(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)[-6:]
    where = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno}" for f in reversed(frames))
    return f"{type(exc).__name__}: {str(exc)[:300]!r} at {where}"


def _rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def run_epochs(seed: int, epochs: list[int], epoch_size: int, total: int) -> tuple[Stats, list[Failure]]:
    """Run the given epochs (the last one may be short: ``total`` messages in all)."""
    stats, failures = Stats(), []
    with tempfile.TemporaryDirectory(prefix="sipmask-fuzz-") as tmp:
        world = World(Path(tmp))
        for k, e in enumerate(epochs):
            ep = Epoch(world, seed, e, stats, failures)
            for _ in range(min(epoch_size, total - e * epoch_size)):
                ep.step()
            ep.wind_down()
            if k % max(1, len(epochs) // 10) == 0:
                stats.rss_mb.append(round(_rss_mb(), 1))
        stats.rss_mb.append(round(_rss_mb(), 1))
        world.store.close()
    return stats, failures


def _job(args: tuple[int, list[int], int, int]) -> tuple[Stats, list[Failure], float]:
    _quiet()
    stats, failures = run_epochs(*args)
    return stats, failures, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _quiet() -> None:
    configure_logging("critical", "json", stream=open(os.devnull, "w"))  # noqa: SIM115 - for the whole run


def fuzz(messages: int, seed: int, jobs: int = 1, epoch_size: int = 2000,
         allow: tuple[str, ...] = ()) -> dict[str, Any]:
    """The whole run; returns the summary (``failures``: the Failure objects). Kinds starting
    with one of ``allow`` (findings known and open elsewhere) are reported, not counted as
    internal errors."""
    t0 = time.monotonic()
    n_epochs = -(-messages // epoch_size)
    parts = [(seed, list(range(j, n_epochs, jobs)), epoch_size, messages) for j in range(jobs)]
    if jobs == 1:
        _quiet()
        results = [_job(parts[0])]
    else:
        with multiprocessing.get_context("fork").Pool(jobs) as pool:
            results = pool.map(_job, parts)
    stats, failures = Stats(), []
    for s, f, _ in results:
        stats.merge(s)
        failures.extend(f)
    elapsed = time.monotonic() - t0
    return {
        "messages": stats.messages, "seed": seed, "jobs": jobs, "epoch_size": epoch_size,
        "seconds": round(elapsed, 1), "messages_per_s": round(stats.messages / elapsed) if elapsed else 0,
        "categories": {c: dict(stats.by_category[c]) for c in CATEGORIES},
        "responses_sent": dict(sorted(stats.responses.items())),
        "requests_sent": dict(sorted(stats.requests.items())),
        "calls": stats.calls, "cdrs": stats.cdrs, "max_active_calls": stats.max_active_calls,
        "internal_errors": sum(n for k, n in stats.errors.items() if not k.startswith(allow or ("\0",))),
        "allowed_errors": sum(n for k, n in stats.errors.items() if allow and k.startswith(allow)),
        "errors_by_kind": dict(sorted(stats.errors.items())),
        "peak_rss_mb": round(max(r for _, _, r in results), 1),
        "rss_mb_over_run": [s.rss_mb for s, _, _ in results],
        "failures": failures,
    }


def replay(path: Path) -> tuple[list[Failure], Failure | None, bytes]:
    """Re-run the epoch of a saved failure up to its message; returns all failures met on the
    way, the one at the saved message (same kind) if it came again, and the input generated at
    that message (equal to the saved one while the generator is unchanged)."""
    saved = json.loads(path.read_text())
    _quiet()
    stats, failures = Stats(), []
    with tempfile.TemporaryDirectory(prefix="sipmask-replay-") as tmp:
        world = World(Path(tmp))
        ep = Epoch(world, saved["seed"], saved["epoch"], stats, failures)
        if saved["category"] == "wind_down":
            for _ in range(saved["epoch_size"]):
                ep.step()
            ep.wind_down()
        else:
            while ep.n <= saved["index"]:
                ep.step()
        world.store.close()
    again = next((f for f in failures if f.index == saved["index"] and f.kind == saved["kind"]), None)
    return failures, again, ep.data


def _print_summary(s: dict[str, Any]) -> None:
    print(f"fuzz: {s['messages']:,} messages, seed {s['seed']}, {s['jobs']} job(s), {s['seconds']} s "
          f"({s['messages_per_s']:,}/s), peak RSS {s['peak_rss_mb']} MB (per job over the run: {s['rss_mb_over_run']})")
    print(f"  calls started {s['calls']:,}, CDRs {s['cdrs']:,}, most calls at once {s['max_active_calls']}")
    for c, counts in s["categories"].items():
        print(f"  {c:12} " + "  ".join(f"{k}={v:,}" for k, v in sorted(counts.items())))
    print("  responses sent: " + " ".join(f"{k}:{v}" for k, v in s["responses_sent"].items()))
    print("  requests sent:  " + " ".join(f"{k}:{v}" for k, v in s["requests_sent"].items()))
    print(f"  INTERNAL ERRORS: {s['internal_errors']}, allowed (--allow): {s['allowed_errors']}"
          + (f" {s['errors_by_kind']}" if s["errors_by_kind"] else ""))
    seen: set[str] = set()
    for f in s["failures"]:
        key = f.kind + f.detail.split("\n")[0][:120]
        if key not in seen and len(seen) < 20:
            seen.add(key)
            print(f"    [{f.kind}] epoch {f.epoch} #{f.index} ({f.category}): {f.detail.splitlines()[0][:300]}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--epoch", type=int, default=2000, help="messages per epoch (fresh B2BUA, wind-down)")
    ap.add_argument("--json", action="store_true", help="print the summary as JSON")
    ap.add_argument("--allow", action="append", default=[], metavar="KIND",
                    help="a kind (prefix, e.g. leak:body) reported but not counted as internal error")
    ap.add_argument("--save-failures", type=Path, metavar="DIR", help="one JSON file per failure (first 200)")
    ap.add_argument("--replay", type=Path, metavar="FILE", help="re-run a saved failure")
    args = ap.parse_args(argv)
    if args.replay:
        failures, again, data = replay(args.replay)
        for f in failures:
            print(f"[{f.kind}] epoch {f.epoch} #{f.index} ({f.category}): {f.detail}")
        if data != base64.b64decode(json.loads(args.replay.read_text())["input_b64"]):
            print("the generator changed since the file was saved: another input at that message")
        print("reproduced" if again else "not reproduced")
        return 1 if again else 0
    summary = fuzz(args.messages, args.seed, args.jobs, args.epoch, tuple(args.allow))
    failures: list[Failure] = summary.pop("failures")
    if args.save_failures and failures:
        args.save_failures.mkdir(parents=True, exist_ok=True)
        for k, f in enumerate(failures):
            name = f"{k:03d}-{f.kind.replace(':', '-')}-e{f.epoch}-{f.index}.json"
            (args.save_failures / name).write_text(json.dumps(f.as_json(args.seed, args.epoch), indent=1))
        summary["saved_to"] = str(args.save_failures)
    summary["failure_details"] = [f"[{f.kind}] epoch {f.epoch} #{f.index}: {f.detail}" for f in failures[:20]]
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        summary["failures"] = failures
        _print_summary(summary)
    return 1 if summary["internal_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
