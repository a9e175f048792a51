"""Event loop selection: uvloop when it is installed, the standard asyncio loop otherwise."""

from __future__ import annotations

import asyncio

__all__ = ["install_event_loop_policy"]


def install_event_loop_policy() -> bool:
    """Make new event loops uvloop loops when uvloop is importable.

    Call once before ``asyncio.run``. Returns True when uvloop is in use, False when the
    standard asyncio loop stays (uvloop missing, e.g. on Windows or PyPy).
    """
    try:
        import uvloop
    except ImportError:
        return False
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return True
