"""SDP helpers (RFC 8866, formerly RFC 4566) for what a number-masking B2BUA must change.

Only the ``o=`` (origin) and ``s=`` (session name) lines can name a party: the origin's username
is often the caller's number or account and its address the caller's host. Everything else passes
byte-identical, line endings included, so codecs, media addresses and attributes are untouched.
Bodies that are not SDP we can read come back unchanged: media is not ours to break.
"""

from __future__ import annotations

import functools

__all__ = ["sanitise_sdp", "sdp_has_media"]


def sanitise_sdp(
    body: bytes,
    *,
    origin_username: str = "-",
    session_name: str = "-",
    origin_address: str | None = None,
) -> bytes:
    """Rewrite the ``o=`` username (and unicast address + addrtype when ``origin_address`` is
    given, ``IP6`` when it contains a colon) and the ``s=`` line of the session section.

    ``o=<username> <sess-id> <sess-version> <nettype> <addrtype> <unicast-address>`` (RFC 8866
    §5.2): session id and version are kept, so re-offers stay recognisable to the peer.
    Garbage in (no six-field ``o=`` line before the first ``m=``) means the body is returned unchanged;
    this function never raises.
    """
    if not body:
        return body
    # the first line of each kind: at the start of the body or after a "\n" (byte-wise: in
    # UTF-8 "\n", "\r" and " " never occur inside another character, so nothing is decoded)
    head = body[:2]
    o_at = 0 if head == b"o=" else body.find(b"\no=") + 1
    if not o_at and head != b"o=":
        return body
    m_at = 0 if head == b"m=" else body.find(b"\nm=") + 1
    if m_at and o_at > m_at or head == b"m=":
        return body  # §5: o= and s= belong to the session section only
    o_end = _line_end(body, o_at)
    fields = body[o_at + 2 : o_end].split(b" ")
    if len(fields) != 6 or not all(fields):
        return body
    user, name, addrtype, address = _replacements(origin_username, session_name, origin_address)
    fields[0] = user
    if address is not None:
        fields[4] = addrtype
        fields[5] = address
    o_line = b"o=" + b" ".join(fields)
    s_at = 0 if head == b"s=" else body.find(b"\ns=") + 1
    if not (s_at or head == b"s=") or m_at and s_at > m_at:
        return b"".join((body[:o_at], o_line, body[o_end:]))
    s_end = _line_end(body, s_at)
    if s_at < o_at:
        return b"".join((body[:s_at], name, body[s_end:o_at], o_line, body[o_end:]))
    return b"".join((body[:o_at], o_line, body[o_end:s_at], name, body[s_end:]))


def _line_end(body: bytes, start: int) -> int:
    """Where the line starting at ``start`` (an ``x=`` line) ends, its "\r\n" or "\n" excluded."""
    end = body.find(b"\n", start)
    if end < 0:
        end = len(body)
    return end - 1 if body[end - 1 : end] == b"\r" else end


@functools.lru_cache(maxsize=64)
def _replacements(user: str, name: str, address: str | None) -> tuple[bytes, bytes, bytes, bytes | None]:
    """(o= username, whole s= line, addrtype, address) as bytes, for values fixed by the
    configuration: checked and encoded once. Never raises: a value that cannot go on one SDP
    line falls back to "-" (still masking the original), an unusable address leaves the
    original address in place."""
    if not _safe_field(user):
        user = "-"
    if not _safe_line(name):
        name = "-"
    if address is not None and not _safe_field(address):
        address = None
    return (
        user.encode("utf-8", "surrogateescape"),
        ("s=" + name).encode("utf-8", "surrogateescape"),
        b"IP6" if address is not None and ":" in address else b"IP4",
        address.strip("[]").encode("utf-8", "surrogateescape") if address is not None else None,
    )


def sdp_has_media(body: bytes) -> bool:
    """Whether an SDP body describes at least one media stream (an ``m=`` line)."""
    return body.startswith(b"m=") or b"\nm=" in body


def _safe_field(value: str) -> bool:
    return bool(value) and " " not in value and value.isprintable()


def _safe_line(value: str) -> bool:
    # RFC 8866 §5.3: s= must not be empty; a single space is the "no name" convention, "-" ours
    return bool(value) and value.isprintable()
