"""SDP rebuilt from a whitelist (RFC 8866): what crosses, what is dropped, what is refused."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sip import SdpError, SdpWhitelist, rebuild_sdp, sdp_has_media
from proxy.sip.body import BodyError, media_type, multipart_parts

NUMBER = "15550111"
#: the real number in every spelling a softphone puts in SDP
SPELLINGS = (f"+{NUMBER}", NUMBER, f"tel:+{NUMBER}", f"sip:+{NUMBER}@198.51.100.7", f"00{NUMBER}")
W = SdpWhitelist()

OFFER = (
    b"v=0\r\n"
    b"o=+15550111 2890844526 2890842807 IN IP4 198.51.100.7\r\n"
    b"s=Call from +15550111\r\n"
    b"i=private info +15550111\r\n"
    b"u=http://example.com/+15550111\r\n"
    b"e=alice+15550111@example.com\r\n"
    b"p=+1 555 0111\r\n"
    b"c=IN IP4 198.51.100.7\r\n"
    b"b=AS:64\r\n"
    b"t=0 0\r\n"
    b"z=2882844526 -1h\r\n"
    b"k=clear:secret\r\n"
    b"a=tool:Linphone 5.2 +15550111\r\n"
    b"m=audio 49170 RTP/AVP 0 8 101\r\n"
    b"i=media title\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-15\r\n"
    b"a=ptime:20\r\n"
    b"a=sendrecv\r\n"
    b"a=rtcp:49171 IN IP4 198.51.100.7\r\n"
    b"a=ssrc:1234 cname:sip:+15550111@198.51.100.7\r\n"
    b"a=msid:stream-+15550111 track\r\n"
    b"a=label:+15550111\r\n"
    b"a=x-custom:+15550111\r\n"
    b"a=candidate:1 1 UDP 2130706431 192.168.1.20 49170 typ host\r\n"
    b"a=ice-ufrag:abcd\r\n"
    b"a=fingerprint:sha-256 AB:CD\r\n"
)


def test_whitelisted_lines_cross_in_order_and_the_rest_is_dropped() -> None:
    out = rebuild_sdp(OFFER, W)
    assert out == (
        b"v=0\r\n"
        b"o=- 2890844526 2890842807 IN IP4 198.51.100.7\r\n"
        b"s=-\r\n"
        b"c=IN IP4 198.51.100.7\r\n"
        b"b=AS:64\r\n"
        b"t=0 0\r\n"
        b"m=audio 49170 RTP/AVP 0 8 101\r\n"
        b"a=rtpmap:0 PCMU/8000\r\n"
        b"a=rtpmap:101 telephone-event/8000\r\n"
        b"a=fmtp:101 0-15\r\n"
        b"a=ptime:20\r\n"
        b"a=sendrecv\r\n"
        b"a=rtcp:49171 IN IP4 198.51.100.7\r\n"
    )
    assert NUMBER.encode() not in out


@pytest.mark.parametrize("line", [
    b"i=x", b"u=x", b"e=x", b"p=x", b"k=x", b"z=0 0", b"a=ssrc:1 cname:x", b"a=msid:x y", b"a=tool:x",
    b"a=label:x", b"a=x-anything:x", b"a=candidate:x", b"a=ice-pwd:x", b"a=fingerprint:x", b"a=unknown",
    b"q=unknown letter",
])
def test_each_dropped_line_kind(line: bytes) -> None:
    body = b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n" + line + b"\r\n"
    assert rebuild_sdp(body, W) == b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n"


def test_fail_open_cases_of_issue_17_are_rebuilt() -> None:
    # a double space after the username, and s= holding the number: both used to pass as they came
    body = b"v=0\r\no=+15550111  1 1 IN IP4 198.51.100.7\r\ns=+15550111\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
    out = rebuild_sdp(body, W, origin_address="192.0.2.1")
    assert out.startswith(b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\n")
    assert NUMBER.encode() not in out
    # a username with spaces: the last five fields are the origin's
    out = rebuild_sdp(body.replace(b"+15550111  1", b"Alice +15550111 1"), W)
    assert b"o=- 1 1 IN IP4 198.51.100.7\r\n" in out and NUMBER.encode() not in out


def test_non_numeric_ids_are_replaced_deterministically() -> None:
    body = b"v=0\r\no=u +15550111 v2 IN IP4 h\r\ns=x\r\nt=0 0\r\n"
    one = rebuild_sdp(body, W, id_key=b"k1")
    assert one == rebuild_sdp(body, W, id_key=b"k1")
    assert one != rebuild_sdp(body, W, id_key=b"k2")
    fields = one.split(b"\r\n")[1][2:].split(b" ")
    assert fields[0] == b"-" and fields[1].isdigit() and fields[2].isdigit() and NUMBER.encode() not in one
    assert rebuild_sdp(body.replace(b"v2", b"v3"), W, id_key=b"k1") != one  # a new version stays new


def test_origin_address_ip6_and_configured_names() -> None:
    w = SdpWhitelist(origin_username="sipmask", session_name="call")
    out = rebuild_sdp(OFFER, w, origin_address="[2001:db8::1]")
    assert b"o=sipmask 2890844526 2890842807 IN IP6 2001:db8::1\r\ns=call\r\n" in out


def test_lf_only_input_and_trailing_blank_lines() -> None:
    body = b"v=0\no=a 1 2 IN IP4 h\ns=x\nt=0 0\nm=audio 1 RTP/AVP 0\n\n\n"
    assert rebuild_sdp(body, W) == b"v=0\r\no=- 1 2 IN IP4 h\r\ns=-\r\nt=0 0\r\nm=audio 1 RTP/AVP 0\r\n"


def test_configured_lines_and_attribute_prefixes() -> None:
    w = SdpWhitelist(lines=frozenset("vostmci"), attributes=frozenset({"ice-*", "candidate", "RTPMAP"}))
    out = rebuild_sdp(OFFER, w)
    assert b"i=private info" in out and b"a=ice-ufrag:abcd" in out and b"a=candidate:" in out
    assert b"a=rtpmap:0 PCMU/8000" in out and b"a=ptime" not in out and b"b=AS" not in out
    with pytest.raises(ValueError, match="must include"):
        SdpWhitelist(lines=frozenset("vosm"))
    with pytest.raises(ValueError, match="unknown SDP line type"):
        SdpWhitelist(lines=frozenset("vostmq"))
    with pytest.raises(ValueError, match="not an attribute name"):
        SdpWhitelist(attributes=frozenset({"a b"}))


BASE = [b"v=0", b"o=- 1 1 IN IP4 h", b"s=-", b"c=IN IP4 h", b"t=0 0", b"m=audio 1 RTP/AVP 0"]


@pytest.mark.parametrize(("index", "line", "reason"), [
    (3, b"c= IP4 198.51.100.7", "line 4: c= expects"),  # issue 17
    (3, b"c=IN IP4", "line 4: c= expects"),
    (6, b"a=:0 PCMU/8000", "line 7: a= attribute name is not a token"),  # issue 17
    (6, b"a=rtp map:0", "line 7: a= attribute name"),
    (5, b"m=audio 1 RTP/AVP", "line 6: m= expects"),
    (5, b"m=audio x RTP/AVP 0", "line 6: m= port"),
    (4, b"t=0", "line 5: t= expects"),
    (3, b"b=AS", "line 4: b= expects"),
    (3, b"x", "line 4: expected <type>=<value>"),
    (3, b"", "line 4: expected <type>=<value>"),
    (3, b"C=IN IP4 h", "line 4: expected <type>=<value>"),
    (3, b"c =IN IP4 h", "line 4: expected <type>=<value>"),
    (0, b"v=1", "line 1: expected v=0"),
    (1, b"s=-", "line 2: expected o="),
    (1, b"o=- 1 1 IN IP4", "line 2: o= expects"),
    (3, b"o=- 1 1 IN IP4 h", "line 4: a second o="),
    (6, b"t=0 0", "t= expects"),  # timing inside a media section
])
def test_malformed_sdp_is_refused(index: int, line: bytes, reason: str) -> None:
    lines = list(BASE)
    lines.insert(index, line) if index >= 3 else lines.__setitem__(index, line)
    with pytest.raises(SdpError) as info:
        rebuild_sdp(b"\r\n".join(lines) + b"\r\n", W)
    assert reason in info.value.reason
    assert b"198" not in info.value.reason.encode()  # the reason names no content


@pytest.mark.parametrize("body", [b"", b"hello", b"v=0\r\n", b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\n",
                                  b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nm=audio 1 RTP/AVP 0\r\nt=0 0\r\n",
                                  b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\na=x:\x00\r\n"])
def test_no_timing_or_no_header_is_refused(body: bytes) -> None:
    with pytest.raises(SdpError):
        rebuild_sdp(body, W)


def test_sdp_has_media() -> None:
    assert sdp_has_media(OFFER)
    assert sdp_has_media(b"m=audio 1 RTP/AVP 0\r\n")
    assert not sdp_has_media(b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n")


# -- properties ---------------------------------------------------------------------------------

_SESSION = re.compile(rb"^v=0\r\no=- [0-9]+ [0-9]+ [!-~]+ [!-~]+ \S+\r\ns=-\r\n")
_LINE = re.compile(rb"^[a-z]=[^\r\n\x00]*$")


def _parses(out: bytes) -> bool:
    """A second, independent reading of the output grammar (the rebuild's own parse too)."""
    if not _SESSION.match(out) or not out.endswith(b"\r\n"):
        return False
    lines = out[:-2].split(b"\r\n")
    if not all(_LINE.match(line) for line in lines):
        return False
    allowed = {ord(c) for c in W.lines} | {ord("a")}
    return all(line[0] in allowed for line in lines) and rebuild_sdp(out, W) == out


_junk = st.sampled_from(SPELLINGS).map(str.encode)
_dropped_line = st.one_of(
    st.tuples(st.sampled_from([b"i=", b"u=", b"e=", b"p=", b"k=", b"z=", b"a=tool:", b"a=label:", b"a=x-id:",
                               b"a=ssrc:1 cname:", b"a=msid:", b"a=candidate:1 1 UDP 1 ", b"a=ice-ufrag:"]),
              _junk).map(b"".join),
)
_kept_line = st.sampled_from([b"a=rtpmap:0 PCMU/8000", b"a=sendonly", b"b=AS:64", b"c=IN IP4 192.0.2.9",
                              b"a=ptime:20", b"a=fmtp:101 0-16"])
_origin_user = st.one_of(_junk, st.just(b"-"), _junk.map(lambda j: j + b" "))


@settings(max_examples=300, deadline=None)
@given(_origin_user, _junk, st.lists(st.one_of(_dropped_line, _kept_line), max_size=6),
       st.lists(st.one_of(_dropped_line, _kept_line), max_size=6), st.sampled_from([b"\r\n", b"\n"]))
def test_property_output_parses_and_never_holds_the_number(user: bytes, name: bytes, session: list[bytes],
                                                            media: list[bytes], eol: bytes) -> None:
    lines = [b"v=0", b"o=" + user + b" 1 2 IN IP4 198.51.100.7", b"s=" + name, *session, b"t=0 0",
             b"m=audio 4000 RTP/AVP 0", *media]
    out = rebuild_sdp(eol.join(lines) + eol, W, origin_address="192.0.2.1")
    assert _parses(out)
    assert NUMBER.encode() not in out


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=30), max_size=10), st.sampled_from([b"\r\n", b"\n"]))
def test_property_arbitrary_input_is_rebuilt_to_valid_sdp_or_refused(lines: list[bytes], eol: bytes) -> None:
    body = eol.join([b"v=0", b"o=- 1 1 IN IP4 h", b"s=x", b"t=0 0", *lines])
    try:
        out = rebuild_sdp(body, W)
    except SdpError:
        return
    assert _parses(out)


_LINE_POOL = [
    b"c=IN IP4 192.0.2.1", b"c=IN IP6 ::1", b"c=X Y z", b"c=IN IP4", b"c= IP4 h", b"c=IN  IP4 h", b"b=AS:64", b"b=AS",
    b"t=0 0", b"t=1 x", b"m=audio 4000 RTP/AVP 0", b"m=video 4000/2 RTP/AVP 96 97", b"m=audio x RTP/AVP 0",
    b"m=audio 1 RTP/AVP", b"a=rtpmap:0 PCMU/8000", b"a=RTPMAP:8 PCMA/8000", b"a=rtcp-mux", b"a=rtcp-muxx",
    b"a=rtcp", b"a=T38FaxVersion:0", b"a=t38", b"a=ssrc:1 cname:x", b"a=tool:x", b"a=:0 PCMU", b"a=", b"a=x y",
    b"i=t", b"z=0 0", b"r=1 2", b"q=?", b"v=0", b"s=again", b"o=- 1 1 IN IP4 h", b"x", b"", b"a=x:\x00",
    b"a=x:\t tab", b"k=clear:1", b"e=m@x", b"p=+1", b"u=http://x",
]
_HEADS = [b"v=0", b"o=- 1 2 IN IP4 h", b"o=u 1 2 IN IP4 h\t", b"o=a  1 2 IN IP4 h", b"o=a 1 x IN IP4 h", b"s=x", b"s="]


def _both(body: bytes, w: SdpWhitelist, address: str | None) -> tuple[bytes | str, bytes | str]:
    from proxy.sip.sdp import _rebuild_lines

    results: list[bytes | str] = []
    for rebuild in (lambda: rebuild_sdp(body, w, origin_address=address, id_key=b"k"),
                    lambda: _rebuild_lines(body, w, address, b"k")):
        try:
            results.append(rebuild())
        except SdpError as exc:
            results.append(exc.reason)
    return results[0], results[1]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.sampled_from(_HEADS), min_size=3, max_size=4), st.lists(st.sampled_from(_LINE_POOL), max_size=9),
       st.sampled_from([b"\r\n", b"\n"]), st.sampled_from([b"", b"\r\n", b"\r\n\r\n"]),
       st.sampled_from([None, "192.0.2.7", "[2001:db8::2]"]),
       st.sampled_from([W, SdpWhitelist(lines=frozenset("vostm"), attributes=frozenset()),
                        SdpWhitelist(lines=frozenset("vostmcbiuepkzr"), attributes=frozenset({"ssrc", "rtcp*"}))]))
def test_property_strict_fast_path_equals_the_line_reader(head: list[bytes], lines: list[bytes], eol: bytes,
                                                          tail: bytes, address: str | None,
                                                          w: SdpWhitelist) -> None:
    body = eol.join([*head, *lines]) + eol + tail
    fast, reference = _both(body, w, address)
    assert fast == reference


# -- multipart ----------------------------------------------------------------------------------

def test_media_type_reads_type_and_boundary() -> None:
    assert media_type('Multipart/Mixed; boundary="b 1";x=y') == ("multipart/mixed", "b 1")
    assert media_type("application/sdp") == ("application/sdp", None)
    assert media_type("") == ("", None)


def test_multipart_parts() -> None:
    body = (b"preamble\r\n--xyz\r\nContent-Type: application/sdp\r\n\r\nv=0\r\n"
            b"\r\n--xyz  \r\nContent-Type: text/plain\r\n\r\ncall me\r\n--xyz\r\n\r\nno type\r\n--xyz--\r\nepilogue")
    assert multipart_parts("xyz", body) == [
        ("application/sdp", b"v=0\r\n"), ("text/plain", b"call me"), ("text/plain", b"no type"),
    ]
    assert multipart_parts("xyz", body.replace(b"\r\n", b"\n"))[0] == ("application/sdp", b"v=0\n")


@pytest.mark.parametrize(("boundary", "body"), [
    (None, b"--x\r\n\r\nhi\r\n--x--"),
    ("x", b"--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n"),
    ("x", b"no parts at all"),
    ("x", b"--x\r\nContent-Type: text/plain\r\nhi\r\n--x--"),
    ("x", b"--x\r\nContent-Transfer-Encoding: base64\r\n\r\naGk=\r\n--x--"),
])
def test_multipart_malformed(boundary: str | None, body: bytes) -> None:
    with pytest.raises(BodyError):
        multipart_parts(boundary, body)
