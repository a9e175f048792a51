"""Each party's RTCP sent nowhere: the SDP rtpengine returns, rewritten so that no party's RTCP
reaches the relay, because rtpengine forwards some of it whatever it is told.

rtpengine's ``generate RTCP`` consumes a party's RTCP compound packet only when the compound
holds a sender or receiver report (or XR): ``sink_common`` in its ``daemon/rtcp.c`` is called
for SR, RR and XR alone. A compound without one (an SDES packet on its own, or ``BYE`` + SDES,
which is what baresip sends when it hangs up) is forwarded to the other party as is, CNAME and
all, and softphones fill the CNAME with their SIP URI: the number and the IP address (measured
in docs/media.md). No ng option of rtpengine 10.5 drops those packets.

So every RTP media section a party receives says ``a=rtcp:9`` (RFC 3605: send RTCP to this
port at the ``c=`` address, rtpengine's; 9 is the discard port, the same placeholder WebRTC
offers use): the party's RTCP goes to a port nobody reads, and the relay never sees it.
rtpengine still sends each party RTCP of its own (its ``generate RTCP``, whose reports describe
what it receives and whose CNAME is its own). ``rtcp-mux`` is refused for the same reason
(``PRIVACY_OPTIONS`` asks rtpengine for ``demux`` + ``reject``, and any ``a=rtcp-mux`` left is
dropped): a multiplexed party would send its RTCP to the RTP port, which rtpengine reads.

What is given up: rtpengine's per-party RTCP statistics (round trip, the party's own loss
reports); the parties never got each other's reports anyway under ``generate RTCP``.
"""

from __future__ import annotations

from typing import Final

__all__ = ["DISCARD_PORT", "rtcp_nowhere"]

DISCARD_PORT: Final = 9
"""Where each party is told to send its RTCP (RFC 863 discard)."""

_RTCP_LINE: Final = b"a=rtcp:%d" % DISCARD_PORT
_MUX: Final = frozenset({b"a=rtcp-mux", b"a=rtcp-mux-only"})  # RFC 5761, RFC 8858


def _is_rtp_media(line: bytes) -> bool:
    """An ``m=`` line whose stream is RTP (any ``RTP/...`` profile) and not refused (port 0)."""
    fields = line[2:].split(b" ")
    if len(fields) < 3:
        return False
    port = fields[1].partition(b"/")[0]
    return port != b"0" and b"RTP/" in fields[2].upper()


def rtcp_nowhere(sdp: bytes) -> bytes:
    """``sdp`` (as rtpengine wrote it, CRLF lines) with each RTP media section's ``a=rtcp``
    pointing at :data:`DISCARD_PORT` and no ``a=rtcp-mux``; other sections unchanged."""
    lines = sdp.split(b"\r\n")
    trailer = b""
    if lines and lines[-1] == b"":
        lines.pop()
        trailer = b"\r\n"
    out: list[bytes] = []
    rtp = False
    for line in lines:
        if line.startswith(b"m="):
            if rtp:
                out.append(_RTCP_LINE)
            rtp = _is_rtp_media(line)
        elif rtp and (line.startswith(b"a=rtcp:") or line in _MUX):
            continue  # replaced by the one line written at the section's end
        out.append(line)
    if rtp:
        out.append(_RTCP_LINE)
    return b"\r\n".join(out) + trailer
