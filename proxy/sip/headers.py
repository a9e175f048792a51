"""Header names and the structured header values the core needs (Via, CSeq, lists)."""

from __future__ import annotations

import functools
import sys

from .errors import SipParseError
from .grammar import IPV6_CHARS, KNOWN_METHODS, is_token
from .uri import format_params, is_digits, parse_params, split_hostport

#: RFC 3261 §7.3.3 compact forms (plus RFC 3515 r, RFC 3892 b, RFC 4028 x, RFC 3841 y... as registered)
COMPACT_FORMS: dict[str, str] = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "f": "from",
    "t": "to",
    "v": "via",
    "k": "supported",
    "s": "subject",
    "c": "content-type",
    "o": "event",
    "u": "allow-events",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "y": "identity",
}

#: header name as written -> ``header_key(name)``, filled by ``header_key``: hot readers try it
#: first (``KEY_CACHE.get(name) or header_key(name)``) and skip a call for the names they know
KEY_CACHE: dict[str, str] = {}


def header_key(name: str) -> str:
    """Canonical lookup key of a header name: lower-case long form."""
    key = KEY_CACHE.get(name)
    if key is None:
        low = name.lower()
        # interned: the lists of keys are searched with literals, which identity then matches
        key = sys.intern(COMPACT_FORMS.get(low, low))
        if len(KEY_CACHE) < 4096:  # bounded: names come from the network
            KEY_CACHE[name] = key
    return key


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, respecting quotes and ``<...>`` (§7.3.1)."""
    if "," not in value:
        return [value.strip()]
    if '"' not in value and "<" not in value:
        return [v.strip() for v in value.split(",")]
    out: list[str] = []
    start = 0
    quoted = False
    angle = False
    i = 0
    n = len(value)
    while i < n:
        c = value[i]
        if quoted:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif c == "<":
            angle = True
        elif c == ">":
            angle = False
        elif c == "," and not angle:
            out.append(value[start:i].strip())
            start = i + 1
        i += 1
    if quoted:
        raise SipParseError("Unterminated quoted string in header value")
    out.append(value[start:].strip())
    return out


_PROTOCOLS: dict[str, tuple[str, str]] = {
    f"SIP/2.0/{t}": ("SIP/2.0", t) for t in ("UDP", "TCP", "TLS", "SCTP", "WS", "WSS")
}


class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=...;received=...;rport`` (§20.42, RFC 3581)."""

    __slots__ = ("protocol", "transport", "host", "port", "params")

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None,
        params: dict[str, str | None],
        protocol: str = "SIP/2.0",
    ) -> None:
        self.protocol = protocol
        self.transport = transport
        self.host = host
        self.port = port
        self.params = params

    @classmethod
    def parse(cls, text: str) -> Via:
        """Parse one Via value (raises :class:`SipParseError` naming the problem)."""
        proto, sp, rest = text.partition(" ")
        known = _PROTOCOLS.get(proto) if sp else None
        if known is None:
            known, rest = _parse_sent_protocol(text)
        sent_by, _, ptext = rest.partition(";")
        host, port = _via_sent_by(sent_by)
        params = parse_params(ptext, "Via")
        if params:
            _check_via_params(params)
        return cls(known[1], host, port, params, known[0])

    @property
    def branch(self) -> str | None:
        """The branch parameter, or None."""
        return self.params.get("branch")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        """(host, port) the sender put in the Via."""
        return self.host, self.port

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"


@functools.lru_cache(maxsize=1024)
def _via_sent_by(text: str) -> tuple[str, int | None]:
    """A Via's ``host[:port]``: a peer writes the same one in every request, so its split is
    kept (bounded: they come from the network; a malformed one raises and is not kept)."""
    return split_hostport(text.strip(), "Via")


def _parse_sent_protocol(text: str) -> tuple[tuple[str, str], str]:
    """Slow path of ``SIP / 2.0 / UDP host``: LWS is allowed around the slashes (§25.1 SLASH)."""
    name, s1, rest = text.strip().partition("/")
    version, s2, rest = rest.partition("/")
    rest = rest.lstrip(" \t")
    end = 0
    while end < len(rest) and rest[end] not in " \t":
        end += 1
    transport = rest[:end]
    name = name.strip()
    version = version.strip()
    if not (s1 and s2 and transport and name.upper() == "SIP" and version) or end == len(rest):
        raise SipParseError("Malformed Via protocol")
    if not is_token(version) or not is_token(transport):
        raise SipParseError("Malformed Via protocol")
    return (f"{name}/{version}", transport.upper()), rest[end:].lstrip(" \t")


def _check_via_params(params: dict[str, str | None]) -> None:
    """§20.42 / RFC 3581 value rules of the Via parameters the core relies on."""
    if "branch" in params and not params["branch"]:
        raise SipParseError("Invalid Via branch")
    if "ttl" in params:
        ttl = params["ttl"]
        if ttl is None or not is_digits(ttl) or len(ttl) > 3 or int(ttl) > 255:
            raise SipParseError("Invalid Via ttl")
    if "rport" in params:  # RFC 3581: "rport" alone in requests, "rport=port" once filled in
        rport = params["rport"]
        if rport is not None and (not is_digits(rport) or len(rport) > 5 or int(rport) > 65535):
            raise SipParseError("Invalid Via rport")
    if "received" in params:  # IPv4address / IPv6address (brackets tolerated)
        received = params["received"]
        if not received or not IPV6_CHARS.issuperset(received.strip("[]")):
            raise SipParseError("Invalid Via received")
    if "maddr" in params:
        maddr = params["maddr"]
        if not maddr:
            raise SipParseError("Invalid Via maddr")
        split_hostport(maddr, "Via maddr")


class CSeq:
    """``CSeq: 4711 INVITE`` (§20.16)."""

    __slots__ = ("number", "method")

    number: int
    method: str

    def __init__(self, number: int, method: str) -> None:
        object.__setattr__(self, "number", number)
        object.__setattr__(self, "method", method)

    @classmethod
    def parse(cls, text: str) -> CSeq:
        """Parse a CSeq value; the number must fit a 32-bit unsigned integer (§8.1.1.5).
        Values recur ("1 INVITE", "2 BYE"): a parsed CSeq is a value, shared from a cache."""
        return _parse_cseq(text)

    @classmethod
    def _parse(cls, text: str) -> CSeq:
        num, _, method = text.strip().partition(" ")
        if method[:1] == " ":
            method = method.lstrip(" ")
        if not (num.isdigit() and num.isascii()) or (
            method not in KNOWN_METHODS and not is_token(method)
        ):
            raise SipParseError("Malformed CSeq header")
        # §8.1.1.5: "MUST be expressible as a 32-bit unsigned integer" (a UAC starts below 2**31
        # but may count past it); the length check keeps int() off huge digit strings
        number = int(num) if len(num) <= 10 else 2**32
        if number >= 2**32:
            raise SipParseError("CSeq number out of range")
        return cls(number, method)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("a CSeq is a shared value: build a new one")

    def __str__(self) -> str:
        return f"{self.number} {self.method}"

    def __repr__(self) -> str:
        return f"CSeq({self.number}, {self.method!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CSeq) and (self.number, self.method) == (other.number, other.method)

    def __hash__(self) -> int:
        return hash((self.number, self.method))


#: parsed CSeq values by their text (bounded: the text comes from the network); a malformed
#: one raises each time (lru_cache does not keep exceptions)
_parse_cseq = functools.lru_cache(maxsize=4096)(CSeq._parse)
