"""The GC clock: the young generation on a 100 ms clock, the middle one every second
(proxy/app.py ``_gc_clock``): a fake clock and a fake collector, no sleeps."""

from __future__ import annotations

import asyncio

from proxy import app


def test_young_generation_every_tick_middle_generation_every_tenth() -> None:
    slept: list[float] = []
    collected: list[int] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)
        if len(slept) > 25:
            raise asyncio.CancelledError

    async def scenario() -> None:
        try:
            await app._gc_clock(sleep=sleep, collect=collected.append)
        except asyncio.CancelledError:
            pass

    asyncio.run(scenario())
    assert slept[:25] == [app._GC_YOUNG_S] * 25 and app._GC_YOUNG_S == 0.1
    assert len(collected) == 25
    assert [i + 1 for i, g in enumerate(collected) if g == 1] == [10, 20]
    assert set(collected) == {0, 1}
