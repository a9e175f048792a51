"""RFC 3261 §8.2.2 checks of a UAS: the Request-URI's scheme (416) and Require (420)."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.sip.message import Request, Response
from proxy.sip.parser import parse_message
from proxy.sip.uas import SUPPORTED_OPTION_TAGS, uas_refusal, unsupported_tags

from .b2bua_harness import CALLER_V, GW1, A, Harness, answered_call, in_dialog_request, invite, only


def request(start: str, *extra: str, method: str = "INVITE") -> Request:
    lines = [start, "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1", "From: <sip:a@b>;tag=1",
             "To: <sip:c@d>", "Call-ID: x", f"CSeq: 1 {method}", "Max-Forwards: 70", *extra,
             "Content-Length: 0"]
    msg = parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())
    assert isinstance(msg, Request)
    return msg


@pytest.mark.parametrize("uri", [
    "mailto:x@y", "http://example.com/", "im:alice@example.com",
    "nobodyKnowsThisScheme:totallyopaquecontent",  # RFC 4475 §3.3.3 (unkscm)
    "soap.beep://192.0.2.103:3002",  # RFC 4475 §3.3.4 (novelsc)
])
def test_8_2_2_1_unknown_scheme_is_416(uri: str) -> None:
    assert uas_refusal(request(f"INVITE {uri} SIP/2.0")) == (416, [])


@pytest.mark.parametrize("uri", ["sip:x@y", "SIP:x@y", "sips:x@y", "tel:+15551230001"])
def test_8_2_2_1_known_schemes_pass(uri: str) -> None:
    assert uas_refusal(request(f"INVITE {uri} SIP/2.0")) is None


def test_8_2_2_3_unknown_require_is_420_with_unsupported() -> None:
    msg = request("INVITE sip:x@y SIP/2.0", "Require: 100rel, foo", "Proxy-Require: bar, foo",
                  "Require: timer")
    assert uas_refusal(msg) == (420, [("Unsupported", "foo, bar")])


def test_rfc4475_3_3_6_bext01_require_and_proxy_require() -> None:
    msg = request("OPTIONS sip:user@example.com SIP/2.0",
                  "Require: nothingSupportsThis, nothingSupportsThisEither",
                  "Proxy-Require: noProxiesSupportThis, nothingSupportsThisEither", method="OPTIONS")
    assert uas_refusal(msg) == (
        420, [("Unsupported", "nothingSupportsThis, nothingSupportsThisEither, noProxiesSupportThis")])


def test_8_2_2_3_supported_tags_pass_and_are_case_insensitive() -> None:
    assert sorted(SUPPORTED_OPTION_TAGS) == ["100rel", "timer"]
    msg = request("INVITE sip:x@y SIP/2.0", "Require: 100rel", "Require: Timer")
    assert unsupported_tags(msg) == [] and uas_refusal(msg) is None


def test_8_2_2_3_require_not_checked_for_cancel() -> None:
    msg = request("CANCEL sip:x@y SIP/2.0", "Require: foo", method="CANCEL")
    assert uas_refusal(msg) is None


# -- through the B2BUA ---------------------------------------------------------------------------

def test_b2bua_answers_416_to_an_unknown_scheme_and_sends_nothing_to_the_callee(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    raw = invite().replace(f"INVITE sip:{CALLER_V}@127.0.0.1:5060 SIP/2.0", "INVITE mailto:x@y SIP/2.0", 1)
    out = h.feed(raw, A)
    finals = [m for m, _ in out if isinstance(m, Response) and m.status >= 200]
    assert [m.status for m in finals] == [416]
    assert not only(out, Request) and h.b2b.counters["unsupported_scheme"] == 1


def test_b2bua_answers_420_to_an_unknown_require_and_sends_nothing_to_the_callee(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    out = h.feed(invite(extra="Require: 100rel, foo\nProxy-Require: sec-agree\n"), A)
    finals = [m for m, _ in out if isinstance(m, Response) and m.status >= 200]
    assert [(m.status, m.headers.get("unsupported")) for m in finals] == [(420, "foo, sec-agree")]
    assert not only(out, Request) and h.b2b.counters["bad_extension"] == 1


def test_b2bua_relays_a_supported_require_but_never_proxy_require(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    out = h.feed(invite(extra="Require: 100rel\nProxy-Require: timer\nSupported: timer\n"), A)
    b_inv = only(out, Request, method="INVITE")[0][0]
    assert b_inv.headers.get("require") == "100rel"
    assert "proxy-require" not in b_inv.headers  # §20.29: for the proxies of the caller's path


def test_b2bua_checks_in_dialog_requests_too(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    answered_call(h)
    out = h.feed(in_dialog_request(h, "INFO", "info1", 2, extra="Require: foo\n"), A)
    assert [(m.status, m.headers.get("unsupported")) for m, _ in out if isinstance(m, Response)] == [
        (420, "foo")]
    assert not [d for _, d in out if d == GW1]
