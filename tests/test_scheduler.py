"""FeedScheduler with the real APScheduler: every feed keeps being polled, never twice at once."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime, timedelta

from monitor.scheduler import FeedScheduler


def _run_for(seconds: float, poll_seconds: float, next_in: float) -> tuple[Counter[str], int]:
    """Two feeds whose polls take ``poll_seconds`` and are due again ``next_in`` s after
    they start; returns the polls per feed and the most polls of one feed at once."""
    calls: Counter[str] = Counter()
    running: Counter[str] = Counter()
    most = 0

    async def poll(key: str) -> datetime:
        nonlocal most
        started = datetime.now(UTC)
        calls[key] += 1
        running[key] += 1
        most = max(most, running[key])
        try:
            await asyncio.sleep(poll_seconds)
        finally:
            running[key] -= 1
        return started + timedelta(seconds=next_in)

    async def main() -> None:
        scheduler = FeedScheduler(poll)
        for key in ("a", "b"):
            scheduler.schedule(key, datetime.now(UTC))
        scheduler.start()
        await asyncio.sleep(seconds)
        await scheduler.shutdown(0)

    asyncio.run(main())
    return calls, most


def test_a_feed_whose_poll_takes_longer_than_its_interval_is_polled_again_at_once() -> None:
    # due again 0.1 s after it started, but the poll takes 0.3 s: the next one is overdue
    calls, most = _run_for(2.0, poll_seconds=0.3, next_in=0.1)
    assert min(calls["a"], calls["b"]) >= 4, calls  # one after the other, about 6 each
    assert most == 1


def test_a_feed_is_polled_again_when_it_is_due() -> None:
    calls, most = _run_for(1.5, poll_seconds=0.01, next_in=0.25)
    assert 4 <= min(calls["a"], calls["b"]) <= 7, calls
    assert most == 1
