"""The daemon's housekeeping (pruning stored article text) with a store that fails once."""

from __future__ import annotations

import asyncio
import io
import logging
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.app import App
from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.storage.base import NewEntry
from monitor.storage.sqlite import SQLiteStorage
from monitor.types import FeedEntry

FEED = "https://example.org/feed.xml"


class FailsFirstPrune(SQLiteStorage):
    """A real store whose first prune fails, as when another process holds the lock."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.calls: list[str] = []

    def prune(self, text_before: datetime, limit: int | None = None) -> int:
        self.calls.append(threading.current_thread().name)
        if len(self.calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return super().prune(text_before, limit)


def _old_article(store: SQLiteStorage, n: int, seen: datetime) -> None:
    entry = FeedEntry(f"id-{n}", f"id-{n}", None, f"Old {n}", "", "")
    store.commit_poll(
        store.feed_state(FEED), [NewEntry(entry, seen, document={"title": f"old {n}"})]
    )


def test_a_failed_prune_is_logged_and_retried_and_runs_off_the_event_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = parse_config(
        f"settings: {{retention: 1d}}\nfeeds: [{FEED}]\n", tmp_path / "feeds.yaml", {}
    )
    db = tmp_path / "monitor.db"

    async def run() -> FailsFirstPrune:
        app = App(config, db=str(db), console=io.StringIO())
        app.storage.close()
        store = FailsFirstPrune(db)
        app.storage = store
        _old_article(store, 1, datetime.now(UTC) - timedelta(days=3))
        _old_article(store, 2, datetime.now(UTC))  # within the retention: kept
        daemon = Daemon(app, {})
        daemon.prune_retry = 0.1
        task = asyncio.create_task(daemon._housekeeping())
        try:
            for _ in range(100):
                if len(store.calls) >= 2 or task.done():
                    break
                await asyncio.sleep(0.05)
            assert not task.done(), task  # the failure did not end housekeeping
        finally:
            daemon.stop.set()
            await asyncio.wait_for(task, 5)
            await app.close()
        return store

    with caplog.at_level(logging.INFO, logger="monitor.daemon"):
        store = asyncio.run(run())
    assert len(store.calls) >= 2
    assert "MainThread" not in store.calls  # the store works in its threads
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        "pruning stored article text failed, trying again in 0.1 s: database is locked" in m
        for m in messages
    ), messages
    assert "dropped the stored text of 1 articles older than the retention" in messages
    check = SQLiteStorage(db)
    try:
        assert [a.title for a in check.articles_since(datetime(2000, 1, 1, tzinfo=UTC))] == [
            "Old 2"
        ]
    finally:
        check.close()
