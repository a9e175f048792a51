"""Fast paths of the SIP layer give exactly what the general code gives (or fall back to it)."""

from __future__ import annotations

import pytest

from proxy.sip import Headers, SipParseError


def _render_reference(headers: Headers, body_length: int) -> list[str]:
    lines: list[str] = []
    seen = False
    for key, name, value in headers.keyed():
        if key == "content-length":
            if seen:
                continue
            seen = True
            value = str(body_length)
        lines.append(f"{name}: {value}")
    if not seen:
        lines.append(f"Content-Length: {body_length}")
    return lines


@pytest.mark.parametrize(
    "items",
    [
        [],
        [("Via", "SIP/2.0/UDP h"), ("To", "<sip:a@b>")],
        [("Via", "v"), ("l", "99"), ("To", "t")],
        [("Content-Length", "5"), ("Via", "v"), ("content-length", "7"), ("X", "y"), ("L", "1")],
        [("X", "1"), ("Content-Length", "0")],
    ],
)
def test_render_matches_reference(items: list[tuple[str, str]]) -> None:
    headers = Headers(items)
    assert headers.render(3) == _render_reference(headers, 3)


def test_missing_header_views_raise_parse_error() -> None:
    from proxy.sip import Request

    r = Request("OPTIONS", "sip:a@b", Headers([("Via", "SIP/2.0/UDP h;branch=z9hG4bK1")]))
    for view in ("call_id", "from_", "to", "cseq"):
        with pytest.raises(SipParseError):
            getattr(r, view)
