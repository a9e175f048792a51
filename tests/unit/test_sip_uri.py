"""RFC 3261 §19.1 SIP/SIPS URIs, RFC 3966 tel URIs, §20.10 name-addr / addr-spec."""

from __future__ import annotations

import pytest

from proxy.sip import NameAddr, SipParseError, SipUri


def test_19_1_1_full_sip_uri() -> None:
    text = "sips:alice:secret@example.com:5061;transport=tls;lr;maddr=192.0.2.3?Subject=hi&Priority=urgent"
    u = SipUri.parse(text)
    assert (u.scheme, u.user, u.password, u.host, u.port) == ("sips", "alice", "secret", "example.com", 5061)
    assert u.params == {"transport": "tls", "lr": None, "maddr": "192.0.2.3"}
    assert u.headers == "Subject=hi&Priority=urgent"
    assert str(u) == text


def test_19_1_4_scheme_and_param_names_case_insensitive() -> None:
    u = SipUri.parse("SIP:bob@Example.COM;Transport=TCP")
    assert u.scheme == "sip" and u.params == {"transport": "TCP"} and u.host == "Example.COM"


def test_19_1_user_with_escapes_and_semicolon() -> None:
    u = SipUri.parse("sip:user;par=u%40example.net@example.com")
    assert u.user == "user;par=u%40example.net" and u.host == "example.com" and u.params == {}


def test_19_1_no_user_and_empty_password() -> None:
    u = SipUri.parse("sip:example.com")
    assert u.user is None and u.port is None
    assert SipUri.parse("sip:alice:@h").password == ""


@pytest.mark.parametrize(("text", "host", "bare", "port"), [
    ("sip:[2001:db8::1]:5060", "[2001:db8::1]", "2001:db8::1", 5060),
    ("sip:alice@[2001:db8::1]", "[2001:db8::1]", "2001:db8::1", None),
    ("sip:[::ffff:192.0.2.1];transport=udp", "[::ffff:192.0.2.1]", "::ffff:192.0.2.1", None),
])
def test_rfc5118_ipv6_references(text: str, host: str, bare: str, port: int | None) -> None:
    u = SipUri.parse(text)
    assert (u.host, u.host_bare, u.port) == (host, bare, port)


@pytest.mark.parametrize("text", [
    "sip:h:0x50", "sip:h:", "sip:h:65536", "sip:h:123456", "sip:h:-1", "sip:h:\u0665\u0660",
    "sip:h:\u00b2", "sip:[2001:db8::1", "sip:[2001:db8::1]x", "sip:[2001:db8::1]:99999",
    "sip:[zzzz]", "sip:[]", "sip:", "sip:@h", "sip:a@", "sip:a@h;;lr", "sip:a b@h",
    "sip:a@h\x00", "sip:a@ho/st", "sip:a@h;x=\"open", "tel:", "sip:a@h\udce9",
])
def test_19_1_invalid_uris(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse(text)
    assert info.value.status == 400


@pytest.mark.parametrize("text", ["http://example.com", "mailto:a@b", "urn:x", "nocolon"])
def test_8_2_2_1_unsupported_scheme_is_416(text: str) -> None:
    with pytest.raises(SipParseError) as info:
        SipUri.parse(text)
    assert info.value.status == 416


def test_rfc3966_tel_uri() -> None:
    u = SipUri.parse("tel:+1-201-555-0123;phone-context=example.com;ext=22")
    assert u.scheme == "tel" and u.user == "+1-201-555-0123" and u.host == ""
    assert u.params == {"phone-context": "example.com", "ext": "22"}
    assert str(u) == "tel:+1-201-555-0123;phone-context=example.com;ext=22"


def test_copy_serialises_afresh() -> None:
    u = SipUri.parse("sip:alice@example.com;transport=tcp")
    v = u.copy(user="bob", port=5070)
    assert str(v) == "sip:bob@example.com:5070;transport=tcp"
    assert str(u) == "sip:alice@example.com;transport=tcp"
    w = SipUri.parse("sip:a:pw@[2001:db8::1]?X=1").copy()
    assert str(w) == "sip:a:pw@[2001:db8::1]?X=1"
    assert str(SipUri.parse("tel:+15550100;ext=1").copy(user="+15550199")) == "tel:+15550199;ext=1"


def test_uri_equality_and_hash() -> None:
    assert SipUri.parse("sip:a@h") == SipUri.parse("sip:a@h")
    assert len({SipUri.parse("sip:a@h"), SipUri.parse("sip:a@h")}) == 1


# -- §20.10 name-addr -----------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "display", "uri", "params"), [
    ("<sip:a@h>", None, "sip:a@h", {}),
    ("Alice <sip:a@h>;tag=1", "Alice", "sip:a@h", {"tag": "1"}),
    ('"Alice Smith" <sip:a@h;transport=tcp>;tag=1;x', '"Alice Smith"', "sip:a@h;transport=tcp",
     {"tag": "1", "x": None}),
    ('"a \\"quoted\\" \\\\ name" <sip:a@h>', '"a \\"quoted\\" \\\\ name"', "sip:a@h", {}),
    ('"<sip:fake@h>" <sip:real@h>', '"<sip:fake@h>"', "sip:real@h", {}),
    ("sip:a@h;tag=2", None, "sip:a@h", {"tag": "2"}),
    ("  <tel:+15550100>  ;tag=3", None, "tel:+15550100", {"tag": "3"}),
    ('<sip:a@h>;x="semi;colon"', None, "sip:a@h", {"x": '"semi;colon"'}),
    ('""<sip:a@h>', '""', "sip:a@h", {}),
])
def test_20_10_name_addr(text: str, display: str | None, uri: str, params: dict[str, str | None]) -> None:
    na = NameAddr.parse(text)
    assert (na.display, na.uri, na.params) == (display, uri, params)


def test_20_10_tag_and_sip_uri() -> None:
    na = NameAddr.parse("Bob <sip:bob@example.org:5070>;TAG=abc")
    assert na.tag == "abc"
    assert na.sip_uri().port == 5070
    assert str(na) == "Bob <sip:bob@example.org:5070>;tag=abc"
    assert str(NameAddr.parse("sip:a@h;tag=1")) == "sip:a@h;tag=1"


@pytest.mark.parametrize("text", [
    "", "   ", '"open <sip:a@h>', '"Alice" sip:a@h', "<sip:a@h", "<sip:a@h> junk", "<>",
    "sip:a@h, sip:b@h", "Alice sip:a@h", "sip:a@h?x=1", "<sip:a@h>;;tag=1", '<sip:a@h>;x="open',
])
def test_20_10_invalid_name_addr(text: str) -> None:
    with pytest.raises(SipParseError):
        NameAddr.parse(text)
