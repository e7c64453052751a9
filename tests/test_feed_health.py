"""Feeds that fail: poisoned documents and entries cost one try (or three), a permanent
redirect is adopted only when it leads to a feed, a gone feed comes back by itself.

Real feed server, real worker pool, real SQLite, through ``App.poll_round`` (the
daemon's path); an executor in front of the pool records the calls it gets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.pool import WorkerError, WorkerPool
from tests.feeds import Item, rss
from tests.servers import FeedServer, running
from tests.test_pool import World

NOT_A_FEED = "<!doctype html><html><body><p>Wartungsarbeiten</p></body></html>"


class Recording(Executor):
    """A real pool that records each call by name; calls ``fails`` picks fail (a killed worker)."""

    def __init__(self, fails: Callable[[str, tuple[Any, ...]], bool] = lambda n, a: False) -> None:
        self.pool = WorkerPool(1)
        self.fails = fails
        self.calls: list[str] = []

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        name = getattr(fn, "__name__", "")
        self.calls.append(name)
        if not self.fails(name, args):
            return self.pool.submit(fn, *args, **kwargs)
        future: Future[Any] = Future()
        future.set_exception(WorkerError(f"{name}: its worker was killed by SIGKILL", crashed=True))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self.pool.shutdown(wait, cancel_futures=cancel_futures)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    feeds = FeedServer()
    with running(feeds):
        yield World(tmp_path, feeds)


def _titles(outcome: Any) -> list[str]:
    return sorted(a.title for a in outcome.alerts)


def test_a_document_that_failed_to_parse_is_not_parsed_again_until_its_bytes_change(
    world: World,
) -> None:
    world.feeds.put("/feed.xml", NOT_A_FEED, "text/html")
    errors, dues = [], []
    for n in range(1, 4):
        pool = Recording()
        outcome, state, _seen = world.poll(pool)
        assert pool.calls == (["parse_feed"] if n == 1 else []), n  # one parse in all
        assert outcome.error is not None and "HTML page" in outcome.error
        assert state.last_error == outcome.error and state.error_count == n  # counted
        errors.append(outcome.error)
        assert state.next_due is not None and state.last_poll is not None
        dues.append((state.next_due - state.last_poll).total_seconds())
    assert len(set(errors)) == 1  # the same error every time
    assert dues[0] < dues[1] < dues[2]  # and backed off
    world.publish(Item("DeepSeek ist zurück", "https://example.org/1", guid="farm:1"))
    pool = Recording()
    outcome, state, seen = world.poll(pool)
    assert pool.calls == ["parse_feed", "analyze"]
    assert _titles(outcome) == ["DeepSeek ist zurück"]
    assert (state.last_error, state.error_count, seen) == (None, 0, {"farm:1"})


def test_a_document_that_keeps_killing_its_worker_is_not_parsed_again(world: World) -> None:
    world.publish(Item("DeepSeek", "https://example.org/1", guid="farm:1"))
    for _attempt in range(3):  # a worker can die for other reasons: three tries
        killer = Recording(lambda name, args: name == "parse_feed")
        outcome, state, _seen = world.poll(killer)
        assert killer.calls == ["parse_feed"]
        assert outcome.error == "parsing failed: parse_feed: its worker was killed by SIGKILL"
    pool = Recording()
    outcome, state, seen = world.poll(pool)
    assert pool.calls == []  # no fourth worker killed by the same bytes
    assert (
        outcome.error
        == state.last_error
        == "parsing failed: parse_feed: its worker was killed by SIGKILL"
    )
    assert state.error_count == 4 and seen == set()


def test_a_worker_killed_once_costs_no_alert(world: World) -> None:
    """An operator's kill -9, or the OOM killer short of memory elsewhere: the same bytes
    are parsed again on the next poll, and their entries alert."""
    world.publish(Item("DeepSeek", "https://example.org/1", guid="farm:1"))
    once = [True]

    def first_parse(name: str, args: tuple[Any, ...]) -> bool:
        if name == "parse_feed" and once:
            return bool(once.pop())
        return False

    outcome, _state, _seen = world.poll(Recording(first_parse))
    assert outcome.error and outcome.alerts == ()
    outcome, state, _seen = world.poll(Recording(first_parse))
    assert _titles(outcome) == ["DeepSeek"]
    assert state.failed_hash is None and state.error_count == 0


def test_an_entry_whose_matching_keeps_failing_is_given_up_after_three_polls(
    world: World,
) -> None:
    poison = "DeepSeek Gift"
    world.publish(
        Item("DeepSeek gut", "https://example.org/1", guid="farm:1"),
        Item(poison, "https://example.org/2", guid="farm:2"),
    )

    def kills(name: str, args: tuple[Any, ...]) -> bool:
        return name == "analyze" and poison in [e.title for e in args[1]]

    for n in (1, 2):
        outcome, state, seen = world.poll(Recording(kills))
        assert _titles(outcome) == (["DeepSeek gut"] if n == 1 else [])
        assert seen == {"farm:1"}, n  # not recorded: tried again next poll
        assert outcome.error is not None and "matching failed" in outcome.error
        assert state.failing_entries == (("farm:2", n),)
        assert state.body_hash is None  # the document is parsed again
    outcome, state, seen = world.poll(Recording(kills))
    assert outcome.alerts == () and outcome.error is None
    assert seen == {"farm:1", "farm:2"}  # given up: recorded, so it never alerts late
    assert state.failing_entries == () and state.last_error is None
    assert state.entry_error is not None
    assert state.entry_error.startswith("https://example.org/2: matching failed: analyze:")
    assert state.entry_error.endswith("recorded without matching, it will not alert)")
    assert state.body_hash is not None
    pool = Recording()
    outcome, state, _seen = world.poll(pool)
    assert pool.calls == [] and outcome.alerts == ()  # the same document: nothing to do


def test_a_permanent_redirect_is_adopted_only_when_it_leads_to_a_feed(world: World) -> None:
    configured = world.feeds.url("/feed.xml")
    world.feeds.special["/feed.xml"] = (301, world.feeds.url("/moved.xml"))
    world.feeds.put("/moved.xml", NOT_A_FEED, "text/html")  # e.g. a parked domain
    outcome, state, _seen = world.poll(Recording())
    assert outcome.error is not None and "HTML page" in outcome.error
    assert state.url == configured  # not adopted: the next poll asks the old URL again
    world.feeds.put("/moved.xml", rss([Item("DeepSeek umgezogen", "https://x/1", guid="farm:1")]))
    outcome, state, seen = world.poll(Recording())
    assert _titles(outcome) == ["DeepSeek umgezogen"] and seen == {"farm:1"}
    assert state.url == world.feeds.url("/moved.xml") and state.configured == configured
    hits = world.feeds.hits.get("/feed.xml", 0)
    world.poll(Recording())
    assert world.feeds.hits.get("/feed.xml", 0) == hits  # polled at the new URL now


def test_a_gone_feed_is_probed_daily_and_resumes_when_it_answers_with_a_feed(
    world: World,
) -> None:
    world.feeds.special["/feed.xml"] = (410, None)
    outcome, state, _seen = world.poll(Recording())
    assert state.gone and state.condition == "gone"
    assert outcome.next_due is not None
    assert timedelta(hours=23) < outcome.next_due - datetime.now(UTC) < timedelta(hours=25)
    outcome, state, _seen = world.poll(Recording())  # the daily probe: still gone
    assert state.gone and state.error_count == 2
    assert outcome.next_due is not None and outcome.next_due - datetime.now(UTC) > timedelta(
        hours=23
    )
    del world.feeds.special["/feed.xml"]
    world.publish(Item("DeepSeek wieder da", "https://example.org/1", guid="farm:1"))
    outcome, state, _seen = world.poll(Recording())
    assert not state.gone and state.condition == "ok" and state.error_count == 0
    assert _titles(outcome) == ["DeepSeek wieder da"]
