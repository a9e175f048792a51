"""CPU per basic call through the sans-IO part of sipmask: ``python -m loadtest.bench_call``.

Drives the real :class:`TransactionLayer` and :class:`B2bua` (real SQLite pairing store,
in-memory cache, the default header policy) with the byte-exact messages of the shared
benchmark's call (SIPp uac -> sipmask -> SIPp uas: INVITE/100/180/200/ACK/BYE/200 on both legs),
parsing every incoming datagram and serialising every outgoing one as the transports do. Only
sockets and the event loop are left out, so the figure isolates what Python code changes
move; ``../shared/bench/sipbench.sh`` gives the whole-process figure.

Prints microseconds per call spent inside sipmask's code (``time.perf_counter`` around each
delivery: single-threaded and CPU-bound, so this is CPU time, minus the harness's own work of
building the peers' messages; ``process_time`` was not used because on this VM its syscall
cost ~20% of the figure), best of ``--repeat`` runs of ``--calls`` calls: a before/after
figure for every optimisation of the call path.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import structlog

from proxy.b2bua import B2bua
from proxy.b2bua.policy import load_rules
from proxy.b2bua.snapshot import DialogJournal
from proxy.config import DEFAULT_RULES_FILE, load_config
from proxy.observability.logging import configure_logging
from proxy.pairing.cache import PairingCache
from proxy.pairing.crypto import NumberVault
from proxy.pairing.model import Participant
from proxy.pairing.service import PairingService
from proxy.pairing.stores.sqlite import SqliteStore
from proxy.sip.ids import SecretIds
from proxy.sip.message import Request, Response
from proxy.sip.parser import parse_message
from proxy.sip.transaction import Address, TimerConfig, TransactionLayer
from proxy.transport.pike import SourceLimits

A = Address("udp", "127.0.0.1", 5070)
B = Address("udp", "127.0.0.1", 5080)
ROOT = Path(__file__).resolve().parents[1]

_SDP = (
    "v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\n"
    "t=0 0\r\nm=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
)


def _invite(n: int) -> bytes:
    return (
        "INVITE sip:+15557770001@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-4242-{n}-0\r\n"
        f"From: sipp <sip:+15551230001@127.0.0.1:5070>;tag=4242SIPpTag00{n}\r\n"
        "To: <sip:+15557770001@127.0.0.1:5060>\r\n"
        f"Call-ID: {n}-4242@127.0.0.1\r\n"
        "CSeq: 1 INVITE\r\n"
        "Contact: sip:sipp@127.0.0.1:5070\r\n"
        "Max-Forwards: 70\r\n"
        "Subject: Performance Test\r\n"
        "Content-Type: application/sdp\r\n"
        f"Content-Length: {len(_SDP)}\r\n\r\n{_SDP}"
    ).encode()


def _in_dialog(method: str, n: int, cseq: int, to: str) -> bytes:
    return (
        f"{method} sip:+15557770001@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-4242-{n}-{cseq}\r\n"
        f"From: sipp <sip:+15551230001@127.0.0.1:5070>;tag=4242SIPpTag00{n}\r\n"
        f"To: {to}\r\n"
        f"Call-ID: {n}-4242@127.0.0.1\r\n"
        f"CSeq: {cseq} {method}\r\n"
        "Contact: sip:sipp@127.0.0.1:5070\r\n"
        "Max-Forwards: 70\r\n"
        "Subject: Performance Test\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def _uas_response(req: Request, status: int, reason: str, body: str = "") -> bytes:
    """What SIPp's built-in uas answers (Via/From/To/Call-ID/CSeq echoed, Contact, tag)."""
    vias = "".join(f"Via: {v}\r\n" for v in req.headers.get_all("via"))
    to = req.headers.get("to") or ""
    if status > 100 and "tag=" not in to:
        to += ";tag=1SIPpTag01"
    ctype = "Content-Type: application/sdp\r\n" if body else ""
    return (
        f"SIP/2.0 {status} {reason}\r\n{vias}From: {req.headers.get('from')}\r\nTo: {to}\r\n"
        f"Call-ID: {req.call_id}\r\nCSeq: {req.headers.get('cseq')}\r\n"
        "Contact: <sip:127.0.0.1:5080;transport=UDP>\r\n"
        f"{ctype}Content-Length: {len(body)}\r\n\r\n{body}"
    ).encode()


class Bench:
    def __init__(self, workdir: Path) -> None:
        cfg = workdir / "sipmask.toml"
        cfg.write_text(
            '[[routes]]\nprefix = "+15559990001"\ngateways = ["udp:127.0.0.1:5080"]\n'
            f'[store]\npath = "{workdir / "db.sqlite"}"\nkey_file = "{workdir / "key"}"\n'
        )
        self.config = load_config(cfg)
        vault = NumberVault.from_key_file(self.config.store.key_file)
        store = SqliteStore(self.config.store.path, vault)
        self.now = 1000.0
        self.service = PairingService(store, PairingCache(), lambda: time.time())
        store.create_session(
            Participant("+15551230001", "+15557770001"), Participant("+15559990001", "+15557770001"),
            now=time.time(),
        )
        self.service.start()
        self.layer = TransactionLayer(TimerConfig(), SecretIds(os.urandom))
        sip = self.config.sip
        if sip.source_rate:  # as proxy/app.py wires it (on by default; loopback is trusted)
            self.layer.source_limit = SourceLimits(sip.source_rate, sip.source_burst,
                                                   sip.trusted_sources).check
        self.b2b = B2bua(
            layer=self.layer, config=self.config,
            rules=load_rules(DEFAULT_RULES_FILE), pairings=self.service,
            ids=SecretIds(os.urandom), local_address=lambda t: ("127.0.0.1", 5060),
            tokenize=vault.token, log=structlog.get_logger("bench"),
        )
        if self.config.cluster.persist_dialogs:  # as `sipmask run` does (proxy/cluster.py)
            self.b2b.journal = DialogJournal()
        self.cpu = 0.0

    def deliver(self, data: bytes, source: Address) -> list[tuple[bytes, Address]]:
        """What the transports + SipStack do for one datagram; CPU time is accumulated."""
        t0 = time.perf_counter()
        msg = parse_message(data)
        for event in self.layer.receive(msg, source, self.now):
            self.b2b.handle(event, self.now)
        out = [(s.message.serialise(), s.dest) for s in self.layer.take_outgoing()]
        self.layer.next_deadline()
        self.b2b.next_deadline()
        self.cpu += time.perf_counter() - t0
        return out

    def tick(self, seconds: float) -> None:
        t0 = time.perf_counter()
        self.now += seconds
        for event in self.layer.handle_timers(self.now):
            self.b2b.handle(event, self.now)
        self.b2b.handle_timers(self.now)
        self.layer.take_outgoing()
        self.cpu += time.perf_counter() - t0

    def call(self, n: int) -> None:
        ok = self.answer(n)
        self.hang_up(n, ok)

    def answer(self, n: int) -> str:
        """INVITE .. ACK of call ``n``; returns the To (with tag) of the 200 OK the caller saw."""
        out = self.deliver(_invite(n), A)
        b_inv = next(parse_message(m) for m, d in out if d == B)
        assert isinstance(b_inv, Request) and b_inv.method == "INVITE"
        self.deliver(_uas_response(b_inv, 180, "Ringing"), B)
        out = self.deliver(_uas_response(b_inv, 200, "OK", _SDP), B)
        ok = next(parse_message(m) for m, d in out if d == A)
        assert isinstance(ok, Response) and ok.status == 200, ok
        to = ok.headers.get("to") or ""
        self.deliver(_in_dialog("ACK", n, 1, to), A)
        return to

    def hang_up(self, n: int, to: str) -> None:
        self.now += 0.01
        out = self.deliver(_in_dialog("BYE", n, 2, to), A)
        b_bye = next(parse_message(m) for m, d in out if d == B)
        assert isinstance(b_bye, Request) and b_bye.method == "BYE"
        self.deliver(_uas_response(b_bye, 200, "OK"), B)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--log-level", default="warning")
    ap.add_argument("--refusals", action="store_true",
                    help="instead: CPU per new call refused for overload (INVITE answered 503, "
                         "its ACK), next to the CPU per bridged call")
    ap.add_argument("--hold", type=int, default=0, metavar="N",
                    help="instead: establish N calls at once, report RSS per established call, "
                         "hang them all up and report what is left")
    args = ap.parse_args(argv)
    if args.hold:
        return _hold(args.hold)
    configure_logging(args.log_level, "json", stream=open(os.devnull, "w"))  # noqa: SIM115 - open for the whole run
    gc.freeze()
    gc.set_threshold(20_000, 2, 50_000)  # as proxy/app.py does
    if args.refusals:
        return _refusals(args.calls, args.repeat)
    best = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        n = 0
        for _ in range(args.repeat):
            bench.cpu = 0.0
            for _ in range(args.calls):
                n += 1
                bench.call(n)
                if n % 50 == 0:
                    bench.tick(0.05)
            bench.tick(70.0)  # let Timer K/J/D etc. free everything
            assert bench.b2b.active_calls == 0, bench.b2b.active_calls
            best = min(best, bench.cpu / args.calls * 1e6)
    print(f"# CPython {sys.version.split()[0]}, {args.calls} calls x {args.repeat}, best run")
    print(f"sans-IO call path (parse, transactions, B2BUA, serialise): {best:.0f} us per call")
    return 0


def _ack_for(invite: bytes, response: Response) -> bytes:
    """The caller's ACK for a non-2xx final response (§17.1.1.3: same branch, its To)."""
    req = parse_message(invite)
    h = req.headers
    return (
        f"ACK {req.uri} SIP/2.0\r\nVia: {h.get('via')}\r\nFrom: {h.get('from')}\r\n"
        f"To: {response.headers.get('to')}\r\nCall-ID: {req.call_id}\r\nCSeq: 1 ACK\r\n"
        "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def _refusals(n_calls: int, repeat: int) -> int:
    """CPU per refused new call (the INVITE and the ACK for its 503) next to a bridged call's:
    what shedding costs, which decides the goodput kept under overload."""
    best_call = best_refusal = float("inf")
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        admission = bench.b2b.admission
        n = 0
        for _ in range(repeat):
            bench.cpu = 0.0
            for _ in range(n_calls):
                n += 1
                bench.call(n)
                if n % 50 == 0:
                    bench.tick(0.05)
            bench.tick(70.0)
            best_call = min(best_call, bench.cpu / n_calls * 1e6)
            admission.max_cps = 1e-9  # the rate gate refuses every new call from here
            admission._tokens = 0.0
            bench.cpu = 0.0
            for _ in range(n_calls):
                n += 1
                invite = _invite(n)
                out = bench.deliver(invite, A)
                (refusal,) = [m for m in (parse_message(d) for d, _ in out) if isinstance(m, Response)]
                assert isinstance(refusal, Response) and refusal.status == 503, refusal
                bench.deliver(_ack_for(invite, refusal), A)
                if n % 50 == 0:
                    bench.tick(0.05)
            bench.tick(70.0)
            admission.max_cps = 0.0
            best_refusal = min(best_refusal, bench.cpu / n_calls * 1e6)
    print(f"# CPython {sys.version.split()[0]}, {n_calls} calls x {repeat}, best run")
    print(f"bridged call: {best_call:.0f} us; refused call (INVITE -> 503, ACK): "
          f"{best_refusal:.0f} us ({best_refusal / best_call:.1%} of a call)")
    return 0


def _rss_kib() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def _hold(n_calls: int) -> int:
    """Memory per established call (both dialogs, their transactions and timers)."""
    configure_logging("warning", "json", stream=open(os.devnull, "w"))  # noqa: SIM115 - open for the whole run
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(Path(tmp))
        for n in range(1, 201):  # warm up: imports, caches, allocator arenas
            bench.call(n)
        bench.tick(70.0)
        gc.collect()

        def establish(first: int) -> list[tuple[int, str]]:
            oks = []
            for n in range(first, first + n_calls):
                oks.append((n, bench.answer(n)))
                if n % 100 == 0:
                    bench.tick(0.5)
            bench.tick(70.0)  # INVITE transactions end (RFC 6026 Timer L/M): the dialogs remain
            gc.collect()
            assert bench.b2b.active_calls == n_calls
            return oks

        def end_all(oks: list[tuple[int, str]]) -> None:
            for i, (n, ok) in enumerate(oks):
                bench.hang_up(n, ok)
                if i % 100 == 99:
                    bench.tick(0.5)
            bench.tick(70.0)
            bench.service.flush()  # the CDRs go to the store, as the proxy's flush task does
            gc.collect()
            assert bench.b2b.active_calls == 0

        base = _rss_kib()
        oks = establish(1000)
        held = _rss_kib()
        end_all(oks)
        after1 = _rss_kib()
        # second round: what the first round freed is reused, nothing is left behind
        oks = establish(10_000_000)
        end_all(oks)
        after2 = _rss_kib()
        # third round under tracemalloc: the bytes still alive per held call
        tracemalloc.start()
        traced0 = tracemalloc.get_traced_memory()[0]
        oks = establish(20_000_000)
        live = tracemalloc.get_traced_memory()[0] - traced0
        live -= sum(sys.getsizeof(to) for _, to in oks)  # the harness's own To values
        tracemalloc.stop()
        end_all(oks)
        print(f"# CPython {sys.version.split()[0]}, {n_calls} established calls held at once")
        print(f"live memory per established call (A+B dialog pair, tracemalloc): {live / n_calls:.0f} bytes")
        print(f"RSS growth per established call: {(held - base) * 1024 / n_calls:.0f} bytes "
              "(includes the set-up peak: transactions of the last 32 s of set-up still lingering)")
        print(f"RSS after the first round ended: {after1 - base:+d} KiB vs before; after a second "
              f"round of {n_calls} calls: {after2 - after1:+d} KiB vs the first "
              "(freed memory stays in CPython's arenas and is reused)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
