"""E.164 normalisation of phone numbers as they arrive from SIP, the CLI or the API.

`normalize_number` runs on every call (caller and dialed number), so canonical E.164 input
(``+`` and 8..15 digits, what well-behaved trunks send) returns without touching
`phonenumbers`, whose parser costs tens of microseconds.

Validation is deliberately *possible*-number only: carriers' test ranges and the fictional
555-01xx numbers used in tests are not "valid" for phonenumbers' metadata, yet must route.
"""

from __future__ import annotations

import phonenumbers

from .model import PairingError

__all__ = ["InvalidNumber", "country_code", "normalize_number", "try_normalize", "mask_number"]

_URI_SCHEMES = ("tel:", "sip:", "sips:")


class InvalidNumber(PairingError, ValueError):
    """The input is not a phone number. The message never repeats the input's digits."""


def _is_canonical_e164(raw: str) -> bool:
    # E.164: at most 15 digits, country codes never start with 0; 8 is the shortest we accept.
    return (
        9 <= len(raw) <= 16
        and raw[0] == "+"
        and raw[1] != "0"
        and raw[1:].isdigit()
        and raw.isascii()
    )


def _strip_uri(raw: str) -> tuple[str, str | None]:
    """Reduce a tel:/sip: URI or SIP user part to its number; return it and any phone-context."""
    text = raw.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1].strip()
    lowered = text[:5].lower()
    for scheme in _URI_SCHEMES:
        if lowered.startswith(scheme):
            text = text[len(scheme):]
            break
    text = text.partition("@")[0]  # sip:user@host -> user
    number, _, params = text.partition(";")
    context = None
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "phone-context":
            context = value.strip()
    return number.strip(), context


def normalize_number(raw: str, default_region: str = "US") -> str:
    """Return `raw` as an E.164 string (``+15551230001``).

    Accepts E.164 with visual separators (``+1 555-123-0001``), ``tel:`` and ``sip:`` URIs,
    SIP user parts with parameters (``+15551230001;phone-context=...``), RFC 3966 local numbers
    whose phone-context is a global prefix, and national numbers read in `default_region`.
    Raises `InvalidNumber` for anything else.
    """
    # Fast path, inlined (a function call here costs as much as the checks themselves).
    if 9 <= len(raw) <= 16 and raw[0] == "+" and raw[1] != "0" and raw[1:].isdigit() and raw.isascii():
        return raw
    if not isinstance(raw, str):
        raise InvalidNumber("phone number must be a string")
    number, context = _strip_uri(raw)
    if _is_canonical_e164(number):
        return number
    if not number:
        raise InvalidNumber("empty phone number")
    if context and context.startswith("+") and not number.startswith("+"):
        # RFC 3966 §5.1.5: a local number whose context is a global number prefix.
        number = context + number
    try:
        parsed = phonenumbers.parse(number, default_region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidNumber(f"not a phone number ({_reason(exc)})") from None
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidNumber("not a possible phone number (wrong length for its country)")
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def _reason(exc: phonenumbers.NumberParseException) -> str:
    # The library's messages describe the failure without echoing the input; keep only those.
    reasons = {
        phonenumbers.NumberParseException.INVALID_COUNTRY_CODE: "unknown country code or region",
        phonenumbers.NumberParseException.NOT_A_NUMBER: "no digits in the expected form",
        phonenumbers.NumberParseException.TOO_SHORT_AFTER_IDD: "too short",
        phonenumbers.NumberParseException.TOO_SHORT_NSN: "too short",
        phonenumbers.NumberParseException.TOO_LONG: "too long",
    }
    return reasons.get(exc.error_type, "unparsable")


def try_normalize(raw: str, default_region: str = "US") -> str | None:
    """Like `normalize_number`, but return None instead of raising."""
    try:
        return normalize_number(raw, default_region)
    except InvalidNumber:
        return None


def country_code(number: str) -> str | None:
    """The country calling code of an E.164 number (``+15551230001`` -> ``1``), or None.

    E.164 country codes are prefix-free (ITU-T E.164 §6.2.1), so the first 1..3 digits that
    name a known code are the code."""
    if not number.startswith("+"):
        return None
    for size in (1, 2, 3):
        prefix = number[1 : 1 + size]
        if prefix.isdigit() and int(prefix) in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return prefix
    return None


def mask_number(number: str, token: str) -> str:
    """A real number for display to someone who may not see it:
    ``+15551230001`` -> ``+1 ***01 n_b3db0ebc06ef``.

    Shows only the country code and the last 2 digits, so it never reveals the number, and
    then the number's keyed token (`NumberVault.token`, the token of its CDRs and audit
    entries; its logs show it as ``#n_...``), so two numbers that share a country code and
    their last digits still read differently, and an operator can grep logs and CDRs for
    the token shown."""
    code = country_code(number)
    head = f"+{code} " if code is not None else ""
    return f"{head}***{number[-2:]} {token}"
