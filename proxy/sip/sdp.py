"""SDP helpers (RFC 8866, formerly RFC 4566) for what a number-masking B2BUA must change.

Only the ``o=`` (origin) and ``s=`` (session name) lines can name a party: the origin's username
is often the caller's number or account and its address the caller's host. Everything else passes
byte-identical, line endings included, so codecs, media addresses and attributes are untouched.
Bodies that are not SDP we can read come back unchanged: media is not ours to break.
"""

from __future__ import annotations

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
    o_at = 0 if body[:2] == b"o=" else body.find(b"\no=") + 1
    if not o_at and body[:2] != b"o=":
        return body
    m_at = 0 if body[:2] == b"m=" else body.find(b"\nm=") + 1
    if m_at and o_at > m_at or body[:2] == b"m=":
        return body  # §5: o= and s= belong to the session section only
    # never raise from the media path: a value that cannot go on one SDP line falls back to "-"
    # (still masking the original), an unusable address leaves the original address in place
    if not _safe_field(origin_username):
        origin_username = "-"
    if not _safe_line(session_name):
        session_name = "-"
    if origin_address is not None and not _safe_field(origin_address):
        origin_address = None
    o_end = _line_end(body, o_at)
    fields = body[o_at + 2 : o_end].split(b" ")
    if len(fields) != 6 or not all(fields):
        return body
    fields[0] = origin_username.encode("utf-8", "surrogateescape")
    if origin_address is not None:
        fields[4] = b"IP6" if ":" in origin_address else b"IP4"
        fields[5] = origin_address.strip("[]").encode("utf-8", "surrogateescape")
    # splice the rewritten lines in, in body order
    edits = [(o_at, o_end, b"o=" + b" ".join(fields))]
    s_at = 0 if body[:2] == b"s=" else body.find(b"\ns=") + 1
    if (s_at or body[:2] == b"s=") and (not m_at or s_at < m_at):
        edits.append((s_at, _line_end(body, s_at), b"s=" + session_name.encode("utf-8", "surrogateescape")))
        edits.sort()
    out = []
    done = 0
    for start, stop, line in edits:
        out.append(body[done:start])
        out.append(line)
        done = stop
    out.append(body[done:])
    return b"".join(out)


def _line_end(body: bytes, start: int) -> int:
    """Where the line starting at ``start`` ends, its "\r\n" or "\n" (or the body) excluded."""
    end = body.find(b"\n", start)
    if end < 0:
        end = len(body)
    return end - 1 if end > start and body[end - 1 : end] == b"\r" else end


def sdp_has_media(body: bytes) -> bool:
    """Whether an SDP body describes at least one media stream (an ``m=`` line)."""
    return body.startswith(b"m=") or b"\nm=" in body


def _safe_field(value: str) -> bool:
    return bool(value) and " " not in value and value.isprintable()


def _safe_line(value: str) -> bool:
    # RFC 8866 §5.3: s= must not be empty; a single space is the "no name" convention, "-" ours
    return bool(value) and value.isprintable()
