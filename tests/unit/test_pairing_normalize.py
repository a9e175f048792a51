"""E.164 normalisation (proxy.pairing.normalize)."""

from __future__ import annotations

import pytest

from proxy.pairing import (
    InvalidNumber,
    NumberVault,
    PairingError,
    mask_number,
    normalize_number,
    try_normalize,
)
from proxy.pairing.normalize import country_code


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


def test_mask_number_shows_country_code_last_two_digits_and_the_token() -> None:
    assert mask_number("+15551230001", "n_b3db0ebc06ef") == "+1 ***01 n_b3db0ebc06ef"
    assert mask_number("+442079460018", "n_0123456789ab") == "+44 ***18 n_0123456789ab"
    assert mask_number("+35312345678", "n_x") == "+353 ***78 n_x"
    assert mask_number("12345678", "n_x") == "***78 n_x"  # not E.164: no country code


def test_two_numbers_alike_at_both_ends_never_mask_the_same() -> None:
    """Issue 18: +1555***0001 was shown for both +15551230001 and +15559870001."""
    vault = NumberVault.from_secret(bytes(range(64)))
    one, other = "+15551230001", "+15559870001"
    masks = [mask_number(n, vault.token(n)) for n in (one, other)]
    assert masks[0] != masks[1]
    for number, mask in zip((one, other), masks):
        assert vault.token(number) in mask
        digits = "".join(c for c in mask.split(" n_")[0] if c.isdigit())
        assert digits == "101"  # the country code and the last 2 digits, nothing else


def test_country_code() -> None:
    assert country_code("+15551230001") == "1"
    assert country_code("+442079460018") == "44"
    assert country_code("+35312345678") == "353"
    assert country_code("5551230001") is None
