"""SDP (RFC 8866) validated and rebuilt from a whitelist, for what crosses B2BUA legs.

A session description is parsed line by line (bytes, nothing decoded) and written anew: only
the line types and ``a=`` attributes the whitelist names cross, the origin (``o=``) and session
name (``s=``) are rebuilt from configuration, everything else (``i= u= e= p= k= z=``,
``a=ssrc``, ``a=msid``, ``a=tool``, ``a=label``, vendor ``a=x-...``, ICE candidates unless
whitelisted) is dropped. A body that does not follow the grammar is never passed on:
:func:`rebuild_sdp` raises :class:`SdpError`, whose reason names the line number and line
type only (never a byte of the line, which may hold a number).

The media lines (``c=``, ``m=``, ``a=rtcp``) keep their addresses and ports: in
signalling-only mode they are what lets the media flow; a media relay replaces them and then
calls :func:`rebuild_sdp` on the SDP it returns.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from typing import Final

from .grammar import TOKEN_CHARS

__all__ = [
    "DEFAULT_ATTRIBUTES",
    "DEFAULT_LINES",
    "KNOWN_LINES",
    "REQUIRED_LINES",
    "SdpError",
    "SdpWhitelist",
    "rebuild_sdp",
    "sdp_has_media",
]

REQUIRED_LINES: Final = frozenset("vostm")
"""Line types every rebuilt SDP has (RFC 8866 §5: v, o, s, t; m for any media at all)."""

KNOWN_LINES: Final = frozenset("vosiuepcbtrzkam")
"""The line types of RFC 8866 §5 (``a`` is governed by the attribute whitelist)."""

DEFAULT_LINES: Final = frozenset("vosctmb")
"""Line types that cross by default: version, origin (rebuilt), session name (rebuilt),
connection, timing, media, bandwidth."""

DEFAULT_ATTRIBUTES: Final = frozenset(
    {
        # RFC 8866 §6: codecs, packetisation, direction
        "rtpmap", "fmtp", "ptime", "maxptime", "sendrecv", "sendonly", "recvonly", "inactive",
        # RFC 3605 (an address, like c=), RFC 5761, RFC 4585
        "rtcp", "rtcp-mux", "rtcp-fb",
        # RFC 3108 silence suppression
        "silencesupp",
        # RFC 4568 SDES-SRTP keys (fresh per session, needed by RTP/SAVP); RFC 4145 setup
        "crypto", "setup", "connection",
        # T.38 fax (ITU-T T.38 Annex D): numeric parameters only
        "t38*",
    }
)
"""Attributes that cross by default (lower case; a trailing ``*`` matches a prefix). Not
here, so dropped: ICE (``candidate`` and ``ice-*`` carry the party's host and reflexive
addresses), ``fingerprint`` (a DTLS certificate hash, often stable per device), ``ssrc``
(CNAME holds user@host), ``msid``, ``tool``, ``label``, ``x-*`` and every unknown attribute."""

_TOKEN: Final = bytes(sorted(ord(c) for c in TOKEN_CHARS))
_EQ: Final = 61  # "="
_C_COMMON: Final = frozenset({b"c=IN IP4 ", b"c=IN IP6 "})
# (bytes.isdigit, used for numbers below, is ASCII 0-9 only and False when empty)
_TYPE_LETTERS: Final = frozenset(b"abcdefghijklmnopqrstuvwxyz")


def _strict_grammar() -> re.Pattern[bytes]:
    """RFC 8866 §9 for the strict form most bodies take (CRLF line ends, one space between
    fields, ``o=`` with numeric ids): what :func:`_rebuild_lines` accepts, restricted to it.
    Anything else goes to the line reader, which accepts the rest and names what is wrong."""
    # possessive quantifiers (*+, ++): a field never gives characters back, which spares the
    # engine its backtracking bookkeeping
    token = b"[" + re.escape(_TOKEN) + b"]++"
    value = rb"[^\r\n\x00]*+"
    field_ = rb"[^ \r\n\x00]++"
    line = b"|".join((
        b"c=" + token + b" " + token + b" " + field_,
        b"b=" + token + rb":[0-9]++",
        b"a=" + token + b"(?::" + value + b")?",
        rb"[d-lnpqruw-z]=" + value,  # every other letter (v o s t m have their own place)
    ))
    timing = rb"t=[0-9]++ [0-9]++\r\n"
    media = b"m=" + token + rb" [0-9]++(?:/[0-9]++)? " + field_ + b"(?: " + field_ + rb")+\r\n"
    return re.compile(
        rb"(?P<head>v=0\r\no=[^\s\x00]++ (?P<id>[0-9]++) (?P<version>[0-9]++) (?P<net>" + token + b") (?P<addrtype>"
        + token + rb") (?P<address>[^\s\x00]++)\r\ns=" + value + rb"\r\n)"
        + b"(?:(?:" + line + rb")\r\n)*" + timing + b"(?:(?:" + line + rb")\r\n|" + timing + b")*"
        + b"(?:" + media + b"(?:(?:" + line + rb")\r\n)*)*" + rb"(?:\r\n)*"
    )


_STRICT_SDP: Final = _strict_grammar()


def _drop_pattern(kinds: frozenset[str], names: frozenset[bytes], prefixes: tuple[bytes, ...]) -> re.Pattern[bytes]:
    """The lines a whitelist drops, for a body :data:`_STRICT_SDP` matched: ``a=`` lines whose
    name is not allowed (any case) and lines of a type not allowed (t and m always are)."""
    token = b"[" + re.escape(_TOKEN) + b"]*"
    allowed = [re.escape(n) for n in sorted(names, key=len, reverse=True)]
    allowed += [re.escape(p) + token for p in prefixes]
    bad_attribute = b"a=(?!(?i:" + b"|".join(allowed) + rb")(?::|\r))" if allowed else b"a="
    dropped = sorted(set("bcdefghijklnpqruwxyz") - kinds)
    alternatives = [bad_attribute]
    if dropped:
        alternatives.append(b"[" + "".join(dropped).encode() + b"]=")
    return re.compile(rb"\n(?:" + b"|".join(alternatives) + rb")[^\r\n]*\r(?=\n)")


class SdpError(ValueError):
    """An SDP body that does not parse. ``reason`` names the line (number and type), never its
    content; it is fit for a SIP reason phrase and a log line."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _is_token(value: bytes) -> bool:
    # letters and digits alone are the common case (IN, IP4, audio, rtpmap), checked in C;
    # else every byte a token character: deleting them all leaves nothing
    return value.isalnum() or (bool(value) and not value.translate(None, _TOKEN))


@dataclass(frozen=True, slots=True)
class SdpWhitelist:
    """What of an SDP crosses legs, and what the rebuilt origin and session name say.

    Args:
        lines: line types that cross (letters of RFC 8866 §5; must include v, o, s, t, m;
            ``a`` lines are decided by ``attributes``).
        attributes: ``a=`` attribute names that cross, any case; a trailing ``*`` matches
            every name with that prefix.
        origin_username: the ``o=`` username written (no spaces).
        session_name: the ``s=`` value written (one printable line).

    Raises:
        ValueError: an unknown line type, a required one left out, an attribute that is not a
            token, an unusable username or session name.
    """

    lines: frozenset[str] = DEFAULT_LINES
    attributes: frozenset[str] = DEFAULT_ATTRIBUTES
    origin_username: str = "-"
    session_name: str = "-"
    _kinds: frozenset[int] = field(init=False, repr=False, compare=False)
    _names: frozenset[bytes] = field(init=False, repr=False, compare=False)
    _prefixes: tuple[bytes, ...] = field(init=False, repr=False, compare=False)
    _o_user: bytes = field(init=False, repr=False, compare=False)
    _s_line: bytes = field(init=False, repr=False, compare=False)
    #: the lines this whitelist drops from a body in the strict form (see _drop_pattern)
    _drop: re.Pattern[bytes] = field(init=False, repr=False, compare=False)
    #: attribute names seen (token or not, as in the SDP) -> whether they cross; bounded
    _attribute_cache: dict[bytes, bool] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        lines = frozenset(self.lines)
        unknown = sorted(k for k in lines if k not in KNOWN_LINES)
        if unknown:
            raise ValueError(f"lines: unknown SDP line type {unknown[0]!r}; known: {' '.join(sorted(KNOWN_LINES))}")
        missing = sorted(REQUIRED_LINES - lines)
        if missing:
            raise ValueError(f"lines: must include {', '.join(missing)} (v, o, s, t, m are required)")
        names: set[bytes] = set()
        prefixes: list[bytes] = []
        for name in self.attributes:
            base = name[:-1] if name.endswith("*") else name
            if not isinstance(name, str) or not base.isascii() or not _is_token(base.encode()):
                raise ValueError(f"attributes: {name!r} is not an attribute name (a token)")
            if name.endswith("*"):
                prefixes.append(base.lower().encode())
            else:
                names.add(base.lower().encode())
        user = self.origin_username
        if not user or not user.isprintable() or any(c.isspace() for c in user):
            raise ValueError("origin_username: expected a non-empty token without spaces")
        if not self.session_name or not self.session_name.isprintable():
            raise ValueError("session_name: expected a non-empty single line")
        object.__setattr__(self, "lines", lines)
        object.__setattr__(self, "attributes", frozenset(a.lower() for a in self.attributes))
        object.__setattr__(self, "_kinds", frozenset(ord(k) for k in lines))
        object.__setattr__(self, "_names", frozenset(names))
        object.__setattr__(self, "_prefixes", tuple(sorted(prefixes)))
        object.__setattr__(self, "_o_user", b"o=" + user.encode("utf-8"))
        object.__setattr__(self, "_s_line", ("s=" + self.session_name).encode("utf-8"))
        object.__setattr__(self, "_attribute_cache", {})
        object.__setattr__(self, "_drop", _drop_pattern(lines, frozenset(names), tuple(sorted(prefixes))))

    def allows_attribute(self, name: bytes) -> bool:
        """Whether ``a=<name>`` crosses (``name`` as it stands in the SDP, any case)."""
        lowered = name.lower()
        return lowered in self._names or (bool(self._prefixes) and lowered.startswith(self._prefixes))


def rebuild_sdp(
    body: bytes,
    whitelist: SdpWhitelist,
    *,
    origin_address: str | None = None,
    id_key: bytes = b"",
) -> bytes:
    """Validate ``body`` as SDP and return it rebuilt from ``whitelist`` (CRLF line ends).

    ``o=`` (RFC 8866 §5.2) becomes ``<origin_username> <sess-id> <sess-version> <nettype>
    <addrtype> <address>``: the id and version are kept when they are digits (so re-offers
    stay recognisable), else replaced by a number derived from them with ``id_key`` (the same
    input gives the same number, and without the key the number says nothing of the input);
    the address becomes ``origin_address`` when given (``IP6`` when it holds a colon). ``s=``
    is the whitelist's session name. Other lines cross, unchanged, when the whitelist names
    their type (and, for ``a=``, their attribute).

    Raises:
        SdpError: the body breaks the grammar: a line that is not ``<letter>=<value>``; no
            ``v=0``, ``o=``, ``s=`` as the first three lines; no ``t=`` before the media; a
            ``c=`` without exactly three fields, an ``m=`` with fewer than four (or a port that
            is not a number), a ``t=`` that is not two numbers, a ``b=`` that is not
            ``<type>:<number>``, an ``a=`` whose name is not a token, a NUL anywhere.
    """
    match = _STRICT_SDP.fullmatch(body)
    if match is None:
        return _rebuild_lines(body, whitelist, origin_address, id_key)
    # the whole body is in the strict form (CRLF, single spaces, o= with numeric ids): the
    # same result as the line reader, with the checks and the dropping done in C by two
    # regular expressions instead of tens of bytecodes per line (measured: docs/benchmarks.md)
    net, addrtype, address = match.group("net", "addrtype", "address")
    if origin_address is not None:
        addrtype, address = _address(origin_address)
    # from the "\n" that ends s=: each dropped line is "\n<line>\r" (a literal "\n" first lets
    # the regular expression engine skip ahead with memchr instead of trying every position)
    kept = whitelist._drop.sub(b"", body[match.end("head") - 1 :])[1:].rstrip(b"\r\n")
    origin = b" ".join((whitelist._o_user, match["id"], match["version"], net, addrtype, address))
    return b"".join((b"v=0\r\n", origin, b"\r\n", whitelist._s_line, b"\r\n", kept, b"\r\n"))


def _rebuild_lines(body: bytes, whitelist: SdpWhitelist, origin_address: str | None, id_key: bytes) -> bytes:
    """:func:`rebuild_sdp` read line by line: every form the grammar allows, and the reason
    (line number and type) of what it does not."""
    if b"\x00" in body or body.count(b"\r") != body.count(b"\r\n"):
        raise SdpError("SDP: NUL byte or CR without LF")
    lines = body.splitlines()  # CRLF or LF alone (RFC 8866 §5 asks parsers to accept both)
    while lines and not lines[-1]:
        lines.pop()  # a trailing empty line is common and harmless
    if len(lines) < 3 or lines[0] != b"v=0" or lines[1][:2] != b"o=" or lines[2][:2] != b"s=":
        raise SdpError(_head_problem(lines))
    kinds = whitelist._kinds
    known = whitelist._attribute_cache
    out = [b"v=0", _origin(lines[1], whitelist._o_user, origin_address, id_key), whitelist._s_line]
    append = out.append
    timing = False
    media = False
    for line in lines[3:]:
        kind = line[:2]
        if kind == b"a=":
            name = line[2:].partition(b":")[0]
            crosses = known.get(name)
            if crosses is None:
                if not _is_token(name):
                    raise SdpError(f"SDP line {_number(lines, line)}: a= attribute name is not a token")
                crosses = whitelist.allows_attribute(name)
                if len(known) < 512:
                    known[name] = crosses
            if crosses:
                append(line)
        elif kind == b"m=":
            fields = line.split(b" ")  # fields[0] is "m=<media>"
            if len(fields) < 4 or b"" in fields or not _is_token(fields[0][2:]):
                raise SdpError(f"SDP line {_number(lines, line)}: m= expects <media> <port> <proto> <fmt> ...")
            port, _, count = fields[1].partition(b"/")
            if not port.isdigit() or (count and not count.isdigit()):
                raise SdpError(f"SDP line {_number(lines, line)}: m= port is not a number")
            if not timing:
                raise SdpError(f"SDP line {_number(lines, line)}: m= before any t=")
            media = True
            append(line)
        elif kind == b"c=":
            if line[:9] in _C_COMMON:  # "c=IN IP4 " / "c=IN IP6 ": only the address to check
                bad = len(line) == 9 or b" " in line[9:]
            else:
                fields = line[2:].split(b" ")
                bad = len(fields) != 3 or not _is_token(fields[0]) or not _is_token(fields[1]) or not fields[2]
            if bad:
                raise SdpError(f"SDP line {_number(lines, line)}: c= expects <nettype> <addrtype> <address>")
            if 99 in kinds:
                append(line)
        elif kind == b"t=":
            fields = line[2:].split(b" ")
            if media or len(fields) != 2 or not fields[0].isdigit() or not fields[1].isdigit():
                raise SdpError(f"SDP line {_number(lines, line)}: t= expects <start> <stop> in the session section")
            timing = True
            append(line)
        elif kind == b"b=":
            bwtype, _, bandwidth = line[2:].partition(b":")
            if not _is_token(bwtype) or not bandwidth.isdigit():
                raise SdpError(f"SDP line {_number(lines, line)}: b= expects <bwtype>:<bandwidth>")
            if 98 in kinds:
                append(line)
        elif len(kind) < 2 or kind[1] != _EQ or kind[0] not in _TYPE_LETTERS:
            raise SdpError(f"SDP line {_number(lines, line)}: expected <type>=<value>")
        elif kind in (b"v=", b"o=", b"s="):
            raise SdpError(f"SDP line {_number(lines, line)}: a second {kind[:1].decode()}= line")
        elif kind[0] in kinds:
            append(line)
        # anything else (i= u= e= p= k= z= r= not whitelisted, unknown letters: RFC 8866 §5
        # lets a parser ignore what it does not understand) is dropped
    if not timing:
        raise SdpError("SDP: no t= line")
    append(b"")
    return b"\r\n".join(out)


def _head_problem(lines: list[bytes]) -> str:
    """Why the first three lines are not ``v=0``, ``o=``, ``s=`` (the first that is not)."""
    for number, want in ((1, b"v=0"), (2, b"o="), (3, b"s=")):
        if len(lines) < number:
            return "SDP: expected v=, o=, s= lines"
        line = lines[number - 1]
        if line[: len(want)] != want or (number == 1 and line != want):
            return f"SDP line {number}: expected {want.decode()}"
    return "SDP: expected v=, o=, s= lines"  # pragma: no cover - one of them is wrong


def _number(lines: list[bytes], line: bytes) -> int:
    """The (1-based) line number of ``line``, for an error (first one that is equal)."""
    return lines.index(line, 3) + 1


def _origin(line: bytes, user: bytes, origin_address: str | None, id_key: bytes) -> bytes:
    """The rebuilt ``o=`` line. The username may hold spaces or be followed by several (it is
    dropped anyway): the last five fields are read."""
    fields = line[2:].split()
    if len(fields) < 6:
        raise SdpError("SDP line 2: o= expects <username> <sess-id> <sess-version> <nettype> <addrtype> <address>")
    sess_id, version, nettype, addrtype, address = fields[-5:]
    if nettype != b"IN" and not _is_token(nettype) or not _is_token(addrtype):
        raise SdpError("SDP line 2: o= nettype and addrtype must be tokens")
    if not sess_id.isdigit():
        sess_id = _derive(sess_id, id_key)
    if not version.isdigit():
        version = _derive(version, id_key)
    if origin_address is not None:
        addrtype, address = _address(origin_address)
    return b" ".join((user, sess_id, version, nettype, addrtype, address))


@functools.lru_cache(maxsize=16)
def _address(origin_address: str) -> tuple[bytes, bytes]:
    """(addrtype, address) of o= for sipmask's own address (a configured value: encoded once)."""
    addrtype = b"IP6" if ":" in origin_address else b"IP4"
    return addrtype, origin_address.strip("[]").encode("ascii", "replace")


def _derive(value: bytes, key: bytes) -> bytes:
    """A decimal number (under 2^56, fits the 64-bit id RFC 8866 §5.2 suggests) standing in
    for a sess-id/version that is not one: keyed, so it cannot be traced back to the value."""
    digest = hashlib.blake2b(value, key=key[:64], digest_size=7).digest()
    return str(int.from_bytes(digest, "big")).encode()


def sdp_has_media(body: bytes) -> bool:
    """Whether an SDP body describes at least one media stream (an ``m=`` line)."""
    return body.startswith(b"m=") or b"\nm=" in body
