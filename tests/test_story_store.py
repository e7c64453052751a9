"""One story copied by many feeds: the store searches the first reports alone.

Each matched entry's story is stored with the band keys of its text fingerprint;
a new entry's candidates are the stories sharing a band key. When one wire story
ran in hundreds of feeds (the soak's farm repeats 400 texts over 100,000 feeds),
every later copy read the bands of every earlier copy (7 ms a copy at 160 copies,
growing all hour), though a copy for each rule it matched is never anyone's first
report. Copies' bands are now kept unsearched (``leads = 0``) until their first
is pruned, when they become first reports themselves.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from monitor.storage import Storage, open_storage
from monitor.storage.base import FeedRef, NewEntry
from monitor.storage.sqlite import MIGRATIONS, SQLiteStorage
from tests.test_storage import FEED, T0, WIRE, _story_entry

HOUR = timedelta(hours=1)


@pytest.fixture
def store(database: str) -> Iterator[Storage]:
    s = open_storage(database)
    try:
        yield s
    finally:
        s.close()


def _on(store: Storage, feed: str, new: NewEntry) -> None:
    store.ensure_feeds([FeedRef(feed)])
    store.commit_poll(replace(store.feed_state(feed), title=feed), [new])


def _copy(store: Storage, n: int, at_hours: float) -> NewEntry:
    """The wire story again on feed ``n`` (another page, a cut last sentence)."""
    cut = WIRE.replace(" Microsoft kündigte an, das Modell über Azure anzubieten.", "")
    return _story_entry(store, n, cut, link=f"https://f{n}.example/a", at=T0 + at_hours * HOUR)


def _first_report(store: Storage) -> None:
    """The wire story as entry 1, on FEED."""
    _on(store, FEED, _story_entry(store, 1, WIRE, link="https://heise.example/a", at=T0))


def _copies_fold_and_take_over(store: Storage) -> None:
    """After entry 1 and its copy, entry 2: a third copy folds into entry 1, and once
    entry 1's story is pruned, a fourth folds into entry 2."""
    _on(store, "https://f3.example/rss", _copy(store, 3, 2))
    assert _alerted(store) == ["text 1"]
    assert store.prune_stories(T0 + HOUR / 2) == 1
    _on(store, "https://f4.example/rss", _copy(store, 4, 3))
    assert _alerted(store) == ["text 1"]


def _alerted(store: Storage) -> list[str]:
    return sorted(d.payload.title for d in store.due_deliveries(T0 + 30 * 24 * HOUR))  # type: ignore[union-attr]


def test_a_copy_becomes_the_first_report_once_its_first_is_pruned(store: Storage) -> None:
    _first_report(store)
    _on(store, "https://f2.example/rss", _copy(store, 2, 1))
    assert _alerted(store) == ["text 1"]
    # the first report's story leaves (past the story window); its copy now leads
    assert store.prune_stories(T0 + HOUR / 2) == 1
    _on(store, "https://f3.example/rss", _copy(store, 3, 2))
    assert _alerted(store) == ["text 1"]  # entry 3 is a copy of entry 2
    records = {r.title: r for r in store.matches_since(T0 - HOUR)}
    assert records["Article 3"].copy_of == "https://f2.example/rss"
    # and once that one leaves too, the story alerts again
    assert store.prune_stories(T0 + 3 * HOUR) == 2
    _on(store, "https://f4.example/rss", _copy(store, 4, 4))
    assert _alerted(store) == ["text 1", "text 4"]


def test_a_copy_for_one_rule_still_leads_for_another(store: Storage) -> None:
    """An entry that is a copy for one rule and the first report for another is
    searched: a later copy matching the second rule folds into it."""
    from monitor.match import Hit, RuleMatch

    def both(new: NewEntry) -> NewEntry:
        extra = RuleMatch("Azure", (Hit("azure", "content", 0, 5),))
        out = tuple(
            replace(o, item=replace(o.item, rules=("DeepSeek", "Azure"))) for o in new.outgoing
        )
        return replace(new, matches=(*new.matches, extra), outgoing=out)

    _first_report(store)
    _on(store, "https://f2.example/rss", both(_copy(store, 2, 1)))  # first for Azure
    _on(store, "https://f3.example/rss", both(_copy(store, 3, 2)))  # a copy for both
    assert _alerted(store) == ["text 1", "text 2"]  # entry 3 folds into both
    records = {r.title: r for r in store.matches_since(T0 - HOUR)}
    assert records["Article 2"].copy_of == FEED  # for DeepSeek: entry 1's feed
    assert records["Article 3"].copy_of is not None


def _fold_steps(path: Path, copies: int) -> int:
    """SQLite virtual-machine steps (units of 100) of storing one more copy of a story
    after ``copies`` copies of it from as many feeds."""
    store = SQLiteStorage(path)
    try:
        _first_report(store)
        for n in range(2, copies + 2):
            _on(store, f"https://f{n}.example/rss", _copy(store, n, 1))
        last = f"https://f{copies + 2}.example/rss"
        store.ensure_feeds([FeedRef(last)])
        state = store.feed_state(last)
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        store._db.set_progress_handler(count, 100)
        store.commit_poll(state, [_copy(store, copies + 2, 2)])
        store._db.set_progress_handler(None, 100)
        assert _alerted(store) == ["text 1"]
        return steps
    finally:
        store.close()


def test_storing_a_copy_reads_the_first_reports_not_every_earlier_copy(tmp_path: Path) -> None:
    few = _fold_steps(tmp_path / "few.db", 3)
    many = _fold_steps(tmp_path / "many.db", 150)
    # reading 150 copies' 32 bands each took some 200 units more
    assert many <= few + 10, (few, many)


def test_a_database_of_the_last_schema_keeps_its_stories_and_searches_the_leads(
    tmp_path: Path,
) -> None:
    """Migrating marks the copies' bands unsearched; a first pruned later still hands
    its story on to its copy."""
    path = tmp_path / "old.db"
    store = SQLiteStorage(path)
    _first_report(store)
    _on(store, "https://f2.example/rss", _copy(store, 2, 1))
    store.close()
    with sqlite3.connect(path) as db:  # back to schema 9, every band searched
        db.execute("DROP INDEX story_bands_leads")
        db.execute("ALTER TABLE story_bands DROP COLUMN leads")
        db.execute("CREATE INDEX story_bands_key ON story_bands (key)")
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) - 1}")
    db.close()
    store = SQLiteStorage(path)
    try:
        leads = dict(store._db.execute("SELECT entry, max(leads) FROM story_bands GROUP BY entry"))
        assert leads == {1: 1, 2: 0}
        _copies_fold_and_take_over(store)
    finally:
        store.close()


def test_postgresql_migration_marks_the_copies(postgres_url: str) -> None:
    import psycopg

    from monitor.storage import migrate
    from monitor.storage.postgres import MIGRATIONS as PG_MIGRATIONS

    migrate(postgres_url)
    store = open_storage(postgres_url)
    _first_report(store)
    _on(store, "https://f2.example/rss", _copy(store, 2, 1))
    store.close()
    with psycopg.connect(postgres_url, autocommit=True) as db:  # back to the last schema
        db.execute("DROP INDEX story_bands_leads")
        db.execute("ALTER TABLE story_bands DROP COLUMN leads")
        db.execute("CREATE INDEX story_bands_key ON story_bands (key)")
        db.execute("UPDATE schema_version SET version = %s", (len(PG_MIGRATIONS) - 1,))
    assert migrate(postgres_url)[0] == len(PG_MIGRATIONS) - 1
    store = open_storage(postgres_url)
    try:
        with psycopg.connect(postgres_url) as db:
            rows = db.execute("SELECT entry, bool_or(leads) FROM story_bands GROUP BY entry")
            leads = {int(e): bool(v) for e, v in rows}
        assert sorted(leads.values()) == [False, True]
        _copies_fold_and_take_over(store)
    finally:
        store.close()
