"""SIP parser/serialiser micro-benchmarks: ``python -m loadtest.micro [--repeat N]``.

Prints microseconds per operation, best of N ``timeit`` repeats (the minimum is the figure least
disturbed by other processes on a shared machine). Not a test: figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import platform
import sys
import timeit
from collections.abc import Callable

from proxy.sip.message import Request, Response
from proxy.sip.parser import parse_message

_SDP = (
    b"v=0\r\n"
    b"o=user1 53655765 2353687637 IN IP4 192.0.2.10\r\n"
    b"s=-\r\n"
    b"c=IN IP4 192.0.2.10\r\n"
    b"t=0 0\r\n"
    b"m=audio 6000 RTP/AVP 0\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
)

INVITE = (
    b"INVITE sip:+15550100@192.0.2.1:5060 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5061;branch=z9hG4bK-4242-1-0\r\n"
    b"From: sipp <sip:+15550111@192.0.2.10:5061>;tag=4242SIPpTag001\r\n"
    b"To: <sip:+15550100@192.0.2.1:5060>\r\n"
    b"Call-ID: 1-4242@192.0.2.10\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: sip:sipp@192.0.2.10:5061\r\n"
    b"Max-Forwards: 70\r\n"
    b"Subject: Performance Test\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(_SDP)).encode() + b"\r\n"
    b"\r\n" + _SDP
)

OK_200 = (
    b"SIP/2.0 200 OK\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKb2b-77f1;received=192.0.2.1;rport=5060\r\n"
    b"Record-Route: <sip:192.0.2.1:5060;lr>\r\n"
    b"From: <sip:+15550201@192.0.2.1>;tag=b2b-9f3c\r\n"
    b"To: <sip:+15550300@192.0.2.20>;tag=callee-18d2\r\n"
    b"Call-ID: b2b-5c1e2a@192.0.2.1\r\n"
    b"CSeq: 1 INVITE\r\n"
    b"Contact: <sip:callee@192.0.2.20:5060;transport=udp>\r\n"
    b"Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, UPDATE\r\n"
    b"Content-Type: application/sdp\r\n"
    b"Content-Length: " + str(len(_SDP)).encode() + b"\r\n"
    b"\r\n" + _SDP
)

BYE = (
    b"BYE sip:callee@192.0.2.20:5060;transport=udp SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKb2b-77f2\r\n"
    b"Route: <sip:192.0.2.5;lr>\r\n"
    b"From: <sip:+15550201@192.0.2.1>;tag=b2b-9f3c\r\n"
    b"To: <sip:+15550300@192.0.2.20>;tag=callee-18d2\r\n"
    b"Call-ID: b2b-5c1e2a@192.0.2.1\r\n"
    b"CSeq: 2 BYE\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def _parse_and_access(data: bytes) -> Callable[[], object]:
    def run() -> object:
        m = parse_message(data)
        return (m.top_via.branch, m.from_tag, m.to_tag, m.cseq)

    return run


def _parse_serialise(data: bytes) -> Callable[[], object]:
    def run() -> object:
        return parse_message(data).serialise()

    return run


def cases() -> list[tuple[str, Callable[[], object]]]:
    """The measured operations, in print order."""
    invite = parse_message(INVITE)
    ok = parse_message(OK_200)
    bye = parse_message(BYE)
    assert isinstance(invite, Request) and isinstance(ok, Response) and isinstance(bye, Request)
    assert invite.serialise() == INVITE and ok.serialise() == OK_200 and bye.serialise() == BYE
    return [
        ("parse INVITE (SDP)", lambda: parse_message(INVITE)),
        ("parse 200 OK (SDP)", lambda: parse_message(OK_200)),
        ("parse BYE", lambda: parse_message(BYE)),
        ("serialise INVITE", invite.serialise),
        ("serialise 200 OK", ok.serialise),
        ("serialise BYE", bye.serialise),
        ("parse + serialise INVITE", _parse_serialise(INVITE)),
        ("parse + top_via/from_tag/to_tag/cseq INVITE", _parse_and_access(INVITE)),
        ("parse + top_via/from_tag/to_tag/cseq 200 OK", _parse_and_access(OK_200)),
    ]


def measure(fn: Callable[[], object], repeat: int, number: int) -> float:
    """Best of ``repeat`` runs of ``number`` calls, in microseconds per call."""
    return min(timeit.repeat(fn, repeat=repeat, number=number)) / number * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=15, help="timeit repeats (best is kept)")
    ap.add_argument("--number", type=int, default=20000, help="calls per repeat")
    args = ap.parse_args(argv)
    print(f"# {platform.python_implementation()} {platform.python_version()} on {platform.machine()}")
    print(f"# best of {args.repeat} x {args.number} calls, microseconds per call")
    for name, fn in cases():
        print(f"{name:<46} {measure(fn, args.repeat, args.number):7.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
