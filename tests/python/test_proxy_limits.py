"""The proxy's limits: rate-limited logs."""

from __future__ import annotations

import asyncio
import logging
import re

import pytest
from natpool.apps.proxy.events import EventLog


def test_a_flood_of_events_costs_a_line_a_second_with_the_counts(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("natpool.test.events")

    async def body() -> float:
        events = EventLog(logger)
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(10_000):
            events.warning("flood", "event %d", i)
            if i % 1000 == 0:
                await asyncio.sleep(0)
        elapsed = loop.time() - start
        events.flush()
        return elapsed

    elapsed = asyncio.run(body())
    lines = [r.getMessage() for r in caplog.records if r.name == "natpool.test.events"]
    assert lines[0] == "event 0" and lines[-1].startswith("event 9999 (")
    reported = sum(int(m[1]) if (m := re.search(r"\((\d+) of these in the last", line)) else 1 for line in lines)
    assert reported == 10_000 and len(lines) <= elapsed + 2
