"""E.164 normalisation (proxy.pairing.normalize)."""

from __future__ import annotations

import pytest

from proxy.pairing import InvalidNumber, PairingError, mask_number, normalize_number, try_normalize


@pytest.mark.parametrize(
    "raw",
    [
        "+15551230001",
        "+1 555-123-0001",
        "+1 (555) 123-0001",
        "tel:+1-555-123-0001",
        "TEL:+15551230001",
        "sip:+15551230001@trunk.example.net;user=phone",
        "<sip:+15551230001@trunk.example.net>",
        "+15551230001;phone-context=example.com",
        "5551230001;phone-context=+1",
        "555-123-0001",
        "(555) 123-0001",
        "1 555 123 0001",
        "  +15551230001  ",
    ],
)
def test_forms_of_one_number_normalise_to_e164(raw: str) -> None:
    assert normalize_number(raw) == "+15551230001"


def test_national_number_uses_default_region() -> None:
    assert normalize_number("020 7946 0018", "GB") == "+442079460018"
    assert normalize_number("030 123456", "DE") == "+4930123456"


def test_fictional_555_numbers_are_accepted() -> None:
    # Not "valid" in phonenumbers' metadata, but possible: test ranges must route.
    assert normalize_number("+1 555 010 0199") == "+15550100199"


def test_canonical_input_takes_the_fast_path_unchanged() -> None:
    raw = "+4915112345678"
    assert normalize_number(raw) is raw


@pytest.mark.parametrize(
    "raw",
    ["", "   ", "hello", "12", "+1 555 12", "+99912345678901234567", "tel:", "sip:@host", "+0123456789"],
)
def test_rejects_non_numbers(raw: str) -> None:
    with pytest.raises(InvalidNumber):
        normalize_number(raw)


def test_error_message_never_contains_the_digits() -> None:
    raw = "+1 555 98"
    with pytest.raises(InvalidNumber) as info:
        normalize_number(raw)
    message = str(info.value)
    assert "55598" not in message.replace(" ", "") and "555" not in message


def test_invalid_number_is_a_value_error_and_a_pairing_error() -> None:
    assert issubclass(InvalidNumber, ValueError)
    assert issubclass(InvalidNumber, PairingError)


def test_try_normalize() -> None:
    assert try_normalize("555-123-0001", "US") == "+15551230001"
    assert try_normalize("nonsense", "US") is None


def test_mask_number() -> None:
    assert mask_number("+15551230001") == "+1555***0001"
    assert mask_number("+442079460018") == "+4420***0018"
