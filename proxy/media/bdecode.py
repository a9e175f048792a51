"""Decoding of rtpengine's bencoded replies, which ``bencode2`` refuses.

rtpengine writes dictionary keys in its own order (its ng protocol documentation says the
bencode rule that keys come sorted "is not currently honoured"), and ``bencode2.bdecode``
rejects any dictionary whose keys are not sorted ("invalid dict, key not sorted"): it cannot
read a single ``offer`` reply. Requests are still encoded by ``bencode2`` (sorted keys, which
rtpengine accepts); this reads the four bencode types in any key order, and nothing else.
"""

from __future__ import annotations

from typing import Final

__all__ = ["BdecodeError", "bdecode"]

_MAX_DEPTH: Final = 32
"""rtpengine's replies nest a few levels (``query``: call -> tags -> medias -> streams)."""

Value = bytes | int | list["Value"] | dict[bytes, "Value"]


class BdecodeError(ValueError):
    """Not one well-formed bencoded value."""


def bdecode(data: bytes) -> Value:
    """The value ``data`` encodes (strings as bytes); the whole of ``data`` must be used."""
    value, end = _value(data, 0, 0)
    if end != len(data):
        raise BdecodeError(f"trailing bytes at {end}")
    return value


def _value(data: bytes, at: int, depth: int) -> tuple[Value, int]:
    if at >= len(data):
        raise BdecodeError("truncated")
    if depth > _MAX_DEPTH:
        raise BdecodeError("nested too deep")
    kind = data[at]
    if kind == 0x69:  # i<digits>e
        end = data.find(b"e", at + 1)
        digits = data[at + 1:end] if end > 0 else b""
        body = digits[1:] if digits.startswith(b"-") else digits
        if not body.isdigit() or (len(body) > 1 and body.startswith(b"0")):
            raise BdecodeError(f"bad integer at {at}")
        return int(digits), end + 1
    if kind == 0x6C:  # l<values>e
        items: list[Value] = []
        at += 1
        while at < len(data) and data[at] != 0x65:
            item, at = _value(data, at, depth + 1)
            items.append(item)
        if at >= len(data):
            raise BdecodeError("truncated list")
        return items, at + 1
    if kind == 0x64:  # d<key><value>...e, keys in any order
        table: dict[bytes, Value] = {}
        at += 1
        while at < len(data) and data[at] != 0x65:
            key, at = _string(data, at)
            table[key], at = _value(data, at, depth + 1)
        if at >= len(data):
            raise BdecodeError("truncated dictionary")
        return table, at + 1
    return _string(data, at)


def _string(data: bytes, at: int) -> tuple[bytes, int]:
    colon = data.find(b":", at)
    length = data[at:colon] if colon > at else b""
    if not length.isdigit():
        raise BdecodeError(f"bad string length at {at}")
    start = colon + 1
    end = start + int(length)
    if end > len(data):
        raise BdecodeError("truncated string")
    return data[start:end], end
