"""SIP messages: header order and raw values kept; parsed views computed on demand and cached."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Iterator
from itertools import compress
from typing import Any, TypeVar

from .errors import SerialiseError, SipParseError
from .headers import KEY_CACHE, CSeq, Via, header_key, split_list
from .uri import NameAddr, SipUri, tag_of

_COLON_SP_JOIN = ": ".join

T = TypeVar("T")

#: RFC 3261 §21 reason phrases for the statuses sipmask itself generates.
REASONS: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 200: "OK", 202: "Accepted", 400: "Bad Request", 401: "Unauthorized",
    403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed", 408: "Request Timeout",
    410: "Gone", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 422: "Session Interval Too Small",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 482: "Loop Detected",
    483: "Too Many Hops", 484: "Address Incomplete", 486: "Busy Here", 487: "Request Terminated",
    488: "Not Acceptable Here", 491: "Request Pending", 500: "Server Internal Error",
    501: "Not Implemented", 502: "Bad Gateway", 503: "Service Unavailable",
    504: "Server Time-out", 505: "Version Not Supported", 513: "Message Too Large",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere", 606: "Not Acceptable",
}


class Headers:
    """Ordered header fields. Names keep their spelling; lookup is case-insensitive and
    knows compact forms. Values are kept raw (trimmed) so unknown headers pass untouched."""

    __slots__ = ("_names", "_keys", "_values", "views")

    def __init__(self, items: list[tuple[str, str]] | None = None) -> None:
        self._names: list[str] = []
        self._keys: list[str] = []
        self._values: list[str] = []
        #: the parsed views of these lines (Via, CSeq, From/To and their tags, Contact), by
        #: slot name; emptied whenever a line changes. A reader that has just computed a view
        #: may store it here (the parser keeps the CSeq it checked).
        self.views: dict[str, Any] = {}
        if items:
            cache = KEY_CACHE
            self._names = [name for name, _ in items]
            self._keys = [cache.get(name) or header_key(name) for name in self._names]
            self._values = [value for _, value in items]

    @classmethod
    def from_lists(cls, names: list[str], keys: list[str], values: list[str]) -> Headers:
        """Headers made of three parallel lists (names as written, their ``header_key``, the
        values), adopted, not copied: the builder that passes them may go on filling them
        until the headers are first read (the parser does), and changes nothing after."""
        h = cls.__new__(cls)
        h._names = names
        h._keys = keys
        h._values = values
        h.views = {}
        return h

    def columns(self) -> tuple[list[str], list[str], list[str]]:
        """The lines as the three parallel sequences they are kept in (names as written,
        canonical keys, values), not copies: to read (tuples once settled), or to fill as
        the builder of ``from_lists`` does."""
        return self._names, self._keys, self._values

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(zip(self._names, self._values))

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: str) -> bool:
        return header_key(name) in self._keys

    def items(self) -> list[tuple[str, str]]:
        """All ``(name, value)`` pairs in order."""
        return list(zip(self._names, self._values))

    def keyed(self) -> Iterator[tuple[str, str, str]]:
        """``(canonical_key, name, value)`` triples in order."""
        return iter(zip(self._keys, self._names, self._values))

    def get(self, name: str) -> str | None:
        """First value of the header, or None."""
        key = KEY_CACHE.get(name) or header_key(name)
        keys = self._keys
        # a membership test first: an absent header is common, and a raised ValueError
        # costs more than the second scan of a dozen keys
        return self._values[keys.index(key)] if key in keys else None

    def get_all(self, name: str) -> list[str]:
        """Every line of the header, in order."""
        key = KEY_CACHE.get(name) or header_key(name)
        keys = self._keys
        if key not in keys:
            return []
        return [v for k, v in zip(keys, self._values) if k == key]

    def values(self, name: str) -> list[str]:
        """Every comma-separated value of a list header across all its lines (§7.3.1)."""
        out: list[str] = []
        for v in self.get_all(name):
            if "," in v:
                out.extend(split_list(v))
            else:
                out.append(v.strip())
        return out

    def set(self, name: str, value: str) -> None:
        """Replace every occurrence with one line, at the position of the first (or at the end)."""
        key = header_key(name)
        self.views.clear()
        if type(self._keys) is not list:
            self._thaw()
        for i, k in enumerate(self._keys):
            if k == key:
                self._names[i] = name
                self._values[i] = value
                j = i + 1
                while j < len(self._keys):
                    if self._keys[j] == key:
                        del self._keys[j], self._names[j], self._values[j]
                    else:
                        j += 1
                return
        self._names.append(name)
        self._keys.append(key)
        self._values.append(value)

    def add(self, name: str, value: str, first: bool = False) -> None:
        """Add a line: at the top (before the first line of the same header) or at the end."""
        key = KEY_CACHE.get(name) or header_key(name)
        if self.views:
            self.views.clear()
        if type(self._keys) is not list:
            self._thaw()
        if first:
            pos = self._keys.index(key) if key in self._keys else 0
            self._names.insert(pos, name)
            self._keys.insert(pos, key)
            self._values.insert(pos, value)
        else:
            self._names.append(name)
            self._keys.append(key)
            self._values.append(value)

    def remove(self, name: str) -> int:
        """Remove every line of the header; returns how many were removed."""
        key = header_key(name)
        if key not in self._keys:
            return 0
        self.views.clear()
        if type(self._keys) is not list:
            self._thaw()
        keep = [i for i, k in enumerate(self._keys) if k != key]
        removed = len(self._keys) - len(keep)
        self._names = [self._names[i] for i in keep]
        self._keys = [self._keys[i] for i in keep]
        self._values = [self._values[i] for i in keep]
        return removed

    def drop_lines(self, indices: Iterable[int]) -> None:
        """Remove the lines at these positions (others keep their order)."""
        doomed = set(indices)
        if not doomed:
            return
        self.views.clear()
        if type(self._keys) is not list:
            self._thaw()
        keep = [i for i in range(len(self._keys)) if i not in doomed]
        self._names = [self._names[i] for i in keep]
        self._keys = [self._keys[i] for i in keep]
        self._values = [self._values[i] for i in keep]

    def set_top_via(self, via: Via) -> None:
        """Replace the topmost Via value (the first of its line) by ``via``, in place: the
        other values and lines keep their order, which ``set`` would fold into one line."""
        if type(self._keys) is not list:
            self._thaw()
        values = self._values
        index = self._keys.index("via")
        first = values[index]
        if "," in first:
            parts = split_list(first)
            parts[0] = str(via)
            values[index] = ", ".join(parts)
        else:
            values[index] = str(via)
        views = self.views
        views.pop("via", None)
        views["top_via"] = via

    def settle(self) -> None:
        """From now on these headers are only read or re-sent (a transaction lingering after
        its final response, RFC 3261 §17 / RFC 6026): drop the parsed views and keep the lines
        in tuples. Tuples of strings and an emptied dict are not tracked by the cyclic GC,
        whose pauses grow with what it tracks, and calls leave their transactions behind for
        32 s. Reads work as before and views are recomputed on demand; a change (``set``,
        ``add``, ``remove``) turns the lines back into lists first."""
        self.views = {}  # a new empty dict is untracked; a cleared one stays tracked
        if type(self._keys) is list:
            # read-only from here; the mutators call _thaw() before changing anything
            self._names = tuple(self._names)  # type: ignore[assignment]
            self._keys = tuple(self._keys)  # type: ignore[assignment]
            self._values = tuple(self._values)  # type: ignore[assignment]

    def _thaw(self) -> None:
        self._names = list(self._names)
        self._keys = list(self._keys)
        self._values = list(self._values)

    def cached(self, slot: str, compute: Callable[[], T]) -> T:
        """Memoise a parsed view until the headers change."""
        cache = self.views
        if slot in cache:
            return cache[slot]  # type: ignore[no-any-return]
        value = compute()
        cache[slot] = value
        return value

    def extend_from(self, source: Headers, keep: Container[str]) -> None:
        """Append the lines of ``source`` whose canonical key is in ``keep``, in order."""
        if self.views:
            self.views.clear()
        if type(self._keys) is not list:
            self._thaw()
        names = self._names
        keys = self._keys
        values = self._values
        for key, name, value in zip(source._keys, source._names, source._values):
            if key in keep:
                keys.append(key)
                names.append(name)
                values.append(value)

    def copy(self) -> Headers:
        """A shallow copy (strings are immutable)."""
        return Headers.from_lists(list(self._names), list(self._keys), list(self._values))

    def render(self, body_length: int) -> list[str]:
        """Header lines with Content-Length set to the body's real length (added when absent)."""
        names = self._names
        keys = self._keys
        lines = list(map(_COLON_SP_JOIN, zip(names, self._values)))  # C loop, no frame per line
        count = keys.count("content-length")
        if count == 0:
            lines.append(f"Content-Length: {body_length}")
        elif count == 1:
            i = keys.index("content-length")
            lines[i] = f"{names[i]}: {body_length}"
        else:
            first = keys.index("content-length")
            lines[first] = f"{names[first]}: {body_length}"
            lines = [ln for i, ln in enumerate(lines) if i <= first or keys[i] != "content-length"]
        return lines

    def wire(self, body_length: int) -> str:
        """``render``'s lines joined by CRLF: the usual case (no Content-Length line yet, as in
        every message sipmask builds) without the intermediate list."""
        if "content-length" in self._keys:
            return "\r\n".join(self.render(body_length))
        lines = "\r\n".join(map(_COLON_SP_JOIN, zip(self._names, self._values)))
        return f"{lines}\r\nContent-Length: {body_length}" if lines else f"Content-Length: {body_length}"


#: a cache entry not computed yet (a tag may be None)
_UNREAD: Any = object()


def _read_tag(headers: Headers, key: str, slot: str) -> str | None:
    """The tag of From or To (``key``), from the parsed header if there is one, else by
    ``tag_of``; remembered in the headers' cache under ``slot``."""
    cache = headers.views
    value: NameAddr | None = cache.get(key)
    tag = cache[slot] = value.params.get("tag") if value is not None else tag_of(required_value(headers, key))
    return tag


def required_value(headers: Headers, key: str) -> str:
    """The first value of the header with canonical ``key``; SipParseError when absent."""
    try:
        return headers._values[headers._keys.index(key)]
    except ValueError:
        raise SipParseError(f"Missing {key} header") from None


#: the views slot that says a request passed ``check`` (its Request-URI): every change to the
#: header lines empties the views, so a request the transaction layer checked is not checked
#: again when serialised, and one changed since is. ``check`` costs ~7k instructions (the six
#: list scans ~4k, the join of the values ~2.6k; cachegrind), so it runs once per request the
#: TU sends, and ``serialise`` runs it only on a request not checked (or changed) since
_CHECKED = "checked"

#: the headers without which no message is serialised (the parser requires them too, so a
#: received message always serialises: the trace log does that), and §8.1.1's six that every
#: request sipmask sends must carry (``Request.check``, which the transaction layer runs on
#: what the TU hands it; the parser lets a missing Max-Forwards in)
_MESSAGE_KEYS = frozenset(("via", "from", "to", "call-id", "cseq"))
_REQUEST_KEYS = _MESSAGE_KEYS | {"max-forwards"}
_PRETTY = {"via": "Via", "max-forwards": "Max-Forwards", "from": "From", "to": "To",
           "call-id": "Call-ID", "cseq": "CSeq"}


def _missing(headers: Headers, mandatory: frozenset[str]) -> str:
    """The reason of ``check``'s refusal for a mandatory header missing."""
    absent = [key for key in _PRETTY if key in mandatory and key not in headers.columns()[1]]
    return f"Missing {_PRETTY[absent[0]]} header"


class Message:
    """Common part of :class:`Request` and :class:`Response`."""

    __slots__ = ("headers", "body")

    headers: Headers
    body: bytes

    # -- parsed views (cached in Headers until it changes) -------------------------------------
    # The transaction layer reads top_via, cseq and the tags of every message: these read the
    # cache dict directly rather than through Headers.cached (a closure per call, measured).
    @property
    def call_id(self) -> str:
        """The Call-ID value."""
        return required_value(self.headers, "call-id")

    @property
    def cseq(self) -> CSeq:
        """The parsed CSeq."""
        h = self.headers
        value: CSeq | None = h.views.get("cseq")
        if value is None:
            value = h.views["cseq"] = CSeq.parse(required_value(h, "cseq"))
        return value

    @property
    def from_(self) -> NameAddr:
        """The parsed From header."""
        h = self.headers
        value: NameAddr | None = h.views.get("from")
        if value is None:
            value = h.views["from"] = NameAddr.parse(required_value(h, "from"))
        return value

    @property
    def to(self) -> NameAddr:
        """The parsed To header."""
        h = self.headers
        value: NameAddr | None = h.views.get("to")
        if value is None:
            value = h.views["to"] = NameAddr.parse(required_value(h, "to"))
        return value

    # The tags are read for every message (transaction matching, dialogs); most From/To
    # values are never needed whole, so the tag is read by ``tag_of`` (no NameAddr built for
    # the usual forms, same result and errors) and cached on its own.
    @property
    def from_tag(self) -> str | None:
        """The From tag."""
        tag = self.headers.views.get("from_tag", _UNREAD)
        return _read_tag(self.headers, "from", "from_tag") if tag is _UNREAD else tag

    @property
    def to_tag(self) -> str | None:
        """The To tag."""
        tag = self.headers.views.get("to_tag", _UNREAD)
        return _read_tag(self.headers, "to", "to_tag") if tag is _UNREAD else tag

    @property
    def via(self) -> list[Via]:
        """Every Via value, topmost first."""
        h = self.headers
        value: list[Via] | None = h.views.get("via")
        if value is None:
            value = h.views["via"] = [Via.parse(v) for v in h.values("via")]
        return value

    @property
    def top_via(self) -> Via:
        """The topmost Via (§8.2.6 / §17.2.3 key)."""
        h = self.headers
        value: Via | None = h.views.get("top_via")
        if value is None:
            keys = h._keys
            if "via" not in keys:
                raise SipParseError("Missing Via header")
            first = h._values[keys.index("via")]
            if "," in first:  # several values on the first line (§7.3.1)
                first = split_list(first)[0] if '"' in first else first.split(",", 1)[0]
            value = h.views["top_via"] = Via.parse(first)
        return value

    @property
    def branch(self) -> str | None:
        """Branch of the top Via."""
        value: Via | None = self.headers.views.get("top_via")
        return (value or self.top_via).params.get("branch")

    def contacts(self) -> list[NameAddr]:
        """Parsed Contact values (``*`` is returned as a NameAddr with uri ``*``)."""
        h = self.headers
        value: list[NameAddr] | None = h.views.get("contact")
        if value is None:
            value = h.views["contact"] = [
                NameAddr("*") if v == "*" else NameAddr.parse(v) for v in h.values("contact")
            ]
        return value

    def serialise(self) -> bytes:
        """The wire form. Content-Length always reflects the body. Raises
        :class:`SerialiseError` rather than render a message that is not valid SIP."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise :class:`SerialiseError` if this message may not be sent (``serialise``'s
        refusal, found before any line is rendered): for the transaction layer, which checks
        what the TU hands it, so that the TU's guard sees the fault where it was made."""
        raise NotImplementedError


class Request(Message):
    """A SIP request (§7.1)."""

    __slots__ = ("method", "uri", "version", "_ruri")

    def __init__(
        self,
        method: str,
        uri: str,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        self.method = method
        self.uri = uri
        self.version = version
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self._ruri: SipUri | None = None

    @property
    def request_uri(self) -> SipUri:
        """The Request-URI, parsed (cached while ``uri`` is unchanged)."""
        r = self._ruri
        if r is None or str(r) != self.uri:
            r = self._ruri = SipUri.parse(self.uri)
        return r

    def serialise(self) -> bytes:
        body = self.body
        headers = self.headers
        uri = self.uri
        if headers.views.get(_CHECKED) is not uri:
            # not checked (the transaction layer checks every request the TU hands it; not
            # those it derives, CANCEL and the ACK of a 300-699) or changed since
            self.check(_MESSAGE_KEYS)
        lines = headers.wire(len(body))
        head = f"{self.method} {uri} {self.version}\r\n{lines}\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + body

    def check(self, mandatory: frozenset[str] = _REQUEST_KEYS) -> None:
        h = self.headers
        uri = self.uri
        if not uri or " " in uri or not uri.isprintable():  # CR, LF, TAB are not printable
            # §7.1 / §25.1: Request-URI is an absolute URI, no LWS (a BYE once went out as
            # "BYE  SIP/2.0" for a dialog without remote target)
            raise SerialiseError("Empty or malformed Request-URI")
        keys = h._keys
        # inline tests, no loop or temporary set: this runs once for every message sent
        if not ("via" in keys and "from" in keys and "to" in keys and "call-id" in keys
                and "cseq" in keys and ("max-forwards" in keys or mandatory is _MESSAGE_KEYS)):
            raise SerialiseError(_missing(h, mandatory))
        values = "".join(h._values)  # one C scan of every value, not a loop over the lines
        if "\r" in values or "\n" in values:
            raise SerialiseError("CR or LF inside a header value")
        h.views[_CHECKED] = uri

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.uri}>"


class Response(Message):
    """A SIP response (§7.2)."""

    __slots__ = ("status", "reason", "version")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        self.status = status
        self.reason = reason if reason is not None else REASONS.get(status, "Unknown")
        self.version = version
        self.headers = headers if headers is not None else Headers()
        self.body = body

    def serialise(self) -> bytes:
        body = self.body
        headers = self.headers
        reason = self.reason
        if "\r" in reason or "\n" in reason:
            # a response copies its five mandatory lines from a parsed request (build_response;
            # parsed values hold no CR or LF), so only what its builder adds could break it:
            # the whole ``check`` runs where a response is built from a partial request (the
            # 400s of the transports and of the transaction layer), here only the reason phrase
            self.check()  # raises
        lines = headers.wire(len(body))
        head = f"{self.version} {self.status} {reason}\r\n{lines}\r\n\r\n"
        return head.encode("utf-8", "surrogateescape") + body

    def check(self, mandatory: frozenset[str] = _MESSAGE_KEYS) -> None:
        h = self.headers
        reason = self.reason
        if "\r" in reason or "\n" in reason:
            raise SerialiseError("CR or LF inside the reason phrase")
        keys = h._keys
        if not ("via" in keys and "from" in keys and "to" in keys and "call-id" in keys
                and "cseq" in keys):
            raise SerialiseError(_missing(h, mandatory))
        values = "".join(h._values)
        if "\r" in values or "\n" in values:
            raise SerialiseError("CR or LF inside a header value")
        h.views[_CHECKED] = reason

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


_RESPONSE_COPY = frozenset(("via", "from", "to", "call-id", "cseq"))
_IS_RESPONSE_COPY = _RESPONSE_COPY.__contains__


def build_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> Response:
    """A response to ``request`` per RFC 3261 §8.2.6: Via (all), From, To, Call-ID and CSeq
    copied verbatim; a To tag added when given and the request had none (§8.2.6.2)."""
    h = request.headers
    req_keys = h._keys
    req_values = h._values
    # which lines are copied, then the copies: C loops (no comprehension frames)
    copied = list(map(_IS_RESPONSE_COPY, req_keys))
    names = list(compress(h._names, copied))
    keys = list(compress(req_keys, copied))
    values = list(compress(req_values, copied))
    if to_tag and status != 100 and "to" in keys:
        for i, key in enumerate(keys):
            if key == "to" and not _has_tag(request, values[i]):
                values[i] = f"{values[i]};tag={to_tag}"
    headers = Headers.from_lists(names, keys, values)
    if status == 100 and "timestamp" in req_keys:  # §8.2.6.1
        headers.add("Timestamp", req_values[req_keys.index("timestamp")])
    if extra:
        for name, value in extra:
            headers.add(name, value)
    return Response(status, reason, headers, body)


def _has_tag(request: Request, raw_to: str) -> bool:
    try:
        return request.to_tag is not None
    except SipParseError:
        return "tag=" in raw_to.lower()
