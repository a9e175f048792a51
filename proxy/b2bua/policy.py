"""Header, SDP and body policy: which headers, SDP lines and bodies cross between B2BUA legs.

The policy is a whitelist read from a rules file (``proxy/rules/default.toml``): a header crosses only
if it is named in ``headers.pass`` (or is an X- header with ``pass_x_headers``, or
User-Agent/Server with ``pass_user_agent``). Headers the B2BUA writes itself
(:data:`GENERATED_HEADERS`) never cross. Compact forms (RFC 3261 §7.3.3 and later RFCs) count
as their long names.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from ..config.fields import LocatedError, check_keys, table_keys, toml_key
from ..config.load import read_toml
from ..sip.grammar import is_token
from ..sip.sdp import DEFAULT_ATTRIBUTES, DEFAULT_LINES, KNOWN_LINES, REQUIRED_LINES, SdpWhitelist

if TYPE_CHECKING:
    from ..sip.message import Headers

__all__ = [
    "BodyPolicy",
    "COMPACT_FORMS",
    "DEFAULT_DROP",
    "DEFAULT_PASS",
    "GENERATED_HEADERS",
    "HeaderPolicy",
    "Rules",
    "RulesError",
    "SdpPolicy",
    "default_rules",
    "load_rules",
]

COMPACT_FORMS: Final[Mapping[str, str]] = {
    "i": "call-id",  # RFC 3261
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "f": "from",
    "t": "to",
    "v": "via",
    "k": "supported",
    "s": "subject",
    "c": "content-type",
    "o": "event",  # RFC 6665
    "u": "allow-events",
    "r": "refer-to",  # RFC 3515
    "b": "referred-by",  # RFC 3892
    "x": "session-expires",  # RFC 4028
    "y": "identity",  # RFC 8224
    "a": "accept-contact",  # RFC 3841
    "j": "reject-contact",
    "d": "request-disposition",
    "n": "identity-info",  # RFC 4474
}
"""Compact header letters (lower case) and the long names (lower case) they stand for."""

GENERATED_HEADERS: Final = frozenset(
    {
        "via", "from", "to", "call-id", "cseq", "contact", "max-forwards", "route",
        "record-route", "content-length", "p-asserted-identity",
    }
)
"""Headers the B2BUA always writes for each leg itself (lower case); never copied."""

DEFAULT_PASS: Final = (
    "Accept", "Accept-Encoding", "Accept-Language", "Allow", "Allow-Events",
    "Content-Disposition", "Content-Encoding", "Content-Language", "Content-Type", "Event",
    "Expires", "Info-Package", "Min-Expires", "Min-SE", "MIME-Version", "Priority", "RAck",
    "Reason", "Recv-Info", "Require", "Retry-After", "RSeq", "Session-Expires", "Subject",
    "Subscription-State", "Supported", "Timestamp", "Unsupported", "Warning", "Date",
    "Privacy",
)
"""The default ``headers.pass`` list (same as ``proxy/rules/default.toml``)."""

DEFAULT_DROP: Final = (
    "Remote-Party-ID", "P-Preferred-Identity", "Diversion", "History-Info", "Referred-By",
    "Reply-To", "Call-Info", "Organization", "Identity", "Identity-Info",
    "P-Called-Party-ID", "P-Associated-URI", "P-Served-User",
    "User-Agent", "Server", "Alert-Info", "Error-Info",
    "P-Charging-Vector", "P-Charging-Function-Addresses", "P-Access-Network-Info",
    "P-Visited-Network-ID", "Path", "Service-Route", "Geolocation", "Geolocation-Routing",
    "Refer-To", "Replaces", "Join", "Target-Dialog", "In-Reply-To",
    "Authorization", "Proxy-Authorization", "WWW-Authenticate", "Proxy-Authenticate",
    "Authentication-Info", "Proxy-Require",
    "Accept-Contact", "Reject-Contact", "Request-Disposition",
)
"""The default ``headers.drop`` list (same as ``proxy/rules/default.toml``)."""

_USER_AGENT_HEADERS: Final = frozenset({"user-agent", "server"})


class RulesError(LocatedError):
    """A problem in a rules file, naming the file, the key and what was expected."""


def canonical_name(name: str) -> str:
    """The lower-case long form of a header name (``k`` -> ``supported``)."""
    lowered = name.strip().lower()
    return COMPACT_FORMS.get(lowered, lowered)


def _normalise(names: Iterable[str], what: str) -> frozenset[str]:
    out = set()
    for name in names:
        # RFC 3261 §25.1: header-name = token
        if not isinstance(name, str) or not is_token(name.strip()):
            raise ValueError(f"{what}: invalid header name {name!r}")
        out.add(canonical_name(name))
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class HeaderPolicy:
    """Which headers cross between legs. Names are stored lower case, compact forms expanded.

    Args:
        pass_headers: headers that cross unchanged.
        drop_headers: headers that never cross (documentation of intent; must not overlap
            ``pass_headers``).
        pass_x_headers: let X- headers not named in either list cross.
        pass_user_agent: let User-Agent and Server cross (this flag alone decides for them).

    Raises:
        ValueError: an invalid name, a name in both lists, or a generated header in
            ``pass_headers``.
    """

    pass_headers: frozenset[str] = field(default=frozenset(), metadata=toml_key("pass"))
    drop_headers: frozenset[str] = field(default=frozenset(), metadata=toml_key("drop"))
    pass_x_headers: bool = False
    pass_user_agent: bool = False
    _allowed: frozenset[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        passed = _normalise(self.pass_headers, "pass")
        dropped = _normalise(self.drop_headers, "drop")
        both = passed & dropped
        if both:
            raise ValueError(f"in both pass and drop: {', '.join(sorted(both))}")
        generated = passed & GENERATED_HEADERS
        if generated:
            raise ValueError(
                f"always generated by sipmask, cannot pass: {', '.join(sorted(generated))}"
            )
        allowed = passed - _USER_AGENT_HEADERS
        if self.pass_user_agent:
            allowed |= _USER_AGENT_HEADERS
        object.__setattr__(self, "pass_headers", passed)
        object.__setattr__(self, "drop_headers", dropped)
        object.__setattr__(self, "_allowed", frozenset(allowed))

    def allows(self, name: str) -> bool:
        """Whether header *name* (any case, compact or long form) crosses to the other leg."""
        lowered = name.lower()
        if len(lowered) == 1:
            lowered = COMPACT_FORMS.get(lowered, lowered)
        if lowered in self._allowed:
            return True
        return (
            self.pass_x_headers
            and lowered.startswith("x-")
            and lowered not in self.drop_headers
        )

    def copy(self, source: Headers, target: Headers) -> None:
        """Append to ``target`` the lines of ``source`` that cross, in order and spelling,
        except a line that holds a phone number (``holds_number``): a header the policy lets
        cross (Subject, Privacy, Supported...) is free text the other party wrote."""
        first = len(target)
        if self.pass_x_headers:
            add = target.add
            for name, value in self.filter(source):
                add(name, value)
        else:
            target.extend_from(source, self._allowed)
        if len(target) > first:
            values = target.columns()[2]
            # one search over every copied value: most messages copy no digit run at all
            if _DIGIT_RUN.search("\n".join(values[first:])) is not None:
                drop_numbers(target, first)

    def filter(self, headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
        """The ``(name, value)`` pairs that cross, in their original order and spelling."""
        allowed = self._allowed
        keyed = getattr(headers, "keyed", None)
        if keyed is not None and not self.pass_x_headers:
            # parsed messages carry each name's canonical key (lower-case long form) already
            return [(name, value) for key, name, value in keyed() if key in allowed]
        if self.pass_x_headers:
            return [(n, v) for n, v in headers if self.allows(n)]
        compact = COMPACT_FORMS
        out = []
        for name, value in headers:
            lowered = name.lower()
            if len(lowered) == 1:
                lowered = compact.get(lowered, lowered)
            if lowered in allowed:
                out.append((name, value))
        return out


#: seven or more digits, maybe broken up by the separators people write numbers with: the
#: shortest subscriber numbers are 7 digits (the log redactor uses the same rule)
_DIGIT_RUN: Final = re.compile(r"(?:\d[ ().\-]{0,2}){6,}\d")
#: headers whose value is a number by grammar, checked by range instead (RFC 3262: 1..2**31-1)
_SEQUENCES: Final = frozenset(("rseq", "rack"))
def holds_number(key: str, value: str) -> bool:
    """Whether a copied header line may hold a phone number: seven or more digits in a row
    (separators allowed), except the sequence numbers of RSeq and RAck within their range."""
    if key in _SEQUENCES:
        fields = value.split()
        numbers = fields[:1] if key == "rseq" else fields[:2]
        # not the grammar (RAck: response-num CSeq-num Method), or out of range: free text
        return not (len(fields) == (1 if key == "rseq" else 3)
                    and all(n.isdigit() and 0 < int(n) < 2**31 for n in numbers)
                    and (key == "rseq" or is_token(fields[2])))
    return _DIGIT_RUN.search(value) is not None


def drop_numbers(headers: Headers, first: int) -> int:
    """Drop the lines from index ``first`` on that hold a phone number; returns how many."""
    _, keys, values = headers.columns()
    doomed = [i for i in range(first, len(keys)) if holds_number(keys[i], values[i])]
    headers.drop_lines(doomed)
    return len(doomed)


@dataclass(frozen=True, slots=True)
class SdpPolicy:
    """How SDP bodies cross legs: validated, then rebuilt from a whitelist.

    Args:
        sanitise: rebuild each SDP from the whitelist (false: validate it, then pass it as it
            came; for tracing an interop problem only, it lets numbers through).
        origin_username: the ``o=`` username to write (no spaces).
        session_name: the ``s=`` value to write (non-empty, one line).
        lines: SDP line types that cross (v, o, s, t, m always).
        attributes: ``a=`` attributes that cross (trailing ``*``: a prefix).

    Raises:
        ValueError: see :class:`~proxy.sip.sdp.SdpWhitelist`.
    """

    sanitise: bool = True
    origin_username: str = "-"
    session_name: str = "-"
    lines: frozenset[str] = DEFAULT_LINES
    attributes: frozenset[str] = DEFAULT_ATTRIBUTES
    whitelist: SdpWhitelist = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.origin_username or any(c.isspace() for c in self.origin_username):
            raise ValueError("origin_username: expected a non-empty token without spaces")
        if not self.session_name or "\r" in self.session_name or "\n" in self.session_name:
            raise ValueError("session_name: expected a non-empty single line")
        whitelist = SdpWhitelist(
            lines=frozenset(self.lines), attributes=frozenset(self.attributes),
            origin_username=self.origin_username, session_name=self.session_name,
        )
        object.__setattr__(self, "lines", whitelist.lines)
        object.__setattr__(self, "attributes", whitelist.attributes)
        object.__setattr__(self, "whitelist", whitelist)


BODY_MULTIPART: Final = ("sdp_part", "refuse")
BODY_OTHER: Final = ("drop", "refuse")
DEFAULT_PASS_TYPES: Final = ("application/dtmf-relay", "application/dtmf")


@dataclass(frozen=True, slots=True)
class BodyPolicy:
    """Which message bodies cross legs, by Content-Type (application/sdp: see SdpPolicy).

    Args:
        multipart: a ``multipart/*`` body: ``sdp_part`` sends its one SDP part on (rebuilt,
            as ``application/sdp``) and drops the other parts; ``refuse`` refuses it (415).
        other: any other type: ``drop`` sends the message on without body and Content-Type;
            ``refuse`` refuses it (415).
        pass_types: types that cross unchanged (SIP INFO DTMF by default: digits only).
    """

    multipart: str = "sdp_part"
    other: str = "drop"
    pass_types: frozenset[str] = frozenset(DEFAULT_PASS_TYPES)

    def __post_init__(self) -> None:
        if self.multipart not in BODY_MULTIPART:
            raise ValueError(f"multipart: expected one of {', '.join(BODY_MULTIPART)}")
        if self.other not in BODY_OTHER:
            raise ValueError(f"other: expected one of {', '.join(BODY_OTHER)}")
        types = frozenset(t.strip().lower() for t in self.pass_types)
        for kind in types:
            main, slash, sub = kind.partition("/")
            if not (slash and is_token(main) and is_token(sub)):
                raise ValueError(f"pass_types: {kind!r} is not a type/subtype")
            if main == "multipart" or kind == "application/sdp":
                raise ValueError(f"pass_types: {kind!r} has its own rule and cannot pass unchanged")
        object.__setattr__(self, "pass_types", types)


@dataclass(frozen=True, slots=True)
class Rules:
    """Everything a rules file decides."""

    headers: HeaderPolicy
    sdp: SdpPolicy
    bodies: BodyPolicy = BodyPolicy()


def default_rules() -> Rules:
    """The policy of ``proxy/rules/default.toml``, built in code (no file needed)."""
    return Rules(
        headers=HeaderPolicy(
            pass_headers=frozenset(DEFAULT_PASS),
            drop_headers=frozenset(DEFAULT_DROP),
            pass_x_headers=False,
            pass_user_agent=False,
        ),
        sdp=SdpPolicy(sanitise=True, origin_username="-", session_name="-"),
        bodies=BodyPolicy(),
    )


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------

def _unknown(file: str, table: Mapping[str, Any], cls: type[Any], where: str) -> None:
    """Every key of *table* is a key of dataclass *cls* (the TOML keys are its fields)."""
    check_keys(file, table, table_keys(cls), where, RulesError, listing="known")


def _names(file: str, value: Any, key: str) -> list[str]:
    if not isinstance(value, list):
        raise RulesError(file, key, f"expected a list of header names, got {type(value).__name__}")
    for i, name in enumerate(value):
        if not isinstance(name, str) or not is_token(name.strip()):
            raise RulesError(file, f"{key}[{i}]", f"expected a header name, got {name!r}")
    return value


def _flag(file: str, table: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, bool):
        raise RulesError(file, f"{where}.{key}", f"expected true or false, got {value!r}")
    return value


def _text(file: str, table: Mapping[str, Any], key: str, where: str, default: str) -> str:
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, str):
        raise RulesError(file, f"{where}.{key}", f"expected a string, got {value!r}")
    return value


def _section(file: str, raw: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise RulesError(file, name, f"expected a table [{name}]")
    return value


def _headers(file: str, raw: Mapping[str, Any]) -> HeaderPolicy:
    table = _section(file, raw, "headers")
    _unknown(file, table, HeaderPolicy, "headers")
    passed = _names(file, table["pass"], "headers.pass") if "pass" in table else DEFAULT_PASS
    dropped = _names(file, table["drop"], "headers.drop") if "drop" in table else DEFAULT_DROP
    pass_lower = {canonical_name(n): i for i, n in enumerate(passed)}
    for i, name in enumerate(dropped):
        if canonical_name(name) in pass_lower:
            raise RulesError(file, f"headers.drop[{i}]",
                             f"{name!r} is also in headers.pass; a header is passed or dropped")
    for name, i in pass_lower.items():
        if name in GENERATED_HEADERS:
            raise RulesError(file, f"headers.pass[{i}]",
                             f"{passed[i]!r} is always generated by sipmask and cannot be passed")
    return HeaderPolicy(
        pass_headers=frozenset(passed),
        drop_headers=frozenset(dropped),
        pass_x_headers=_flag(file, table, "pass_x_headers", "headers", False),
        pass_user_agent=_flag(file, table, "pass_user_agent", "headers", False),
    )


def _sdp(file: str, raw: Mapping[str, Any]) -> SdpPolicy:
    table = _section(file, raw, "sdp")
    _unknown(file, table, SdpPolicy, "sdp")
    sanitise = _flag(file, table, "sanitise", "sdp", True)
    origin = _text(file, table, "origin_username", "sdp", "-")
    session = _text(file, table, "session_name", "sdp", "-")
    if not origin or any(c.isspace() for c in origin):
        raise RulesError(file, "sdp.origin_username",
                         f"expected a non-empty token without spaces, got {origin!r}")
    if not session or "\r" in session or "\n" in session:
        raise RulesError(file, "sdp.session_name",
                         f"expected a non-empty single line, got {session!r}")
    lines = _strings(file, table, "lines", "sdp", sorted(DEFAULT_LINES))
    attributes = _strings(file, table, "attributes", "sdp", sorted(DEFAULT_ATTRIBUTES))
    for i, letter in enumerate(lines):
        if letter not in KNOWN_LINES:
            raise RulesError(file, f"sdp.lines[{i}]",
                             f"expected an SDP line type ({' '.join(sorted(KNOWN_LINES))}), got {letter!r}")
    missing = sorted(REQUIRED_LINES - set(lines))
    if missing:
        raise RulesError(file, "sdp.lines", f"must include v, o, s, t and m; missing {', '.join(missing)}")
    for i, name in enumerate(attributes):
        if not is_token(name[:-1] if name.endswith("*") else name):
            raise RulesError(file, f"sdp.attributes[{i}]", f"expected an attribute name (a token), got {name!r}")
    return SdpPolicy(sanitise=sanitise, origin_username=origin, session_name=session,
                     lines=frozenset(lines), attributes=frozenset(attributes))


def _strings(file: str, table: Mapping[str, Any], key: str, where: str, default: list[str]) -> list[str]:
    if key not in table:
        return default
    value = table[key]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RulesError(file, f"{where}.{key}", f"expected a list of strings, got {value!r}")
    return value


def _choice(file: str, table: Mapping[str, Any], key: str, where: str, choices: tuple[str, ...]) -> str:
    value = table.get(key, choices[0])
    if value not in choices:
        listed = ", ".join(repr(c) for c in choices)
        raise RulesError(file, f"{where}.{key}", f"expected one of {listed}, got {value!r}")
    return str(value)


def _bodies(file: str, raw: Mapping[str, Any]) -> BodyPolicy:
    table = _section(file, raw, "bodies")
    _unknown(file, table, BodyPolicy, "bodies")
    types = _strings(file, table, "pass_types", "bodies", list(DEFAULT_PASS_TYPES))
    try:
        return BodyPolicy(
            multipart=_choice(file, table, "multipart", "bodies", BODY_MULTIPART),
            other=_choice(file, table, "other", "bodies", BODY_OTHER),
            pass_types=frozenset(types),
        )
    except ValueError as exc:
        raise RulesError(file, "bodies.pass_types", str(exc).partition(": ")[2]) from None


def load_rules(path: str | Path) -> Rules:
    """Read and validate a rules file. Keys left out take the defaults of ``default_rules()``.

    Raises:
        RulesError: unreadable file, bad TOML, unknown key, wrong type, a header name that is
            invalid, in both lists, or always generated by sipmask.
    """
    file = str(path)
    raw = read_toml(file, RulesError)
    _unknown(file, raw, Rules, "")
    return Rules(headers=_headers(file, raw), sdp=_sdp(file, raw), bodies=_bodies(file, raw))
