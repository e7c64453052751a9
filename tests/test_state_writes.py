"""The states of polls that brought nothing new are committed together (group commit).

A round of 1,000 unchanged feeds was 1,000 write transactions, each a hop to a store
thread and a commit; now the states that come in while one write runs go in the next.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from monitor.app import App
from monitor.config import parse_config
from monitor.storage.sqlite import SQLiteStorage
from tests.feeds import Item, rss
from tests.servers import FeedServer, running

FEEDS = 60


@pytest.fixture
def server() -> Iterator[FeedServer]:
    feeds = FeedServer()
    with running(feeds):
        for i in range(FEEDS):
            feeds.put(f"/f{i}.xml", rss([Item(f"Item {i}", f"https://site.example/{i}")]))
        yield feeds


def _app(tmp_path: Path, server: FeedServer) -> App:
    urls = ", ".join(server.url(f"/f{i}.xml") for i in range(FEEDS))
    config = parse_config(
        "settings: {extract: false, concurrency: 50, per_host: 50, host_spacing: 0}\n"
        f"feeds: [{urls}]\nrules: [{{name: ds, keywords: [DeepSeek]}}]\n",
        tmp_path / "feeds.yaml",
        {},
    )
    return App(config, db=str(tmp_path / "monitor.db"), console=io.StringIO())


class Calls:
    """Counts the store's state writes (the App's own SQLite store underneath)."""

    def __init__(self, app: App, fail_batch: bool = False, fail_key: str | None = None) -> None:
        self.batches: list[int] = []
        self.single = 0
        store = app.storage
        batch = store.save_feed_states  # the real one (SQLite's single write is a batch of one)

        def save_feed_states(polls: Any) -> None:
            self.batches.append(len(polls))
            if fail_batch:
                raise RuntimeError("the batch failed")
            batch(polls)

        def save_feed_state(state: Any, notices: Any = ()) -> None:
            self.single += 1
            if state.key == fail_key:
                raise RuntimeError(f"can't write {state.key}")
            batch([(state, notices)])

        store.save_feed_states = save_feed_states  # type: ignore[method-assign]
        store.save_feed_state = save_feed_state  # type: ignore[method-assign]


def test_a_round_of_unchanged_feeds_commits_their_states_together(
    tmp_path: Path, server: FeedServer
) -> None:
    async def rounds() -> Calls:
        app = _app(tmp_path, server)
        try:
            await app.poll_round(app.config.feeds)  # 200: entries, one commit per feed
            calls = Calls(app)
            outcomes = await app.poll_round(app.config.feeds)  # every feed 304
            assert [o.status for o in outcomes] == [304] * FEEDS
            return calls
        finally:
            await app.close()

    calls = asyncio.run(rounds())
    assert sum(calls.batches) == FEEDS and calls.single == 0
    assert len(calls.batches) < FEEDS / 3, calls.batches  # together, not one by one
    store = SQLiteStorage(tmp_path / "monitor.db", readonly=True)
    states = store.feed_states()
    store.close()
    assert len(states) == FEEDS
    assert all(s.last_status == 304 for s in states)


def test_a_state_that_cannot_be_written_fails_its_own_poll_only(
    tmp_path: Path, server: FeedServer
) -> None:
    bad = server.url("/f7.xml")

    async def rounds() -> tuple[Calls, list[Any]]:
        app = _app(tmp_path, server)
        try:
            await app.poll_round(app.config.feeds)
            calls = Calls(app, fail_batch=True, fail_key=bad)
            results = await asyncio.gather(
                *(app.poller.poll(f) for f in app.config.feeds), return_exceptions=True
            )
            return calls, results
        finally:
            await app.close()

    calls, results = asyncio.run(rounds())
    failed = [r for r in results if isinstance(r, BaseException)]
    assert [str(e) for e in failed] == [f"can't write {bad}"]
    assert calls.batches and calls.single == FEEDS  # each again alone after the batch failed
    store = SQLiteStorage(tmp_path / "monitor.db", readonly=True)
    states = {s.key: s for s in store.feed_states()}
    store.close()
    assert {k for k, s in states.items() if s.last_status == 304} == set(states) - {bad}
    assert states[bad].last_status == 200  # as the first round left it
