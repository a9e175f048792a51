"""SDP sanitising (RFC 8866 §5.2 o=, §5.3 s=): only identity-bearing fields change."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from proxy.sip import sanitise_sdp, sdp_has_media

OFFER = (
    b"v=0\r\n"
    b"o=+15550111 2890844526 2890842807 IN IP4 198.51.100.7\r\n"
    b"s=Call from +15550111\r\n"
    b"i=private info\r\n"
    b"c=IN IP4 198.51.100.7\r\n"
    b"t=0 0\r\n"
    b"m=audio 49170 RTP/AVP 0 8\r\n"
    b"a=rtpmap:0 PCMU/8000\r\n"
    b"s=not-a-session-line-in-media\r\n"
)


def test_5_2_origin_username_and_session_name() -> None:
    out = sanitise_sdp(OFFER)
    assert out == OFFER.replace(b"o=+15550111 ", b"o=- ").replace(b"s=Call from +15550111", b"s=-")
    assert b"+15550111" not in out


def test_5_2_origin_address_ip4_and_ip6() -> None:
    out = sanitise_sdp(OFFER, origin_username="sipmask", session_name="call", origin_address="192.0.2.1")
    assert b"o=sipmask 2890844526 2890842807 IN IP4 192.0.2.1\r\n" in out
    assert b"s=call\r\n" in out and b"c=IN IP4 198.51.100.7\r\n" in out  # media untouched
    out6 = sanitise_sdp(OFFER, origin_address="[2001:db8::1]")
    assert b"o=- 2890844526 2890842807 IN IP6 2001:db8::1\r\n" in out6


def test_lf_line_endings_preserved() -> None:
    lf = OFFER.replace(b"\r\n", b"\n")
    out = sanitise_sdp(lf)
    assert b"\r" not in out and out.startswith(b"v=0\no=- 2890844526")
    assert out.count(b"\n") == lf.count(b"\n")


def test_everything_else_byte_identical() -> None:
    body = OFFER + b"a=fmtp:101 0-15\r\na=x-latin1:\xe9t\xe9\r\n"
    out = sanitise_sdp(body)
    assert out.endswith(b"a=fmtp:101 0-15\r\na=x-latin1:\xe9t\xe9\r\n")
    assert len(out.splitlines()) == len(body.splitlines())


def test_media_section_s_line_untouched() -> None:
    assert sanitise_sdp(OFFER).endswith(b"s=not-a-session-line-in-media\r\n")


def test_garbage_returned_unchanged() -> None:
    for body in (b"", b"hello", b"o=too few fields\r\n", b"\xff\xfe\x00garbage", b"o=\r\n",
                 b"v=0\r\no=a  1 1 IN IP4 h\r\n"):
        assert sanitise_sdp(body) == body


def test_unsafe_replacements_fall_back_to_dash() -> None:
    out = sanitise_sdp(OFFER, origin_username="two words", session_name="line\r\nbreak",
                       origin_address="bad addr")
    assert b"o=- 2890844526 2890842807 IN IP4 198.51.100.7\r\n" in out and b"s=-\r\n" in out


def test_sdp_has_media() -> None:
    assert sdp_has_media(OFFER)
    assert sdp_has_media(b"m=audio 1 RTP/AVP 0\r\n")
    assert not sdp_has_media(b"v=0\r\no=- 1 1 IN IP4 h\r\ns=-\r\nt=0 0\r\n")
    assert not sdp_has_media(b"")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_property_never_raises(body: bytes) -> None:
    out = sanitise_sdp(body, origin_address="192.0.2.1")
    assert isinstance(out, bytes)
    sdp_has_media(body)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=20), max_size=8),
       st.sampled_from([b"\r\n", b"\n"]))
def test_property_only_o_and_s_change(extra: list[str], eol: bytes) -> None:
    lines = [b"v=0", b"o=user 1 2 IN IP4 h", b"s=name"] + [b"a=" + e.encode() for e in extra]
    body = eol.join(lines) + eol
    out = sanitise_sdp(body).split(eol)
    assert out[1] == b"o=- 1 2 IN IP4 h" and out[2] == b"s=-"
    assert out[3:] == body.split(eol)[3:]
