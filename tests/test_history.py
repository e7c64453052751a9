"""History retention at scale: pruning reads the entries their feed no longer lists.

A feed's still-listed entries are kept past the retention (their identities would be
new again). At 100,000 feeds that is millions of old entries; every pruning pass (each
two minutes in the soak) walked them all to find the few that may go, which cost the
daemon a fifth of a core. Each entry now says whether its feed's last parsed document
lists it, and the search reads the unlisted ones alone, by index.
"""

from __future__ import annotations

import asyncio
import io
import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.app import App
from monitor.config import parse_config
from monitor.storage import open_storage
from monitor.storage.base import FeedRef, NewEntry
from monitor.storage.sqlite import MIGRATIONS, SQLiteStorage
from monitor.types import FeedEntry
from tests.feeds import Item, rss
from tests.servers import FeedServer

T0 = datetime(2025, 1, 20, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def _new(feed: str, n: int, at: datetime) -> NewEntry:
    entry = FeedEntry(
        identity=f"{feed}#{n}",
        guid=f"{feed}#{n}",
        link=f"{feed}/a/{n}",
        title=f"Article {n}",
        summary="",
        content="",
        published=at,
    )
    return NewEntry(entry=entry, first_seen=at)


def _poll(store: SQLiteStorage, feed: str, at: datetime, new: range, listed: range) -> None:
    state = store.feed_state(feed)
    store.commit_poll(
        replace(state, last_poll=at, last_parsed=at),
        [_new(feed, n, at) for n in new],
        listed=[f"{feed}#{n}" for n in listed],
    )


def _prune_steps(store: SQLiteStorage, before: datetime) -> tuple[int, int]:
    """SQLite virtual-machine steps (in units of 100, by its progress handler) of one
    pruning pass as the daemon runs it (batches until one comes back short), and how
    many entries it pruned."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    db = store._db
    db.set_progress_handler(count, 100)
    pruned = 0
    try:
        while True:
            n = store.prune_history(before, limit=50)
            pruned += n
            if n < 50:
                break
    finally:
        db.set_progress_handler(None, 100)
    return steps, pruned


def _store_with(path: Path, quiet_feeds: int) -> SQLiteStorage:
    """One feed that dropped five entries forty days ago, beside ``quiet_feeds`` feeds
    whose documents have listed the same 20 entries ever since."""
    store = SQLiteStorage(path)
    busy = "https://busy.example/rss"
    quiet = [f"https://quiet{i}.example/rss" for i in range(quiet_feeds)]
    store.ensure_feeds([FeedRef(u) for u in [busy, *quiet]])
    _poll(store, busy, T0, range(10), range(0))
    _poll(store, busy, T0 + DAY, range(10, 12), range(5, 10))  # 0-4 dropped out
    for feed in quiet:
        _poll(store, feed, T0, range(20), range(0))
    return store


def test_pruning_reads_the_entries_no_longer_listed_not_every_old_one(tmp_path: Path) -> None:
    few = _store_with(tmp_path / "few.db", 0)
    many = _store_with(tmp_path / "many.db", 150)  # 3,000 old entries still listed
    try:
        steps_few, pruned_few = _prune_steps(few, T0 + 40 * DAY)
        steps_many, pruned_many = _prune_steps(many, T0 + 40 * DAY)
        assert pruned_few == pruned_many == 5
        # the 3,000 still-listed entries are not read (reading them took some 300 units)
        assert steps_many <= steps_few + 20, (steps_few, steps_many)
        # and they are all still known: not one would alert again
        for i in range(150):
            feed = f"https://quiet{i}.example/rss"
            assert len(many.seen(feed, [f"{feed}#{n}" for n in range(20)], [])) == 20
    finally:
        few.close()
        many.close()


def test_a_database_of_the_last_schema_keeps_what_its_feeds_list(tmp_path: Path) -> None:
    """Migrating marks each entry listed or not exactly as the old search judged it."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        for version, script in enumerate(MIGRATIONS[:7]):
            db.executescript(script + f";PRAGMA user_version={version + 1};")
        t0, t1 = T0.timestamp(), (T0 + DAY).timestamp()
        db.executemany(
            "INSERT INTO feeds (key, url, configured, last_parsed) VALUES (?, ?, ?, ?)",
            [("a", "https://a.example/", "https://a.example/", t1),
             ("b", "https://b.example/", "https://b.example/", None)],
        )  # fmt: skip
        db.executemany(
            "INSERT INTO entries (feed, identity, title, first_seen, last_listed)"
            " VALUES (?, ?, 't', ?, ?)",
            [
                ("a", "listed", t0, t1),  # the last document lists it: kept
                ("a", "dropped", t0, t0),  # listed before the last parse only: may go
                ("a", "unmarked", t0, None),  # from before last_listed was kept: may go
                ("b", "never-parsed", t0, None),  # its feed was never parsed: may go
            ],
        )
    db.close()
    store = SQLiteStorage(path)
    try:
        assert store.prune_history(T0 + 40 * DAY) == 3
        assert store.seen("a", ["listed", "dropped", "unmarked"], []) == {"listed"}
        assert store.seen("b", ["never-parsed"], []) == set()
    finally:
        store.close()


def test_postgresql_migration_keeps_what_its_feeds_list(postgres_url: str) -> None:
    import psycopg

    from monitor.storage import migrate
    from monitor.storage.postgres import MIGRATIONS as PG_MIGRATIONS

    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute(PG_MIGRATIONS[0])
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        db.execute("DELETE FROM schema_version")
        db.execute("INSERT INTO schema_version (version) VALUES (1)")
        t0, t1 = T0, T0 + DAY
        for key, parsed in (("a", t1), ("b", None)):
            db.execute(
                "INSERT INTO feeds (key, url, configured, last_parsed) VALUES (%s, %s, %s, %s)",
                (key, f"https://{key}.example/", f"https://{key}.example/", parsed),
            )
        for feed, identity, listed in (
            ("a", "listed", t1),
            ("a", "dropped", t0),
            ("a", "unmarked", None),
            ("b", "never-parsed", None),
        ):
            db.execute(
                "INSERT INTO entries (feed, identity, title, first_seen, last_listed)"
                " VALUES (%s, %s, 't', %s, %s)",
                (feed, identity, t0, listed),
            )
    assert migrate(postgres_url)[0] == 1
    store = open_storage(postgres_url)
    try:
        assert store.prune_history(T0 + 40 * DAY) == 3
        assert store.seen("a", ["listed", "dropped", "unmarked"], []) == {"listed"}
    finally:
        store.close()


def test_polls_keep_what_each_document_lists_and_let_the_rest_go(
    tmp_path: Path, server: FeedServer
) -> None:
    """Through the real pipeline: a document that drops entries, and one that empties."""
    items = [Item(f"Story {n}", f"https://site.example/{n}") for n in range(4)]
    server.put("/drops.xml", rss(items[:3]))
    server.put("/empties.xml", rss(items[:2]))
    urls = [server.url("/drops.xml"), server.url("/empties.xml")]
    config = parse_config(
        "settings: {extract: false, host_spacing: 0}\n"
        f"feeds: [{', '.join(urls)}]\nrules: [{{name: ds, keywords: [DeepSeek]}}]\n",
        tmp_path / "feeds.yaml",
        {},
    )

    async def polls() -> None:
        app = App(config, db=str(tmp_path / "monitor.db"), console=io.StringIO())
        try:
            await app.poll_round(app.config.feeds)
            server.put("/drops.xml", rss([items[0], items[3]]))  # 1 and 2 dropped out
            server.put("/empties.xml", rss([]))  # lists nothing any more
            await app.poll_round(app.config.feeds)
        finally:
            await app.close()

    asyncio.run(polls())
    store = open_storage(str(tmp_path / "monitor.db"))
    try:
        later = datetime.now(UTC) + DAY  # everything is older than this retention
        assert store.prune_history(later) == 4
        links = [i.link for i in items]
        by_url = {s.configured: s.key for s in store.feed_states()}
        assert store.seen(by_url[urls[0]], [], links) == {links[0], links[3]}
        assert store.seen(by_url[urls[1]], [], links) == set()
    finally:
        store.close()
