"""The one exception of the sans-IO SIP layer."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .message import Request, Response


class SipParseError(ValueError):
    """A message (or part of one) that violates RFC 3261 grammar.

    Carries the status and reason phrase to answer with (like h11's
    ``error_status_hint``) and, when the start line and headers could be read,
    the partially parsed message so that a transport can still build a
    response to it (RFC 3261 §8.2: a 400 needs Via, From, To, Call-ID, CSeq).
    """

    def __init__(
        self, reason: str, status: int = 400, partial: Request | Response | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.partial: Request | Response | None = partial

    def __repr__(self) -> str:
        return f"SipParseError({self.status}, {self.reason!r})"


class SerialiseError(ValueError):
    """A message sipmask built that is not valid SIP (an empty or spaced Request-URI, a CR or
    LF inside a header value, a mandatory header missing): ``serialise`` refuses it, so that
    sipmask never puts a malformed message on the wire. A bug of sipmask's, never the
    peer's input; the reason names the fault and never quotes the message's content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"SerialiseError({self.reason!r})"
