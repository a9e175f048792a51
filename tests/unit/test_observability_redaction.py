"""Redaction: no real number survives logging, at any level, in any format."""

from __future__ import annotations

import io
import json
import logging
import re
import warnings
from collections.abc import Iterator

import pytest
import structlog

from proxy.observability import Redactor, configure_logging, contains_phone_number, get_logger

KEY = b"test-key-0123456789abcdef"

# The same subscriber written many ways, and a second one.
ALICE_FORMS = [
    "+15551230001",
    "+1 555-123-0001",
    "+1 (555) 123-0001",
    "1.555.123.0001",
    "15551230001",
]
ALICE_DIGITS = "15551230001"
BOB = "+447700900123"
BOB_DIGITS = "447700900123"
NATIONAL = "020 7946 0958"
NATIONAL_DIGITS = "02079460958"
TOKEN = re.compile(r"#[nu]_[0-9a-f]{12}")


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    structlog.reset_defaults()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(False)


def _digits_leaked(text: str, digits: str) -> bool:
    """Whether *digits* appear in *text* once separators are squeezed out (tokens aside)."""
    squeezed = re.sub(r"[\s\-.()+]", "", TOKEN.sub("", text))
    return digits in squeezed


def _emit(log: object) -> None:
    """Log a call's worth of events, numbers in every position we can think of."""
    log.debug(  # type: ignore[attr-defined]
        "call.received",
        caller=ALICE_FORMS[0],
        callee_uri=f"sip:{BOB}@carrier.example.net;user=phone",
        from_header=f'"{ALICE_FORMS[1]}" <sips:{ALICE_DIGITS}@pbx.example.com>;tag=1928301774',
        pai=f"<tel:{ALICE_FORMS[2].replace(' ', '')};phone-context=+1>",
        national=NATIONAL,
        nested={"legs": [{"to": ALICE_FORMS[3]}, ("b", BOB)], "n": {ALICE_FORMS[4]: "key"}},
        raw=f"INVITE sip:{BOB}@10.0.0.7:5060 SIP/2.0\r\nFrom: <sip:{ALICE_DIGITS}@a>\r\n".encode(),
        port=5060,
        status=404,
        duration="12.5",
        retries=3,
        source="192.168.100.200:5060",
    )
    log.info(f"call.answered for {ALICE_FORMS[1]}", status_text="200 OK, port 5061")  # type: ignore[attr-defined]
    log.warning("pairing.missing", pair=f"{ALICE_FORMS[0]} -> {BOB}")  # type: ignore[attr-defined]


@pytest.mark.parametrize("fmt", ["json", "console"])
def test_debug_logging_never_prints_numbers(fmt: str, restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("debug", fmt, Redactor(KEY), out)
    _emit(get_logger("test").bind(call_id="a84b4c76e66710"))
    text = out.getvalue()
    assert text.count("\n") == 3
    for digits in (ALICE_DIGITS, "5551230001", BOB_DIGITS, "7700900123", NATIONAL_DIGITS):
        assert not _digits_leaked(text, digits), (digits, text)
    # Ordinary numbers survive.
    for kept in ("5060", "404", "12.5", "192.168.100.200", "200 OK", "a84b4c76e66710", "5061"):
        assert kept in text
    if fmt == "json":
        lines = [json.loads(line) for line in text.splitlines()]
        assert lines[0]["port"] == 5060 and lines[0]["retries"] == 3


def test_same_number_same_token_across_forms(restore_logging: None) -> None:
    out = io.StringIO()
    redactor = Redactor(KEY)
    configure_logging("debug", "json", redactor, out)
    log = get_logger("test")
    for form in ALICE_FORMS:
        log.info("call.received", caller=form, uri=f"sip:{form.replace(' ', '')}@example.com")
    tokens = set()
    for line in out.getvalue().splitlines():
        event = json.loads(line)
        tokens.add(event["caller"])
        tokens.add(TOKEN.search(event["uri"]).group(0))  # type: ignore[union-attr]
    assert tokens == {redactor.token(ALICE_DIGITS)}
    assert redactor.token(BOB) != redactor.token(ALICE_DIGITS)
    assert Redactor(b"other key").token(ALICE_DIGITS) != redactor.token(ALICE_DIGITS)


def test_disabled_level_is_not_rendered(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("info", "json", Redactor(KEY), out)
    get_logger().debug("call.debug", caller=BOB)
    assert out.getvalue() == ""


def test_stdlib_logging_exceptions_and_warnings_are_redacted(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("debug", "json", Redactor(KEY), out)
    logging.getLogger("thirdparty").warning("dialling %s", ALICE_FORMS[1])
    try:
        raise ValueError(f"no route for {BOB}")
    except ValueError:
        get_logger().exception("route.failed")
        logging.getLogger("thirdparty").exception("stdlib saw it")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn(f"odd number {ALICE_FORMS[0]}", UserWarning, stacklevel=1)
    text = out.getvalue()
    assert len(text.splitlines()) == 4
    assert "route.failed" in text and "ValueError" in text
    assert not _digits_leaked(text, ALICE_DIGITS)
    assert not _digits_leaked(text, BOB_DIGITS)


def test_console_exception_is_redacted(restore_logging: None) -> None:
    out = io.StringIO()
    configure_logging("debug", "console", Redactor(KEY), out)
    try:
        raise RuntimeError(f"callee {BOB} busy")
    except RuntimeError:
        get_logger().exception("call.failed")
    text = out.getvalue()
    assert "RuntimeError" in text
    assert not _digits_leaked(text, BOB_DIGITS)


def test_configure_rejects_bad_level_and_format() -> None:
    with pytest.raises(ValueError, match="log level"):
        configure_logging("loud", "json", Redactor(KEY), io.StringIO())
    with pytest.raises(ValueError, match="log format"):
        configure_logging("info", "xml", Redactor(KEY), io.StringIO())


@pytest.mark.parametrize(
    "text",
    [
        "listening on udp:127.0.0.1:5060 and [::1]:5061",
        "SIP/2.0 486 Busy Here",
        "took 12.5 ms, 3 retries, cseq 102, 0.0012345 s",
        "at 2024-01-15T10:30:00.123456Z",
        "pairing 550e8400-e29b-41d4-a716-446655440000",
        "Call-ID 3848276298220188511@atlanta.example.com",
        "branch z9hG4bK776asdhds12345678",
        "from 192.168.100.200 via sip:proxy.example.com;lr",
        "version 1.2.3, pid 4242",
    ],
)
def test_ordinary_text_survives(text: str) -> None:
    assert Redactor(KEY).redact_text(text) == text
    assert not contains_phone_number(text)


@pytest.mark.parametrize(
    ("text", "digits"),
    [
        ("+1 555-123-0001", ALICE_DIGITS),
        ("(555) 123-0001", "5551230001"),
        ("555.123.0001", "5551230001"),
        ("+44 20 7946 0958", "442079460958"),
        ("+33 1 23 45 67 89", "33123456789"),
        ("sip:+15551230001@example.com", ALICE_DIGITS),
        ("sip:+1-555-123-0001;npdi@example.com", ALICE_DIGITS),
        ("tel:+1-555-123-0001;phone-context=example.com", ALICE_DIGITS),
        ("SIP:15551230001@Example.COM", ALICE_DIGITS),
        ("ids 5551230001 5551230002", "5551230001"),
    ],
)
def test_numbers_are_found(text: str, digits: str) -> None:
    redactor = Redactor(KEY)
    out = redactor.redact_text(text)
    assert not _digits_leaked(out, digits), out
    assert redactor.token(digits) in out
    assert contains_phone_number(text)


def test_adjacent_national_numbers_get_their_own_tokens() -> None:
    redactor = Redactor(KEY)
    out = redactor.redact_text("5551230001 5551230002")
    assert out == f"{redactor.token('5551230001')} {redactor.token('5551230002')}"


def test_non_numeric_user_parts_are_tokenised() -> None:
    out = Redactor(KEY).redact_text('"Alice" <sip:alice@example.com>;tag=9fxced76sl')
    assert "alice@" not in out
    assert re.search(r"sip:#u_[0-9a-f]{12}@example\.com", out)


def test_redaction_is_idempotent() -> None:
    redactor = Redactor(KEY)
    once = redactor.redact_text(f"sip:{BOB}@x tel:{BOB} {BOB} sip:bob@x")
    assert redactor.redact_text(once) == once


def test_processor_walks_containers_and_keys() -> None:
    redactor = Redactor(KEY)
    event = {
        "event": f"call.from {BOB}",
        BOB: [1, 2.5, None, True, {"x": (BOB, b"sip:" + BOB.encode() + b"@h")}],
        "set": {BOB},
        "obj": ValueError(BOB),
    }
    out = redactor(None, "info", event)
    text = repr(out)
    assert not _digits_leaked(text, BOB_DIGITS)
    token = redactor.token(BOB)
    assert out["event"] == f"call.from {token}"
    assert out[token][:4] == [1, 2.5, None, True]
    assert out["obj"] == f"ValueError: {token}"


def test_int_values_are_left_alone() -> None:
    # Documented: only text is inspected; code logs numbers as E.164 strings.
    assert Redactor(KEY)(None, "info", {"event": "x", "n": 15551230001})["n"] == 15551230001


def test_key_required() -> None:
    with pytest.raises(ValueError):
        Redactor(b"")


def test_long_text_is_redacted_too() -> None:
    redactor = Redactor(KEY)
    text = ("padding " * 50) + f"INVITE sip:{BOB}@h SIP/2.0 from {ALICE_FORMS[1]}"
    out = redactor.redact_text(text)
    assert len(text) > 256
    assert not _digits_leaked(out, BOB_DIGITS) and not _digits_leaked(out, ALICE_DIGITS)


def test_a_number_has_one_token_in_logs_cdrs_and_audit() -> None:
    """Support can follow one number from a log line to its CDRs: the log's ``#n_X`` and the
    store's ``n_X`` (NumberVault.token of the E.164 form) carry the same X, whatever the
    spelling in SIP (E.164, digits only in a SIP user part)."""
    from proxy.pairing.crypto import NumberVault

    vault = NumberVault.from_secret(bytes(range(64)))
    redactor = Redactor(vault.token_key)
    cdr_token = vault.token("+15551230001")
    for spelling in ("+15551230001", "15551230001", "+1 (555) 123-0001"):
        assert redactor.token(spelling) == "#" + cdr_token, spelling
    assert redactor.redact_text("INVITE sip:+15551230001@example.net") == f"INVITE sip:#{cdr_token}@example.net"
    assert vault.token("+15551230002") != cdr_token
