"""Fast paths of the SIP layer give exactly what the general code gives (or fall back to it)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sip import Headers, Request, SipParseError, build_response, parse_message


def _render_reference(headers: Headers, body_length: int) -> list[str]:
    lines: list[str] = []
    seen = False
    for key, name, value in headers.keyed():
        if key == "content-length":
            if seen:
                continue
            seen = True
            value = str(body_length)
        lines.append(f"{name}: {value}")
    if not seen:
        lines.append(f"Content-Length: {body_length}")
    return lines


@pytest.mark.parametrize(
    "items",
    [
        [],
        [("Via", "SIP/2.0/UDP h"), ("To", "<sip:a@b>")],
        [("Via", "v"), ("l", "99"), ("To", "t")],
        [("Content-Length", "5"), ("Via", "v"), ("content-length", "7"), ("X", "y"), ("L", "1")],
        [("X", "1"), ("Content-Length", "0")],
    ],
)
def test_render_matches_reference(items: list[tuple[str, str]]) -> None:
    headers = Headers(items)
    assert headers.render(3) == _render_reference(headers, 3)
    assert headers.wire(3) == "\r\n".join(_render_reference(headers, 3))


def test_missing_header_views_raise_parse_error() -> None:
    r = Request("OPTIONS", "sip:a@b", Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bK1")]))
    for view in ("call_id", "from_", "to", "cseq"):
        with pytest.raises(SipParseError):
            getattr(r, view)


# -- split_hostport: the inlined host and port checks ---------------------------------------------

def _split_hostport_reference(text: str, what: str) -> tuple[str, int | None]:
    from proxy.sip.grammar import HOST_CHARS, IPV6_CHARS

    if not text:
        raise SipParseError(f"Missing host in {what}")
    if text[0] == "[":
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"Unterminated IPv6 reference in {what}")
        host = text[: end + 1]
        if ":" not in host[1:-1] or not IPV6_CHARS.issuperset(host[1:-1]):
            raise SipParseError(f"Invalid IPv6 reference in {what}")
        rest = text[end + 1 :]
        if not rest:
            return host, None
        if rest[0] != ":":
            raise SipParseError(f"Junk after IPv6 reference in {what}")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.partition(":")
        if not host:
            raise SipParseError(f"Missing host in {what}")
        if not HOST_CHARS.issuperset(host):
            raise SipParseError(f"Invalid character in host of {what}")
        if not colon:
            return host, None
    if not (port_text.isdigit() and port_text.isascii()) or len(port_text) > 5:
        raise SipParseError(f"Invalid port in {what}")
    if int(port_text) > 65535:
        raise SipParseError(f"Port out of range in {what}")
    return host, int(port_text)


def _outcome(fn: Callable[[], object]) -> object:
    try:
        return fn()
    except SipParseError as exc:
        return ("error", exc.reason, exc.status)


HOSTPORTS = [
    "", ":", ":5060", "h", "h:", "h:0", "h:65535", "h:65536", "h:099999", "h:5060:1", "h:²", "h:٣",
    "a.b-c_d:5", "a b:5", "a;b", "é:5", "[::1]", "[::1]:5060", "[::1]x", "[::1", "[1.2.3.4]", "[]:5",
    "127.0.0.1:5070", " 127.0.0.1:5070", "127.0.0.1 :5070", "127.0.0.1: 5070",
]


@pytest.mark.parametrize("text", HOSTPORTS)
def test_split_hostport_matches_reference(text: str) -> None:
    from proxy.sip.uri import split_hostport

    assert _outcome(lambda: split_hostport(text, "X")) == _outcome(
        lambda: _split_hostport_reference(text, "X")
    )


@given(st.text(alphabet="ab1:.[]-_ é²", max_size=12))
def test_split_hostport_matches_reference_generated(text: str) -> None:
    from proxy.sip.uri import split_hostport

    assert _outcome(lambda: split_hostport(text, "X")) == _outcome(
        lambda: _split_hostport_reference(text, "X")
    )


# -- NameAddr: a lone tag parameter skips parse_params ---------------------------------------------

TAG_PARAMS = [
    ";tag=a", ";tag", ";tag=", ";tag= a ", ";TAG=a", ";Tag=a", ";tag=a;x", ";tag=a;", ';tag="a;b"',
    ';tag=a"', ";tag=a=b", ";tag=a b", "; tag=a", ";tag =a", ";tagx=a", ";x=1;tag=2", ";tag=\t",
]


@pytest.mark.parametrize("params", TAG_PARAMS)
@pytest.mark.parametrize("prefix", ["<sip:a@b>", "sip:a@b", '"A <x>" <sip:a@b>', "A <sip:a@b> "])
def test_name_addr_tag_fast_path_matches_parse_params(prefix: str, params: str) -> None:
    from proxy.sip.uri import NameAddr, parse_params

    expected = _outcome(lambda: parse_params(params[1:], "address"))
    got = _outcome(lambda: NameAddr.parse(prefix + params).params)
    assert got == expected


@given(st.text(alphabet='ab;= "\t', max_size=10))
def test_name_addr_tag_fast_path_matches_parse_params_generated(value: str) -> None:
    from proxy.sip.uri import NameAddr, parse_params

    text = "<sip:a@b>;tag=" + value
    rest = text[len("<sip:a@b>") :].strip()
    expected = _outcome(lambda: parse_params(rest[1:], "address"))
    assert _outcome(lambda: NameAddr.parse(text).params) == expected


# -- tag_of: a From/To tag without building the NameAddr ------------------------------------------

TAG_VALUES = [
    "<sip:a@b>;tag=x", "<sip:a@b>", "<sip:a@b>;tag=", "<sip:a@b>;tag= x ", "<sip:a@b>;TAG=x",
    "<sip:a@b>;tag=x;y=1", "<sip:a@b>;x=1;tag=y", "<sip:a@b> ;tag=x", "<sip:a@b>tag=x",
    "<sip:a@b>x", "<>;tag=x", "<sip:a@b;tag=u>", "<sip:a@b;tag=u>;tag=v", "sip:a@b;tag=x",
    "sipp <sip:a@b>;tag=x", "sipp<sip:a@b>;tag=x", " <sip:a@b>;tag=x", "<sip:a@b>;tag=x ",
    "\t<sip:a@b>;tag=x", '"A" <sip:a@b>;tag=x', '"A <x>" <sip:a@b>;tag=x', "<sip:a@b>;tag=\"q\"",
    "<sip:a@b;tag=x", "<sip:a@b", "", " ", "<sip:a@b>;tag=x>y", "A <B> <sip:a@b>;tag=x",
    "<sip:a@b>;tag=a;", "<sip:a@b>; tag=x", "<sip:a@b>;tag =x", "<sip:a@b>;tag=x=y",
]


@pytest.mark.parametrize("text", TAG_VALUES)
def test_tag_of_matches_name_addr(text: str) -> None:
    from proxy.sip.uri import NameAddr, tag_of

    assert _outcome(lambda: tag_of(text)) == _outcome(lambda: NameAddr.parse(text).params.get("tag"))


@given(st.text(alphabet='<>ab:@;= "\t', max_size=16))
def test_tag_of_matches_name_addr_generated(text: str) -> None:
    from proxy.sip.uri import NameAddr, tag_of

    assert _outcome(lambda: tag_of(text)) == _outcome(lambda: NameAddr.parse(text).params.get("tag"))


@pytest.mark.parametrize("text", TAG_VALUES)
@pytest.mark.parametrize("key", ["from", "to"])
def test_dialog_uri_without_tag_matches_name_addr(text: str, key: str) -> None:
    from proxy.sip.dialog import _without_tag, _without_tag_of
    from proxy.sip.uri import NameAddr

    msg = Request("INVITE", "sip:b@h", Headers([("From" if key == "from" else "To", text)]))
    expected = _outcome(lambda: _without_tag(NameAddr.parse(text)))
    assert _outcome(lambda: _without_tag_of(msg, key)) == expected


CONTACTS = [
    ["<sip:a@b>"], ["<sip:a@b;transport=udp>"], ["<sip:a@b>;expires=60"], ["<sip:a@b>;;x"],
    ["<sip:a@b>;=x"], ["<sip:a@b>x"], ["<sip:a@b> ;q=1"], ["<sip:a@b> "], ["<>"], ["<sip:a@b"],
    ["sip:a@b"], ["*"], ['"A" <sip:a@b>'], ["A <sip:a@b>"], ["<sip:a@b>, <sip:c@d>"],
    ["<sip:a@b>", "<sip:c@d>"], ["<sip:a@b>;x=\"y\""], [], ["<sip:a@b>;+sip.instance=1"],
    ["<garbage>"], ["<tel:+15551230001>"], ["<sip:>"], ["<SIPS:a@b>"],
]


@pytest.mark.parametrize("lines", CONTACTS)
def test_dialog_first_contact_matches_the_full_parse(lines: list[str]) -> None:
    from proxy.sip.dialog import _first_contact

    def msg() -> Request:
        return Request("INVITE", "sip:b@h", Headers([("Contact", line) for line in lines]))

    def reference() -> str | None:
        from proxy.sip.errors import SipParseError
        from proxy.sip.uri import SipUri

        contacts = msg().contacts()
        if not contacts:
            return None
        uri = contacts[0].uri
        try:  # a remote target is a SIP or SIPS URI
            if not uri.lower().startswith(("sip:", "sips:")):
                raise SipParseError("not sip")
            SipUri.parse(uri)
        except SipParseError:
            raise SipParseError("Bad Contact: not a SIP URI") from None
        return uri

    assert _outcome(lambda: _first_contact(msg())) == _outcome(reference)


def test_message_tags_read_without_parsing_the_header_and_follow_changes() -> None:
    msg = parse_message(
        b"BYE sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n"
        b"From: sipp <sip:a@h>;tag=f1\r\nTo: <sip:b@h>;tag=t1\r\nCall-ID: c\r\n"
        b"CSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    )
    assert (msg.from_tag, msg.to_tag) == ("f1", "t1")
    assert "to" not in msg.headers.views and "from" not in msg.headers.views  # no NameAddr built
    msg.headers.set("To", "<sip:b@h>;tag=t2")
    assert msg.to_tag == "t2"
    msg.headers.set("To", "<sip:b@h>")
    assert msg.to_tag is None
    msg.headers.set("To", "<sip:b@h")  # unterminated: the same error as the full parse
    with pytest.raises(SipParseError):
        _ = msg.to_tag


# -- parser: header checks answered from one dict keep their order and reasons ---------------------

def _msg(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


_REQ = [
    "OPTIONS sip:svc@example.net SIP/2.0",
    "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776",
    "From: <sip:alice@example.com>;tag=19",
    "To: <sip:svc@example.net>",
    "Call-ID: a84b@198.51.100.7",
    "CSeq: 7 OPTIONS",
]


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        (["Content-Length: 1", "l: 2"], "Conflicting Content-Length headers"),
        (["Content-Length: 0", "l: 0", "From: <sip:b@c>"], "Multiple From headers"),
        (["Content-Length: 0", "From: <sip:b@c>", "To: <sip:d@e>"], "Multiple From headers"),
        (["Content-Length: 0", "t: <sip:d@e>", "i: x"], "Multiple To headers"),
        (["Content-Length: 0", "CSeq: 8 OPTIONS"], "Multiple CSeq headers"),
        (["Max-Forwards: 70", "Max-Forwards: 70", "Content-Length: 0"], "Multiple Max-Forwards headers"),
        (["Max-Forwards: 70", "Max-Forwards: x", "Content-Length: 0"], "Multiple Max-Forwards headers"),
        (["Max-Forwards: 256", "Content-Length: 0"], "Invalid Max-Forwards header"),
        (["Content-Length: x", "From: <sip:b@c>"], "Invalid Content-Length"),
        (["Content-Length: 9"], "Content-Length larger than message"),
        (["Via: SIP/2.0/UDP h", "Call-ID: y", "Content-Length: 0"], "Multiple Call-ID headers"),
    ],
)
def test_repeated_headers_reasons(extra: list[str], reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(_msg(*_REQ, *extra))
    assert info.value.reason == reason and info.value.partial is not None


@pytest.mark.parametrize(
    ("drop", "reason"),
    [(1, "Missing Via header"), (2, "Missing From header"), (3, "Missing To header"),
     (4, "Missing Call-ID header"), (5, "Missing CSeq header")],
)
def test_missing_header_reasons_with_repeats(drop: int, reason: str) -> None:
    lines = [ln for i, ln in enumerate(_REQ) if i != drop]
    with pytest.raises(SipParseError) as info:
        parse_message(_msg(*lines, "Record-Route: <sip:p1>", "Record-Route: <sip:p2>", "Content-Length: 0"))
    assert info.value.reason == reason


def test_repeated_list_headers_and_equal_content_lengths_parse() -> None:
    m = parse_message(_msg(*_REQ, "Via: SIP/2.0/UDP h2", "Content-Length: 2", "l: 2", body=b"ab"))
    assert m.body == b"ab" and len(m.headers.get_all("via")) == 2
    assert m.serialise().count(b"Content-Length") == 1


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\rFrom: y\r\n\r\n", "Bare CR in message headers"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\x00\r\n\r\n", "NUL character in message headers"),
        (b"OPTIONS sip:a@b SIP/2.0\r\nVia: a\rb\r\nTo: c\r\n\r\n", "Bare CR in message headers"),
    ],
)
def test_line_end_errors(data: bytes, reason: str) -> None:
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    assert info.value.reason == reason


def test_bare_lf_message_parses_as_crlf() -> None:
    crlf = _msg(*_REQ, "Content-Length: 0")
    lf = crlf.replace(b"\r\n", b"\n")
    a, b = parse_message(crlf), parse_message(lf)
    assert a.serialise() == b.serialise()


# -- build_response: copied straight from the request's lists ---------------------------------------

def _build_response_reference(request: Request, status: int, to_tag: str | None,
                              extra: list[tuple[str, str]] | None) -> list[tuple[str, str]]:
    items: list[tuple[str, str]] = []
    for key, name, value in request.headers.keyed():
        if key in ("via", "from", "to", "call-id", "cseq"):
            if key == "to" and to_tag and status != 100:
                try:
                    tagged = request.to_tag is not None
                except SipParseError:
                    tagged = "tag=" in value.lower()
                if not tagged:
                    value = f"{value};tag={to_tag}"
            items.append((name, value))
    if status == 100 and request.headers.get("timestamp") is not None:
        items.append(("Timestamp", request.headers.get("timestamp") or ""))
    return items + (extra or [])


@pytest.mark.parametrize("status", [100, 180, 200, 486])
@pytest.mark.parametrize("to_tag", [None, "", "abc"])
@pytest.mark.parametrize(
    "headers",
    [
        [("v", "SIP/2.0/UDP a"), ("Via", "SIP/2.0/UDP b"), ("f", "<sip:x@y>;tag=1"), ("t", "<sip:z@w>"),
         ("i", "c"), ("CSeq", "1 INVITE"), ("Timestamp", "54"), ("Timestamp", "55"), ("X", "y")],
        [("To", "<sip:z@w>;tag=9"), ("Via", "SIP/2.0/UDP b"), ("CSeq", "1 INVITE")],
        [("To", "<sip:z@w>"), ("To", "<sip:q@w>;tag=2"), ("Call-ID", "c")],
        [("To", "<sip:z@w;tag=1"), ("To", "<sip:z@w"), ("Call-ID", "c")],
        [("Call-ID", "c")],
    ],
)
def test_build_response_matches_reference(headers: list[tuple[str, str]], to_tag: str | None,
                                          status: int) -> None:
    request = Request("INVITE", "sip:a@b", Headers(headers))
    extra = [("Contact", "<sip:me@here>"), ("m", "<sip:you@there>")]
    response = build_response(request, status, to_tag=to_tag, extra=extra)
    assert response.headers.items() == _build_response_reference(request, status, to_tag, extra)
    assert list(response.headers.keyed()) == list(Headers(response.headers.items()).keyed())


def test_settled_headers_read_the_same_and_thaw_on_change() -> None:
    """A lingering transaction's messages are settled (tuples, no views); reads are unchanged
    and a later change works on lists again."""
    from proxy.sip.parser import parse_message

    raw = (
        b"INVITE sip:+15557770001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKs1\r\n"
        b"From: <sip:a@x>;tag=f1\r\nTo: <sip:b@y>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
        b"Record-Route: <sip:p1;lr>\r\nRecord-Route: <sip:p2;lr>\r\nContent-Length: 0\r\n\r\n"
    )
    msg = parse_message(raw)
    before = (msg.serialise(), msg.top_via.branch, msg.from_tag, msg.cseq.number)
    msg.headers.settle()
    assert type(msg.headers.columns()[1]) is tuple and not msg.headers.views
    assert (msg.serialise(), msg.top_via.branch, msg.from_tag, msg.cseq.number) == before
    assert msg.headers.get_all("record-route") == ["<sip:p1;lr>", "<sip:p2;lr>"]
    msg.headers.settle()
    msg.headers.add("Subject", "x")
    msg.headers.set("Max-Forwards", "9")
    assert msg.headers.remove("record-route") == 2
    assert type(msg.headers.columns()[1]) is list
    assert msg.headers.get("subject") == "x" and msg.headers.get("max-forwards") == "9"


# -- CSeq: parsed values shared from a cache -------------------------------------------------------

def test_cseq_values_are_shared_and_cannot_be_changed() -> None:
    from proxy.sip.headers import CSeq

    first = CSeq.parse("1 INVITE")
    assert first is CSeq.parse(" 1 INVITE ".strip()) and (first.number, first.method) == (1, "INVITE")
    assert CSeq.parse("1  INVITE") == first  # a different text, an equal value
    with pytest.raises(AttributeError):
        first.number = 2
    for _ in range(2):  # a malformed value raises every time (errors are not cached)
        with pytest.raises(SipParseError, match="Malformed CSeq"):
            CSeq.parse("x INVITE")
    with pytest.raises(SipParseError, match="out of range"):
        CSeq.parse("4294967296 BYE")
    assert str(CSeq(7, "BYE")) == "7 BYE"


# -- status line: "SIP/2.0 <code> <reason>" read by one slice and one lookup -------------------------

def _status_line_reference(line: str) -> tuple[int, str, str] | str:
    """The general rule (§7.2, version case-insensitive): (code, reason, version) or the error."""
    version, sp, rest = line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not sp or len(code) != 3 or not (code.isdigit() and code.isascii()) or not "100" <= code <= "699":
        return "Malformed status line"
    if version.upper() != "SIP/2.0":
        return "Unsupported SIP version"
    return int(code), reason, version


@settings(max_examples=1000)
@given(st.sampled_from(["SIP/2.0", "sip/2.0", "SIP/2.1", "SIP/2.0 "]),
       st.sampled_from(["200", "100", "699", "700", "099", "20", "2000", "２００", "abc", ""]),
       st.sampled_from(["", " ", "  ", "x"]), st.sampled_from(["", "OK", " OK", "Ringing Now", "é"]))
def test_status_line_fast_path_matches_the_general_rule(
    version: str, code: str, sep: str, reason: str
) -> None:
    from proxy.sip.message import Headers as H
    from proxy.sip.parser import _parse_start_line

    line = f"{version} {code}{sep}{reason}"
    expected = _status_line_reference(line)
    try:
        message, version_error = _parse_start_line(line, H.from_lists([], [], []))
    except SipParseError as exc:
        assert exc.reason == expected
        return
    assert not version_error
    assert (message.status, message.reason, message.version) == expected  # type: ignore[union-attr]
