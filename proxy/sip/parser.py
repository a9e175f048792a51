"""Parse SIP messages from bytes (RFC 3261 §7, §18.3, §25) and frame them on streams.

Runs for every datagram: ``find``/``partition``/``split`` only, no regular expressions.
Anything malformed raises :class:`SipParseError`, never another exception.
"""

from __future__ import annotations

from .errors import SipParseError
from .headers import CSeq, header_key
from .message import Headers, Message, Request, Response

_TOKEN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~")
_MANDATORY = ("via", "from", "to", "call-id", "cseq")
_MAX_HEADERS = 256
_KNOWN_METHODS = frozenset(
    ("INVITE", "ACK", "BYE", "CANCEL", "OPTIONS", "REGISTER", "PRACK", "UPDATE", "INFO",
     "REFER", "MESSAGE", "SUBSCRIBE", "NOTIFY", "PUBLISH")
)
#: header name as written -> canonical key, for names already validated as tokens
_NAME_CACHE: dict[str, str] = {}


def _is_token(text: str) -> bool:
    if not text:
        return False
    for c in text:
        if c not in _TOKEN_CHARS:
            return False
    return True


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


def _parse(data: bytes, stream: bool) -> Request | Response:
    start = 0
    n = len(data)
    # §7.5: ignore CRLFs preceding the start line
    while start < n and data[start] in (13, 10):
        start += 1
    if start >= n:
        raise SipParseError("Empty message")
    end = data.find(b"\r\n\r\n", start)
    if end >= 0:
        body_start = end + 4
        head = data[start:end].decode("utf-8", "surrogateescape")
        lines = head.split("\r\n")
    else:
        end = data.find(b"\n\n", start)
        if end < 0:
            raise SipParseError("Missing empty line after headers")
        body_start = end + 2
        head = data[start:end].decode("utf-8", "surrogateescape")
        lines = [ln.rstrip("\r") for ln in head.split("\n")]

    message = _parse_start_line(lines[0])
    names: list[str] = []
    keys: list[str] = []
    values: list[str] = []
    name_cache = _NAME_CACHE
    for line in lines[1:] if len(lines) > 1 else ():
        name, colon, value = line.partition(":")
        key = name_cache.get(name) if colon else None
        if key is None:
            # slow path: folding, odd spacing, unseen names; validated once then cached
            if not line:
                continue
            c0 = line[0]
            if c0 == " " or c0 == "\t":
                # §7.3.1 line folding: continuation of the previous header value
                if not values:
                    raise SipParseError("Folded line before first header")
                values[-1] = f"{values[-1]} {line.strip()}".strip()
                continue
            if not colon:
                raise SipParseError("Malformed header line (no colon)", partial=_partial(message, names, keys, values))
            name = name.rstrip(" \t")
            if not _is_token(name):
                raise SipParseError("Invalid header name", partial=_partial(message, names, keys, values))
            key = header_key(name)
            if len(name_cache) < 2048:  # bounded: names come from the network
                name_cache[name] = key
        names.append(name)
        keys.append(key)
        values.append(value.strip())
    if len(names) > _MAX_HEADERS:
        raise SipParseError("Too many headers", status=400)
    headers = Headers._from_lists(names, keys, values)
    message.headers = headers

    # body by Content-Length (§18.3, §20.14)
    cl_text = headers.get("content-length")
    available = n - body_start
    if cl_text is None:
        if stream:
            raise SipParseError("Missing Content-Length on stream transport", partial=message)
        message.body = data[body_start:] if available else b""
    else:
        cl_text = cl_text.strip()
        if not cl_text.isdigit() or len(cl_text) > 9:
            raise SipParseError("Invalid Content-Length", partial=message)
        length = int(cl_text)
        if length > available:
            raise SipParseError("Content-Length larger than message", partial=message)
        message.body = data[body_start : body_start + length] if length else b""

    _validate(message)
    return message


def _partial(message: Message, names: list[str], keys: list[str], values: list[str]) -> Message:
    message.headers = Headers._from_lists(list(names), list(keys), list(values))
    if isinstance(message, Request | Response):
        message.body = b""
    return message


def _parse_start_line(line: str) -> Request | Response:
    if line.startswith("SIP/"):
        version, sp, rest = line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not sp or len(code) != 3 or not code.isdigit() or code[0] == "0":
            raise SipParseError("Malformed status line")
        if version != "SIP/2.0":
            raise SipParseError("Unsupported SIP version", status=505)
        return Response(int(code), reason, Headers(), b"", version)
    parts = line.split(" ")
    if len(parts) != 3:
        raise SipParseError("Malformed request line")
    method, uri, version = parts
    if method not in _KNOWN_METHODS and not _is_token(method):
        raise SipParseError("Invalid method in request line")
    if not version.startswith("SIP/"):
        raise SipParseError("Malformed request line")
    if version != "SIP/2.0":
        req = Request(method, uri, Headers(), b"", version)
        raise SipParseError("Version Not Supported", status=505, partial=req)
    if not uri or ":" not in uri:
        raise SipParseError("Malformed Request-URI")
    return Request(method, uri, Headers(), b"", version)


def _validate(message: Request | Response) -> None:
    """§8.1.1: the mandatory headers exist and the ones every layer reads parse."""
    headers = message.headers
    keys = headers._keys
    for key in _MANDATORY:
        if key not in keys:
            raise SipParseError(f"Missing {_PRETTY[key]} header", partial=message)
    values = headers._values
    # CSeq is read for every message by every layer: parse it now. Via, From and To are
    # parsed on first access (cached); a malformed one raises SipParseError there, which the
    # transaction layer turns into a 400 (it reads the top Via and the tags of every request).
    try:
        cseq = headers._cache["cseq"] = CSeq.parse(values[keys.index("cseq")])
    except SipParseError as exc:
        exc.partial = message
        raise
    if not headers.get("call-id"):
        raise SipParseError("Empty Call-ID header", partial=message)
    if isinstance(message, Request):
        if cseq.method != message.method:
            raise SipParseError("CSeq method does not match request method", partial=message)
        mf = headers.get("max-forwards")
        if mf is not None and (not mf.isdigit() or len(mf) > 3):
            raise SipParseError("Invalid Max-Forwards header", partial=message)


_PRETTY = {"via": "Via", "from": "From", "to": "To", "call-id": "Call-ID", "cseq": "CSeq"}


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

    __slots__ = ("_buf", "max_size")

    def __init__(self, max_size: int = 65535) -> None:
        self._buf = bytearray()
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
                if buf in (b"\r", b"\r\n", b"\r\n\r"):
                    break  # wait: may become a double-CRLF ping
                del buf[:1]
                continue
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > self.max_size:
                    raise SipParseError("Message too large", status=513)
                break
            length = _content_length(bytes(buf[:end]))
            total = end + 4 + length
            if total > self.max_size:
                raise SipParseError("Message too large", status=513)
            if len(buf) < total:
                break
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out

    @property
    def buffered(self) -> int:
        """Bytes waiting for the rest of a message."""
        return len(self._buf)


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
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
