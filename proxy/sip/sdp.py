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
    if not body or (b"\no=" not in body and not body.startswith(b"o=")):
        return body
    # never raise from the media path: a value that cannot go on one SDP line falls back to "-"
    # (still masking the original), an unusable address leaves the original address in place
    if not _safe_field(origin_username):
        origin_username = "-"
    if not _safe_line(session_name):
        session_name = "-"
    if origin_address is not None and not _safe_field(origin_address):
        origin_address = None
    # surrogateescape: bytes that are not UTF-8 (an i= line in another charset) come back as-is
    lines = body.decode("utf-8", "surrogateescape").split("\n")
    done_o = done_s = False
    # slices rather than startswith/endswith: those parse their arguments at a cost per call
    for i, raw in enumerate(lines):
        cr = raw[-1:] == "\r"
        line = raw[:-1] if cr else raw
        kind = line[:2]
        if kind == "m=":
            break  # §5: o= and s= belong to the session section only
        if kind == "o=" and not done_o:
            fields = line[2:].split(" ")
            if len(fields) != 6 or not all(fields):
                return body
            fields[0] = origin_username
            if origin_address is not None:
                fields[4] = "IP6" if ":" in origin_address else "IP4"
                fields[5] = origin_address.strip("[]")
            line = "o=" + " ".join(fields)
            done_o = True
        elif kind == "s=" and not done_s:
            line = "s=" + session_name
            done_s = True
        else:
            continue
        lines[i] = line + "\r" if cr else line
    if not done_o:
        return body
    return "\n".join(lines).encode("utf-8", "surrogateescape")


def sdp_has_media(body: bytes) -> bool:
    """Whether an SDP body describes at least one media stream (an ``m=`` line)."""
    return body.startswith(b"m=") or b"\nm=" in body


def _safe_field(value: str) -> bool:
    return bool(value) and " " not in value and value.isprintable()


def _safe_line(value: str) -> bool:
    # RFC 8866 §5.3: s= must not be empty; a single space is the "no name" convention, "-" ours
    return bool(value) and value.isprintable()
