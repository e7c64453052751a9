"""Pure decisions of a poll: when a feed is next due, and which entries may alert.

Given the old state, what the fetch and parse returned, and ``now``, these
functions return new values; the pipeline applies them. No clock, no I/O.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from datetime import datetime, timedelta

from monitor.types import FeedEntry, FetchResult, ParsedFeed

MAX_BACKOFF = 24 * 3600.0  # a failing feed is still probed at least daily
MAX_FLOOR = 24 * 3600.0  # a feed can't ask to be polled less than daily
JITTER_SHARE = 0.05
MAX_JITTER = 60.0

_MAX_AGE = re.compile(r"(?:^|,)\s*max-age\s*=\s*(\d+)", re.IGNORECASE)


def cache_max_age(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``Cache-Control: max-age``, if any."""
    for key, value in headers.items():
        if key.lower() == "cache-control":
            m = _MAX_AGE.search(value)
            if m:
                return float(m.group(1))
    return None


def jitter(interval: float, rng: random.Random) -> float:
    """A small random offset so feeds with one interval don't poll in lockstep."""
    spread = min(interval * JITTER_SHARE, MAX_JITTER)
    return rng.uniform(-spread, spread)


def skip_until(when: datetime, hours: frozenset[int], days: frozenset[int]) -> datetime:
    """The first full hour at or after ``when`` that RSS skipHours/skipDays allow."""
    if not hours and not days:
        return when
    candidate = when
    for _ in range(24 * 8):
        if candidate.hour not in hours and candidate.weekday() not in days:
            return candidate
        candidate = (candidate + timedelta(hours=1)).replace(minute=0, second=0, microsecond=0)
    return when  # everything skipped: the feed's hint is nonsense, ignore it


def next_due(
    *,
    now: datetime,
    interval: float,
    error_count: int,
    result: FetchResult | None,
    parsed: ParsedFeed | None,
    rng: random.Random,
) -> datetime:
    """When a feed is polled next.

    Success: the interval, raised (never lowered) to the feed's own hints
    (RSS ttl, Cache-Control max-age, capped at a day), then moved out of
    skipHours/skipDays. Failure: exponential backoff from the interval,
    capped at a day, and never before a Retry-After.
    """
    if error_count > 0:
        delay = min(interval * (2 ** min(error_count - 1, 20)), max(MAX_BACKOFF, interval))
    else:
        delay = interval
        floors = []
        if parsed is not None and parsed.ttl_seconds:
            floors.append(float(parsed.ttl_seconds))
        if result is not None:
            age = cache_max_age(result.headers)
            if age:
                floors.append(age)
        if floors:
            delay = max(delay, min(max(floors), MAX_FLOOR))
    if result is not None and result.retry_after:
        delay = max(delay, min(result.retry_after, MAX_BACKOFF))
    due = now + timedelta(seconds=max(1.0, delay + jitter(delay, rng)))
    if error_count == 0 and parsed is not None:
        due = skip_until(due, parsed.skip_hours, parsed.skip_days)
    return due


FIRST_POLLS_PER_SECOND = 100.0


def first_due(now: datetime, interval: float, rng: random.Random, new_feeds: int = 1) -> datetime:
    """A feed never polled before starts soon.

    New feeds are spread over a few seconds, or, when there are many (a first
    start with thousands of feeds), over as long as it takes to start about
    ``FIRST_POLLS_PER_SECOND`` a second, never longer than the interval, so
    they don't poll as one herd now and at every interval after.
    """
    spread = min(
        interval, max(min(interval * JITTER_SHARE, 5.0), new_feeds / FIRST_POLLS_PER_SECOND)
    )
    return now + timedelta(seconds=rng.uniform(0, spread))


def is_fresh(entry: FeedEntry, now: datetime, max_age: float) -> bool:
    """Can this new entry alert? Undated entries count as published now (SPEC section 6)."""
    if entry.published is None:
        return True
    return (now - entry.published).total_seconds() <= max_age


def unique_entries(entries: tuple[FeedEntry, ...]) -> list[FeedEntry]:
    """Drop repeats of one identity or link inside one document (first one wins)."""
    seen: set[str] = set()
    out = []
    for e in entries:
        keys = [e.identity] + ([e.link] if e.link else [])
        if any(k in seen for k in keys):
            continue
        seen.update(keys)
        out.append(e)
    return out
