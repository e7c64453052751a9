"""Pure decisions: when a feed is next due, which entries may alert, which
entries to stop retrying, and which stored feed a changed URL continues.

Given the old state, what the fetch and parse returned, and ``now``, these
functions return new values; the pipeline and the store apply them. No
clock, no I/O.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from monitor.types import FeedEntry, FetchResult, Notice, ParsedFeed

MAX_BACKOFF = 24 * 3600.0  # a failing feed is still probed at least daily
MAX_FLOOR = 24 * 3600.0  # a feed can't ask to be polled less than daily
# A feed's own hints (ttl, Cache-Control max-age, skipHours/skipDays) lengthen its
# configured interval at most this many times (and never past MAX_FLOOR):
# politeness, but an alert never waits much longer than the config says.
HINT_FACTOR = 4.0
GONE_PROBE = 24 * 3600.0  # a feed that answered 410 Gone is asked again daily
ENTRY_ATTEMPTS = 3  # polls in a row whose matching of an entry may fail before it is given up
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


def hint_cap(interval: float) -> float:
    """The longest a feed's own hints can make its interval: ``HINT_FACTOR`` times the
    configured one, at most a day (an interval longer than that stays as it is)."""
    return max(interval, min(interval * HINT_FACTOR, MAX_FLOOR))


def backoff(interval: float, error_count: int) -> float:
    """The delay after ``error_count`` failed polls in a row: the interval, doubling with
    each failure, at most a day (an interval longer than that stays as it is)."""
    doubled: float = interval * 2.0 ** min(error_count - 1, 20)
    return min(doubled, max(MAX_BACKOFF, interval))


def next_due(
    *,
    now: datetime,
    interval: float,
    error_count: int,
    result: FetchResult | None,
    parsed: ParsedFeed | None,
    rng: random.Random,
    respect_hints: bool = True,
) -> datetime:
    """When a feed is polled next.

    Success: the interval, raised (never lowered) to the feed's own hints
    (RSS ttl, Cache-Control max-age), then moved out of skipHours/skipDays;
    the hints lengthen it to ``hint_cap`` at most, and not at all without
    ``respect_hints`` (``settings.respect_ttl: false``). Failure: exponential
    backoff from the interval, capped at a day. Never before a Retry-After.
    ``explain_interval`` says afterwards which of these made the delay.
    """
    if error_count > 0:
        delay = backoff(interval, error_count)
    else:
        delay = interval
        floors = []
        if parsed is not None and parsed.ttl_seconds:
            floors.append(float(parsed.ttl_seconds))
        if result is not None:
            age = cache_max_age(result.headers)
            if age:
                floors.append(age)
        if floors and respect_hints:
            delay = max(delay, min(max(floors), hint_cap(interval)))
    if result is not None and result.retry_after:
        delay = max(delay, min(result.retry_after, MAX_BACKOFF))
    due = now + timedelta(seconds=max(1.0, delay + jitter(delay, rng)))
    if error_count == 0 and parsed is not None and respect_hints:
        skipped = skip_until(due, parsed.skip_hours, parsed.skip_days)
        due = max(due, min(skipped, now + timedelta(seconds=hint_cap(interval))))
    return due


@dataclass(frozen=True, slots=True)
class IntervalInForce:
    """How long a feed waits between its last poll and its next, and why.

    ``reason``: ``configured``, ``feed_hints`` (its ttl, Cache-Control
    max-age or skipHours, up to ``hint_cap``), ``backoff`` (after failed
    polls), ``retry_after`` (the server asked), ``gone`` (410: asked daily),
    ``due`` (due now, e.g. resumed), ``paused``, ``not_polled`` (never yet).
    ``seconds`` is None where there is no interval to speak of.
    """

    seconds: float | None
    reason: str


def explain_interval(
    *,
    interval: float,
    last_poll: datetime | None,
    next_due: datetime | None,
    error_count: int,
    gone: bool,
    paused: bool,
    now: datetime,
) -> IntervalInForce:
    """Why a feed's next poll is when it is: read back from the stored times with the
    same rules ``next_due`` used (its jitter, backoff and caps), so nothing more is stored.

    The feed's hints can't be told apart afterwards (a ttl, a Cache-Control max-age
    and skipHours look alike); a configured interval changed since the last poll
    shows as the interval that poll planned with.
    """
    if paused:
        return IntervalInForce(None, "paused")
    if last_poll is None or next_due is None:
        return IntervalInForce(None, "not_polled")
    seconds = max(0.0, (next_due - last_poll).total_seconds())
    if next_due <= now:
        return IntervalInForce(seconds, "due")
    if gone:
        return IntervalInForce(seconds, "gone")

    def at_most(expected: float) -> bool:
        return seconds <= expected + min(expected * JITTER_SHARE, MAX_JITTER) + 1.0

    if error_count > 0:
        return IntervalInForce(
            seconds, "backoff" if at_most(backoff(interval, error_count)) else "retry_after"
        )
    return IntervalInForce(seconds, "configured" if at_most(interval) else "feed_hints")


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


def probe_due(now: datetime, rng: random.Random) -> datetime:
    """When a feed that answered 410 Gone is asked again: in about a day.

    A site that drops a feed by mistake, or brings it back, is noticed within
    a day; a feed that stays gone costs one request a day.
    """
    return now + timedelta(seconds=GONE_PROBE + jitter(GONE_PROBE, rng))


def entry_failures(
    previous: Mapping[str, int], failed: Collection[str], limit: int = ENTRY_ATTEMPTS
) -> tuple[dict[str, int], set[str]]:
    """Count the polls in a row on which matching each entry failed.

    ``previous`` holds the counts after the last poll, ``failed`` the
    identities whose matching failed on this one. Returns the counts to keep
    (an entry that matched, or left the feed, starts again from nothing) and
    the entries that have failed on ``limit`` polls in a row: those are
    given up, recorded without matching, so one entry that kills its worker
    costs ``limit`` worker restarts, not one per poll forever, and can never
    alert late.
    """
    counts = {identity: previous.get(identity, 0) + 1 for identity in failed}
    give_up = {identity for identity, n in counts.items() if n >= limit}
    return {i: n for i, n in counts.items() if i not in give_up}, give_up


# --------------------------------------------------------------------------
# feed identity across URL changes


def url_identity(url: str) -> str:
    """``url`` without what doesn't change which feed it names.

    Dropped: the scheme (``http`` to ``https``), a default port, the case of
    the host, a leading ``www.``, a trailing slash, the fragment.
    """
    try:
        split = urlsplit(url.strip())
        port = split.port
    except ValueError:  # a port that is not a number: compare the text as it is
        return url.strip()
    host = (split.hostname or "").lower().removeprefix("www.")
    if port in (80, 443):
        port = None
    path = split.path.rstrip("/")
    query = f"?{split.query}" if split.query else ""
    return f"{host}{f':{port}' if port else ''}{path}{query}"


@dataclass(frozen=True, slots=True)
class Claim:
    """A feed the config lists at a URL the store doesn't know."""

    url: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class StoredFeed:
    """A stored feed that no URL of the config names any more: its entries wait for it."""

    key: str
    configured: str  # the URL the config listed it at last
    polled: str  # the URL it was polled at (a permanent redirect's target, once adopted)
    name: str | None = None  # its configured name
    earlier: tuple[str, ...] = ()  # URLs it was configured with or polled at before
    last_poll: datetime | None = None


@dataclass(frozen=True, slots=True)
class Carry:
    """The stored feed ``key`` continues as the feed now configured at ``url``."""

    url: str
    key: str
    earlier: str  # the URL the stored feed was configured at
    reason: str
    rivals: tuple[str, ...] = ()  # other new URLs that could have been it, and were not


def _likeness(claim: Claim, stored: StoredFeed) -> tuple[int, str]:
    """How sure we are that ``claim`` is ``stored`` under a new URL (0: not at all), and why."""
    if claim.url == stored.polled:
        return 3, f"{claim.url} is where {stored.configured} moved permanently (301)"
    if claim.url in stored.earlier:
        return 3, f"{claim.url} is one of its earlier URLs"
    wanted = url_identity(claim.url)
    if any(url_identity(u) == wanted for u in (stored.configured, stored.polled, *stored.earlier)):
        return 2, "the same URL but for the scheme, www., a default port or a trailing slash"
    if claim.name is not None and claim.name == stored.name:
        return 1, f"the same name {claim.name!r}"
    return 0, ""


def carry_over(claims: Sequence[Claim], stored: Sequence[StoredFeed]) -> list[Carry]:
    """Which stored feeds the new URLs of the config continue.

    A new URL continues a stored feed that no URL of the config names any
    more when it is the URL a permanent redirect of that feed pointed to or
    one of its earlier URLs (surest), else the same URL but for the scheme,
    ``www.``, a default port or a trailing slash, else when both have the
    same configured ``name:``. Each stored feed continues as at most one
    configured feed and each new URL continues at most one stored feed:
    surest first, then the most recently polled stored feed, then the
    order of the config; a new URL that loses out starts as a new feed.
    """
    # Only the pairs that share a URL, a URL identity or a name can be alike: found
    # by index, not by comparing every new URL with every stored feed (a config whose
    # 100,000 URLs all changed at once, to https say, was 10^10 comparisons).
    by_url: dict[str, set[int]] = {}
    by_identity: dict[str, set[int]] = {}
    by_name: dict[str, set[int]] = {}
    for si, feed in enumerate(stored):
        for url in (feed.polled, *feed.earlier):
            by_url.setdefault(url, set()).add(si)
        for url in (feed.configured, feed.polled, *feed.earlier):
            by_identity.setdefault(url_identity(url), set()).add(si)
        if feed.name is not None:
            by_name.setdefault(feed.name, set()).add(si)
    scored = []
    for ci, claim in enumerate(claims):
        candidates = by_url.get(claim.url, set()) | by_identity.get(url_identity(claim.url), set())
        if claim.name is not None:
            candidates = candidates | by_name.get(claim.name, set())
        for si in sorted(candidates):
            feed = stored[si]
            score, reason = _likeness(claim, feed)
            if score:
                polled = feed.last_poll.timestamp() if feed.last_poll else float("-inf")
                scored.append((-score, -polled, ci, si, reason))
    scored.sort()
    taken_claims: dict[int, tuple[int, str]] = {}  # claim -> (stored feed, reason)
    taken_stored: set[int] = set()
    wanted_by: dict[int, list[int]] = {}  # stored feed -> the claims alike, surest first
    for _score, _polled, ci, si, reason in scored:
        wanted_by.setdefault(si, []).append(ci)
        if ci in taken_claims or si in taken_stored:
            continue
        taken_claims[ci] = (si, reason)
        taken_stored.add(si)
    out = []
    for ci, (si, reason) in sorted(taken_claims.items()):
        rivals = tuple(claims[c].url for c in wanted_by[si] if c not in taken_claims)
        out.append(Carry(claims[ci].url, stored[si].key, stored[si].configured, reason, rivals))
    return out


def feed_notice(
    feed: str, before: int, after: int, threshold: int, error: str | None
) -> Notice | None:
    """The operator's notice when a poll changes a feed's failures in a row from
    ``before`` to ``after``: once when they reach ``threshold``, once when the feed
    recovers from that; nothing in between, no repeats."""
    if after == threshold and before < threshold:
        return Notice(
            "feed_failing",
            f"feed {feed} is failing",
            f"The feed {feed!r} has failed {after} polls in a row. Last error: {error}. "
            "It is still polled (with backoff); you hear from it again when it recovers.",
        )
    if after == 0 and before >= threshold:
        return Notice(
            "feed_recovered",
            f"feed {feed} recovered",
            f"The feed {feed!r} answers again after {before} failed polls in a row.",
        )
    return None


DOCUMENT_ATTEMPTS = 3  # worker crashes on the same bytes before they count as the cause


def document_failures(before: int, *, crashed: bool) -> int:
    """The failures in a row of one document after one more.

    A document that failed to parse, or ran into the worker's memory ceiling,
    fails again the same way: it counts as poisoned at once. A worker that
    died on it (killed, crashed, overran) may have died for another reason
    (an operator's kill, the OOM killer short of memory elsewhere): the same
    bytes get ``DOCUMENT_ATTEMPTS`` tries, on later polls, before they do.
    """
    return before + 1 if crashed else DOCUMENT_ATTEMPTS


def poisoned(failures: int) -> bool:
    """Whether a document that failed ``failures`` times in a row is not parsed again."""
    return failures >= DOCUMENT_ATTEMPTS


RATE_WINDOW = 7 * 86400.0  # `interval: auto` weighs a feed's last week of entries
AUTO_SHARE = 4.0  # and polls it four times in the average gap between its entries


def publishing_rate(
    rate: float, rate_at: datetime | None, published: Sequence[datetime | None], now: datetime
) -> float:
    """A feed's new entries a week, decayed exponentially over ``RATE_WINDOW``.

    ``rate`` was right at ``rate_at``; ``published`` are the dates of the new
    entries of this poll (None: undated, counts as now). An entry counts with
    the weight its age leaves it, so the first poll of a feed, which brings
    the whole of its document, estimates its rate from the dates in it rather
    than counting them all as new this week.
    """
    decayed = rate * math.exp(-(now - rate_at).total_seconds() / RATE_WINDOW) if rate_at else 0.0
    for when in published:
        age = max(0.0, (now - when).total_seconds()) if when else 0.0
        decayed += math.exp(-age / RATE_WINDOW)
    return decayed


def auto_interval(rate: float, minimum: float, maximum: float) -> float:
    """The interval of ``interval: auto`` for a feed publishing ``rate`` entries a week
    (as Miniflux's entry-frequency scheduler: the average gap, here a quarter of it),
    between ``minimum`` and ``maximum``; a feed with no entries in weeks: ``maximum``."""
    if rate <= 0.01:
        return maximum
    return min(maximum, max(minimum, RATE_WINDOW / rate / AUTO_SHARE))


def plan_due(
    now: datetime,
    feeds: Sequence[tuple[str, datetime | None, datetime | None, float]],
    rng: random.Random,
) -> list[tuple[str, datetime]]:
    """New due times for feeds (key, next due, last poll, interval), where needed.

    A feed never polled (no due time) starts soon, spread as ``first_due``
    says for as many new feeds as there are. A feed overdue by more than its
    interval (the daemon was down longer than that) is due at a random moment
    within one interval from now, so a restart after downtime is not one herd
    of every feed at once, nor one at every interval after.
    """
    new = sum(1 for _k, due, _last, _i in feeds if due is None)
    out = []
    for key, due, _last, interval in feeds:
        if due is None:
            out.append((key, first_due(now, interval, rng, new)))
        elif (now - due).total_seconds() > interval:
            out.append((key, now + timedelta(seconds=rng.uniform(0, interval))))
    return out
