"""Parse SIP messages from bytes (RFC 3261 §7, §18.3, §25) and frame them on streams.

Runs for every datagram: ``find``/``partition``/``split`` only, no regular expressions.
Anything malformed raises :class:`SipParseError`, never another exception.
"""

from __future__ import annotations

from .errors import SipParseError
from .grammar import KNOWN_METHODS, is_token
from .headers import CSeq, header_key
from .message import Headers, Request, Response
from .uri import is_digits

_MANDATORY = ("via", "from", "to", "call-id", "cseq")
_MANDATORY_SET = frozenset(_MANDATORY)
#: mandatory headers that are not lists (§20): a second line is a 400
_ONCE = ("from", "to", "call-id", "cseq")
_MAX_HEADERS = 256
#: "100".."699" -> the status code (a status line's code, checked and converted in one lookup)
_STATUS_CODES = {str(code): code for code in range(100, 700)}
_SPACE_OR_END = (" ", "")
#: header name as written -> (that name, one shared string; its canonical key), for names
#: already validated as tokens: every message then holds the same name strings
_NAME_CACHE: dict[str, tuple[str, str]] = {}
_NAME_CACHE_MAX = 2048  # bounded: names come from the network
_PRETTY = {
    "via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq",
    "max-forwards": "Max-Forwards",
}


def parse_message(data: bytes, *, stream: bool = False) -> Request | Response:
    """Parse one SIP message.

    On datagram transports (``stream=False``) bytes past Content-Length are ignored and a
    missing Content-Length means "the rest of the datagram" (§18.3). On streams the framer has
    already cut the message at Content-Length, which must then be present.
    """
    try:
        return _parse(data, stream)
    except SipParseError:
        raise
    except (ValueError, IndexError, UnicodeError) as exc:  # defensive: never leak other errors
        raise SipParseError(f"Malformed message ({type(exc).__name__})") from None


def _split_head_slow(data: bytes, start: int) -> tuple[list[str], int]:
    """Header lines and body offset for bare-LF or mixed line ends (tolerated, §7.5 asks for
    CRLF), and the errors: no empty line, NUL, a CR that does not end a line."""
    n = len(data)
    if start >= n:
        raise SipParseError("Empty message")
    end = data.find(b"\r\n\r\n", start)
    lf_end = data.find(b"\n\n", start, end + 1 if end >= 0 else n)
    if lf_end >= 0:
        head = data[start:lf_end].decode("utf-8", "surrogateescape")
        body_start = lf_end + 2
    elif end >= 0:
        head = data[start:end].decode("utf-8", "surrogateescape")
        body_start = end + 4
    else:
        raise SipParseError("Missing empty line after headers")
    lines = [ln[:-1] if ln[-1:] == "\r" else ln for ln in head.split("\n")]
    for ln in lines:
        if "\r" in ln:
            raise SipParseError("Bare CR in message headers")
    if "\x00" in head and not _nul_only_quoted(lines):
        raise SipParseError("NUL character in message headers")
    return lines, body_start


def _nul_only_quoted(lines: list[str]) -> bool:
    """Whether every NUL of the header lines is the escaped character of a quoted-pair inside
    a quoted-string, the one place §25.1 allows it (RFC 4475 §3.1.1.2)::

        quoted-string  =  SWS DQUOTE *(qdtext / quoted-pair ) DQUOTE
        quoted-pair    =  "\\" (%x00-09 / %x0B-0C / %x0E-7F)

    A quoted-string may continue on a folded line (§7.3.1), never into the next header; the
    start line has no quoted-string."""
    if "\x00" in lines[0]:
        return False
    quoted = False
    for line in lines[1:]:
        if line[:1] not in (" ", "\t"):
            quoted = False  # a new header
        i = 0
        n = len(line)
        while i < n:
            c = line[i]
            if c == '"':
                quoted = not quoted
            elif quoted and c == "\\":
                i += 1  # the escaped character, NUL included
            elif c == "\x00":
                return False
            i += 1
    return True


def _parse(data: bytes, stream: bool) -> Request | Response:
    start = 0
    if data[:1] in (b"\r", b"\n"):  # §7.5: ignore CRLFs preceding the start line
        start = len(data) - len(data.lstrip(b"\r\n"))
    end = data.find(b"\r\n\r\n", start)
    lines: list[str] = []
    if end >= 0:
        head = data[start:end].decode("utf-8", "surrogateescape")
        lines = head.split("\r\n")
        # no CR or LF left once split at CRLF: no bare LF (so no earlier "\n\n"), no bare CR
        joined = "".join(lines)
        if "\n" in joined or "\r" in joined or "\x00" in joined:
            lines = []
    if lines:
        body_start = end + 4
    else:
        lines, body_start = _split_head_slow(data, start)

    # the lists are filled in place so that a partial message (for a 400) shares them
    names: list[str] = []
    keys: list[str] = []
    values: list[str] = []
    headers = Headers.from_lists(names, keys, values)
    message, start_error = _parse_start_line(lines[0], headers)
    # fast path: every line is "Name: value" with a name seen (and validated) before; the
    # slow path handles folding, odd spacing, unseen names and lines without a colon
    name_cache = _NAME_CACHE
    for i in range(1, len(lines)):
        name, colon, value = lines[i].partition(":")
        entry = name_cache.get(name) if colon else None
        if entry is None:
            _parse_header_lines(lines, i, message)
            break
        names.append(entry[0])
        keys.append(entry[1])
        values.append(value.strip())
    if len(names) > _MAX_HEADERS:
        raise SipParseError("Too many headers", partial=message)
    if start_error is not None:
        # a request line that cannot be used (§8.2.1 / §21.5.25 version: 505; a damaged line
        # or Request-URI: 400), raised now that the headers a response copies have been read
        start_error.partial = message
        raise start_error

    # one line per header in the usual case: a dict answers every lookup below
    fields = dict(zip(keys, values))
    unique = len(fields) == len(keys)
    message.body = _body(data, body_start, stream, message, fields, unique)
    _validate(message, fields, unique)
    return message


def _body(
    data: bytes, body_start: int, stream: bool, message: Request | Response,
    fields: dict[str, str], unique: bool,
) -> bytes:
    """The body by Content-Length (§18.3, §20.14)."""
    available = len(data) - body_start
    cl_text = fields.get("content-length")
    if cl_text is None:
        if stream:
            raise SipParseError("Missing Content-Length on stream transport", partial=message)
        return data[body_start:] if available else b""
    if not unique and any(v != cl_text for v in message.headers.get_all("content-length")):
        raise SipParseError("Conflicting Content-Length headers", partial=message)
    if not (cl_text.isdigit() and cl_text.isascii()) or len(cl_text) > 9:
        raise SipParseError("Invalid Content-Length", partial=message)
    length = int(cl_text)
    if length > available:
        raise SipParseError("Content-Length larger than message", partial=message)
    return data[body_start : body_start + length] if length else b""


def _parse_header_lines(lines: list[str], first: int, message: Request | Response) -> None:
    """Slow path from ``lines[first]`` on, appending to ``message.headers`` in place."""
    headers = message.headers
    names, keys, values = headers.columns()
    name_cache = _NAME_CACHE
    for line in lines[first:]:
        if not line:
            continue
        c0 = line[0]
        if c0 == " " or c0 == "\t":
            # §7.3.1 line folding: continuation of the previous header value
            if not values:
                raise SipParseError("Folded line before first header", partial=message)
            values[-1] = f"{values[-1]} {line.strip()}".strip()
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError("Malformed header line (no colon)", partial=message)
        name = name.rstrip(" \t")  # §7.3.1: whitespace allowed before the colon
        entry = name_cache.get(name)
        if entry is None:
            if not is_token(name):
                raise SipParseError("Invalid header name", partial=message)
            entry = (name, header_key(name))
            if len(name_cache) < _NAME_CACHE_MAX:
                name_cache[name] = entry
        names.append(entry[0])
        keys.append(entry[1])
        values.append(value.strip())


def _parse_start_line(line: str, headers: Headers) -> tuple[Request | Response, SipParseError | None]:
    """The message (with ``headers``, no body yet) and the error to raise once the headers are
    read, if any. A status line that does not parse raises at once (a response is never
    answered); a request line that does not parse still gives a request, so that the 400 (or
    505) can be built from its headers (§8.2, RFC 4475 §3.1.2.7-3.1.2.10)."""
    if line[:8] == "SIP/2.0 ":
        # the usual status line, "SIP/2.0 <code>[ <reason>]": one slice and one lookup
        status = _STATUS_CODES.get(line[8:11])
        if status is not None and line[11:12] in _SPACE_OR_END:
            return Response(status, line[12:], headers, b"", "SIP/2.0"), None
    if line[:4].upper() == "SIP/":
        version, sp, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not sp or len(code) != 3 or not is_digits(code) or not "100" <= code <= "699":
            raise SipParseError("Malformed status line")
        if version != "SIP/2.0" and version.upper() != "SIP/2.0":  # §7.1: case-insensitive
            raise SipParseError("Unsupported SIP version", status=505)
        return Response(int(code), reason, headers, b"", version), None
    parts = line.split(" ")
    if len(parts) != 3:
        # §7.1: Request-Line = Method SP Request-URI SP SIP-Version CRLF, one SP each, no LWS
        # inside the URI (RFC 4475 §3.1.2.8 lwsruri, §3.1.2.9 lwsstart, §3.1.2.10 trws)
        return _unusable_request(parts[0], headers, "Malformed request line")
    method, uri, version = parts
    if method not in KNOWN_METHODS and not is_token(method):
        return _unusable_request(method, headers, "Invalid method in request line")
    # the Request-URI itself is parsed on first access (Request.request_uri); its scheme is
    # the UAS's question (§8.2.2.1, 416): here it only has to look like an absolute URI
    if uri[:1] == "<":
        # §25.1: the Request-URI is a bare URI, never a name-addr (RFC 4475 §3.1.2.7 ltgtruri)
        return _unusable_request(method, headers, "Bad Request-URI")
    if ":" not in uri or not uri.isascii() or not uri.isprintable():
        return _unusable_request(method, headers, "Malformed Request-URI")
    if version == "SIP/2.0":
        return Request(method, uri, headers, b"", version), None
    if version[:4].upper() != "SIP/":
        return _unusable_request(method, headers, "Malformed request line")
    # §7.1: the version string is case-insensitive
    if version.upper() != "SIP/2.0":
        return Request(method, uri, headers, b"", version), SipParseError("Version Not Supported", status=505)
    return Request(method, uri, headers, b"", version), None


def _unusable_request(method: str, headers: Headers, reason: str) -> tuple[Request, SipParseError]:
    """A request whose start line cannot be used: its method as far as it can be read (the
    transport answers no ACK, and checks the CSeq method too), no Request-URI."""
    return Request(method if is_token(method) else "", "", headers), SipParseError(reason)


def _validate(message: Request | Response, fields: dict[str, str], unique: bool) -> None:
    """§8.1.1: the mandatory headers exist once and the ones every layer reads parse.

    ``fields`` maps each header key to its last value; ``unique``: no key repeats."""
    if not unique or not fields.keys() >= _MANDATORY_SET:
        keys = message.headers.columns()[1]
        for key in _MANDATORY:
            if key not in fields:
                raise SipParseError(f"Missing {_PRETTY[key]} header", partial=message)
        for key in _ONCE:
            if keys.count(key) > 1:
                raise SipParseError(f"Multiple {_PRETTY[key]} headers", partial=message)
    # CSeq is read for every message by every layer: parse it now. Via, From and To are
    # parsed on first access (cached); a malformed one raises SipParseError there, which the
    # transaction layer turns into a 400 (it reads the top Via and the tags of every request).
    try:
        cseq = message.headers.views["cseq"] = CSeq.parse(fields["cseq"])
    except SipParseError as exc:
        exc.partial = message
        raise
    if not fields["call-id"]:
        raise SipParseError("Empty Call-ID header", partial=message)
    if isinstance(message, Request):
        if cseq.method != message.method:
            # §8.2 / RFC 4475 §3.1.2.12: CSeq method must match the request method
            raise SipParseError("CSeq method does not match request method", partial=message)
        mf = fields.get("max-forwards")
        if mf is not None:
            if not unique and message.headers.columns()[1].count("max-forwards") > 1:
                raise SipParseError("Multiple Max-Forwards headers", partial=message)
            # §20.22 / §25.1: Max-Forwards = 1*DIGIT, 0-255; leading zeros are allowed
            # (RFC 4475 §3.1.1.1: "0068"), so the length is bounded only once they are gone
            if not (mf.isdigit() and mf.isascii()) or (len(mf) > 3 and len(mf.lstrip("0")) > 3) or int(mf) > 255:
                raise SipParseError("Invalid Max-Forwards header", partial=message)


_PARTIAL_PING = (b"\r", b"\r\n", b"\r\n\r")


class KeepAlive:
    """A CRLF keep-alive ping seen on a stream (RFC 5626 §3.5.1); answer with a single CRLF."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "KeepAlive"


KEEPALIVE = KeepAlive()


class StreamFramer:
    """Cut a TCP/TLS byte stream into SIP messages by Content-Length (§18.3).

    ``feed`` returns complete messages as bytes and :data:`KEEPALIVE` for each double-CRLF ping.
    A message without Content-Length or larger than ``max_size`` raises :class:`SipParseError`;
    the stream cannot be resynchronised after that, so the transport closes it.
    """

    __slots__ = ("_buf", "_scanned", "max_size")

    def __init__(self, max_size: int = 65535) -> None:
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf already searched for the end of the headers
        self.max_size = max_size

    def feed(self, data: bytes) -> list[bytes | KeepAlive]:
        """Add bytes; return every complete message (and keep-alive) now available."""
        buf = self._buf
        buf += data
        out: list[bytes | KeepAlive] = []
        while buf:
            # keep-alives and stray CRLFs between messages
            if buf[0] in (13, 10):
                if buf.startswith(b"\r\n\r\n"):
                    del buf[:4]
                    out.append(KEEPALIVE)
                    continue
                if bytes(buf) in _PARTIAL_PING:
                    break  # wait: may become a double-CRLF ping
                del buf[:1]
                self._scanned = 0
                continue
            head_end, body_start = _find_head_end(buf, self._scanned)
            if head_end < 0:
                if len(buf) > self.max_size:
                    raise SipParseError("Message too large", status=513)
                self._scanned = max(0, len(buf) - 3)  # a terminator may straddle two feeds
                break
            length = _content_length(bytes(buf[:head_end]))
            total = body_start + length
            if total > self.max_size:
                raise SipParseError("Message too large", status=513)
            if len(buf) < total:
                self._scanned = head_end  # resume the search there: same answer, less work
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
            self._scanned = 0
        return out

    @property
    def buffered(self) -> int:
        """Bytes waiting for the rest of a message."""
        return len(self._buf)


def _find_head_end(buf: bytearray, start: int) -> tuple[int, int]:
    """(end of headers, start of body) in ``buf``, or (-1, -1); CRLF or bare-LF line ends."""
    end = buf.find(b"\r\n\r\n", start)
    lf_end = buf.find(b"\n\n", start, end + 1 if end >= 0 else len(buf))
    if lf_end >= 0:
        return lf_end, lf_end + 2
    if end >= 0:
        return end, end + 4
    return -1, -1


def _content_length(head: bytes) -> int:
    for line in head.split(b"\n")[1:]:
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        key = name.strip().lower()
        if key == b"content-length" or key == b"l":
            value = value.strip()
            if not value.isdigit() or len(value) > 9:
                raise SipParseError("Invalid Content-Length")
            return int(value)
    raise SipParseError("Missing Content-Length on stream transport")
