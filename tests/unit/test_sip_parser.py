"""RFC 3261 §7 / §18.3 / §20 / §25 message parsing, named after the rule each test checks.

The torture corpus (tests/unit/corpus) holds messages written for sipmask in the spirit of
RFC 4475; its index.txt files name the rule and the expected outcome of each file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.sip import (
    KEEPALIVE,
    Headers,
    Request,
    Response,
    SipParseError,
    StreamFramer,
    build_response,
    parse_message,
    split_list,
)
from proxy.sip.errors import SerialiseError

CORPUS = Path(__file__).parent / "corpus"

SDP = b"v=0\r\no=- 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"


def req(*extra: str, start: str = "OPTIONS sip:svc@sipmask.example.net SIP/2.0", body: bytes = b"",
        cl: int | str | None = -1, base: list[str] | None = None) -> bytes:
    """A request whose mandatory headers can be replaced through ``base``."""
    lines = base if base is not None else [
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds",
        "From: <sip:alice@example.com>;tag=1928301774",
        "To: <sip:svc@sipmask.example.net>",
        "Call-ID: a84b4c76e66710@198.51.100.7",
        "CSeq: 314159 OPTIONS",
        "Max-Forwards: 70",
    ]
    lines = [start, *lines, *extra]
    if cl == -1:
        lines.append(f"Content-Length: {len(body)}")
    elif cl is not None:
        lines.append(f"Content-Length: {cl}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape") + body


def base_with(**changes: str) -> list[str]:
    """The default mandatory headers, some replaced (keys: via, from_, to, call_id, cseq, mf)."""
    values = {
        "via": "SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds",
        "from_": "<sip:alice@example.com>;tag=1928301774",
        "to": "<sip:svc@sipmask.example.net>",
        "call_id": "a84b4c76e66710@198.51.100.7",
        "cseq": "314159 OPTIONS",
        "mf": "70",
    }
    values.update(changes)
    names = {"via": "Via", "from_": "From", "to": "To", "call_id": "Call-ID", "cseq": "CSeq",
             "mf": "Max-Forwards"}
    return [f"{names[k]}: {v}" for k, v in values.items()]


def parse_err(data: bytes, **kw: bool) -> SipParseError:
    with pytest.raises(SipParseError) as info:
        parse_message(data, **kw)
    return info.value


# -- §7.1 / §7.2 start lines ----------------------------------------------------------------------

def test_7_1_request_line() -> None:
    m = parse_message(req())
    assert isinstance(m, Request)
    assert (m.method, m.uri, m.version) == ("OPTIONS", "sip:svc@sipmask.example.net", "SIP/2.0")
    assert m.request_uri.user == "svc" and m.request_uri.host == "sipmask.example.net"


def test_7_2_status_line() -> None:
    data = req(start="SIP/2.0 486 Busy Here")
    m = parse_message(data)
    assert isinstance(m, Response)
    assert (m.status, m.reason) == (486, "Busy Here")
    assert m.serialise() == data


@pytest.mark.parametrize("version", ["SIP/3.0", "SIP/1.0", "SIP/2.1"])
def test_8_2_1_unsupported_version_is_505_with_partial(version: str) -> None:
    err = parse_err(req(start=f"INVITE sip:svc@sipmask.example.net {version}",
                        base=base_with(cseq="1 INVITE")))
    assert err.status == 505
    assert isinstance(err.partial, Request)
    resp = build_response(err.partial, 505)
    assert resp.status == 505 and resp.reason == "Version Not Supported"
    assert resp.call_id == "a84b4c76e66710@198.51.100.7"
    assert resp.top_via.branch == "z9hG4bK776asdhds"


def test_7_1_version_is_case_insensitive() -> None:
    data = req(start="OPTIONS sip:svc@sipmask.example.net sip/2.0")
    m = parse_message(data)
    assert m.version == "sip/2.0" and m.serialise() == data
    r = parse_message(req(start="sip/2.0 200 OK"))
    assert isinstance(r, Response) and r.status == 200


@pytest.mark.parametrize("start", [
    "OPTIONS sip:svc@sipmask.example.net",           # no version
    "OPTIONS  sip:svc@sipmask.example.net SIP/2.0",  # two spaces
    "OPTIONS sip:svc@sipmask.example.net SIP/2.0 ",  # trailing space
    "OPT IONS sip:x@y SIP/2.0",
    "OPT(IONS sip:x@y SIP/2.0",                      # method is a token
    "OPTIONS svc SIP/2.0",                           # not an absolute URI
    "OPTIONS sip:x@y HTTP/1.1",
    "SIP/2.0 20 OK", "SIP/2.0 2000 OK", "SIP/2.0 abc OK", "SIP/2.0 099 X", "SIP/2.0 700 X",
    "SIP/2.0 \u0662\u0660\u0660 OK",                 # Arabic-Indic digits
    "SIP/2.0",
])
def test_7_1_malformed_start_lines(start: str) -> None:
    assert parse_err(req(start=start)).status == 400


def test_7_2_response_to_unsupported_version_is_505() -> None:
    assert parse_err(req(start="SIP/3.0 200 OK")).status == 505


def test_7_5_leading_crlfs_are_ignored() -> None:
    m = parse_message(b"\r\n\r\n\r\n" + req())
    assert isinstance(m, Request) and m.method == "OPTIONS"


@pytest.mark.parametrize("data", [b"", b"\r\n", b"\r\n\r\n", b"\n\n\n"])
def test_7_5_empty_messages(data: bytes) -> None:
    parse_err(data)


def test_7_missing_empty_line() -> None:
    assert "empty line" in parse_err(req()[:-4]).reason


# -- §7.3 header fields ---------------------------------------------------------------------------

def test_7_3_1_names_are_case_insensitive() -> None:
    m = parse_message(req(base=[
        "vIA: SIP/2.0/UDP 198.51.100.7;branch=z9hG4bK1", "FROM: <sip:a@example.com>;tag=x",
        "tO: <sip:b@example.com>", "CALL-id: abc", "cSeQ: 2 OPTIONS",
    ]))
    assert m.call_id == "abc" and m.cseq.number == 2 and m.from_tag == "x"
    h = m.headers
    assert h.get("Call-ID") == h.get("call-id") == h.get("CALL-ID") == h.get("i") == "abc"
    assert "via" in h and "V" in h and "Content-Length" in h
    assert [n for n, _ in h][:2] == ["vIA", "FROM"]  # spelling kept


@pytest.mark.parametrize(("compact", "long", "value"), [
    ("i", "Call-ID", "cid@h"), ("m", "Contact", "<sip:a@h>"), ("e", "Content-Encoding", "gzip"),
    ("f", "From", "<sip:a@h>;tag=1"), ("t", "To", "<sip:b@h>"),
    ("v", "Via", "SIP/2.0/UDP h;branch=z9hG4bKc"), ("k", "Supported", "timer"),
    ("s", "Subject", "hello"), ("c", "Content-Type", "application/sdp"), ("o", "Event", "presence"),
    ("u", "Allow-Events", "dialog"), ("r", "Refer-To", "<sip:c@h>"), ("b", "Referred-By", "<sip:d@h>"),
    ("x", "Session-Expires", "1800"), ("y", "Identity", "abc"), ("l", "Content-Length", "0"),
])
def test_7_3_3_compact_forms(compact: str, long: str, value: str) -> None:
    h = Headers([(compact, value)])
    assert h.get(long) == value and h.get(long.upper()) == value and h.get(compact.upper()) == value


def test_7_3_3_compact_forms_in_a_message() -> None:
    data = (CORPUS / "valid" / "7_3_compact_forms.sip").read_bytes()
    m = parse_message(data)
    assert m.call_id == "compact-1@198.51.100.7"
    assert m.from_tag == "a1" and m.to.uri == "sip:svc@sipmask.example.net"
    assert m.top_via.branch == "z9hG4bKcmp"
    assert m.contacts()[0].uri == "sip:alice@198.51.100.7"
    assert m.headers.values("supported") == ["timer", "100rel"]
    assert m.headers.get("Session-Expires") == "1800;refresher=uac"
    assert m.body.startswith(b"v=0")  # no Content-Length on UDP: the rest of the datagram


def test_7_3_1_several_values_and_several_lines() -> None:
    data = (CORPUS / "valid" / "7_3_1_multiple_values.sip").read_bytes()
    m = parse_message(data)
    assert [v.branch for v in m.via] == ["z9hG4bKm1", "z9hG4bKm2", "z9hG4bKm3"]
    assert m.top_via.host == "p1.example.com"
    assert len(m.headers.get_all("via")) == 2
    assert len(m.headers.values("via")) == 3
    contacts = m.contacts()
    assert [c.uri for c in contacts] == [
        "sip:bob@192.0.2.9", "sip:bob@[2001:db8::9]:5070;transport=tcp", "sip:bob@192.0.2.10"]
    assert contacts[0].display == '"Bob, Jr."' and contacts[0].params == {"q": "0.5"}
    assert contacts[1].params == {"expires": "60"}
    assert m.serialise() == data


@pytest.mark.parametrize(("value", "parts"), [
    ("a, b,c", ["a", "b", "c"]),
    ('"Doe, John" <sip:j@h>, <sip:k@h>', ['"Doe, John" <sip:j@h>', "<sip:k@h>"]),
    ("<sip:a@h;x=1,2>, <sip:b@h>", ["<sip:a@h;x=1,2>", "<sip:b@h>"]),
    ('"a \\" , b" <sip:a@h>', ['"a \\" , b" <sip:a@h>']),
    ('"a \\\\", <sip:b@h>', ['"a \\\\"', "<sip:b@h>"]),
    ("single", ["single"]),
])
def test_7_3_1_split_list_respects_quotes_and_angles(value: str, parts: list[str]) -> None:
    assert split_list(value) == parts


def test_7_3_1_split_list_unterminated_quote() -> None:
    with pytest.raises(SipParseError):
        split_list('"open, <sip:a@h>')


def test_7_3_1_line_folding() -> None:
    m = parse_message((CORPUS / "valid" / "7_3_1_line_folding.sip").read_bytes())
    assert m.headers.get("subject") == "first part second part"
    assert m.cseq.number == 1 and m.cseq.method == "INVITE"
    assert m.from_tag == "a1"
    via = m.top_via
    assert (via.protocol, via.transport, via.host, via.branch) == (
        "SIP/2.0", "UDP", "198.51.100.7", "z9hG4bKfold")


def test_7_3_1_folding_with_tab() -> None:
    m = parse_message(req("Subject: one", "\t two"))
    assert m.headers.get("Subject") == "one two"


def test_7_3_1_whitespace_around_colon() -> None:
    m = parse_message(req("Subject   :   spaced   "))
    assert m.headers.get("subject") == "spaced"
    assert m.headers.items()[-2] == ("Subject", "spaced")


def test_7_3_1_header_order_is_preserved() -> None:
    m = parse_message(req("Zeta: 1", "Alpha: 2", "Via: SIP/2.0/UDP second;branch=z9hG4bK2", "Mid: 3"))
    names = [n for n, _ in m.headers]
    assert names == ["Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "Zeta", "Alpha", "Via",
                     "Mid", "Content-Length"]


def test_8_2_2_unknown_headers_pass_through_untouched() -> None:
    odd = ["X-Weird_Header.1: <<odd>> ,,, \"unterminated", "UnknownHeaderWithUnusualValue: ;;,,;;,;",
           "P-Custom: caf\u00e9 \u2603", "Empty: "]
    data = req(*odd)
    m = parse_message(data)
    assert m.headers.get("x-weird_header.1") == '<<odd>> ,,, "unterminated'
    assert m.headers.get("p-custom") == "caf\u00e9 \u2603"
    assert m.headers.get("empty") == ""
    assert m.serialise() == data


def test_25_non_utf8_header_bytes_round_trip() -> None:
    data = req("X-Latin1: caf\udce9")  # surrogate-escaped 0xE9
    assert b"caf\xe9" in data
    assert parse_message(data).serialise() == data


@pytest.mark.parametrize("line", ["NoColon", "Bad Name: x", "Bad\x01: x", "(x): y", ": novalue"])
def test_25_invalid_header_lines_carry_partial(line: str) -> None:
    err = parse_err(req("Subject: before", line))
    assert err.status == 400
    assert isinstance(err.partial, Request)
    assert err.partial.headers.get("subject") == "before"
    resp = build_response(err.partial, 400, err.reason)
    assert resp.status == 400 and resp.reason == err.reason and resp.cseq.number == 314159


def test_7_3_1_folded_line_first() -> None:
    assert parse_err(req(base=[" continuation", *base_with()])).status == 400


@pytest.mark.parametrize("bad", [
    "Subject: a\x00b", "Subject: a\rb", "Subject: a\r",
    'Subject: "a\x00b"',  # NUL in a quoted-string but not escaped: qdtext excludes it
    'Subject: "a" \\\x00',  # a backslash outside quotes escapes nothing
])
def test_7_3_1_nul_and_bare_cr_rejected(bad: str) -> None:
    parse_err(req(bad))


def test_25_nul_outside_a_quoted_pair_rejected_even_after_a_quoted_one() -> None:
    # the quote state ends with its header: an unterminated quote does not excuse the next line
    assert parse_err(req('Subject: "a\\\x00', "Organization: \\\x00")).reason == "NUL character in message headers"
    assert parse_err(req(start="OPTIONS sip:svc@sipmask.example.net\x00 SIP/2.0")).status == 400


@pytest.mark.parametrize("display", ['"a\\\x00b"', '"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f"'])
def test_25_nul_in_a_quoted_pair_of_a_display_name_is_valid(display: str) -> None:
    # §25.1 quoted-pair = "\\" (%x00-09 / %x0B-0C / %x0E-7F); RFC 4475 §3.1.1.2 (intmeth)
    m = parse_message(req(base=base_with(from_=f"{display} <sip:alice@example.com>;tag=a1")))
    assert m.from_.display == display and m.from_tag == "a1"
    assert parse_message(m.serialise()).headers.get("From") == m.headers.get("From")


def test_25_nul_in_a_quoted_pair_on_a_folded_line_is_valid() -> None:
    m = parse_message(req(base=base_with(from_='"a\r\n b\\\x00c" <sip:alice@example.com>;tag=a1')))
    assert m.from_tag == "a1" and "\x00" in (m.from_.display or "")


def test_7_5_bare_lf_line_ends_tolerated() -> None:
    data = req().replace(b"\r\n", b"\n")
    m = parse_message(data)
    assert m.call_id == "a84b4c76e66710@198.51.100.7" and m.body == b""


def test_7_5_mixed_line_ends_with_body() -> None:
    data = req(body=b"a\r\n\r\nb").replace(b"Max-Forwards: 70\r\n", b"Max-Forwards: 70\n")
    m = parse_message(data)
    assert m.headers.get("max-forwards") == "70" and m.body == b"a\r\n\r\nb"


def test_too_many_headers() -> None:
    err = parse_err(req(*[f"X-H{i}: {i}" for i in range(300)]))
    assert err.status == 400 and err.partial is not None


# -- §8.1.1 mandatory headers, §20.16 CSeq, §20.22 Max-Forwards, Call-ID ---------------------------

@pytest.mark.parametrize("drop", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_8_1_1_mandatory_headers(drop: str) -> None:
    base = [h for h in base_with() if not h.startswith(drop + ":")]
    err = parse_err(req(base=base))
    assert err.status == 400 and drop in err.reason and err.partial is not None


def test_8_1_1_max_forwards_is_optional() -> None:
    base = [h for h in base_with() if not h.startswith("Max-Forwards")]
    assert parse_message(req(base=base)).headers.get("max-forwards") is None


@pytest.mark.parametrize("dup", ["From: <sip:m@example.com>;tag=9", "t: <sip:x@y>", "i: other",
                                 "CSeq: 314159 OPTIONS", "Max-Forwards: 69"])
def test_8_1_1_single_valued_headers_once(dup: str) -> None:
    err = parse_err(req(dup))
    assert err.status == 400 and "Multiple" in err.reason


def test_8_1_1_4_empty_call_id() -> None:
    assert parse_err(req(base=base_with(call_id=""))).status == 400


@pytest.mark.parametrize(("cseq", "number"), [("0 OPTIONS", 0), ("2147483648 OPTIONS", 2**31),
                                              ("4294967295 OPTIONS", 2**32 - 1),
                                              ("  17   OPTIONS ", 17)])
def test_8_1_1_5_cseq_range_valid(cseq: str, number: int) -> None:
    m = parse_message(req(base=base_with(cseq=cseq)))
    assert m.cseq.number == number and m.cseq.method == "OPTIONS"


@pytest.mark.parametrize("cseq", ["4294967296 OPTIONS", "36893488147419103232 OPTIONS", "-1 OPTIONS",
                                  "x OPTIONS", "1", "OPTIONS", "1 OPT IONS", "\u0661 OPTIONS",
                                  "\u00b2 OPTIONS", "1 OPT(IONS", ""])
def test_8_1_1_5_cseq_invalid(cseq: str) -> None:
    err = parse_err(req(base=base_with(cseq=cseq)))
    assert err.status == 400 and err.partial is not None


def test_8_1_1_5_cseq_method_must_match() -> None:
    err = parse_err(req(base=base_with(cseq="1 INVITE")))
    assert err.status == 400 and "method" in err.reason
    assert build_response(err.partial, 400, err.reason).status == 400  # type: ignore[arg-type]


def test_8_1_1_5_cseq_method_free_in_responses() -> None:
    m = parse_message(req(start="SIP/2.0 200 OK", base=base_with(cseq="5 INVITE")))
    assert m.cseq.method == "INVITE"


@pytest.mark.parametrize("mf", ["0", "70", "255", "0068", "000", "0000000255"])
def test_20_22_max_forwards_valid(mf: str) -> None:
    # §25.1 Max-Forwards = 1*DIGIT: leading zeros allowed (RFC 4475 §3.1.1.1: "0068")
    assert parse_message(req(base=base_with(mf=mf))).headers.get("Max-Forwards") == mf


@pytest.mark.parametrize("mf", ["256", "1000", "00256", "-1", "seventy", "", "\u0667\u0660"])
def test_20_22_max_forwards_invalid(mf: str) -> None:
    assert parse_err(req(base=base_with(mf=mf))).status == 400


# -- §18.3 / §20.14 Content-Length and bodies -----------------------------------------------------

def test_18_3_udp_extra_bytes_ignored() -> None:
    m = parse_message(req(body=b"abc", cl=2))
    assert m.body == b"ab"


def test_18_3_udp_missing_content_length_is_rest_of_datagram() -> None:
    m = parse_message(req(cl=None) + b"hello\x00world")
    assert m.body == b"hello\x00world"
    assert m.serialise().endswith(b"Content-Length: 11\r\n\r\nhello\x00world")


def test_18_3_udp_content_length_larger_than_datagram() -> None:
    err = parse_err(req(body=b"abc", cl=4))
    assert err.status == 400 and isinstance(err.partial, Request)
    assert build_response(err.partial, 400, err.reason).status == 400


def test_18_3_stream_requires_content_length() -> None:
    err = parse_err(req(cl=None), stream=True)
    assert err.status == 400 and err.partial is not None
    assert parse_message(req(body=b"xy"), stream=True).body == b"xy"


@pytest.mark.parametrize("cl", ["-1", "abc", "1.0", "9999999999", "\u0663", "\u00b2", "1 2"])
def test_20_14_content_length_invalid(cl: str) -> None:
    err = parse_err(req(cl=cl))
    assert err.status == 400 and err.partial is not None


def test_20_14_conflicting_content_lengths() -> None:
    parse_err(req("Content-Length: 1", body=b"ab"))
    m = parse_message(req("l: 2", body=b"ab"))  # repeated but equal: tolerated
    assert m.body == b"ab"


def test_18_3_binary_body_passes_through() -> None:
    body = b"\x00\xff\xfe\r\n\r\n\x80binary\x00"
    data = req("Content-Type: application/octet-stream", body=body)
    m = parse_message(data)
    assert m.body == body and isinstance(m.body, bytes)
    assert m.serialise() == data


def test_20_14_serialise_recomputes_content_length() -> None:
    m = parse_message(req(body=b"abc"))
    m.body = b"longer body"
    assert b"Content-Length: 11\r\n" in m.serialise()
    assert m.serialise().count(b"Content-Length") == 1


# -- the serialiser guard: sipmask never emits a malformed message --------------------------------

def _built_request(uri: str = "sip:bob@192.0.2.9", **change: str | None) -> Request:
    """A request as sipmask builds one (not parsed), with header values replaced or (None) left out."""
    lines = {"Via": "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", "Max-Forwards": "70",
             "From": "<sip:a@192.0.2.1>;tag=1", "To": "<sip:bob@192.0.2.9>;tag=2",
             "Call-ID": "c1", "CSeq": "2 BYE"}
    lines.update(change)
    return Request("BYE", uri, Headers([(k, v) for k, v in lines.items() if v is not None]))


@pytest.mark.parametrize("uri", ["", " ", "sip:bob @192.0.2.9", "sip:bob@192.0.2.9\r\nX: y"])
def test_7_1_serialise_refuses_an_empty_or_broken_request_uri(uri: str) -> None:
    # once sent as "BYE  SIP/2.0" after a dialog without remote target
    bad = _built_request(uri)
    with pytest.raises(SerialiseError) as info:
        bad.serialise()
    assert info.value.reason in ("Empty or malformed Request-URI",
                                 "CR or LF inside the request line or a header value")
    with pytest.raises(SerialiseError):
        bad.check()


@pytest.mark.parametrize("value", ["a\r\nInjected: 1", "a\nb", "a\rb", "\r\n"])
def test_7_3_serialise_refuses_cr_or_lf_in_a_header_value(value: str) -> None:
    for name in ("Call-ID", "X-Extra"):
        bad = _built_request()
        bad.headers.add(name, value) if name == "X-Extra" else bad.headers.set(name, value)
        with pytest.raises(SerialiseError, match="CR or LF"):
            bad.serialise()
        with pytest.raises(SerialiseError, match="CR or LF"):
            bad.check()
    # a response: its builder's additions are checked by check() (the 400s built from partial
    # requests run it); serialise refuses a broken reason phrase itself
    response = build_response(parse_message(req()), 200)
    response.headers.add("Server", value)
    with pytest.raises(SerialiseError, match="CR or LF"):
        response.check()
    with pytest.raises(SerialiseError, match="CR or LF"):
        Response(200, f"OK{value}", build_response(parse_message(req()), 200).headers).serialise()


@pytest.mark.parametrize("missing", ["Via", "From", "To", "Call-ID", "CSeq"])
def test_8_1_1_serialise_refuses_a_message_without_a_mandatory_header(missing: str) -> None:
    with pytest.raises(SerialiseError, match=f"Missing {missing} header"):
        _built_request(**{missing: None}).serialise()
    response = build_response(parse_message(req()), 200)
    response.headers.remove(missing)
    with pytest.raises(SerialiseError, match=f"Missing {missing} header"):
        response.check()


def test_8_1_1_check_requires_max_forwards_of_what_sipmask_sends() -> None:
    # a received request may lack it (the parser lets it in, and the trace log serialises it),
    # a request sipmask sends may not: the transaction layer checks what the TU hands it
    bad = _built_request(**{"Max-Forwards": None})
    assert bad.serialise().startswith(b"BYE sip:bob@192.0.2.9 SIP/2.0\r\n")
    with pytest.raises(SerialiseError, match="Missing Max-Forwards header"):
        bad.check()
    _built_request().check()
    build_response(parse_message(req()), 200).check()


def test_8_1_1_the_transaction_layer_refuses_a_malformed_request_before_any_state() -> None:
    from proxy.sip.ids import SequentialIds
    from proxy.sip.transaction import Address, TimerConfig, TransactionLayer

    layer = TransactionLayer(TimerConfig(), SequentialIds("s"))
    dest = Address("udp", "192.0.2.9", 5060)
    with pytest.raises(SerialiseError):
        layer.send_request(_built_request(""), dest, 0.0)
    with pytest.raises(SerialiseError):
        layer.send_stateless(_built_request(**{"Max-Forwards": None}), dest)
    assert layer.take_outgoing() == [] and layer.next_deadline() is None
    assert layer.counts["client_non_invite"] == 0


# -- round trip ------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [
    req(),
    req("Content-Type: application/sdp", body=SDP,
        start="INVITE sip:+15550100@sipmask.example.net SIP/2.0", base=base_with(cseq="1 INVITE")),
    req(start="SIP/2.0 100 Trying"),
    req("Content-Type: application/sdp", start="SIP/2.0 200 OK", body=SDP),
])
def test_7_canonical_messages_serialise_byte_identical(data: bytes) -> None:
    assert parse_message(data).serialise() == data
    assert parse_message(data, stream=True).serialise() == data


# -- lazily parsed views -----------------------------------------------------------------------------

@pytest.mark.parametrize(("to", "uri", "tag"), [
    ("<sip:a@b> ;tag=x", "sip:a@b", "x"),
    ('"A" <sip:a@b>\t ;  tag = x', "sip:a@b", "x"),
    ("sip:a@b ;tag=x", "sip:a@b", "x"),
    ("sip:a@b\t;tag=x", "sip:a@b", "x"),
    ("sip:vivekg@chair-dnrc.example.com ;   tag    = 1918181833n", "sip:vivekg@chair-dnrc.example.com", "1918181833n"),
])
def test_25_1_lws_before_semi_in_address_parameters(to: str, uri: str, tag: str) -> None:
    # §25.1 SEMI = SWS ";" SWS, for name-addr and addr-spec alike (RFC 4475 §3.1.1.1 To)
    m = parse_message(req(base=base_with(to=to)))
    assert m.to.uri == uri and m.to_tag == tag


def test_rfc4475_3_1_1_1_short_tortuous_invite() -> None:
    m = parse_message((CORPUS / "valid" / "rfc4475_3_1_1_1_wsinv.sip").read_bytes())
    assert isinstance(m, Request) and m.method == "INVITE"
    assert m.headers.get("Max-Forwards") == "0068"
    assert m.to.uri == "sip:vivekg@chair-dnrc.example.com" and m.to_tag == "1918181833n"
    assert m.from_.display == '"J Rosenberg \\\\\\""' and m.from_tag == "98asjd8"
    assert (m.cseq.number, m.cseq.method) == (9, "INVITE")
    assert [v.host for v in m.via] == ["192.0.2.2", "spindle.example.com", "192.168.255.111"]
    assert m.via[2].params["branch"] == "z9hG4bK30239"
    (contact,) = m.contacts()
    assert contact.display == '"Quoted string \\"\\""'
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(m.body) == 150


def test_rfc4475_3_1_1_2_wide_range_of_valid_characters() -> None:
    m = parse_message((CORPUS / "valid" / "rfc4475_3_1_1_2_intmeth.sip").read_bytes())
    assert isinstance(m, Request) and m.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert m.to.display == '"BEL:\\\x07 NUL:\\\x00 DEL:\\\x7f"'
    assert m.request_uri.host == "example.com"
    assert m.request_uri.user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"
    assert m.request_uri.password == "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)"
    assert m.from_tag == "_token~1'+`*%!-."
    assert m.to.sip_uri().user == "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*"


def test_20_10_display_name_escapes() -> None:
    m = parse_message(req(base=base_with(from_='"Alice \\"the\\" \\\\ Admin" <sip:alice@example.com>;tag=a1')))
    assert m.from_.display == '"Alice \\"the\\" \\\\ Admin"'
    assert m.from_.uri == "sip:alice@example.com" and m.from_tag == "a1"


@pytest.mark.parametrize(("where", "change"), [
    ("from_", {"from_": '"Alice <sip:alice@example.com>;tag=a1'}),
    ("from_", {"from_": "<sip:alice@example.com"}),
    ("from_", {"from_": '"Alice" sip:alice@example.com'}),
    ("to", {"to": "<sip:a@b> junk"}),
    ("to", {"to": "sip:a@b, sip:c@d"}),
    ("to", {"to": "<sip:a@b>;;tag=x"}),
    ("top_via", {"via": "SIP/2.0/UDP"}),
    ("top_via", {"via": "SIP/2.0/UDP host:99999;branch=z9hG4bK1"}),
    ("top_via", {"via": "SIP/2.0/UDP host;ttl=256"}),
    ("top_via", {"via": "SIP/2.0/UDP host;ttl=abc"}),
    ("top_via", {"via": "SIP/2.0/UDP host;rport=70000"}),
    ("top_via", {"via": "SIP/2.0/UDP host;received=not.an;ip"}),
    ("top_via", {"via": "SIP/2.0/UDP host;branch"}),
    ("top_via", {"via": "SIP/2.0/UDP ho st;branch=z9hG4bK1"}),
    ("top_via", {"via": "HTTP/1.1/TCP host"}),
    ("top_via", {"via": "SIP/2.0/UDP [2001:db8::1"}),
])
def test_20_lazy_headers_raise_on_access(where: str, change: dict[str, str]) -> None:
    m = parse_message(req(base=base_with(**change)))  # parse_message itself accepts it
    with pytest.raises(SipParseError) as info:
        getattr(m, where)
    assert info.value.status == 400
    assert build_response(m, 400, info.value.reason).status == 400  # a 400 can still be built


def test_20_42_via_parameters() -> None:
    m = parse_message(req(base=base_with(
        via="SIP/2.0/UDP 198.51.100.7:5060;rport;branch=z9hG4bKvp;maddr=224.2.0.1;ttl=16;received=192.0.2.4")))
    v = m.top_via
    assert v.params["rport"] is None and v.params["maddr"] == "224.2.0.1"
    assert v.params["ttl"] == "16" and v.params["received"] == "192.0.2.4"
    assert v.sent_by == ("198.51.100.7", 5060) and m.branch == "z9hG4bKvp"
    filled = parse_message(req(start="SIP/2.0 200 OK", base=base_with(
        via="SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bK1;rport=5061;received=2001:db8::1")))
    assert filled.top_via.params["rport"] == "5061" and filled.top_via.host == "[2001:db8::1]"
    assert filled.top_via.transport == "TCP"


@pytest.mark.parametrize(("ttl", "ok"), [("0", True), ("255", True), ("256", False), ("-1", False)])
def test_20_42_via_ttl_bounds(ttl: str, ok: bool) -> None:
    m = parse_message(req(base=base_with(via=f"SIP/2.0/UDP h;ttl={ttl}")))
    if ok:
        assert m.top_via.params["ttl"] == ttl
    else:
        with pytest.raises(SipParseError):
            _ = m.top_via


def test_20_42_via_lowercase_transport_and_tabs() -> None:
    m = parse_message(req(base=base_with(via="SIP/2.0/udp\thost.example.com ; branch = z9hG4bK9")))
    assert m.top_via.transport == "UDP" and m.top_via.branch == "z9hG4bK9"


def test_views_are_cached_until_headers_change() -> None:
    m = parse_message(req())
    assert m.from_ is m.from_ and m.top_via is m.top_via and m.cseq is m.cseq
    m.headers.set("From", "<sip:bob@example.com>;tag=zz")
    assert m.from_tag == "zz"
    m.headers.set("Via", "SIP/2.0/TCP other;branch=z9hG4bKnew")
    assert m.branch == "z9hG4bKnew" and m.via[0].transport == "TCP"


# -- build_response on partial messages -------------------------------------------------------------

def test_8_2_6_build_response_copies_and_tags() -> None:
    m = parse_message(req("Timestamp: 54"))
    assert isinstance(m, Request)
    r = build_response(m, 180, to_tag="tt")
    assert r.to_tag == "tt" and r.from_tag == "1928301774" and r.call_id == m.call_id
    trying = build_response(m, 100, to_tag="tt")
    assert trying.to_tag is None and trying.headers.get("timestamp") == "54"


def test_8_2_6_build_response_on_partial_with_bad_to() -> None:
    m = parse_message(req(base=base_with(to="<sip:a@b")))
    r = build_response(m, 400, "Bad To", to_tag="t1")
    assert r.headers.get("to") == "<sip:a@b;tag=t1"  # copied verbatim, the tag appended


# -- corpus ------------------------------------------------------------------------------------------

def _index(kind: str) -> dict[str, tuple[str, str]]:
    out = {}
    for line in (CORPUS / kind / "index.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, expect, rule = (p.strip() for p in line.split("|", 2))
        out[name] = (expect, rule)
    return out


VALID = _index("valid")
INVALID = _index("invalid")


def test_corpus_every_file_is_indexed() -> None:
    for kind, idx in (("valid", VALID), ("invalid", INVALID)):
        files = {p.name for p in (CORPUS / kind).glob("*.sip")}
        assert files == set(idx), kind


@pytest.mark.parametrize("name", sorted(VALID))
def test_corpus_valid(name: str) -> None:
    data = (CORPUS / "valid" / name).read_bytes()
    m = parse_message(data)
    _ = (m.top_via, m.from_, m.to, m.cseq, m.contacts(), m.via)  # every view parses
    if isinstance(m, Request):
        _ = m.request_uri
    if VALID[name][0] == "roundtrip":
        assert m.serialise() == data
    again = parse_message(m.serialise())  # whatever the input, our output is stable
    assert again.serialise() == m.serialise()


@pytest.mark.parametrize("name", sorted(INVALID))
def test_corpus_invalid(name: str) -> None:
    data = (CORPUS / "invalid" / name).read_bytes()
    where, status = INVALID[name][0].split()
    if where == "parse":
        err = parse_err(data)
    else:
        m = parse_message(data)
        with pytest.raises(SipParseError) as info:
            getattr(m, where)
        err = info.value
    assert err.status == int(status), err.reason


# -- §18.3 stream framing ---------------------------------------------------------------------------

def test_18_3_stream_framer_cuts_by_content_length() -> None:
    a, b = req(body=b"abc"), req(start="SIP/2.0 200 OK")
    f = StreamFramer()
    assert f.feed(a[:10]) == []
    assert f.feed(a[10:] + b + b"\r\n\r\n") == [a, b, KEEPALIVE]
    assert f.buffered == 0


def test_18_3_stream_framer_errors() -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(req(cl=None))
    with pytest.raises(SipParseError) as info:
        StreamFramer(max_size=100).feed(req(body=b"x" * 200))
    assert info.value.status == 513
    with pytest.raises(SipParseError):
        StreamFramer(max_size=100).feed(b"A" * 200)


def test_rfc5626_keepalive_and_pong() -> None:
    f = StreamFramer()
    assert f.feed(b"\r\n") == []
    assert f.feed(b"\r\n") == [KEEPALIVE]
    assert f.feed(b"\r\n" + req()) == [req()]  # a lone CRLF (pong) before a message is dropped


# -- a damaged request line still gives the 400 its headers make possible (§8.2, RFC 4475) ------

@pytest.mark.parametrize(("start", "reason"), [
    # RFC 4475 §3.1.2.7 ltgtruri: the Request-URI is never a name-addr
    ("INVITE <sip:user@example.com> SIP/2.0", "Bad Request-URI"),
    # §3.1.2.8 lwsruri: LWS inside the Request-URI
    ("INVITE sip:user@example.com; lr SIP/2.0", "Malformed request line"),
    # §3.1.2.9 lwsstart: several SP between the elements
    ("INVITE  sip:user@example.com  SIP/2.0", "Malformed request line"),
    # §3.1.2.10 trws: SP after the version
    ("INVITE sip:user@example.com SIP/2.0  ", "Malformed request line"),
    ("INVITE sip:user@example.com HTTP/1.1", "Malformed request line"),
    ("INVITE user SIP/2.0", "Malformed Request-URI"),
    ("INV(ITE sip:user@example.com SIP/2.0", "Invalid method in request line"),
])
def test_rfc4475_3_1_2_damaged_request_line_is_400_with_partial(start: str, reason: str) -> None:
    err = parse_err(req(start=start, base=base_with(cseq="1 INVITE")))
    assert (err.status, err.reason) == (400, reason)
    assert isinstance(err.partial, Request)
    resp = build_response(err.partial, err.status, err.reason, to_tag="t1")
    assert resp.call_id == "a84b4c76e66710@198.51.100.7" and str(resp.cseq) == "1 INVITE"
    assert resp.top_via.branch == "z9hG4bK776asdhds" and resp.to_tag == "t1"


def test_7_1_damaged_request_line_without_mandatory_headers_has_partial_but_no_call_id() -> None:
    # the partial is there; the transport finds no Call-ID in it, so nothing can be answered
    err = parse_err(req(start="INVITE <sip:user@example.com> SIP/2.0", base=[
        "Via: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK776asdhds", "CSeq: 1 INVITE"]))
    assert err.reason == "Bad Request-URI"
    assert isinstance(err.partial, Request) and "call-id" not in err.partial.headers
