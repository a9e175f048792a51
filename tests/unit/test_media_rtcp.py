"""proxy.media.rtcp: every RTP media section a party receives sends its RTCP to the discard
port (rtpengine forwards a compound without a report, see docs/media.md)."""

from __future__ import annotations

import pytest

from proxy.media.rtcp import DISCARD_PORT, rtcp_nowhere

HEAD = b"v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"


def test_rtpengines_rtcp_port_replaced_by_the_discard_port_rfc3605() -> None:
    sdp = HEAD + b"m=audio 30000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\na=rtcp:30001\r\n"
    out = rtcp_nowhere(sdp)
    assert out == HEAD + (b"m=audio 30000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n"
                          b"a=rtcp:%d\r\n" % DISCARD_PORT)


@pytest.mark.parametrize("mux", [b"a=rtcp-mux", b"a=rtcp-mux-only"])
def test_rtcp_mux_dropped_rfc5761_rfc8858(mux: bytes) -> None:
    sdp = HEAD + b"m=audio 30000 RTP/AVP 0\r\na=rtcp:30000\r\n" + mux + b"\r\na=rtcp-fb:* nack\r\n"
    out = rtcp_nowhere(sdp)
    assert b"rtcp-mux" not in out and b"a=rtcp:30000" not in out
    assert out.endswith(b"a=rtcp-fb:* nack\r\na=rtcp:9\r\n"), "rtcp-fb is not rtcp: it stays"


def test_a_section_without_a_rtcp_gets_one_each_section_its_own() -> None:
    sdp = HEAD + (b"m=audio 30000 RTP/AVP 0\r\na=sendrecv\r\n"
                  b"m=video 30002 RTP/SAVPF 96\r\nc=IN IP4 192.0.2.1\r\na=rtcp:30003\r\n")
    out = rtcp_nowhere(sdp)
    assert out == HEAD + (b"m=audio 30000 RTP/AVP 0\r\na=sendrecv\r\na=rtcp:9\r\n"
                          b"m=video 30002 RTP/SAVPF 96\r\nc=IN IP4 192.0.2.1\r\na=rtcp:9\r\n")


@pytest.mark.parametrize("media", [
    b"m=audio 0 RTP/AVP 0\r\na=rtcp:30001\r\n",  # refused stream: left as it is
    b"m=image 30000 udptl t38\r\na=T38FaxVersion:0\r\n",  # not RTP: no RTCP at all
])
def test_sections_without_rtcp_are_untouched(media: bytes) -> None:
    assert rtcp_nowhere(HEAD + media) == HEAD + media


def test_a_body_without_a_final_line_end_keeps_its_form() -> None:
    sdp = HEAD + b"m=audio 30000/2 RTP/AVP 0\r\na=rtcp:30001"
    assert rtcp_nowhere(sdp) == HEAD + b"m=audio 30000/2 RTP/AVP 0\r\na=rtcp:9"
