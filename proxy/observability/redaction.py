"""Phone-number redaction for logs, metrics and error messages.

Every phone number, every SIP/SIPS URI user part and every ``tel:`` number is replaced by a
keyed token such as ``#n_3fa9c1d2e4b5``: the first 12 hex digits of HMAC-SHA256 over the
digits of the number. The same number always gives the same token (``+1 555-123-0001`` and
``sip:+15551230001@host`` both give one token), so a call can be followed through the logs
without anyone reading a real number from them. Non-numeric URI user parts (``sip:alice@host``)
become ``#u_...`` tokens keyed over the lower-cased user part.

What counts as a phone number: an optional ``+`` and digits, with optional single separators
(space, ``-``, ``.``, parentheses) between them, totalling 7 to 15 digits, not glued to letters.
Dates (``2024-01-15``), times, IPv4 addresses, UUIDs, short numbers (ports, status codes,
counters) and decimal values (``12.5``) are left alone. A run of more than 15 digits made of
separated groups (``5551230001 5551230002``) is split into numbers where it can be and redacted
as a whole where it cannot; a bare run of more than 15 digits without separators is taken for
an identifier and kept. Only strings (and bytes) are inspected: an ``int`` is never rewritten.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Mapping, MutableMapping
from functools import lru_cache
from typing import Any, Final

from structlog.processors import format_exc_info

__all__ = [
    "MAX_DIGITS",
    "MIN_DIGITS",
    "PHONE_PATTERN",
    "Redactor",
    "contains_phone_number",
]

MIN_DIGITS: Final = 7
"""Fewest digits a run needs to be taken for a phone number."""
MAX_DIGITS: Final = 15
"""Most digits an E.164 number can have (ITU-T E.164 §6)."""

_TOKEN_HEX: Final = 12
_TOKEN_PREFIXES: Final = ("#n_", "#u_")

# Alternatives, tried left to right at each position. The first group of each is a
# named "kind"; "keep" kinds are copied unchanged, so they shield what they cover from the
# phone alternative that follows them.
_SIP_USER = r"(?P<sip>\b[sS][iI][pP][sS]?:)(?P<user>[^@\s<>\"',]+)(?=@)"
_TEL = r"(?P<tel>\b[tT][eE][lL]:)(?!#[nu]_)(?P<telnum>[+0-9A-Fa-f*#()\-.]*[0-9A-Fa-f*#])"
_KEEP_DATETIME = (
    r"\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?)?(?!\d)"
)
_KEEP_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_KEEP_IPV4 = r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.]|-\d)"
# A decimal value such as 12.5 or 0.0012345: one dot, short integer part, not followed by
# more separated digit groups (which would make it 555.1230001.x-like).
_KEEP_DECIMAL = r"(?<![\w.+\-])\d{1,6}\.\d+(?![\w.]|[ \-(]\d)"
# Phone-ish run: starts at a '+', '(' or digit not glued to a word, one separator at most
# between digits (two when a parenthesis is involved: "(555) 123").
_PHONE = (
    r"(?<![\w+#])(?P<phone>\+?\(?\d(?:(?:[ .\-]|\)[ .\-]?|[ .\-]?\()?\d)*\)?)"
    r"(?![\w])"
)

PHONE_PATTERN: Final[re.Pattern[str]] = re.compile(
    # The leading lookahead rejects most positions with one character-class test.
    "(?=[0-9+(sStTa-fA-F])(?:"
    + "|".join(
        (
            _SIP_USER,
            _TEL,
            f"(?P<keep>{_KEEP_DATETIME}|{_KEEP_UUID}|{_KEEP_IPV4}|{_KEEP_DECIMAL})",
            _PHONE,
        )
    )
    + ")"
)
"""The compiled detector. Matches with group ``sip``/``tel``/``phone`` are candidates."""

_NON_DIGITS = re.compile(r"\D+")
_SPACES = re.compile(r"(\s+)")
_NUMERIC_USER = re.compile(r"\+?[0-9()\-. ]+")
# Cheap pre-check: no digit and no colon means no number and no URI.
_HAS_CANDIDATE = re.compile(r"[\d:]").search
_CACHED_LEN: Final = 256


def _digit_count(text: str) -> int:
    return sum(1 for ch in text if "0" <= ch <= "9")


def _split_run(run: str) -> list[tuple[str, bool]] | None:
    """Split a long separated run at whitespace into pieces that are each a phone number.

    Returns ``[(piece, is_number), ...]`` (whitespace pieces are not numbers), or None when
    no split gives only 7..15 digit pieces.
    """
    parts = _SPACES.split(run)  # [chunk, ws, chunk, ws, chunk]
    chunks = parts[0::2]
    counts = [_digit_count(c) for c in chunks]
    n = len(chunks)
    # best[i]: a segmentation of chunks[i:] as a list of (start, end) ranges, or None.
    best: list[list[tuple[int, int]] | None] = [None] * (n + 1)
    best[n] = []
    for i in range(n - 1, -1, -1):
        total = 0
        for j in range(i, n):
            total += counts[j]
            if total > MAX_DIGITS:
                break
            tail = best[j + 1]
            if total >= MIN_DIGITS and tail is not None:
                best[i] = [(i, j + 1), *tail]
                break
    segments = best[0]
    if segments is None or len(segments) < 2:
        return None
    out: list[tuple[str, bool]] = []
    for k, (start, end) in enumerate(segments):
        if k:
            out.append((parts[2 * start - 1], False))
        out.append(("".join(parts[2 * start : 2 * end - 1]), True))
    return out


def _is_phone_run(run: str) -> bool | None:
    """True: a phone number; False: not one; None: a long separated run to split."""
    digits = _digit_count(run)
    if digits < MIN_DIGITS:
        return False
    if digits <= MAX_DIGITS:
        return True
    if run.isdigit():
        return False  # a bare long digit run is an identifier, not a number
    return None


def contains_phone_number(text: str) -> bool:
    """Tell whether *text* holds anything the redactor would replace.

    Used to refuse metric label values that would carry a number or a SIP user part.
    """
    if not _HAS_CANDIDATE(text):
        return False
    for m in PHONE_PATTERN.finditer(text):
        kind = m.lastgroup
        if kind in ("user", "telnum"):
            if not m.group(kind).startswith(_TOKEN_PREFIXES):
                return True
        elif kind == "phone" and _is_phone_run(m.group("phone")) is not False:
            return True
    return False


class Redactor:
    """A structlog processor that replaces phone numbers with keyed tokens.

    Put it after every processor that adds text (timestamps, formatted exceptions) and right
    before the renderer. It walks the event dict recursively (dict keys and values, lists,
    tuples, sets), rewrites ``str`` and ``bytes`` values, and turns any other object that is
    not a number or bool into its redacted ``str()``, since renderers would otherwise
    ``repr()`` it unredacted.

    Args:
        key: the HMAC key. Tokens are stable for one key; keep it secret (anyone holding it
            can confirm a guessed number against a token).
    """

    __slots__ = ("_key", "_token_for", "_sub", "_cached_redact")

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)) or not key:
            raise ValueError("Redactor key must be non-empty bytes")
        self._key = bytes(key)
        self._token_for: Callable[[str, str], str] = lru_cache(maxsize=8192)(self._make_token)
        self._sub = PHONE_PATTERN.sub
        # Log lines repeat the same short values (URIs, call ids) many times.
        self._cached_redact: Callable[[str], str] = lru_cache(maxsize=4096)(self._redact_uncached)

    # -- tokens ---------------------------------------------------------------------------

    def _make_token(self, prefix: str, material: str) -> str:
        mac = hmac.new(self._key, material.encode("utf-8"), hashlib.sha256).hexdigest()
        return prefix + mac[:_TOKEN_HEX]

    def token(self, number: str) -> str:
        """The token for one phone number (any formatting; only its digits count).

        The hex part is the CDRs' and the audit log's token of the same number
        (``NumberVault.token`` of its E.164 form, ``n_`` + 12 hex): a number written in logs
        as ``+15551230001`` or ``sip:15551230001@...`` is ``#n_b3db0ebc06ef`` there and
        ``n_b3db0ebc06ef`` in its CDRs. (A national spelling, without the country code, has
        other digits and so another token.)"""
        return self._token_for("#n_", "+" + _NON_DIGITS.sub("", number))

    def _user_token(self, user: str) -> str:
        if user.startswith(_TOKEN_PREFIXES):
            return user  # already redacted
        number = user.split(";", 1)[0]
        if _NUMERIC_USER.fullmatch(number) and any(c.isdigit() for c in number):
            return self.token(number)
        return self._token_for("#u_", user.lower())

    def _replace(self, m: re.Match[str]) -> str:
        kind = m.lastgroup
        if kind == "user":
            return m.group("sip") + self._user_token(m.group("user"))
        if kind == "telnum":
            number = m.group("telnum")
            if number.startswith(_TOKEN_PREFIXES):
                return m.group(0)
            if _digit_count(number) == 0:
                return m.group("tel") + self._token_for("#u_", number.lower())
            return m.group("tel") + self.token(number)
        if kind == "phone":
            run = m.group("phone")
            verdict = _is_phone_run(run)
            if verdict is True:
                return self.token(run)
            if verdict is False:
                return run
            pieces = _split_run(run)
            if pieces is None:
                return self.token(run)  # privacy first: redact the whole run
            return "".join(self.token(p) if is_num else p for p, is_num in pieces)
        return m.group(0)

    # -- public API -----------------------------------------------------------------------

    def redact_text(self, text: str) -> str:
        """Return *text* with every phone number and URI user part replaced by a token."""
        if not _HAS_CANDIDATE(text):
            return text
        if len(text) <= _CACHED_LEN:
            return self._cached_redact(text)
        return self._sub(self._replace, text)

    def _redact_uncached(self, text: str) -> str:
        return self._sub(self._replace, text)

    def redact(self, value: Any) -> Any:
        """Redact any value: strings, bytes, and containers of them, recursively."""
        if isinstance(value, str):
            return self.redact_text(value)
        if value is None or isinstance(value, (bool, int, float)):
            return value
        if isinstance(value, Mapping):
            return {self.redact(k): self.redact(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.redact(v) for v in value]
        if isinstance(value, tuple):
            return tuple(self.redact(v) for v in value)
        if isinstance(value, (set, frozenset)):
            return [self.redact(v) for v in value]
        if isinstance(value, (bytes, bytearray, memoryview)):
            return self.redact_text(bytes(value).decode("utf-8", "replace"))
        if isinstance(value, BaseException):
            return self.redact_text(f"{type(value).__name__}: {value}")
        return self.redact_text(str(value))

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        """structlog processor entry point: redact every key and value of *event_dict*."""
        for key in list(event_dict):
            value = event_dict[key]
            if key == "exc_info" and value and not isinstance(value, str):
                # Left for a renderer to format: render it here so its text is redacted.
                format_exc_info(logger, method_name, event_dict)
                value = event_dict.pop("exception", None)
                if value is not None:
                    event_dict["exception"] = self.redact_text(value)
                continue
            new_key = self.redact_text(key) if isinstance(key, str) else key
            new_value = self.redact(value)
            if new_key != key:
                del event_dict[key]
            event_dict[new_key] = new_value
        return event_dict
