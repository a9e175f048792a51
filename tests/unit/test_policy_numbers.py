"""A header the policy lets cross is free text the other party wrote: a line of it that holds
a phone number in any spelling is dropped (proxy/b2bua/policy.py ``holds_number``); the
sequence numbers of RSeq and RAck cross within their range. Found by the 1M-message fuzz run
(loadtest/fuzz.py): Subject, Privacy, Supported, Require, Expires, RSeq... carried the number."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from proxy.b2bua.policy import holds_number
from proxy.sip.message import Request

from .b2bua_harness import CALLER, A, Harness, invite, only

SPELLINGS = ("+15551230001", "15551230001", "5551230001", "555-123-0001", "(555) 123-0001",
             "555.123.0001", "1 555 123 0001")


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_number_in_any_spelling_is_found(spelling: str) -> None:
    assert holds_number("subject", f"call me back on {spelling} please")


@pytest.mark.parametrize(("key", "value"), [
    ("subject", "e2e basic"), ("supported", "100rel, timer"), ("session-expires", "1800;refresher=uas"),
    ("date", "Thu, 03 Dec 2026 17:00:00 GMT"), ("rseq", "2147483646"), ("rack", "1 314159 INVITE"),
    ("content-type", "multipart/mixed;boundary=unique-123456"),
])
def test_what_is_no_number_crosses(key: str, value: str) -> None:
    assert not holds_number(key, value)


@pytest.mark.parametrize(("key", "value"), [
    ("rseq", "15551230001"), ("rack", "15551230001 1 INVITE"), ("rack", "1 15551230001 INVITE"),
    ("rseq", "1 5551230001"), ("expires", "15551230001"), ("min-se", "5551230001"),
    ("rack", "1 1 INVITE<sip:5551230001@127.0.0.2>"),  # found by the fuzzer
])
def test_sequence_numbers_out_of_their_range_or_grammar_are_dropped(key: str, value: str) -> None:
    assert holds_number(key, value)


def test_no_spelling_of_the_callers_number_reaches_the_callee(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    extra = "".join(f"{name}: {value}\n" for name, value in (
        ("Subject", "from 555-123-0001"), ("Privacy", "id;x=15551230001"),
        ("Supported", "100rel, x15551230001"), ("Subject", "(555) 123-0001"),
        ("Warning", '399 gw "+15551230001"'), ("Expires", "5551230001"), ("Subject", "plain"),
    ))
    out = h.feed(invite(extra=extra), A)
    (b_invite, _), = only(out, Request, method="INVITE")
    raw = b_invite.serialise().decode()
    digits = re.sub(r"\D", "", raw)
    assert CALLER[1:] not in digits and "5551230001" not in digits, raw
    assert b_invite.headers.get_all("subject") == ["plain"]  # what holds no number still crosses
    assert b_invite.headers.values("supported") == ["timer"]  # sipmask's own line
