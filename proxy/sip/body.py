"""Message bodies as MIME (RFC 3261 §7.4, RFC 2045/2046): a Content-Type read into its media
type and parameters, and a multipart body split into its parts. Bytes in, nothing decoded."""

from __future__ import annotations

from typing import Final

__all__ = ["BodyError", "media_type", "multipart_parts"]

_IDENTITY_ENCODINGS: Final = frozenset({"", "7bit", "8bit", "binary"})


class BodyError(ValueError):
    """A body that cannot be read as its Content-Type says; ``reason`` names no content."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def media_type(content_type: str) -> tuple[str, str | None]:
    """``(type/subtype in lower case, boundary parameter or None)`` of a Content-Type value
    (RFC 2045 §5.1: ``type "/" subtype *(";" parameter)``); ``("", None)`` when empty."""
    main, _, params = content_type.partition(";")
    kind = main.strip().lower()
    boundary = None
    if params:
        for param in params.split(";"):
            name, _, value = param.partition("=")
            if name.strip().lower() == "boundary":
                value = value.strip()
                if len(value) >= 2 and value[0] == value[-1] == '"':
                    value = value[1:-1]
                boundary = value
    return kind, boundary


def multipart_parts(boundary: str | None, body: bytes) -> list[tuple[str, bytes]]:
    """The parts of a multipart body (RFC 2046 §5.1.1) as ``(media type, content)``; a part
    without Content-Type is ``text/plain`` (§5.1). Preamble and epilogue are dropped.

    Raises:
        BodyError: no usable boundary (1-70 characters), no closing delimiter, a part without
            the blank line after its headers, or a part with a Content-Transfer-Encoding
            other than 7bit/8bit/binary.
    """
    if not boundary or len(boundary) > 70 or not boundary.isascii():
        raise BodyError("multipart body without a usable boundary")
    delimiter = b"\n--" + boundary.encode("ascii")
    chunks = (b"\n" + body).split(delimiter)
    if len(chunks) < 3:
        raise BodyError("multipart body without parts")
    parts: list[tuple[str, bytes]] = []
    closed = False
    for chunk in chunks[1:]:
        if chunk.startswith(b"--"):
            closed = True
            break
        # the delimiter line may end with transport padding; the part starts after it
        _, newline, part = chunk.partition(b"\n")
        if not newline:
            raise BodyError("multipart delimiter line without an end")
        if part.endswith(b"\r"):
            part = part[:-1]  # the CR of the CRLF that belongs to the next delimiter
        parts.append(_part(part))
    if not closed:
        raise BodyError("multipart body without its closing delimiter")
    return parts


def _part(part: bytes) -> tuple[str, bytes]:
    if part.startswith(b"\r\n") or part.startswith(b"\n"):
        head, content = b"", part.partition(b"\n")[2]
    else:
        sep = part.find(b"\r\n\r\n")
        if sep >= 0:
            head, content = part[:sep], part[sep + 4 :]
        else:
            sep = part.find(b"\n\n")
            if sep < 0:
                raise BodyError("multipart part without a blank line after its headers")
            head, content = part[:sep], part[sep + 2 :]
    kind = "text/plain"
    for raw in head.split(b"\n"):
        name, colon, value = raw.decode("utf-8", "replace").partition(":")
        if not colon:
            continue
        key = name.strip().lower()
        if key in ("content-type", "c"):
            kind = media_type(value)[0] or kind
        elif key == "content-transfer-encoding" and value.strip().lower() not in _IDENTITY_ENCODINGS:
            raise BodyError("multipart part with an unsupported Content-Transfer-Encoding")
    return kind, content
