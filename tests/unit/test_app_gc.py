"""The GC clock: the young and middle generations collected together every 200 ms
(proxy/app.py ``_gc_clock``): a fake clock and a fake collector, no sleeps."""

from __future__ import annotations

import asyncio

from proxy import app


def test_young_and_middle_generations_together_on_every_tick() -> None:
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
    assert slept[:25] == [app._GC_PERIOD_S] * 25 and app._GC_PERIOD_S == 0.2
    # one collection per tick, each of generation 1 (which includes the young one)
    assert collected == [1] * 25
