"""FeedScheduler with the real APScheduler: due feeds are claimed from a store, each feed
is polled again when it is due (also when its poll took longer than its interval), never
twice at once, never more at once than the limit, and a backlog drains without waiting
for the tick."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from monitor.scheduler import FeedScheduler
from monitor.storage.base import FeedState


class Store:
    """Due times and leases in memory, with the claim semantics of the real store."""

    def __init__(self, keys: Sequence[str]) -> None:
        now = datetime.now(UTC)
        self.due = {k: now for k in keys}
        self.leased: set[str] = set()

    async def claim(self, limit: int) -> list[FeedState]:
        now = datetime.now(UTC)
        ready = sorted((d, k) for k, d in self.due.items() if d <= now and k not in self.leased)
        keys = [k for _d, k in ready[:limit]]
        self.leased.update(keys)
        return [FeedState(key=k, url=k) for k in keys]

    async def renew(self, keys: Sequence[str]) -> None:
        return None


def _run(
    keys: Sequence[str], seconds: float, poll_seconds: float, next_in: float, limit: int = 10
) -> tuple[Counter[str], int, int]:
    """Polls that take ``poll_seconds`` and are due again ``next_in`` s after they start.
    Returns the polls per feed, the most polls of one feed at once, the most at once."""
    store = Store(keys)
    calls: Counter[str] = Counter()
    running: Counter[str] = Counter()
    most_one = most_all = 0

    async def poll(state: FeedState) -> None:
        nonlocal most_one, most_all
        started = datetime.now(UTC)
        calls[state.key] += 1
        running[state.key] += 1
        most_one = max(most_one, running[state.key])
        most_all = max(most_all, sum(running.values()))
        try:
            await asyncio.sleep(poll_seconds)
        finally:
            running[state.key] -= 1
            store.due[state.key] = started + timedelta(seconds=next_in)
            store.leased.discard(state.key)  # the state write ends the lease

    async def main() -> None:
        scheduler = FeedScheduler(
            claim=store.claim, poll=poll, renew=store.renew, limit=lambda: limit, tick=0.2
        )
        scheduler.start()
        await asyncio.sleep(seconds)
        await scheduler.shutdown(0)

    asyncio.run(main())
    return calls, most_one, most_all


def test_a_feed_whose_poll_takes_longer_than_its_interval_is_polled_again_at_once() -> None:
    # due again 0.1 s after it started, but the poll takes 0.3 s: the next one is overdue
    calls, most_one, _ = _run(["a", "b"], 2.0, poll_seconds=0.3, next_in=0.1)
    assert min(calls["a"], calls["b"]) >= 4, calls  # one after the other, about 6 each
    assert most_one == 1


def test_a_feed_is_polled_again_when_it_is_due() -> None:
    calls, most_one, _ = _run(["a", "b"], 1.5, poll_seconds=0.01, next_in=0.25)
    assert 4 <= min(calls["a"], calls["b"]) <= 7, calls
    assert most_one == 1


def test_no_more_polls_at_once_than_the_limit_and_a_backlog_does_not_wait_for_the_tick() -> None:
    keys = [f"f{i}" for i in range(60)]
    # 60 feeds due at once, 5 at a time, 0.05 s each: 12 waves in about 0.6 s, far
    # fewer than one tick (0.2 s) per wave would allow in 1.2 s
    calls, most_one, most_all = _run(keys, 1.2, poll_seconds=0.05, next_in=3600, limit=5)
    assert most_all == 5 and most_one == 1
    assert sorted(calls) == sorted(keys) and set(calls.values()) == {1}


def test_a_claim_slower_than_the_tick_is_waited_for_without_apschedulers_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A claim that waits for a busy store longer than one tick: the ticks meanwhile
    start no second claim, say nothing, and the feeds are polled once the claim ends."""
    store = Store([f"f{i}" for i in range(3)])
    claims = 0
    at_once = most = 0

    async def slow_claim(limit: int) -> list[FeedState]:
        nonlocal claims, at_once, most
        claims += 1
        at_once += 1
        most = max(most, at_once)
        try:
            await asyncio.sleep(0.5)  # two and a half ticks
            return await store.claim(limit)
        finally:
            at_once -= 1

    polled: list[str] = []

    async def poll(state: FeedState) -> None:
        polled.append(state.key)
        store.due[state.key] = datetime.now(UTC) + timedelta(hours=1)
        store.leased.discard(state.key)

    async def main() -> None:
        scheduler = FeedScheduler(
            claim=slow_claim, poll=poll, renew=store.renew, limit=lambda: 10, tick=0.2
        )
        scheduler.start()
        await asyncio.sleep(1.5)
        await scheduler.shutdown(1)

    with caplog.at_level(logging.DEBUG):
        asyncio.run(main())
    assert sorted(polled) == ["f0", "f1", "f2"]
    assert most == 1 and claims >= 2
    noise = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert noise == []
