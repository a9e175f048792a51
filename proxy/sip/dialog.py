"""RFC 3261 §12 dialogs: creation on either side, in-dialog requests, CSeq and target refresh.

A :class:`Dialog` is a plain record plus the §12 rules; it sends nothing itself. Route set and
targets are kept as raw header values / URI strings so they pass through untouched. A UAS
dialog keeps the raw To, From and Record-Route values of its creating request and parses its
URIs and route set from them when first needed (a caller-side dialog of the B2BUA sends
nothing unless the callee hangs up). Requests are built straight into :class:`Headers` lists,
their header keys known.
"""

from __future__ import annotations

import enum
import functools

from .errors import SipParseError
from .message import Headers, Request, Response, required_value
from .uri import NameAddr, SipUri, parse_params, plain_span

#: methods whose requests (and 2xx responses) refresh the remote target (§12.2, RFC 3311)
TARGET_REFRESH_METHODS = frozenset(("INVITE", "UPDATE"))


def _without_tag(value: NameAddr) -> str:
    params = {k: v for k, v in value.params.items() if k != "tag"}
    return str(NameAddr(value.uri, value.display, params, value.angle))


def _without_tag_of(message: Request | Response, key: str) -> str:
    """``_without_tag`` of the message's From or To (``key``). The usual ``<uri>`` or
    ``<uri>;tag=x`` gives ``<uri>`` by slicing (what ``str(NameAddr)`` renders for it);
    anything else, or a value already parsed, goes through ``NameAddr``."""
    h = message.headers
    parsed: NameAddr | None = h.views.get(key)
    if parsed is None:
        text = required_value(h, key)
        span = plain_span(text)
        if span is not None and span[0] == 0:
            rest = text[span[1] + 1 :]
            if not rest or (rest[:5] == ";tag=" and ";" not in rest[5:]):
                return text[: span[1] + 1]
        parsed = message.from_ if key == "from" else message.to
    return _without_tag(parsed)


def _first_contact(message: Request | Response) -> str | None:
    h = message.headers
    if "contact" not in h.views:
        # one plain ``<uri>`` or ``<uri>;params`` (a UA's usual Contact): its URI by slicing,
        # the parameters checked as the full parse checks them; anything else is parsed
        lines = h.get_all("contact")
        if len(lines) == 1 and "," not in lines[0]:
            text = lines[0]
            span = plain_span(text)
            if span is not None and span[0] == 0:
                rest = text[span[1] + 1 :]
                if rest[:1] == ";":
                    parse_params(rest[1:], "address")
                if not rest or rest[0] == ";":
                    return _remote_target(text[1 : span[1]])
    contacts = message.contacts()
    if not contacts:
        return None
    return _remote_target(contacts[0].uri)


def _remote_target(uri: str) -> str:
    """``uri`` if it can be a dialog's remote target (§8.1.1.8, §12.1: a SIP or SIPS URI;
    anything else would become the Request-URI of every request sent in the dialog), else
    SipParseError. Checked once per distinct URI: a peer's Contact recurs over its calls."""
    if not _is_sip_uri(uri):
        raise SipParseError("Bad Contact: not a SIP URI")
    return uri


@functools.lru_cache(maxsize=4096)
def _is_sip_uri(uri: str) -> bool:
    if uri[:4].lower() != "sip:" and uri[:5].lower() != "sips:":
        return False
    try:
        SipUri.parse(uri)
    except SipParseError:
        return False
    return True


def _is_loose(route: str) -> bool:
    return "lr" in NameAddr.parse(route).sip_uri().params


class DialogState(enum.StrEnum):
    """§12: a dialog is early (created by a provisional), confirmed (by a 2xx), or terminated.
    String members: a state compares equal to its RFC name."""

    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


# read once: a member looked up on its enum class costs ~70 ns on CPython 3.11 (a property)
_EARLY = DialogState.EARLY
_CONFIRMED = DialogState.CONFIRMED


class Dialog:
    """One dialog (§12): identified by Call-ID, local tag and remote tag."""

    __slots__ = (
        "call_id", "local_tag", "remote_tag", "local_cseq", "remote_cseq", "remote_target",
        "secure", "state", "_local_uri", "_remote_uri", "_route_set", "_origin",
    )

    def __init__(
        self,
        call_id: str,
        local_tag: str,
        remote_tag: str,
        local_uri: str,
        remote_uri: str,
        local_cseq: int,
        remote_cseq: int | None,
        remote_target: str,
        route_set: list[str],
        secure: bool = False,
        state: DialogState = DialogState.EARLY,
    ) -> None:
        self.call_id = call_id
        self.local_tag = local_tag
        #: "" while the peer has not sent a tag (§12.1.2: "the null value")
        self.remote_tag = remote_tag
        self._local_uri = local_uri
        self._remote_uri = remote_uri
        self.local_cseq = local_cseq
        self.remote_cseq = remote_cseq
        self.remote_target = remote_target
        self._route_set = route_set
        self.secure = secure
        self.state = state
        #: raw To, From and Record-Route values of the dialog-creating request (UAS), parsed
        #: when first needed; the strings, not the request, so a held call does not keep it
        self._origin: tuple[str, str, list[str]] | None = None

    # ------------------------------------------------------------------ creation (§12.1)

    @classmethod
    def uac(cls, request: Request, response: Response) -> Dialog:
        """§12.1.2: the dialog a UAC gets from a 101-199 with a To tag or a 2xx."""
        return cls(
            request.call_id,
            request.from_tag or "",
            response.to_tag or "",
            _without_tag_of(request, "from"),
            _without_tag_of(request, "to"),
            request.cseq.number,
            None,
            # remote target: the response's Contact (a provisional may lack one: keep the R-URI)
            _first_contact(response) or request.uri,
            # route set: the response's Record-Route, reversed
            response.headers.values("record-route")[::-1],
            # §12.1.2: secure when the request went over TLS to a sips: Request-URI
            request.uri[:5].lower() == "sips:",
            _CONFIRMED if 200 <= response.status < 300 else _EARLY,
        )

    @classmethod
    def uac_of_response(cls, response: Response) -> Dialog:
        """§13.2.2.4: the dialog of a 2xx whose request is gone (its client transaction has
        ended), taken from the response alone, which copies the request's Call-ID, From, To
        and CSeq (§8.2.6.2): remote target from its Contact (its To URI if it has none), route
        set from its Record-Route reversed. Enough to ACK the 2xx and send BYE."""
        target = _first_contact(response) or response.to.uri
        return cls(
            response.call_id,
            response.from_tag or "",
            response.to_tag or "",
            _without_tag_of(response, "from"),
            _without_tag_of(response, "to"),
            response.cseq.number,
            None,
            target,
            response.headers.values("record-route")[::-1],
            target[:5].lower() == "sips:",
            _CONFIRMED,
        )

    @classmethod
    def uas(cls, request: Request, local_tag: str, response: Response | None = None) -> Dialog:
        """§12.1.1: the dialog a UAS creates when it answers with a 101-199 or a 2xx
        (``response``, None meaning early); ``local_tag`` is the To tag it puts in responses.
        The URIs and the route set are parsed from ``request``'s header values when first
        needed."""
        dialog = cls(
            request.call_id,
            local_tag,
            request.from_tag or "",
            "",
            "",
            # §12.1.1: the local sequence number starts empty; the first request uses 1
            0,
            request.cseq.number,
            _first_contact(request) or "",
            [],
            request.uri[:5].lower() == "sips:",
            _CONFIRMED if response is not None and 200 <= response.status < 300 else _EARLY,
        )
        h = request.headers
        dialog._origin = (h.get("to") or "", h.get("from") or "", h.values("record-route"))
        return dialog

    def _read_origin(self) -> None:
        """§12.1.1: local URI = To, remote URI = From (without tags), route set = the
        request's Record-Route in order."""
        origin = self._origin
        if origin is not None:
            self._origin = None
            to, from_, route_set = origin
            self._local_uri = _without_tag(NameAddr.parse(to))
            self._remote_uri = _without_tag(NameAddr.parse(from_))
            self._route_set = route_set

    @property
    def local_uri(self) -> str:
        """From (UAC) / To (UAS) of the dialog-creating request, without tag."""
        self._read_origin()
        return self._local_uri

    @property
    def remote_uri(self) -> str:
        """To (UAC) / From (UAS) of the dialog-creating request, without tag."""
        self._read_origin()
        return self._remote_uri

    @property
    def route_set(self) -> list[str]:
        """Route header values, in the order to put them in requests."""
        self._read_origin()
        return self._route_set

    @route_set.setter
    def route_set(self, value: list[str]) -> None:
        self._read_origin()
        self._route_set = value

    def confirm(self, response: Response, *, uac: bool = True) -> None:
        """§12.1.2 / §13.2.2.4: an early dialog becomes confirmed by a 2xx. On the UAC side
        the route set and remote target are recomputed from the 2xx."""
        if uac:
            self.route_set = response.headers.values("record-route")[::-1]
            self.remote_target = _first_contact(response) or self.remote_target
        self.state = _CONFIRMED

    @property
    def id(self) -> tuple[str, str, str]:
        """§12: (Call-ID, local tag, remote tag)."""
        return (self.call_id, self.local_tag, self.remote_tag)

    # ------------------------------------------------------------------ UAC behaviour (§12.2.1)

    def create_request(
        self,
        method: str,
        via: str,
        contact: str | None,
        *,
        max_forwards: int = 70,
        cseq: int | None = None,
    ) -> Request:
        """§12.2.1.1: a request within the dialog. The CSeq number is incremented, except for
        ACK and CANCEL, which reuse the INVITE's (pass it as ``cseq``; default: the current
        local CSeq). ``cseq`` given for another method sets the local CSeq to it."""
        if method in ("ACK", "CANCEL"):
            number = cseq if cseq is not None else self.local_cseq
        else:
            number = cseq if cseq is not None else self.local_cseq + 1
            self.local_cseq = number
        self._read_origin()
        request_uri, routes = self._request_uri_and_routes()
        names = ["Via", "Max-Forwards"]
        keys = ["via", "max-forwards"]
        values = [via, str(max_forwards)]
        if routes:
            names.extend(["Route"] * len(routes))
            keys.extend(["route"] * len(routes))
            values.extend(routes)
        remote_uri = self._remote_uri
        names += ("From", "To", "Call-ID", "CSeq")
        keys += ("from", "to", "call-id", "cseq")
        values += (
            f"{self._local_uri};tag={self.local_tag}",
            f"{remote_uri};tag={self.remote_tag}" if self.remote_tag else remote_uri,
            self.call_id,
            f"{number} {method}",
        )
        if contact is not None:
            names.append("Contact")
            keys.append("contact")
            values.append(contact)
        return Request(method, request_uri, Headers.from_lists(names, keys, values))

    def _request_uri_and_routes(self) -> tuple[str, list[str]]:
        route_set = self._route_set
        if not route_set:
            return self.remote_target, []
        if _is_loose(route_set[0]):
            # §12.2.1.1 loose routing: R-URI = remote target, Route = route set
            return self.remote_target, list(route_set)
        # §12.2.1.1 strict routing: R-URI = first route (URI only), Route = the rest + remote target
        first = NameAddr.parse(route_set[0]).uri
        return first, [*route_set[1:], f"<{self.remote_target}>"]

    def next_hop(self) -> str:
        """The URI to send the next request to (§8.1.2): the first route when there is a route
        set (with strict routing that is also the Request-URI), else the remote target."""
        route_set = self.route_set
        if route_set:
            return NameAddr.parse(route_set[0]).uri
        return self.remote_target

    # ------------------------------------------------------------------ UAS behaviour (§12.2.2)

    def receive_request(self, request: Request) -> int | None:
        """§12.2.2: check and record the remote CSeq. Returns 500 (the status the TU answers)
        when the number is lower than the last one seen; ACK and CANCEL are not checked."""
        if request.method in ("ACK", "CANCEL"):
            return None
        number = request.cseq.number
        if self.remote_cseq is not None and number < self.remote_cseq:
            return 500
        self.remote_cseq = number
        return None

    def target_refresh(self, message: Request | Response) -> None:
        """§12.2: a re-INVITE or UPDATE (or its 2xx) with a Contact replaces the remote target."""
        if isinstance(message, Response):
            if not 200 <= message.status < 300 or message.cseq.method not in TARGET_REFRESH_METHODS:
                return
        elif message.method not in TARGET_REFRESH_METHODS:
            return
        target = _first_contact(message)
        if target is not None:
            self.remote_target = target

    def __repr__(self) -> str:
        return f"<Dialog {self.call_id} {self.local_tag}/{self.remote_tag} {self.state}>"
