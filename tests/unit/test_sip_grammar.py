"""The SIP grammar's character sets (RFC 3261 §25.1), checked against the ABNF by hand."""

from __future__ import annotations

import string

import pytest

from proxy.sip.grammar import (
    HOST_CHARS,
    IPV6_CHARS,
    KNOWN_METHODS,
    TOKEN_CHARS,
    is_token,
)


def test_rfc3261_25_1_token_chars() -> None:
    # token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
    assert set(string.ascii_letters + string.digits + "-.!%*_+`'~") == TOKEN_CHARS


def test_rfc3261_25_1_ipv6_and_host_chars() -> None:
    assert set(string.hexdigits + ":.") == IPV6_CHARS
    assert set(string.ascii_letters + string.digits + "-._") == HOST_CHARS


@pytest.mark.parametrize("text", ["INVITE", "Via", "X-Custom_1", "a.b!c%d*e+f`g'h~i", "z9hG4bK"])
def test_tokens(text: str) -> None:
    assert is_token(text)


@pytest.mark.parametrize("text", ["", "Bad Name", "a:b", "a;b", "ä", "a\t", "<x>", 'a"b', "a/b"])
def test_not_tokens(text: str) -> None:
    assert not is_token(text)


def test_rfc3261_25_1_known_methods_are_tokens() -> None:
    assert {"INVITE", "ACK", "OPTIONS", "BYE", "CANCEL", "REGISTER"} <= KNOWN_METHODS
    assert all(is_token(method) for method in KNOWN_METHODS)
