"""SIP, SIPS and tel URIs (RFC 3261 §19.1, RFC 3966) and name-addr values (§20.10, §25.1).

Values keep their raw text: an unmodified URI serialises back exactly as it
arrived. Parsing uses ``partition``/``find`` rather than regular expressions
because it runs for several headers of every message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import SipParseError
from .grammar import HOST_CHARS, IPV6_CHARS

_SCHEMES = ("sip", "sips", "tel")


def is_digits(text: str) -> bool:
    """``1*DIGIT`` in ASCII: ``str.isdigit`` alone also accepts "²" or "٣" (which ``int`` rejects
    or silently converts)."""
    return text.isdigit() and text.isascii()


def parse_params(text: str, what: str) -> dict[str, str | None]:
    """Parse ``;name=value;flag`` (leading ';' already removed) into an ordered dict.

    Names are lower-cased (RFC 3261 §19.1.4: parameter names compare
    case-insensitively); values keep their case. Quoted values keep their quotes.
    """
    params: dict[str, str | None] = {}
    if not text:
        return params
    for part in text.split(";") if '"' not in text else _split_params(text):
        name, eq, value = part.partition("=")
        name = name.strip().lower()
        if not name:
            raise SipParseError(f"Empty parameter name in {what}")
        params[name] = value.strip() if eq else None
    return params


def _split_params(text: str) -> list[str]:
    if '"' not in text:
        return text.split(";")
    parts: list[str] = []
    start = 0
    quoted = False
    i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\" and quoted:
            i += 2
            continue
        if c == '"':
            quoted = not quoted
        elif c == ";" and not quoted:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    if quoted:
        raise SipParseError("Unterminated quoted string in parameters")
    parts.append(text[start:])
    return parts


def format_params(params: dict[str, str | None]) -> str:
    """Serialise parameters as ``;name=value;flag``."""
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def split_hostport(text: str, what: str) -> tuple[str, int | None]:
    """Split ``host[:port]`` with IPv6 references in brackets (RFC 3261 §25.1)."""
    if text[:1] == "[":
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"Unterminated IPv6 reference in {what}")
        host = text[: end + 1]
        inner = host[1:-1]
        if ":" not in inner or not IPV6_CHARS.issuperset(inner):
            raise SipParseError(f"Invalid IPv6 reference in {what}")
        rest = text[end + 1 :]
        if not rest:
            return host, None
        if rest[0] != ":":
            raise SipParseError(f"Junk after IPv6 reference in {what}")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.partition(":")
        if not host or not HOST_CHARS.issuperset(host):
            _check_host(host, what)
        if not colon:
            return host, None
    if not (port_text.isdigit() and port_text.isascii()) or len(port_text) > 5:
        raise SipParseError(f"Invalid port in {what}")
    port = int(port_text)
    if port > 65535:
        raise SipParseError(f"Port out of range in {what}")
    return host, port


def _check_host(host: str, what: str) -> None:
    if not host:
        raise SipParseError(f"Missing host in {what}")
    if not HOST_CHARS.issuperset(host):
        raise SipParseError(f"Invalid character in host of {what}")


class SipUri:
    """A parsed ``sip:``/``sips:``/``tel:`` URI. ``str()`` gives the raw text back.

    Treat a parsed URI as a value: change it with :meth:`copy` (which serialises afresh), not
    by assigning attributes or editing ``params`` in place, which ``str()`` would not reflect.
    """

    __slots__ = ("scheme", "user", "password", "host", "port", "params", "headers", "_raw")

    def __init__(
        self,
        scheme: str,
        user: str | None,
        host: str,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        headers: str | None = None,
        password: str | None = None,
        raw: str | None = None,
    ) -> None:
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = params if params is not None else {}
        self.headers = headers
        self._raw = raw

    @classmethod
    def parse(cls, text: str) -> SipUri:
        """Parse a URI; raises :class:`SipParseError` naming the problem."""
        scheme, colon, rest = text.partition(":")
        scheme_l = scheme.lower()
        if not colon or scheme_l not in _SCHEMES:
            raise SipParseError("Unsupported URI scheme", status=416)
        if " " in rest or not rest.isprintable():  # whitespace, controls, undecodable bytes
            raise SipParseError("Invalid character in URI")
        if scheme_l == "tel":
            number, _, ptext = rest.partition(";")
            if not number:
                raise SipParseError("Empty tel URI")
            return cls("tel", number, "", None, parse_params(ptext, "tel URI"), None, None, text)
        # §25.1: the user part may hold "?" and ";" (user-unreserved) but no "@", which params
        # and headers cannot hold either: the last "@" ends the userinfo (RFC 4475 §3.1.1.2)
        at = rest.rfind("@")
        user: str | None = None
        password: str | None = None
        if at >= 0:
            userinfo = rest[:at]
            rest = rest[at + 1 :]
            user, pcolon, pw = userinfo.partition(":")
            if pcolon:
                password = pw
            if not user:
                raise SipParseError("Empty user part in SIP URI")
        rest, qmark, headers = rest.partition("?")
        hostport, _, ptext = rest.partition(";")
        host, port = split_hostport(hostport, "SIP URI")
        return cls(
            scheme_l,
            user,
            host,
            port,
            parse_params(ptext, "SIP URI"),
            headers if qmark else None,
            password,
            text,
        )

    def __str__(self) -> str:
        if self._raw is not None:
            return self._raw
        if self.scheme == "tel":
            return f"tel:{self.user}{format_params(self.params)}"
        userinfo = ""
        if self.user is not None:
            userinfo = self.user if self.password is None else f"{self.user}:{self.password}"
            userinfo += "@"
        port = f":{self.port}" if self.port is not None else ""
        hdrs = f"?{self.headers}" if self.headers else ""
        return f"{self.scheme}:{userinfo}{self.host}{port}{format_params(self.params)}{hdrs}"

    def __repr__(self) -> str:
        return f"SipUri({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipUri):
            return NotImplemented
        return str(self) == str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    @property
    def host_bare(self) -> str:
        """Host without IPv6 brackets, as sockets want it."""
        h = self.host
        return h[1:-1] if h.startswith("[") else h

    def copy(self, **changes: object) -> SipUri:
        """A modified copy (serialised afresh, not from raw)."""
        new = SipUri(
            self.scheme, self.user, self.host, self.port, dict(self.params), self.headers, self.password
        )
        for k, v in changes.items():
            setattr(new, k, v)
        return new


@dataclass(slots=True)
class NameAddr:
    """``"Display" <uri>;params`` or ``uri;params`` (From, To, Contact, Route, PAI ...)."""

    uri: str
    display: str | None = None
    params: dict[str, str | None] = field(default_factory=dict)
    angle: bool = True

    @classmethod
    def parse(cls, text: str) -> NameAddr:
        """Parse a name-addr or addr-spec with header parameters."""
        if not text or text[0] in " \t" or text[-1] in " \t":
            text = text.strip()
            if not text:
                raise SipParseError("Empty address")
        display: str | None = None
        if text[0] == '"':
            end = _quoted_end(text, 0)
            display = text[: end + 1]
            text = text[end + 1 :].lstrip()
            if not text.startswith("<"):
                raise SipParseError("Quoted display name without <URI>")
        lt = text.find("<")
        if lt >= 0:
            if lt > 0 and display is None:
                display = text[:lt].strip() or None
            gt = text.find(">", lt)
            if gt < 0:
                raise SipParseError("Unterminated <URI> in address")
            uri = text[lt + 1 : gt]
            rest = text[gt + 1 :]
            if rest and rest[0] != ";":
                rest = rest.strip()
            angle = True
        else:
            # addr-spec: parameters after ';' belong to the header (RFC 3261 §20.10)
            uri, semi, ptext = text.partition(";")
            rest = ";" + ptext if semi else ""
            if semi and uri[-1:] in (" ", "\t"):
                # §25.1 SEMI = SWS ";" SWS: LWS before a parameter (RFC 4475 §3.1.1.1 To)
                uri = uri.rstrip(" \t")
            angle = False
            # §20.10: an addr-spec holding a comma, question mark or space (or a display name
            # without <>) is not a valid address; two addresses in From/To end up here too
            if " " in uri or "," in uri or "?" in uri or "\t" in uri:
                raise SipParseError("Invalid addr-spec in address (needs <URI>)")
        if not uri:
            raise SipParseError("Empty URI in address")
        if rest:
            if rest[0] != ";":
                raise SipParseError("Junk after URI in address")
            name, eq, value = rest.partition("=")
            if eq and name == ";tag" and ";" not in value and '"' not in value:
                params: dict[str, str | None] = {"tag": value.strip()}
            else:
                params = parse_params(rest[1:], "address")
        else:
            params = {}
        return cls(uri, display, params, angle)

    @property
    def tag(self) -> str | None:
        """The ``tag`` parameter (§19.3), or None."""
        return self.params.get("tag")

    def sip_uri(self) -> SipUri:
        """The URI, parsed."""
        return SipUri.parse(self.uri)

    def __str__(self) -> str:
        params = format_params(self.params)
        if not self.angle and not self.display:
            return f"{self.uri}{params}"
        disp = f"{self.display} " if self.display else ""
        return f"{disp}<{self.uri}>{params}"


def plain_span(text: str) -> tuple[int, int] | None:
    """``(index of "<", index of ">")`` when ``text`` is a plain ``[name ]<uri>[rest]``: no
    quote, no blank at either end, a non-empty URI. ``NameAddr.parse`` takes such a value's
    URI as ``text[lt + 1:gt]`` and its parameters from ``text[gt + 1:]`` (which the caller
    still has to check), so fast paths can slice it; None: let ``NameAddr.parse`` decide."""
    lt = text.find("<")
    if lt < 0 or '"' in text or text[0] in " \t" or text[-1] in " \t":
        return None
    gt = text.find(">", lt)
    return (lt, gt) if gt > lt + 1 else None


def tag_of(text: str) -> str | None:
    """``NameAddr.parse(text).params.get("tag")``, with the same result and the same errors,
    without building the NameAddr for the usual forms (``<uri>;tag=x``, ``name <uri>``): the
    transaction layer and the B2BUA read the tags of every message, most of which nothing
    else parses. Anything less plain (quotes, an addr-spec, other parameters, surrounding
    blanks, malformed) goes to ``NameAddr.parse``."""
    span = plain_span(text)
    if span is not None:
        rest = text[span[1] + 1 :]
        if not rest:
            return None
        name, eq, value = rest.partition("=")
        if eq and name == ";tag" and ";" not in value:
            return value.strip()
    return NameAddr.parse(text).params.get("tag")


def _quoted_end(text: str, start: int) -> int:
    i = start + 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == '"':
            return i
        i += 1
    raise SipParseError("Unterminated quoted display name")
