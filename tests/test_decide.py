"""Pure poll decisions: when a feed is due next, which entries may alert, dedup in a document."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from monitor import decide
from monitor.decide import (
    HINT_FACTOR,
    MAX_BACKOFF,
    Carry,
    Claim,
    StoredFeed,
    cache_max_age,
    carry_over,
    entry_failures,
    explain_interval,
    first_due,
    hint_cap,
    is_fresh,
    jitter,
    next_due,
    probe_due,
    skip_until,
    unique_entries,
    url_identity,
)
from monitor.types import FeedEntry, FetchResult, ParsedFeed

MONDAY = datetime(2025, 1, 20, 12, 0, tzinfo=UTC)  # a Monday
HOUR = 3600.0
DAY = 86400.0


class NoJitter(random.Random):
    """An rng whose offsets are all zero, so the expected times are exact."""

    def uniform(self, a: float, b: float) -> float:
        return 0.0


def _result(headers: dict[str, str] | None = None, retry_after: float | None = None) -> FetchResult:
    return FetchResult(
        url="https://x.example/rss",
        final_url="https://x.example/rss",
        status=200,
        headers=headers or {},
        retry_after=retry_after,
    )


def _parsed(
    ttl: int | None = None, hours: frozenset[int] = frozenset(), days: frozenset[int] = frozenset()
) -> ParsedFeed:
    return ParsedFeed(
        title="t", link=None, entries=(), ttl_seconds=ttl, skip_hours=hours, skip_days=days
    )


def _delay(
    *,
    interval: float = 600.0,
    errors: int = 0,
    result: FetchResult | None = None,
    parsed: ParsedFeed | None = None,
    now: datetime = MONDAY,
    respect_hints: bool = True,
) -> float:
    due = next_due(
        now=now,
        interval=interval,
        error_count=errors,
        result=result,
        parsed=parsed,
        rng=NoJitter(),
        respect_hints=respect_hints,
    )
    return (due - now).total_seconds()


SUCCESS = [
    ("interval only", {}, 600.0),
    ("no fetch result or parse (304)", {"result": None, "parsed": None}, 600.0),
    ("ttl raises the interval", {"parsed": _parsed(ttl=1800)}, 1800.0),
    ("ttl never lowers it", {"parsed": _parsed(ttl=60)}, 600.0),
    ("ttl capped at 4x the interval", {"parsed": _parsed(ttl=3 * 86400)}, 2400.0),
    ("ttl capped at a day", {"interval": 8 * HOUR, "parsed": _parsed(ttl=3 * 86400)}, DAY),
    ("max-age raises", {"result": _result({"Cache-Control": "public, max-age=1800"})}, 1800.0),
    ("max-age up to 4x", {"result": _result({"Cache-Control": "max-age=3600"})}, 2400.0),
    ("max-age lower case header", {"result": _result({"cache-control": "max-age=1200"})}, 1200.0),
    ("max-age never lowers", {"result": _result({"Cache-Control": "max-age=10"})}, 600.0),
    ("max-age zero ignored", {"result": _result({"Cache-Control": "max-age=0"})}, 600.0),
    ("s-maxage is not max-age", {"result": _result({"Cache-Control": "s-maxage=9000"})}, 600.0),
    (
        "max-age capped at a day",
        {"interval": 8 * HOUR, "result": _result({"Cache-Control": "max-age=999999"})},
        DAY,
    ),
    (
        "respect_ttl false: hints ignored",
        {
            "respect_hints": False,
            "parsed": _parsed(ttl=1800),
            "result": _result({"Cache-Control": "max-age=1800"}),
        },
        600.0,
    ),
    (
        "respect_ttl false: Retry-After still honoured",
        {"respect_hints": False, "result": _result(retry_after=5000)},
        5000.0,
    ),
    (
        "the larger floor wins",
        {"result": _result({"Cache-Control": "max-age=1200"}), "parsed": _parsed(ttl=1800)},
        1800.0,
    ),
    ("Retry-After on success is honoured", {"result": _result(retry_after=5000)}, 5000.0),
    ("tiny interval is at least 1s", {"interval": 0.1}, 1.0),
]


@pytest.mark.parametrize(
    ("kwargs", "seconds"), [pytest.param(k, s, id=name) for name, k, s in SUCCESS]
)
def test_next_due_after_success(kwargs: dict[str, object], seconds: float) -> None:
    assert _delay(**kwargs) == seconds  # type: ignore[arg-type]


BACKOFF = [
    (1, 600.0, None, 600.0),
    (2, 600.0, None, 1200.0),
    (3, 600.0, None, 2400.0),
    (5, 600.0, None, 9600.0),
    (8, 600.0, None, 76800.0),
    (9, 600.0, None, MAX_BACKOFF),  # 153600 s would be over a day
    (50, 600.0, None, MAX_BACKOFF),  # capped at 24 h
    (1000, 600.0, None, MAX_BACKOFF),  # no overflow
    (3, 2 * DAY, None, 2 * DAY),  # an interval over a day is not shortened by the cap
    (1, 600.0, 7200.0, 7200.0),  # Retry-After beyond the backoff wins
    (4, 600.0, 60.0, 4800.0),  # ...but never shortens it
    (1, 600.0, 10 * DAY, MAX_BACKOFF),  # an absurd Retry-After is capped too
]


@pytest.mark.parametrize(("errors", "interval", "retry_after", "seconds"), BACKOFF)
def test_next_due_backs_off_after_errors(
    errors: int, interval: float, retry_after: float | None, seconds: float
) -> None:
    result = _result(retry_after=retry_after)
    assert _delay(interval=interval, errors=errors, result=result) == seconds


def test_backoff_doubles_until_the_cap() -> None:
    delays = [_delay(errors=n) for n in range(1, 12)]
    assert delays[:4] == [600.0, 1200.0, 2400.0, 4800.0]
    assert all(b == min(2 * a, MAX_BACKOFF) for a, b in pairwise(delays))
    assert delays[-1] == MAX_BACKOFF == 24 * HOUR


def test_feed_hints_are_ignored_while_failing() -> None:
    hinted = _parsed(ttl=5 * HOUR, hours=frozenset({12, 13}))
    assert _delay(errors=1, parsed=hinted) == 600.0


SKIP = [
    # (now, interval, skip hours, skip days, expected due)
    (
        MONDAY.replace(hour=22, minute=30),
        HOUR,
        {23, 0},
        set(),
        MONDAY.replace(hour=23) + timedelta(hours=2),
    ),
    # ... but no later than 4 intervals from now
    (
        MONDAY.replace(hour=22, minute=50),
        600.0,
        {23, 0},
        set(),
        MONDAY.replace(hour=22, minute=50) + timedelta(minutes=40),
    ),
    (MONDAY.replace(hour=20), 600.0, {23}, set(), MONDAY.replace(hour=20, minute=10)),
    # Friday 23:30 + 8h lands on Saturday: the weekend is skipped, up to a day
    (
        MONDAY + timedelta(days=4, hours=11, minutes=30),
        8 * HOUR,
        set(),
        {5, 6},
        MONDAY + timedelta(days=5, hours=11, minutes=30),
    ),
    # everything skipped is nonsense: ignored
    (MONDAY, 600.0, set(range(24)), set(), MONDAY + timedelta(minutes=10)),
    (MONDAY, 600.0, set(), set(range(7)), MONDAY + timedelta(minutes=10)),
]


@pytest.mark.parametrize(("now", "interval", "hours", "days", "expected"), SKIP)
def test_next_due_honours_skip_hours_and_days(
    now: datetime, interval: float, hours: set[int], days: set[int], expected: datetime
) -> None:
    parsed = _parsed(hours=frozenset(hours), days=frozenset(days))
    due = next_due(
        now=now, interval=interval, error_count=0, result=None, parsed=parsed, rng=NoJitter()
    )
    assert due == expected


def test_skip_until_keeps_an_allowed_time_unchanged() -> None:
    when = MONDAY.replace(minute=17, second=3)
    assert skip_until(when, frozenset({3}), frozenset({6})) == when


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Cache-Control": "max-age=60"}, 60.0),
        ({"CACHE-CONTROL": "private, MAX-AGE = 90"}, 90.0),
        ({"Cache-Control": "no-store"}, None),
        ({"Cache-Control": "s-maxage=60"}, None),
        ({}, None),
    ],
)
def test_cache_max_age(headers: dict[str, str], expected: float | None) -> None:
    assert cache_max_age(headers) == expected


@pytest.mark.parametrize("interval", [1.0, 60.0, 900.0, 86400.0])
def test_jitter_is_small_and_bounded(interval: float) -> None:
    rng = random.Random(7)
    offsets = [jitter(interval, rng) for _ in range(500)]
    bound = min(interval * 0.05, 60.0)
    assert all(-bound <= o <= bound for o in offsets)
    assert len(set(offsets)) > 1  # it does spread


def test_first_due_is_soon() -> None:
    rng = random.Random(1)
    dues = [first_due(MONDAY, 900.0, rng) for _ in range(100)]
    assert all(MONDAY <= d <= MONDAY + timedelta(seconds=5) for d in dues)


# --------------------------------------------------------------------------
# is_fresh


def _e(identity: str, link: str | None = None, published: datetime | None = None) -> FeedEntry:
    return FeedEntry(identity, None, link, identity, "", "", published=published)


@pytest.mark.parametrize(
    ("published", "fresh"),
    [
        (None, True),  # undated: published when first seen
        (MONDAY, True),
        (MONDAY - timedelta(days=2), True),  # exactly max_age old
        (MONDAY - timedelta(days=2, seconds=1), False),
        (MONDAY - timedelta(days=400), False),
        (MONDAY + timedelta(hours=3), True),  # dated in the future
    ],
)
def test_is_fresh(published: datetime | None, fresh: bool) -> None:
    assert is_fresh(_e("a", published=published), MONDAY, 2 * DAY) is fresh


# --------------------------------------------------------------------------
# unique_entries


def test_unique_entries_drops_repeats_of_identity_or_link_first_wins() -> None:
    entries = (
        _e("g1", "https://x/1"),
        _e("g1", "https://x/other"),  # same identity
        _e("g2", "https://x/1"),  # same link, new guid
        _e("g3", None),
        _e("g3", None),
        _e("https://x/4", "https://x/4"),
        _e("g5", "https://x/5"),
    )
    kept = unique_entries(entries)
    assert [(e.identity, e.link) for e in kept] == [
        ("g1", "https://x/1"),
        ("g3", None),
        ("https://x/4", "https://x/4"),
        ("g5", "https://x/5"),
    ]


def test_unique_entries_treats_a_link_equal_to_an_identity_as_a_repeat() -> None:
    entries = (_e("https://x/1"), _e("g2", "https://x/1"))
    assert [e.identity for e in unique_entries(entries)] == ["https://x/1"]


def test_first_due_spreads_thousands_of_new_feeds_at_about_a_hundred_a_second() -> None:
    rng = random.Random(2)
    dues = [first_due(MONDAY, 900.0, rng, new_feeds=10_000) for _ in range(2000)]
    latest = max(dues) - MONDAY
    assert timedelta(seconds=90) < latest <= timedelta(seconds=100)
    # never beyond one interval, however many feeds
    dues = [first_due(MONDAY, 60.0, rng, new_feeds=10_000) for _ in range(200)]
    assert all(MONDAY <= d <= MONDAY + timedelta(seconds=60) for d in dues)


# --------------------------------------------------------------------------
# gone feeds and entries that keep failing


def test_a_gone_feed_is_asked_again_in_about_a_day() -> None:
    assert probe_due(MONDAY, NoJitter()) == MONDAY + timedelta(days=1)
    for seed in range(20):
        delay = (probe_due(MONDAY, random.Random(seed)) - MONDAY).total_seconds()
        assert DAY - 60 <= delay <= DAY + 60


def test_entry_failures_count_polls_in_a_row_and_give_up_at_the_limit() -> None:
    counts, give_up = entry_failures({}, ["a", "b"], limit=3)
    assert (counts, give_up) == ({"a": 1, "b": 1}, set())
    # b matched (or left the feed): its count is forgotten
    counts, give_up = entry_failures(counts, ["a"], limit=3)
    assert (counts, give_up) == ({"a": 2}, set())
    counts, give_up = entry_failures(counts, ["a", "b"], limit=3)
    assert (counts, give_up) == ({"b": 1}, {"a"})
    assert entry_failures({"a": 2}, [], limit=3) == ({}, set())


# --------------------------------------------------------------------------
# feed identity


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://example.org/feed.xml", "https://example.org/feed.xml", True),
        ("https://www.example.org/feed", "https://example.org/feed/", True),
        ("https://EXAMPLE.org:443/feed", "http://example.org:80/feed", True),
        ("https://example.org/feed#top", "https://example.org/feed", True),
        ("https://example.org:8443/feed", "https://example.org/feed", False),
        ("https://example.org/Feed", "https://example.org/feed", False),
        ("https://example.org/feed?lang=de", "https://example.org/feed?lang=en", False),
        ("https://blog.example.org/feed", "https://example.org/feed", False),
    ],
)
def test_url_identity(a: str, b: str, same: bool) -> None:
    assert (url_identity(a) == url_identity(b)) is same


def _stored(
    key: str, *, polled: str | None = None, name: str | None = None, **kw: object
) -> StoredFeed:
    return StoredFeed(key=key, configured=key, polled=polled or key, name=name, **kw)  # type: ignore[arg-type]


def test_carry_over_finds_the_same_feed_by_scheme_redirect_earlier_url_or_name() -> None:
    stored = [
        _stored("http://a.example/feed"),
        _stored("https://b.example/rss", polled="https://b.example/new-rss"),
        _stored("https://c.example/x", earlier=("https://c.example/old",)),
        _stored("https://d.example/feed", name="D"),
        _stored("https://e.example/feed"),
    ]
    claims = [
        Claim("https://a.example/feed"),
        Claim("https://b.example/new-rss"),
        Claim("https://c.example/old"),
        Claim("https://elsewhere.example/d.xml", name="D"),
        Claim("https://f.example/feed"),  # nothing like it: a new feed
    ]
    carried = {c.url: c.key for c in carry_over(claims, stored)}
    assert carried == {
        "https://a.example/feed": "http://a.example/feed",
        "https://b.example/new-rss": "https://b.example/rss",
        "https://c.example/old": "https://c.example/x",
        "https://elsewhere.example/d.xml": "https://d.example/feed",
    }


def test_two_new_urls_that_could_continue_one_stored_feed_the_surest_takes_it() -> None:
    stored = [_stored("http://a.example/feed", polled="https://feeds.a.example/main", name="A")]
    claims = [
        Claim("https://a.example/other", name="A"),  # only the name
        Claim("https://a.example/feed"),  # the same URL but for the scheme
        Claim("https://feeds.a.example/main"),  # where its 301 pointed: surest
    ]
    assert carry_over(claims, stored) == [
        Carry(
            "https://feeds.a.example/main",
            "http://a.example/feed",
            "http://a.example/feed",
            "https://feeds.a.example/main is where http://a.example/feed moved permanently (301)",
            rivals=("https://a.example/feed", "https://a.example/other"),
        )
    ]


def test_equally_sure_claims_go_in_config_order_and_one_url_continues_one_feed() -> None:
    stored = [
        _stored("http://x.example/feed", last_poll=MONDAY),
        _stored("http://www.x.example/feed", last_poll=MONDAY + timedelta(hours=1)),
    ]
    claims = [Claim("https://x.example/feed"), Claim("https://x.example/feed/")]
    carried = [(c.url, c.key) for c in carry_over(claims, stored)]
    # the first claim takes the most recently polled feed, the second the other one
    assert carried == [
        ("https://x.example/feed", "http://www.x.example/feed"),
        ("https://x.example/feed/", "http://x.example/feed"),
    ]
    assert carry_over([Claim("https://x.example/feed")], stored)[0].rivals == ()


def test_carry_over_compares_only_the_feeds_that_share_a_url_identity_or_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every URL of a big config changed at once (to https, say): each new URL is
    matched by index to its stored feed, not compared with every stored feed."""
    n = 400
    stored = [_stored(f"http://site{i}.example/feed", name=f"Feed {i}") for i in range(n)]
    claims = [Claim(f"https://site{i}.example/feed", name=f"Feed {i}") for i in range(n)]
    stored.append(_stored("http://gone.example/feed"))  # listed no more, like nothing new
    calls = 0
    identity = decide.url_identity

    def counted(url: str) -> str:
        nonlocal calls
        calls += 1
        return identity(url)

    monkeypatch.setattr(decide, "url_identity", counted)
    carried = carry_over(claims, stored)
    assert [(c.url, c.key) for c in carried] == [
        (f"https://site{i}.example/feed", f"http://site{i}.example/feed") for i in range(n)
    ]
    # each URL's identity a few times; comparing every pair took 3 x n x n
    assert calls <= 6 * (n + 1), calls


# --------------------------------------------------------------------------
# due times from the store: the plan at start, `interval: auto`


def test_plan_spreads_new_feeds_and_feeds_overdue_past_their_interval() -> None:
    rng = random.Random(1)
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    feeds = [
        ("new", None, None, 600.0),
        ("soon", now - timedelta(seconds=30), now - timedelta(seconds=630), 600.0),  # keeps
        ("late", now - timedelta(hours=3), now - timedelta(hours=3, minutes=10), 600.0),
        ("future", now + timedelta(minutes=5), now, 600.0),
    ]
    plan = dict(decide.plan_due(now, feeds, rng))
    assert set(plan) == {"new", "late"}
    assert now <= plan["new"] <= now + timedelta(seconds=30)
    assert now <= plan["late"] <= now + timedelta(seconds=600)
    # a thousand feeds overdue after a long downtime: spread over the interval, not one herd
    many = [(f"f{i}", now - timedelta(days=1), None, 900.0) for i in range(1000)]
    due = sorted((d - now).total_seconds() for _k, d in decide.plan_due(now, many, rng))
    assert len(due) == 1000 and due[0] >= 0 and due[-1] <= 900
    assert sum(1 for d in due if d < 90) < 150  # about a tenth in the first tenth


def test_publishing_rate_weighs_entries_by_age_and_decays() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    week = timedelta(days=7)
    # a first poll: a document of 20 entries spread over the last 20 days
    dates = [now - timedelta(days=d) for d in range(20)]
    rate = decide.publishing_rate(0.0, None, dates, now)
    assert 6 < rate < 9  # about one a day, not twenty this week
    assert decide.publishing_rate(0.0, None, [None, None], now) == 2.0  # undated: now
    # a week without entries: e^-1 of it left
    later = decide.publishing_rate(rate, now, [], now + week)
    assert later == pytest.approx(rate / math.e)


@pytest.mark.parametrize(
    ("per_week", "expected"),
    [
        (0.0, 6 * 3600.0),  # quiet: the longest
        (7.0, 6 * 3600.0),  # a day's gap / 4 = 6 h
        (28.0, 1.5 * 3600.0),  # four a day: every 1 h 30 m
        (100_000.0, 300.0),  # busy: the shortest
    ],
)
def test_auto_interval_is_a_quarter_of_the_average_gap_within_its_range(
    per_week: float, expected: float
) -> None:
    assert decide.auto_interval(per_week, 300.0, 6 * 3600.0) == pytest.approx(expected)


# # the interval in force, read back from the stored times

EXPLAINED = [
    ("configured", {}, "configured"),
    ("a ttl below the interval", {"parsed": _parsed(ttl=60)}, "configured"),
    ("a ttl above it", {"parsed": _parsed(ttl=1800)}, "feed_hints"),
    ("a max-age above it", {"result": _result({"Cache-Control": "max-age=9000"})}, "feed_hints"),
    ("skipHours", {"parsed": _parsed(hours=frozenset({12}))}, "feed_hints"),
    ("hints switched off", {"parsed": _parsed(ttl=1800), "respect_hints": False}, "configured"),
    ("one failure", {"errors": 1}, "backoff"),
    ("five failures", {"errors": 5}, "backoff"),
    ("a day of failures", {"errors": 40}, "backoff"),
    (
        "Retry-After past the backoff",
        {"errors": 1, "result": _result(retry_after=7200)},
        "retry_after",
    ),
]


@pytest.mark.parametrize(("kwargs", "reason"), [pytest.param(k, r, id=n) for n, k, r in EXPLAINED])
@pytest.mark.parametrize("seed", range(20))
def test_the_interval_in_force_is_explained_by_the_rules_that_made_it(
    kwargs: dict[str, object], reason: str, seed: int
) -> None:
    now = MONDAY.replace(hour=12, minute=5)  # in the skipped hour 12
    args: dict[str, object] = {"result": None, "parsed": None, **kwargs}
    due = next_due(
        now=now,
        interval=600.0,
        error_count=int(args.pop("errors", 0)),  # type: ignore[call-overload]
        rng=random.Random(seed),
        **args,  # type: ignore[arg-type]
    )
    errors = int(kwargs.get("errors", 0))  # type: ignore[call-overload]
    explained = explain_interval(
        interval=600.0,
        last_poll=now,
        next_due=due,
        error_count=errors,
        gone=False,
        paused=False,
        now=now,
    )
    assert explained.reason == reason
    assert explained.seconds == (due - now).total_seconds()


def test_the_hints_never_lengthen_the_interval_past_the_cap() -> None:
    assert hint_cap(600.0) == 600.0 * HINT_FACTOR == 2400.0
    assert hint_cap(12 * HOUR) == DAY  # at most a day ...
    assert hint_cap(3 * DAY) == 3 * DAY  # ... and never shorter than the interval
    hinted = {
        "parsed": _parsed(ttl=int(DAY), hours=frozenset(range(12, 20))),
        "result": _result({"Cache-Control": "max-age=86400"}),
    }
    assert _delay(**hinted) == 2400.0  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ({"paused": True}, "paused"),
        ({"last_poll": None}, "not_polled"),
        ({"next_due": MONDAY - timedelta(seconds=1)}, "due"),
        ({"gone": True, "next_due": MONDAY + timedelta(days=1)}, "gone"),
    ],
)
def test_states_without_an_interval_say_so(state: dict[str, object], reason: str) -> None:
    args: dict[str, object] = {
        "interval": 600.0,
        "last_poll": MONDAY - timedelta(minutes=5),
        "next_due": MONDAY + timedelta(minutes=5),
        "error_count": 0,
        "gone": False,
        "paused": False,
        "now": MONDAY,
        **state,
    }
    assert explain_interval(**args).reason == reason  # type: ignore[arg-type]
