"""Header policy: a whitelist between legs, loaded from rules files with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from proxy.b2bua.policy import (
    GENERATED_HEADERS,
    BodyPolicy,
    HeaderPolicy,
    Rules,
    RulesError,
    SdpPolicy,
    default_rules,
    load_rules,
)
from proxy.config import DEFAULT_RULES_FILE

LEAKS = [
    ("Remote-Party-ID", '"Alice" <sip:+15551230001@a>;party=calling'),
    ("P-Preferred-Identity", "<sip:+15551230001@a>"),
    ("Diversion", "<sip:+15551230002@a>;reason=unconditional"),
    ("History-Info", "<sip:+15551230002@a>;index=1"),
    ("Referred-By", "<sip:+15551230001@a>"),
    ("Reply-To", "<sip:alice@a>"),
    ("Call-Info", "<http://a/alice.png>;purpose=icon"),
    ("Organization", "Alice's Shop"),
    ("User-Agent", "Yealink T46S 66.85"),
    ("Server", "Asterisk PBX 20.1"),
    ("Alert-Info", "<http://a/ring.wav>"),
    ("P-Charging-Vector", "icid-value=1234"),
    ("Refer-To", "<sip:+15551230003@a>"),
    ("Replaces", "abc@a;to-tag=1;from-tag=2"),
    ("Authorization", 'Digest username="alice"'),
    ("X-Account-Number", "+15551230001"),
    ("x-real-caller", "+15551230001"),
    ("P-Asserted-Identity", "<sip:+15551230001@a>"),
    ("Contact", "<sip:+15551230001@10.0.0.1>"),
    ("From", "<sip:+15551230001@a>;tag=1"),
    ("Via", "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1"),
    ("f", "<sip:+15551230001@a>;tag=1"),
    ("m", "<sip:+15551230001@10.0.0.1>"),
    ("b", "<sip:+15551230001@a>"),
    ("r", "<sip:+15551230003@a>"),
    ("Some-Unknown-Header", "value"),
]
KEPT = [
    ("Content-Type", "application/sdp"),
    ("Allow", "INVITE, ACK, BYE, CANCEL"),
    ("Supported", "timer, 100rel"),
    ("k", "replaces"),
    ("c", "application/sdp"),
    ("x", "1800;refresher=uac"),
    ("o", "dialog"),
    ("SESSION-EXPIRES", "1800"),
    ("Reason", "Q.850;cause=16"),
    ("Privacy", "id"),
]


def test_default_file_equals_default_rules() -> None:
    assert load_rules(DEFAULT_RULES_FILE) == default_rules()


def test_filter_drops_leaks_and_keeps_whitelist() -> None:
    policy = default_rules().headers
    mixed = [h for pair in zip(LEAKS, KEPT) for h in pair] + LEAKS[len(KEPT):]
    assert policy.filter(mixed) == KEPT  # order and spelling preserved


def test_filter_reads_a_parsed_messages_keys_the_same_way() -> None:
    """Headers of a parsed message are filtered by their canonical keys: same result as pairs."""
    from proxy.sip.message import Headers

    mixed = [h for pair in zip(LEAKS, KEPT) for h in pair] + LEAKS[len(KEPT):]
    policy = default_rules().headers
    assert policy.filter(Headers(mixed)) == policy.filter(list(mixed)) == KEPT


@pytest.mark.parametrize(("name", "_value"), LEAKS)
def test_leaks_are_not_allowed(name: str, _value: str) -> None:
    assert not default_rules().headers.allows(name)


def test_compact_and_case_insensitive() -> None:
    policy = default_rules().headers
    for name in ("k", "K", "supported", "SUPPORTED", "s", "subject", "u", "o", "e", "c", "x"):
        assert policy.allows(name), name
    for name in ("i", "m", "l", "f", "t", "v", "r", "b", "y", "a", "j", "d", "n", "z"):
        assert not policy.allows(name), name


def test_flags_for_x_headers_and_user_agent() -> None:
    policy = HeaderPolicy(
        pass_headers=frozenset({"Content-Type", "X-Tenant"}),
        drop_headers=frozenset({"X-Secret"}),
    )
    assert policy.allows("x-tenant") and not policy.allows("X-Other")
    assert not policy.allows("User-Agent")
    loose = HeaderPolicy(
        pass_headers=frozenset({"Content-Type"}),
        drop_headers=frozenset({"X-Secret", "User-Agent"}),
        pass_x_headers=True,
        pass_user_agent=True,
    )
    assert loose.allows("X-Other") and not loose.allows("x-secret")
    assert loose.allows("User-Agent") and loose.allows("server")
    assert loose.filter([("X-A", "1"), ("X-Secret", "2"), ("Via", "v"), ("User-Agent", "u")]) == [
        ("X-A", "1"),
        ("User-Agent", "u"),
    ]


def test_policy_rejects_bad_construction() -> None:
    with pytest.raises(ValueError, match="both"):
        HeaderPolicy(pass_headers=frozenset({"Subject"}), drop_headers=frozenset({"s"}))
    with pytest.raises(ValueError, match="generated"):
        HeaderPolicy(pass_headers=frozenset({"Via"}))
    with pytest.raises(ValueError, match="invalid header name"):
        HeaderPolicy(pass_headers=frozenset({"Bad Name"}))
    with pytest.raises(ValueError):
        SdpPolicy(origin_username="has space")


def test_sdp_and_body_rules_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[sdp]\nlines = ["v", "o", "s", "t", "m", "c", "i"]\nattributes = ["rtpmap", "ICE-*"]\n'
                    '[bodies]\nmultipart = "refuse"\nother = "refuse"\npass_types = ["Application/X-Foo"]\n')
    rules = load_rules(path)
    assert rules.sdp.lines == frozenset("vostmci") and rules.sdp.attributes == frozenset({"rtpmap", "ice-*"})
    assert rules.sdp.whitelist.allows_attribute(b"ice-ufrag") and not rules.sdp.whitelist.allows_attribute(b"ptime")
    assert rules.bodies == BodyPolicy(multipart="refuse", other="refuse", pass_types=frozenset({"application/x-foo"}))


def test_default_sdp_whitelist_decisions() -> None:
    allows = default_rules().sdp.whitelist.allows_attribute
    for name in (b"rtpmap", b"fmtp", b"ptime", b"maxptime", b"sendrecv", b"sendonly", b"recvonly", b"inactive",
                 b"rtcp", b"rtcp-mux", b"rtcp-fb", b"silenceSupp", b"crypto", b"setup", b"T38FaxVersion"):
        assert allows(name), name
    for name in (b"ssrc", b"msid", b"tool", b"label", b"x-foo", b"candidate", b"ice-ufrag", b"ice-pwd",
                 b"fingerprint", b"extmap"):
        assert not allows(name), name
    assert default_rules().sdp.lines == frozenset("vosctmb")


def test_generated_headers_are_never_passed_by_default() -> None:
    policy = default_rules().headers
    assert not any(policy.allows(name) for name in GENERATED_HEADERS)


def test_partial_file_takes_defaults(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('[headers]\npass_x_headers = true\n[sdp]\nsession_name = "call"\n')
    rules = load_rules(path)
    assert rules.headers.pass_x_headers
    assert rules.headers.pass_headers == default_rules().headers.pass_headers
    assert rules.sdp == SdpPolicy(sanitise=True, origin_username="-", session_name="call")
    assert isinstance(rules, Rules)


BAD_RULES = [
    ("[headers]\npas = []\n", "headers.pas", 'did you mean "pass"?'),
    ("[header]\n", "header", 'did you mean "headers"?'),
    ('[headers]\npass = "Subject"\n', "headers.pass", "expected a list"),
    ('[headers]\npass = ["Subject", 3]\n', "headers.pass[1]", "header name"),
    ('[headers]\ndrop = ["Bad Name"]\n', "headers.drop[0]", "header name"),
    ('[headers]\npass = ["Subject"]\ndrop = ["Organization", "s"]\n', "headers.drop[1]",
     "also in headers.pass"),
    ('[headers]\npass = ["Subject", "Contact"]\n', "headers.pass[1]", "always generated"),
    ('[headers]\npass_x_headers = "no"\n', "headers.pass_x_headers", "true or false"),
    ('[headers]\npass_user_agent = 1\n', "headers.pass_user_agent", "true or false"),
    ('[sdp]\nsanitise = "yes"\n', "sdp.sanitise", "true or false"),
    ('[sdp]\norigin_username = "a b"\n', "sdp.origin_username", "without spaces"),
    ('[sdp]\nsession_name = ""\n', "sdp.session_name", "non-empty"),
    ("[sdp]\norigin_username = 5\n", "sdp.origin_username", "expected a string"),
    ('sdp = "x"\n', "sdp", "expected a table"),
    ('[sdp]\nlines = ["v", "o", "s", "t"]\n', "sdp.lines", "missing m"),
    ('[sdp]\nlines = ["v", "o", "s", "t", "m", "q"]\n', "sdp.lines[5]", "SDP line type"),
    ('[sdp]\nlines = "vostm"\n', "sdp.lines", "list of strings"),
    ('[sdp]\nattributes = ["rtpmap", "a b"]\n', "sdp.attributes[1]", "token"),
    ('[sdp]\nattribute = []\n', "sdp.attribute", 'did you mean "attributes"?'),
    ('[bodies]\nmultipart = "keep"\n', "bodies.multipart", "'sdp_part', 'refuse'"),
    ('[bodies]\nother = "pass"\n', "bodies.other", "'drop', 'refuse'"),
    ('[bodies]\npass_types = ["text"]\n', "bodies.pass_types", "type/subtype"),
    ('[bodies]\npass_types = ["multipart/mixed"]\n', "bodies.pass_types", "its own rule"),
    ('[bodies]\npass_types = [1]\n', "bodies.pass_types", "list of strings"),
]


@pytest.mark.parametrize(("text", "key", "fragment"), BAD_RULES)
def test_bad_rules_name_file_and_key(tmp_path: Path, text: str, key: str, fragment: str) -> None:
    path = tmp_path / "rules.toml"
    path.write_text(text)
    with pytest.raises(RulesError) as info:
        load_rules(path)
    assert info.value.file == str(path) and info.value.key == key
    assert str(info.value).startswith(f"{path}: {key}: ")
    assert fragment in str(info.value)


def test_unreadable_and_invalid_rules(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="cannot read"):
        load_rules(tmp_path / "absent.toml")
    path = tmp_path / "rules.toml"
    path.write_text("[headers\n")
    with pytest.raises(RulesError, match="invalid TOML"):
        load_rules(path)
