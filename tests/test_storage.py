"""The storage contract on real databases: dedup, atomic polls, the outbox, history.

Each contract test runs on SQLite (a real file) and on PostgreSQL (a schema of its
own, when MONITOR_TEST_POSTGRES names a server; see conftest). Migrations, read-only
opens, the lock file and schema 1's rows are SQLite's own.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.storage import open_storage
from monitor.storage.base import (
    FeedRef,
    FeedState,
    FeedStats,
    NewEntry,
    Outgoing,
    Storage,
    StorageError,
)
from monitor.storage.sqlite import SCHEMA_VERSION, SQLiteStorage
from monitor.types import AlertItem, FeedEntry, Hit, Message, Notice, RuleMatch, Snippet

T0 = datetime(2025, 1, 20, 12, 0, tzinfo=UTC)
FEED = "https://news.example.com/feed.xml"


@pytest.fixture
def store(database: str) -> Iterator[Storage]:
    s = open_storage(database)
    s.ensure_feeds([FeedRef(FEED)])
    yield s
    s.close()


def _entry(n: int, *, link: str | None = "auto", guid: str | None = "auto") -> FeedEntry:
    link = f"https://news.example.com/a/{n}" if link == "auto" else link
    guid = f"guid-{n}" if guid == "auto" else guid
    return FeedEntry(
        identity=guid or link or f"hash-{n}",
        guid=guid,
        link=link,
        title=f"Article {n}",
        summary="",
        content="",
        published=T0 - timedelta(minutes=n),
    )


def _msg(n: int) -> AlertItem:
    snip = Snippet("title", "Die ", "Größere", f" Meldung {n}")
    return AlertItem("Feed", f"text {n}", f"https://ex.com/{n}", T0, ("r",), ("größere",), snip)


def _new(
    n: int,
    *,
    at: datetime = T0,
    rules: tuple[str, ...] = (),
    outgoing: tuple[tuple[str, int], ...] = (),
    document: dict[str, str] | None = None,
    entry: FeedEntry | None = None,
) -> NewEntry:
    return NewEntry(
        entry=entry or _entry(n),
        first_seen=at,
        matches=tuple(RuleMatch(r, (Hit(r.lower(), "title", 0, len(r)),)) for r in rules),
        document=document,
        outgoing=tuple(Outgoing(nt, target, _msg(n)) for nt, target in outgoing),
    )


def _state(store: Storage, **changes: object) -> FeedState:
    from dataclasses import replace

    return replace(store.feed_state(FEED), **changes)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# migrations


def test_new_database_is_migrated_to_the_current_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "fresh.db"
    s = SQLiteStorage(path)
    s.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"feeds", "entries", "matches", "articles", "outbox", "meta"} <= tables


def test_processes_opening_a_new_database_at_once_apply_each_migration_once(
    tmp_path: Path,
) -> None:
    # A daemon and `monitor poll` started together on a new file: each must open it,
    # none may apply a migration that another one already applied ("duplicate column").
    code = (
        "import sys; from monitor.storage.sqlite import SQLiteStorage; "
        "SQLiteStorage(sys.argv[1]).close()"
    )
    for attempt in range(4):
        path = tmp_path / f"race{attempt}.db"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", code, str(path)], stderr=subprocess.PIPE, text=True
            )
            for _ in range(6)
        ]
        errors = [p.communicate(timeout=60)[1] for p in procs]
        assert [p.returncode for p in procs] == [0] * 6, errors
        with sqlite3.connect(path) as db:
            assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_reopening_keeps_the_data_and_the_version(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    s = SQLiteStorage(path)
    s.set_meta("reload_error", "boom")
    s.close()
    s = SQLiteStorage(path)
    assert s.schema_version() == SCHEMA_VERSION
    assert s.meta() == {"reload_error": "boom"}
    s.close()


def test_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError) as info:
        SQLiteStorage(path)
    message = str(info.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message
    assert "upgrade rss-monitor" in message


def test_file_that_is_not_a_database_is_a_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="can't open database"):
        SQLiteStorage(path)


# --------------------------------------------------------------------------
# read-only opens (status, matches, rules test)


def test_read_only_open_of_a_missing_database_creates_nothing(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    with pytest.raises(StorageError, match=f"no database at {path}"):
        SQLiteStorage(path, readonly=True)
    assert list(tmp_path.iterdir()) == []


def test_read_only_open_reads_what_a_running_writer_committed_and_never_writes(
    tmp_path: Path,
) -> None:
    path = tmp_path / "monitor.db"
    writer = SQLiteStorage(path)
    writer.ensure_feeds([FeedRef(FEED)])
    writer.commit_poll(_state(writer, title="News"), [_new(1)])  # in the WAL, not checkpointed
    reader = SQLiteStorage(path, readonly=True)
    try:
        assert [s.title for s in reader.feed_states()] == ["News"]
        assert {k: v.entries for k, v in reader.feed_stats().items()} == {FEED: 1}
        with pytest.raises(sqlite3.OperationalError, match="readonly database"):
            reader.set_meta("x", "y")
        # every thread gets its own connection, read-only too
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(lambda: reader.feed_state(FEED).title).result() == "News"
            with pytest.raises(sqlite3.OperationalError):
                pool.submit(reader.ensure_feeds, [FeedRef("https://other.example/feed")]).result()
    finally:
        reader.close()
        writer.close()


def test_read_only_open_of_a_stopped_daemons_database(tmp_path: Path) -> None:
    path = tmp_path / "a dir?#%" / "monitor.db"  # characters a SQLite URI must escape
    path.parent.mkdir()
    writer = SQLiteStorage(path)
    writer.set_meta("started", "yes")
    writer.close()  # the last connection checkpoints and removes -wal and -shm
    reader = SQLiteStorage(path, readonly=True)
    assert reader.meta() == {"started": "yes"}
    reader.close()


def test_read_only_open_refuses_an_older_schema_and_says_the_daemon_upgrades_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE t (x)")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION - 1}")
    if SCHEMA_VERSION > 1:
        with pytest.raises(StorageError, match=r"older than.*starting the daemon"):
            SQLiteStorage(path, readonly=True)
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version = 0")
    with pytest.raises(StorageError, match="not an rss-monitor database"):
        SQLiteStorage(path, readonly=True)
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="upgrade rss-monitor"):
        SQLiteStorage(path, readonly=True)
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION + 1


# --------------------------------------------------------------------------
# seen


def test_seen_finds_identities_and_links_of_this_feed_only(store: Storage) -> None:
    store.commit_poll(_state(store), [_new(1), _new(2)])
    other = "https://other.example/rss"
    store.ensure_feeds([FeedRef(FEED), FeedRef(other)])
    assert store.seen(FEED, ["guid-1", "guid-3"], []) == {"guid-1"}
    assert store.seen(FEED, [], ["https://news.example.com/a/2", "https://x/"]) == {
        "https://news.example.com/a/2"
    }
    assert store.seen(other, ["guid-1"], ["https://news.example.com/a/1"]) == set()


def test_republished_entry_with_new_guid_but_same_link_is_not_new(
    store: Storage,
) -> None:
    store.commit_poll(_state(store), [_new(1)])
    again = _entry(1, guid="guid-1-republished")
    found = store.seen(FEED, [again.identity], [again.link or ""])
    assert found == {"https://news.example.com/a/1"}  # known by its link


def test_seen_handles_more_values_than_one_sql_statement_takes(store: Storage) -> None:
    entries = [_new(n, entry=_entry(n, link=None)) for n in range(1200)]
    store.commit_poll(_state(store), entries)
    asked = [f"guid-{n}" for n in range(0, 2400, 2)]
    assert store.seen(FEED, asked, []) == {f"guid-{n}" for n in range(0, 1200, 2)}


def test_seen_ignores_empty_values(store: Storage) -> None:
    store.commit_poll(_state(store), [_new(1, entry=_entry(1, link=None))])
    assert store.seen(FEED, [""], [""]) == set()


# --------------------------------------------------------------------------
# commit_poll


def test_commit_poll_writes_state_entries_matches_and_outbox(store: Storage) -> None:
    state = _state(store, title="Example", etag='"v1"', last_status=200, next_due=T0)
    ids = store.commit_poll(
        state,
        [
            _new(1, rules=("AI",), outgoing=(("chat", 0), ("mail", 0))),
            _new(2),
        ],
    )
    assert len(ids) == 2
    after = store.feed_state(FEED)
    assert (after.title, after.etag, after.last_status, after.next_due) == (
        "Example",
        '"v1"',
        200,
        T0,
    )
    assert store.feed_stats()[FEED] == FeedStats(entries=2, matches=1)
    assert store.outbox_stats().pending == 2


def test_commit_poll_is_all_or_nothing(store: Storage) -> None:
    before = store.feed_state(FEED)
    # The second entry's document can't be stored (json can't encode a set):
    # the feed state and the first entry must not be written either.
    bad = _new(2, document={"title": {"not", "json"}})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        store.commit_poll(
            _state(store, title="changed", etag='"v2"'),
            [_new(1, rules=("AI",), outgoing=(("chat", 0),)), bad],
        )
    assert store.feed_state(FEED) == before
    assert store.seen(FEED, ["guid-1", "guid-2"], []) == set()
    assert store.outbox_stats().pending == 0
    # and the store still works afterwards
    assert len(store.commit_poll(_state(store), [_new(1)])) == 1


def test_commit_poll_failing_in_the_database_mid_way_rolls_back(tmp_path: Path) -> None:
    # A trigger makes the outbox insert of the second entry fail inside SQLite,
    # after the state, the first entry, its match and its outbox row were written.
    store = SQLiteStorage(tmp_path / "monitor.db")
    store.ensure_feeds([FeedRef(FEED)])
    with sqlite3.connect(tmp_path / "monitor.db") as db:
        db.execute(
            "CREATE TRIGGER fail_outbox BEFORE INSERT ON outbox WHEN NEW.notifier = 'explode'"
            " BEGIN SELECT RAISE(ABORT, 'simulated failure'); END"
        )
    db.close()
    before = store.feed_state(FEED)
    with pytest.raises(sqlite3.IntegrityError, match="simulated failure"):
        store.commit_poll(
            _state(store, etag='"v3"'),
            [
                _new(1, rules=("AI",), outgoing=(("chat", 0),)),
                _new(2, rules=("AI",), outgoing=(("explode", 0),)),
            ],
        )
    assert store.feed_state(FEED) == before
    assert store.seen(FEED, ["guid-1", "guid-2"], []) == set()
    assert store.matches_since(T0 - timedelta(days=1)) == []
    assert store.outbox_stats().pending == 0
    store.close()


def test_entry_committed_twice_is_stored_once(store: Storage) -> None:
    assert len(store.commit_poll(_state(store), [_new(1, outgoing=(("chat", 0),))])) == 1
    assert store.commit_poll(_state(store), [_new(1, outgoing=(("chat", 0),))]) == []
    assert store.feed_stats()[FEED].entries == 1
    assert store.outbox_stats().pending == 1


# --------------------------------------------------------------------------
# outbox


def test_outbox_has_one_row_per_entry_notifier_and_target(store: Storage) -> None:
    store.commit_poll(
        _state(store),
        [
            _new(
                1,
                outgoing=(("chat", 0), ("chat", 0), ("chat", 1), ("mail", 0)),
            )
        ],
    )
    due = store.due_deliveries(T0)
    assert sorted((d.notifier, d.target) for d in due) == [
        ("chat", 0),
        ("chat", 1),
        ("mail", 0),
    ]
    assert {replace(d.payload, entry=0) for d in due} == {_msg(1)}  # type: ignore[type-var]
    assert {d.payload.entry for d in due} == {1}  # type: ignore[union-attr]


def test_due_deliveries_are_oldest_first_and_wait_for_next_attempt(
    store: Storage,
) -> None:
    store.commit_poll(_state(store), [_new(2, at=T0 + timedelta(seconds=2), outgoing=(("c", 0),))])
    store.commit_poll(_state(store), [_new(1, at=T0 + timedelta(seconds=1), outgoing=(("c", 0),))])
    store.commit_poll(_state(store), [_new(3, at=T0 + timedelta(seconds=3), outgoing=(("c", 0),))])
    assert store.due_deliveries(T0) == []
    due = store.due_deliveries(T0 + timedelta(seconds=10))
    assert [d.payload.title for d in due] == ["text 1", "text 2", "text 3"]
    assert [d.created for d in due] == [T0 + timedelta(seconds=s) for s in (1, 2, 3)]
    assert [d.attempts for d in due] == [0, 0, 0]
    assert len(store.due_deliveries(T0 + timedelta(seconds=10), limit=2)) == 2

    first = due[0]
    retry_at = T0 + timedelta(minutes=5)
    store.delivery_failed([(first.id, retry_at)], "HTTP 500", T0 + timedelta(seconds=10))
    later = store.due_deliveries(T0 + timedelta(minutes=1))
    assert [d.payload.title for d in later] == ["text 2", "text 3"]
    at_retry = store.due_deliveries(retry_at)
    assert [d.payload.title for d in at_retry] == ["text 2", "text 3", "text 1"]
    assert at_retry[-1].attempts == 1


def test_delivery_outcomes_are_counted_by_status(store: Storage) -> None:
    store.commit_poll(
        _state(store),
        [_new(n, outgoing=(("chat", 0),)) for n in range(1, 5)],
    )
    d1, d2, d3, _d4 = store.due_deliveries(T0)
    store.delivered([d1.id], T0)
    store.delivery_failed([(d2.id, None)], "connection refused", T0)  # gave up
    store.delivery_failed([(d3.id, T0 + timedelta(minutes=1))], "HTTP 503", T0)  # will retry
    stats = store.outbox_stats()
    assert (stats.pending, stats.failed, stats.sent) == (2, 1, 1)
    assert stats.last_error == "HTTP 503"
    # by next attempt: the untouched row was due at T0, the retried one a minute later
    assert [d.id for d in store.due_deliveries(T0 + timedelta(hours=1))] == [_d4.id, d3.id]


def test_delivered_row_is_never_due_again(store: Storage) -> None:
    store.commit_poll(_state(store), [_new(1, outgoing=(("chat", 0),))])
    (d,) = store.due_deliveries(T0)
    store.delivered([d.id], T0)
    assert store.due_deliveries(T0 + timedelta(days=365)) == []
    assert store.outbox_stats().last_error is None


def test_claimed_rows_are_not_handed_to_another_owner_until_the_claim_runs_out(
    database: str,
) -> None:
    a = open_storage(database)  # two processes, as two stores on one database
    b = open_storage(database)
    a.ensure_feeds([FeedRef(FEED)])
    a.commit_poll(_state(a), [_new(n, outgoing=(("chat", 0), ("mail", 0))) for n in (1, 2, 3)])
    lease = T0 + timedelta(minutes=10)
    got_a = a.claim_deliveries("chat", 0, T0, "A", lease, 2)
    got_b = b.claim_deliveries("chat", 0, T0, "B", lease, 10)
    assert [d.payload.title for d in got_a] == ["text 1", "text 2"]
    assert [d.payload.title for d in got_b] == ["text 3"]
    assert b.claim_deliveries("chat", 0, T0, "B", lease, 10) == []
    # other targets are not touched by a claim on chat
    assert len(b.claim_deliveries("mail", 0, T0, "B", lease, 10)) == 3
    # a released row is free again; an expired claim is free for anyone
    a.release_claims([got_a[1].id], "A")
    assert [d.id for d in b.claim_deliveries("chat", 0, T0, "B", lease, 10)] == [got_a[1].id]
    assert [
        d.id for d in b.claim_deliveries("chat", 0, lease, "B", lease + timedelta(hours=1), 10)
    ] == [d.id for d in [got_a[0], got_a[1], *got_b]]
    # recording the outcome releases the claim
    b.delivered([got_a[0].id], T0)
    assert got_a[0].id not in {d.id for d in a.due_deliveries(lease + timedelta(days=1))}
    a.close()
    b.close()


def test_claims_of_a_dead_owner_are_released(store: Storage) -> None:
    store.commit_poll(_state(store), [_new(1, outgoing=(("chat", 0),))])
    store.claim_deliveries("chat", 0, T0, "dead", T0 + timedelta(hours=1), 5)
    assert store.claim_owners() == {"dead"}
    assert store.claim_deliveries("chat", 0, T0, "me", T0 + timedelta(hours=1), 5) == []
    assert store.release_owner("dead") == 1
    assert store.claim_owners() == set()
    assert len(store.claim_deliveries("chat", 0, T0, "me", T0 + timedelta(hours=1), 5)) == 1


def test_next_delivery_due_waits_for_retries_and_claims(store: Storage) -> None:
    assert store.next_delivery_due("chat", 0) is None
    store.commit_poll(_state(store), [_new(1, outgoing=(("chat", 0),))])
    assert store.next_delivery_due("chat", 0) == T0
    (d,) = store.claim_deliveries("chat", 0, T0, "me", T0 + timedelta(minutes=10), 5)
    assert store.next_delivery_due("chat", 0) == T0 + timedelta(minutes=10)
    store.delivery_failed([(d.id, T0 + timedelta(minutes=1))], "HTTP 503", T0)
    assert store.next_delivery_due("chat", 0) == T0 + timedelta(minutes=1)


def test_rows_follow_the_notifier_name_and_url_position(tmp_path: Path) -> None:
    """Rows of schema 1 named a URL by its hash; they are adopted by position, and
    only rows of a removed notifier (or URL position) are given up, saying why."""
    from monitor.notify import target_key

    path = tmp_path / "m.db"
    store = SQLiteStorage(path)
    store.ensure_feeds([FeedRef(FEED)])
    old_chat = "json://127.0.0.1:1/hook?token=old"
    store.commit_poll(
        _state(store),
        [
            _new(1, outgoing=(("chat", 0), ("mail", 0), ("mail", 1), ("gone", 0))),
            _new(2, outgoing=(("chat", 0),)),
        ],
    )
    with sqlite3.connect(path) as db:  # as schema 1 wrote them
        db.execute("UPDATE outbox SET target = ? WHERE notifier = 'chat'", (target_key(old_chat),))
    # chat has one URL now (its token rotated): every old row is its
    assert store.adopt_targets("chat", {target_key("json://127.0.0.1:1/hook?token=new"): 0}) == 2
    assert store.adopt_targets("mail", {"k0": 0}) == 0  # already positions: untouched
    dropped = store.drop_unrouted({"chat": 1, "mail": 1})
    assert dropped == {"mail": 1, "gone": 1}
    stats = store.outbox_stats()
    assert (stats.notifiers["chat"].pending, stats.notifiers["mail"].pending) == (2, 1)
    assert stats.notifiers["gone"].failed == 1
    assert stats.notifiers["gone"].last_error == "notifier 'gone' was removed from the config"
    assert stats.notifiers["mail"].last_error == "notifier 'mail' has no URL #2 any more"
    assert {d.target for d in store.due_deliveries(T0)} == {0}
    store.close()


def test_priority_claims_take_only_high_priority_alerts_and_notices(store: Storage) -> None:
    urgent = replace(_msg(2), priority=True)
    store.commit_poll(
        _state(store),
        [
            _new(1, outgoing=(("chat", 0),)),
            NewEntry(_entry(2), T0, outgoing=(Outgoing("chat", 0, urgent),)),
        ],
    )
    store.add_notice("chat", 1, Notice("feed_failing", "feed x failing", "boom"), T0)
    until = T0 + timedelta(minutes=10)
    got = store.claim_deliveries("chat", 0, T0, "me", until, 10, priority_only=True)
    assert [type(d.payload).__name__ for d in got] == ["AlertItem", "Notice"]
    assert got[0].priority and got[0].payload == replace(urgent, entry=got[0].payload.entry)  # type: ignore[union-attr]
    assert got[1].payload == Notice("feed_failing", "feed x failing", "boom")
    assert [d.payload.title for d in store.claim_deliveries("chat", 0, T0, "me", until, 10)] == [  # type: ignore[union-attr]
        "text 1"
    ]


def test_rows_sent_in_one_message_count_as_one_send(store: Storage) -> None:
    store.commit_poll(_state(store), [_new(n, outgoing=(("chat", 0),)) for n in range(1, 5)])
    d1, d2, d3, d4 = store.due_deliveries(T0)
    store.delivered([d1.id, d2.id, d3.id], T0 + timedelta(minutes=5))
    store.delivered([d4.id], T0 + timedelta(minutes=50))
    assert store.sends_since("chat", 0, T0) == 2
    assert store.sends_since("chat", 0, T0 + timedelta(minutes=10)) == 1
    assert store.sends_since("mail", 0, T0) == 0


def test_failures_of_one_message_and_a_notice_are_recorded_together(store: Storage) -> None:
    store.commit_poll(_state(store), [_new(n, outgoing=(("chat", 0),)) for n in (1, 2)])
    d1, d2 = store.due_deliveries(T0)
    notice = Notice("delivery_given_up", "alert given up", "text 1 was given up")
    store.delivery_failed(
        [(d1.id, None), (d2.id, T0 + timedelta(hours=1))], "HTTP 500", T0, [("ops", 2, notice)]
    )
    rows = {r.id: r for r in store.outbox_rows()}
    assert (rows[d1.id].status, rows[d2.id].status) == ("failed", "pending")
    assert rows[d1.id].last_error == rows[d2.id].last_error == "HTTP 500"
    ops = [r for r in rows.values() if r.notifier == "ops"]
    assert sorted(r.target for r in ops) == [0, 1]
    assert {r.title for r in ops} == {"alert given up"} and {r.link for r in ops} == {None}


def test_outbox_rows_retry_and_drop(store: Storage) -> None:
    store.commit_poll(_state(store), [_new(n, outgoing=(("chat", 0),)) for n in (1, 2, 3)])
    d1, d2, d3 = store.due_deliveries(T0)
    store.delivery_failed([(d1.id, None), (d2.id, None)], "gone", T0)
    failed = store.outbox_rows(failed_only=True)
    assert [(r.id, r.title, r.link, r.attempts) for r in failed] == [
        (d2.id, "Article 2", "https://news.example.com/a/2", 1),
        (d1.id, "Article 1", "https://news.example.com/a/1", 1),
    ]
    assert [r.id for r in store.outbox_rows()] == [d3.id, d2.id, d1.id]
    later = T0 + timedelta(days=5)
    assert store.retry_deliveries([d1.id], later) == 1
    assert store.meta()["outbox_changed"] == "1"
    row = {r.id: r for r in store.outbox_rows()}[d1.id]
    assert (row.status, row.next_attempt, row.created) == ("pending", later, later)
    assert store.drop_delivery(d3.id) and not store.drop_delivery(d3.id)
    assert store.meta()["outbox_changed"] == "1"  # a drop leaves the targets' backoff alone
    assert store.retry_deliveries(None, later) == 1  # d2, the one failed row left
    assert [r.id for r in store.outbox_rows()] == [d2.id, d1.id]
    assert store.outbox_rows(failed_only=True) == []
    assert store.retry_deliveries([d3.id], later) == 0  # dropped stays dropped


WIRE = (
    "Das chinesische KI-Unternehmen DeepSeek hat ein neues Sprachmodell vorgestellt, das nach"
    " eigenen Angaben mit deutlich weniger Rechenleistung trainiert wurde als vergleichbare"
    " Modelle aus den USA. Die Gewichte stehen unter einer offenen Lizenz zum Download bereit."
    " Fachleute zeigten sich beeindruckt von den Ergebnissen in Mathematik und Programmierung,"
    " mahnten aber zur Vorsicht bei den Angaben zu den Trainingskosten, die sich nicht"
    " unabhängig prüfen ließen. Microsoft kündigte an, das Modell über Azure anzubieten."
)


def _story_entry(store: Storage, n: int, text: str, *, link: str, at: datetime) -> NewEntry:
    from monitor.storage.base import Story
    from monitor.story import canonical_url, fingerprint, story_text

    fp = fingerprint(story_text(title=f"Titel {n}", summary="", content=text.casefold()))
    return NewEntry(
        _entry(n, link=link),
        at,
        matches=(RuleMatch("DeepSeek", (Hit("deepseek", "content", 0, 8),)),),
        outgoing=(Outgoing("chat", 0, replace(_msg(n), rules=("DeepSeek",))),),
        story=Story(canonical_url(link), fp, 48 * 3600.0),
    )


def test_one_story_from_several_feeds_alerts_once_and_names_the_others(
    store: Storage,
) -> None:
    feeds = ["https://golem.example/rss", "https://t3n.example/rss"]
    store.ensure_feeds([FeedRef(FEED), *(FeedRef(f) for f in feeds)])
    first = _story_entry(store, 1, WIRE, link="https://heise.example/a?utm_source=rss", at=T0)
    store.commit_poll(_state(store, title="heise"), [first])
    # the same wire copy, a new headline and a cut sentence, on another feed
    cut = WIRE.replace(" Microsoft kündigte an, das Modell über Azure anzubieten.", "")
    copy = _story_entry(store, 2, cut, link="https://golem.example/b", at=T0 + timedelta(hours=1))
    state = replace(store.feed_state(feeds[0]), title="golem")
    store.commit_poll(state, [copy])
    # the same page (tracking parameters, http) on a third feed
    same = _story_entry(store, 3, "kurzer anriss", link="http://heise.example/a#top", at=T0)
    store.commit_poll(replace(store.feed_state(feeds[1]), title="t3n"), [same])
    assert [d.payload.title for d in store.due_deliveries(T0 + timedelta(days=1))] == [  # type: ignore[union-attr]
        "text 1"
    ]
    (first_row,) = store.due_deliveries(T0 + timedelta(days=1))
    assert store.also_reported([first_row.payload.entry]) == {  # type: ignore[union-attr]
        first_row.payload.entry: ["golem", "t3n"]  # type: ignore[union-attr]
    }
    records = {r.title: r for r in store.matches_since(T0 - timedelta(days=1))}
    assert records["Article 1"].also == ("golem", "t3n") and records["Article 1"].copy_of is None
    assert records["Article 2"].copy_of == "heise" and records["Article 3"].copy_of == "heise"


def test_two_articles_of_one_feed_sharing_its_boilerplate_are_two_stories(
    store: Storage,
) -> None:
    boilerplate = WIRE  # a standing paragraph the outlet puts under every article
    one = _story_entry(
        store, 1, "DeepSeek zeigt R2. " + boilerplate, link="https://a.example/1", at=T0
    )
    two = _story_entry(
        store, 2, "Azure fällt aus. " + boilerplate, link="https://a.example/2", at=T0
    )
    store.commit_poll(_state(store), [one])
    store.commit_poll(_state(store), [two])
    titles = [d.payload.title for d in store.due_deliveries(T0 + timedelta(days=1))]  # type: ignore[union-attr]
    assert titles == ["text 1", "text 2"]


def test_a_story_older_than_the_window_or_another_story_alerts_again(store: Storage) -> None:
    store.commit_poll(
        _state(store), [_story_entry(store, 1, WIRE, link="https://a.example/1", at=T0)]
    )
    late = _story_entry(store, 2, WIRE, link="https://b.example/2", at=T0 + timedelta(hours=49))
    other = (
        "Bei Microsoft Azure ist es am Dienstag zu einer mehrstündigen Störung gekommen. Betroffen"
        " waren Kunden in Westeuropa, deren virtuelle Maschinen nicht mehr erreichbar waren."
        " Ursache war nach Angaben des Konzerns ein fehlerhaftes Update der Netzwerkkonfiguration,"
        " das inzwischen zurückgenommen wurde. Der Dienst läuft wieder normal."
    )
    unrelated = _story_entry(
        store, 3, other, link="https://c.example/3", at=T0 + timedelta(hours=1)
    )
    store.commit_poll(_state(store), [late, unrelated])
    titles = sorted(d.payload.title for d in store.due_deliveries(T0 + timedelta(days=3)))  # type: ignore[union-attr]
    assert titles == ["text 1", "text 2", "text 3"]
    assert store.prune_stories(T0 + timedelta(hours=2)) == 2
    assert store.prune_stories(T0 + timedelta(hours=2)) == 0


def test_due_feeds_are_claimed_with_a_lease_once_and_never_when_paused_or_not_configured(
    database: str,
) -> None:
    a = open_storage(database)  # two processes on one database
    b = open_storage(database)
    feeds = [f"https://f{i}.example/rss" for i in range(5)]
    a.ensure_feeds([FeedRef(f) for f in feeds])
    a.set_due([(f, T0 - timedelta(minutes=5 - i)) for i, f in enumerate(feeds)])
    a.pause_feed(feeds[4])
    lease = T0 + timedelta(seconds=15)
    got_a = a.claim_due_feeds(T0, "A", lease, 2)
    assert [s.key for s in got_a] == feeds[:2]  # oldest due first
    got_b = b.claim_due_feeds(T0, "B", lease, 10)
    assert [s.key for s in got_b] == feeds[2:4]  # not A's, not the paused one
    assert b.claim_due_feeds(T0, "B", lease, 10) == []
    # the state write of a poll ends its lease: due again when its next time comes
    a.save_feed_state(replace(got_a[0], next_due=T0 + timedelta(seconds=5)))
    assert [s.key for s in b.claim_due_feeds(T0 + timedelta(seconds=6), "B", lease, 10)] == [
        feeds[0]
    ]
    # A dies: its other lease runs out (or is released) and B takes the feed over
    assert b.claim_due_feeds(T0 + timedelta(seconds=10), "B", lease, 10) == []
    a.renew_leases([feeds[1]], "A", T0 + timedelta(seconds=30))
    b.renew_leases([feeds[0], feeds[2], feeds[3]], "B", T0 + timedelta(seconds=30))
    assert b.claim_due_feeds(T0 + timedelta(seconds=20), "B", lease, 10) == []
    assert b.lease_owners() == {"A", "B"}
    b.release_feeds(None, "A")
    assert [s.key for s in b.claim_due_feeds(T0 + timedelta(seconds=20), "B", lease, 10)] == [
        feeds[1]
    ]
    # a feed the config no longer lists is not polled
    a.ensure_feeds([FeedRef(f) for f in feeds[1:]])
    a.release_feeds(None, "B")
    keys = {s.key for s in a.claim_due_feeds(T0 + timedelta(days=1), "A", lease, 10)}
    assert keys == set(feeds[1:4])
    assert b.next_due() is not None
    a.close()
    b.close()


def _claim_steps(store: SQLiteStorage, now: datetime) -> tuple[int, int]:
    """SQLite virtual-machine steps (counted by its progress handler, in units of 100)
    that one claim of due feeds takes, and how many feeds it claimed."""
    steps = 0

    def count() -> int:
        nonlocal steps
        steps += 1
        return 0

    db = store._db  # this thread's connection
    db.set_progress_handler(count, 100)
    try:
        claimed = store.claim_due_feeds(now, "A", now + timedelta(seconds=15), 50)
    finally:
        db.set_progress_handler(None, 100)
    store.release_feeds(None, "A")
    return steps, len(claimed)


def test_claiming_due_feeds_reads_the_due_ones_not_every_feed(tmp_path: Path) -> None:
    """A tick (four a second) claims the few due feeds; with 100,000 feeds its search
    read the whole index whenever fewer than the limit were due (10 ms a tick)."""
    store = SQLiteStorage(tmp_path / "monitor.db")
    late = [f"https://due{i}.example/rss" for i in range(5)]
    new = [f"https://new{i}.example/rss" for i in range(3)]  # never polled: due at once
    store.ensure_feeds([FeedRef(u) for u in late + new])
    store.set_due([(u, T0 - timedelta(minutes=i + 1)) for i, u in enumerate(late)])
    steps_few, claimed = _claim_steps(store, T0)
    assert claimed == 8
    later = [f"https://later{i}.example/rss" for i in range(6000)]
    store.ensure_feeds([FeedRef(u) for u in late + new + later])
    store.set_due([(u, T0 + timedelta(seconds=1 + i)) for i, u in enumerate(later)])
    store.set_due([(u, T0 - timedelta(minutes=i + 1)) for i, u in enumerate(late)])
    steps_many, claimed = _claim_steps(store, T0)
    assert claimed == 8  # the same due feeds: never polled first, then oldest due
    # 6,000 feeds not yet due are not read (the whole index is some 600 units)
    assert steps_many <= steps_few + 20, (steps_few, steps_many)
    store.close()


def test_history_past_the_retention_is_pruned_but_never_an_entry_the_feed_still_lists(
    store: Storage,
) -> None:
    day = timedelta(days=1)
    old = [_new(n, at=T0, rules=("AI",), outgoing=(("chat", 0),)) for n in (1, 2, 3)]
    store.commit_poll(_state(store, last_poll=T0, last_parsed=T0), old)
    d1, d2, _d3 = store.due_deliveries(T0)
    store.delivered([d1.id, d2.id], T0)  # d3 is still pending
    # forty days later the document changed: it still lists entry 1, not 2 or 3
    later = T0 + 40 * day
    store.commit_poll(
        _state(store, last_poll=later, last_parsed=later),
        [_new(4, at=later)],
        listed=["guid-1"],
    )
    assert store.prune_history(T0 + 30 * day) == 1  # entry 2: unlisted, sent
    assert store.seen(FEED, ["guid-1", "guid-2", "guid-3", "guid-4"], []) == {
        "guid-1",  # still listed: never new again
        "guid-3",  # its alert is still to be sent
        "guid-4",
    }
    assert [m.title for m in store.matches_since(T0 - day)] == ["Article 3", "Article 1"]
    assert store.outbox_stats().sent == 1 and store.outbox_stats().pending == 1
    assert store.prune_history(T0 + 30 * day) == 0


def test_history_is_pruned_in_batches_that_go_on_where_the_last_one_ended(
    store: Storage,
) -> None:
    day = timedelta(days=1)
    # ten entries of one poll (one first_seen); the next document lists 1-4 only
    store.commit_poll(
        _state(store, last_poll=T0, last_parsed=T0), [_new(n, at=T0) for n in range(1, 11)]
    )
    later = T0 + 40 * day
    store.commit_poll(
        _state(store, last_poll=later, last_parsed=later),
        [],
        listed=[f"guid-{n}" for n in range(1, 5)],
    )
    statements: list[str] = []
    sqlite = isinstance(store, SQLiteStorage)  # its write lock: SQLite's own concern
    if sqlite:
        store._db.set_trace_callback(statements.append)  # type: ignore[attr-defined]
    counts = []
    while True:  # as the daemon does: until a batch comes back short
        counts.append(store.prune_history(T0 + 30 * day, limit=2))
        if counts[-1] < 2:
            break
    assert sum(counts) == 6 and counts[-1] < 2
    assert store.seen(FEED, [f"guid-{n}" for n in range(1, 11)], []) == {
        f"guid-{n}" for n in range(1, 5)
    }
    if sqlite:  # the search for what may go runs before the write lock is taken
        first_search = next(i for i, q in enumerate(statements) if "ORDER BY e.first_seen" in q)
        first_lock = next(i for i, q in enumerate(statements) if q.startswith("BEGIN IMMEDIATE"))
        assert first_search < first_lock
    # a new pass starts from the beginning: nothing is left over from the last one
    assert store.prune_history(T0 + 30 * day, limit=2) == 0


def test_one_daemon_per_database(tmp_path: Path) -> None:
    first = SQLiteStorage(tmp_path / "m.db")
    second = SQLiteStorage(tmp_path / "m.db")
    assert second.daemon_pid() is None
    first.lock_for_daemon()
    assert second.daemon_pid() == os.getpid()
    with pytest.raises(StorageError, match=rf"another `monitor run` \(pid {os.getpid()}\)"):
        second.lock_for_daemon()
    first.close()  # as when the daemon exits (or is killed: the kernel drops the lock)
    assert second.daemon_pid() is None
    second.lock_for_daemon()
    second.close()


# --------------------------------------------------------------------------
# history


def test_matches_since_newest_first_and_by_rule(store: Storage) -> None:
    store.commit_poll(_state(store, title="Example News"), [_new(1, at=T0, rules=("AI",))])
    store.commit_poll(_state(store), [_new(2, at=T0 + timedelta(hours=1), rules=("AI", "Azure"))])
    store.commit_poll(_state(store), [_new(3, at=T0 + timedelta(hours=2))])  # no match
    found = store.matches_since(T0)
    assert [m.title for m in found] == ["Article 2", "Article 1"]
    assert found[0].feed == "Example News"
    assert found[0].rules == ("AI", "Azure") and found[0].terms == ("ai", "azure")
    assert found[0].seen == T0 + timedelta(hours=1)
    assert found[0].published == _entry(2).published
    assert found[0].link == "https://news.example.com/a/2"
    assert [m.title for m in store.matches_since(T0, rule="Azure")] == ["Article 2"]
    assert [m.title for m in store.matches_since(T0 + timedelta(minutes=1))] == ["Article 2"]
    assert store.matches_since(T0, rule="Nope") == []


def test_articles_since_oldest_first_and_prune(store: Storage) -> None:
    store.commit_poll(
        _state(store),
        [
            _new(1, at=T0, document={"title": "article one", "content": "ki"}),
            _new(2, at=T0 + timedelta(days=1), document={"title": "article two"}),
            _new(3, at=T0 + timedelta(days=2)),  # not kept: too old to match when seen
        ],
    )
    arts = store.articles_since(T0 - timedelta(days=1))
    assert [(a.title, a.seen) for a in arts] == [
        ("Article 1", T0),
        ("Article 2", T0 + timedelta(days=1)),
    ]
    assert arts[0].fields == {"title": "article one", "content": "ki"}
    assert arts[0].feed == FEED  # no title known: the key
    assert store.prune(T0 + timedelta(hours=12)) == 1
    assert [a.title for a in store.articles_since(T0 - timedelta(days=1))] == ["Article 2"]
    assert store.prune(T0 + timedelta(hours=12)) == 0
    # pruning text never forgets that an entry was seen
    assert store.seen(FEED, ["guid-1"], []) == {"guid-1"}


# --------------------------------------------------------------------------
# feed state and meta


def test_feed_state_round_trips(store: Storage) -> None:
    state = FeedState(
        key=FEED,
        url="https://moved.example.com/feed.xml",
        configured=FEED,
        title="Example",
        etag='W/"abc"',
        last_modified="Mon, 20 Jan 2025 12:00:00 GMT",
        body_hash="0" * 64,
        last_poll=T0,
        last_status=503,
        last_error="HTTP 503",
        error_count=3,
        next_due=T0 + timedelta(hours=4),
        gone=True,
        failed_hash="f" * 64,
        failed_error="unparseable feed",
        failing_entries=(("guid-7", 2),),
        entry_error="https://x/7: matching failed",
        article_error="https://x/8: refused",
    )
    store.save_feed_state(state)
    assert store.feed_state(FEED) == state
    assert [s.key for s in store.feed_states()] == [FEED]


def test_unknown_feed_state_is_created_empty(store: Storage) -> None:
    key = "https://new.example/rss"
    assert store.feed_state(key) == FeedState(key=key, url=key, configured=key)
    assert key in {s.key for s in store.feed_states()}


def test_meta_set_and_forget(store: Storage) -> None:
    store.set_meta("a", "1")
    store.set_meta("a", "2")
    store.set_meta("b", "x")
    store.set_meta("b", None)
    assert store.meta() == {"a": "2"}


def test_prune_with_a_limit_drops_the_oldest_in_batches(store: Storage) -> None:
    store.commit_poll(
        _state(store),
        [_new(n, at=T0 + timedelta(minutes=n), document={"title": f"t{n}"}) for n in range(7)],
    )
    cutoff = T0 + timedelta(minutes=5)  # 0..4 are older
    assert store.prune(cutoff, limit=2) == 2
    assert [a.title for a in store.articles_since(T0)] == [f"Article {n}" for n in range(2, 7)]
    assert store.prune(cutoff, limit=2) == 2
    assert store.prune(cutoff, limit=2) == 1
    assert store.prune(cutoff, limit=2) == 0
    assert [a.title for a in store.articles_since(T0)] == ["Article 5", "Article 6"]


# --------------------------------------------------------------------------
# feed identity, pause and resume


def test_an_old_database_migrates_with_its_feeds_entries_and_outbox(tmp_path: Path) -> None:
    from monitor.storage.sqlite import MIGRATIONS

    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:  # the first released schema, with data
        db.executescript(MIGRATIONS[0] + ";PRAGMA user_version=1;")
        db.execute(
            "INSERT INTO feeds (key, url, title, etag, last_poll, gone, error_count)"
            " VALUES (?, ?, 'Example', '\"e1\"', ?, 0, 0)",
            (FEED, "https://moved.example.com/feed.xml", T0.timestamp()),
        )
        db.execute(
            "INSERT INTO feeds (key, url, gone, last_status) VALUES ('https://gone.example/', "
            "'https://gone.example/', 1, 410)"
        )
        db.execute(
            "INSERT INTO entries (feed, identity, link, title, first_seen)"
            " VALUES (?, 'guid-1', 'https://news.example.com/a/1', 'Article 1', ?)",
            (FEED, T0.timestamp()),
        )
        db.execute(
            "INSERT INTO outbox (entry, notifier, target, message, next_attempt, created)"
            " VALUES (1, 'chat', 't', ?, ?, ?)",
            ('{"title": "t", "markdown": "m", "html": "h", "text": "x"}', 0, 0),
        )
    db.close()
    s = SQLiteStorage(path)
    try:
        assert s.schema_version() == SCHEMA_VERSION > 1
        state = s.feed_state(FEED)
        assert (state.key, state.configured, state.url) == (
            FEED,
            FEED,
            "https://moved.example.com/feed.xml",
        )
        assert (state.title, state.etag, state.last_poll, s.feed_stats()[state.key].entries) == (
            "Example",
            '"e1"',
            T0,
            1,
        )
        assert (state.paused, state.failed_hash, state.failing_entries) == (False, None, ())
        assert s.seen(state.key, ["guid-1"], []) == {"guid-1"}
        assert s.feed_state("https://gone.example/").condition == "gone"
        assert s.outbox_stats().pending == 1
        (old_row,) = s.due_deliveries(T0)  # rendered by the old version: sent as it is
        assert old_row.payload == Message("t", "m", "h", "x")
        # the migrated feed is known by its configured URL: nothing to carry over
        assert s.ensure_feeds([FeedRef(FEED), FeedRef("https://gone.example/")]) == []
    finally:
        s.close()


def test_a_feed_whose_url_changed_scheme_keeps_its_entries(database: str) -> None:
    s = open_storage(database)
    old, new = "http://news.example.com/feed.xml", "https://news.example.com/feed.xml"
    try:
        assert s.ensure_feeds([FeedRef(old, "News")]) == []
        s.commit_poll(replace(s.feed_state(old), title="News", etag='"e"', next_due=T0), [_new(1)])
        (moved,) = s.ensure_feeds([FeedRef(new, "News")])
        assert (moved.key, moved.url, moved.earlier) == (old, new, old)
        assert "scheme" in moved.reason
        state = s.feed_state(new)
        assert (state.key, state.url, state.configured) == (old, new, new)
        assert (state.etag, state.next_due) == ('"e"', T0)  # carried over
        assert s.feed_stats()[state.key].entries == 1
        assert s.seen(state.key, ["guid-1"], []) == {"guid-1"}  # not new under the new URL
        assert [f.earlier_urls for f in s.feed_states()] == [(old,)]
        assert s.ensure_feeds([FeedRef(new, "News")]) == []  # known now
        # back to the old URL: the same feed again, the other URL now the earlier one
        (back,) = s.ensure_feeds([FeedRef(old, "News")])
        assert back.key == old and "earlier URLs" in back.reason
        assert [f.earlier_urls for f in s.feed_states()] == [(new,)]
    finally:
        s.close()


def test_a_new_url_continues_the_feed_that_has_the_same_name_and_a_gone_feed_resumes(
    store: Storage,
) -> None:
    store.ensure_feeds([FeedRef(FEED, "Example")])
    store.commit_poll(_state(store, gone=True, error_count=3, next_due=T0, last_error="410"), [])
    elsewhere = "https://cdn.example.net/example.rss"
    (moved,) = store.ensure_feeds([FeedRef(elsewhere, "Example")])
    assert moved.reason == "the same name 'Example'"
    state = store.feed_state(elsewhere)
    assert (state.key, state.gone, state.error_count, state.last_error) == (FEED, False, 0, None)
    assert state.next_due is None  # a fixed URL of a failing feed is polled soon


def test_a_new_feed_at_a_url_an_earlier_feed_was_first_configured_at_gets_its_own_key(
    store: Storage,
) -> None:
    store.commit_poll(_state(store), [_new(1)])
    moved_to = "https://news.example.com/feed.xml?v=2"
    store.ensure_feeds([FeedRef(moved_to, "Example")])  # not the same feed: a new one
    assert store.feed_state(moved_to).key == moved_to
    renamed = "https://news.example.com/feed.xml/"  # the same feed, trailing slash
    (moved,) = store.ensure_feeds([FeedRef(moved_to), FeedRef(renamed)])
    assert moved.key == FEED and moved.url == renamed
    # now FEED is an earlier URL of a configured feed; configured again, it is a new feed
    store.ensure_feeds([FeedRef(moved_to), FeedRef(renamed), FeedRef(FEED)])
    fresh = store.feed_state(FEED)
    assert fresh.key != FEED and fresh.key.startswith(FEED)
    assert store.seen(fresh.key, ["guid-1"], []) == set()
    assert store.seen(store.feed_state(renamed).key, ["guid-1"], []) == {"guid-1"}


def test_a_poll_in_flight_while_the_feed_moved_does_not_undo_the_move(
    store: Storage,
) -> None:
    before = store.feed_state(FEED)  # a poll starts
    new = "https://news.example.com/feed.xml/"
    store.ensure_feeds([FeedRef(new)])  # a reload moves the feed
    store.commit_poll(replace(before, etag='"late"', error_count=5), [_new(1)])  # it ends
    state = store.feed_state(new)
    assert (state.url, state.configured, state.etag, state.error_count) == (new, new, None, 0)
    assert store.feed_stats()[state.key].entries == 1  # the entries it found are the feed's


def test_an_adopted_redirect_remembers_the_url_polled_before(store: Storage) -> None:
    store.save_feed_state(_state(store, url="https://a.example/1"))
    store.save_feed_state(_state(store, url="https://a.example/2"))
    (state,) = store.feed_states()
    assert state.url == "https://a.example/2"
    assert state.earlier_urls == ("https://a.example/1",)  # the configured URL is not earlier


def test_pause_survives_polls_and_resume_clears_gone_and_the_failed_document(
    store: Storage,
) -> None:
    key = store.feed_state(FEED).key
    store.pause_feed(key)
    first = store.meta()["feeds_changed"]
    store.commit_poll(_state(store, last_status=200), [])  # a poll that was in flight
    assert store.feed_state(FEED).paused and store.feed_state(FEED).condition == "paused"
    store.save_feed_state(
        _state(store, gone=True, error_count=4, failed_hash="h", failed_error="bad", next_due=None)
    )
    store.resume_feed(key, T0)
    state = store.feed_state(FEED)
    assert (state.paused, state.gone, state.error_count, state.failed_hash) == (
        False,
        False,
        0,
        None,
    )
    assert state.next_due == T0
    assert store.meta()["feeds_changed"] != first


def test_states_of_several_polls_are_stored_together_with_their_notices(
    store: Storage,
) -> None:
    other = "https://b.example/rss"
    store.ensure_feeds([FeedRef(FEED), FeedRef(other)])
    notice = Notice("feed_failing", "feed b failing", "HTTP 500")
    store.save_feed_states(
        [
            (_state(store, last_status=304, last_poll=T0, next_due=T0 + timedelta(minutes=15)), []),
            (
                replace(store.feed_state(other), last_status=500, error_count=3, last_poll=T0),
                [("chat", 1, notice)],
            ),
        ]
    )
    a, b = store.feed_state(FEED), store.feed_state(other)
    assert (a.last_status, a.next_due) == (304, T0 + timedelta(minutes=15))
    assert (b.last_status, b.error_count) == (500, 3)
    assert [d.payload for d in store.due_deliveries(T0 + timedelta(minutes=1))] == [notice]
    store.save_feed_states([])  # nothing to write: no error


def test_feed_states_keep_when_a_poll_last_brought_a_new_entry(store: Storage) -> None:
    assert [s.last_new for s in store.feed_states()] == [None]
    store.commit_poll(_state(store, last_new=T0 + timedelta(hours=1)), [_new(1, at=T0)])
    assert [s.last_new for s in store.feed_states()] == [T0 + timedelta(hours=1)]
    assert store.feed_state(FEED).last_new == T0 + timedelta(hours=1)


# --------------------------------------------------------------------------
# several processes on one database (what several PostgreSQL instances rely on)


def test_a_digest_slot_is_claimed_by_one_owner_until_done_or_its_claim_runs_out(
    database: str,
) -> None:
    a, b = open_storage(database), open_storage(database)
    try:
        name = "digest:weekly#0@2025-01-20T08:00:00+00:00"
        until = T0 + timedelta(minutes=10)
        assert a.claim_slot(name, "A", T0, until) == "mine"
        assert b.claim_slot(name, "B", T0, until) == "taken"
        assert a.claim_slot(name, "A", T0, until) == "mine"  # its own, again (a second batch)
        # A dies before it is done: once its claim ran out, B does it
        assert b.claim_slot(name, "B", until, until + timedelta(minutes=10)) == "mine"
        b.finish_slot(name, "B")
        assert a.claim_slot(name, "A", until + timedelta(days=1), until) == "done"
        assert a.claim_slot(name.replace("@2025-01-20", "@2025-01-27"), "A", T0, until) == "mine"
    finally:
        a.close()
        b.close()


def test_the_same_poll_committed_by_two_processes_at_once_is_recorded_once(
    database: str,
) -> None:
    stores = [open_storage(database) for _ in range(2)]
    stores[0].ensure_feeds([FeedRef(FEED)])
    entries = [_new(n, rules=("AI",), outgoing=(("chat", 0),)) for n in range(1, 21)]
    try:
        with ThreadPoolExecutor(2) as pool:
            results = list(
                pool.map(lambda s: s.commit_poll(_state(s), entries), stores)  # type: ignore[arg-type]
            )
        assert (
            sorted(len(r) for r in results) in ([0, 20], [20, 0])
            or sum(len(r) for r in results) == 20
        )
        assert stores[1].feed_stats()[FEED] == FeedStats(entries=20, matches=20)
        assert stores[1].outbox_stats().pending == 20
    finally:
        for s in stores:
            s.close()


def test_due_feeds_claimed_by_several_processes_at_once_go_to_exactly_one_each(
    database: str,
) -> None:
    stores = [open_storage(database) for _ in range(3)]
    feeds = [f"https://f{i}.example/rss" for i in range(60)]
    stores[0].ensure_feeds([FeedRef(f) for f in feeds])
    stores[0].set_due([(f, T0 - timedelta(seconds=i)) for i, f in enumerate(feeds)])
    lease = T0 + timedelta(seconds=15)

    def claim(n: int) -> list[str]:
        store, got = stores[n], []
        while batch := store.claim_due_feeds(T0, f"owner-{n}", lease, 4):
            got += [s.key for s in batch]
        return got

    try:
        with ThreadPoolExecutor(3) as pool:
            claimed = list(pool.map(claim, range(3)))
        every = [k for got in claimed for k in got]
        assert sorted(every) == sorted(feeds)  # each feed once, none twice
    finally:
        for s in stores:
            s.close()


def test_several_instances_run_on_postgresql_and_a_silent_one_is_dead(postgres_url: str) -> None:
    from monitor.storage import migrate

    assert migrate(postgres_url)[1] >= 1
    a, b, reader = (open_storage(postgres_url) for _ in range(3))
    try:
        assert reader.daemon_pid() is None
        a.lock_for_daemon("host-a:1:1")
        b.lock_for_daemon("host-b:2:2")  # a second instance: allowed on PostgreSQL
        assert [i.owner for i in reader.instances()] == ["host-a:1:1", "host-b:2:2"]
        assert reader.daemon_pid() is not None
        assert reader.dead_owners() == set()
        # b stops beating (killed): after the timeout it is dead, its claims free
        import psycopg

        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute(
                "UPDATE instances SET seen = now() - interval '1 hour' WHERE owner = 'host-b:2:2'"
            )
        assert reader.dead_owners() == {"host-b:2:2"}
        assert [i.owner for i in reader.instances()] == ["host-a:1:1"]
        b.heartbeat()  # alive again after all (a long pause)
        assert reader.dead_owners() == set()
        a.close()  # a clean stop: no longer an instance
        assert [i.owner for i in reader.instances()] == ["host-b:2:2"]
    finally:
        b.close()
        reader.close()


def test_postgresql_refuses_a_database_without_this_schema_and_says_to_migrate(
    postgres_url: str,
) -> None:
    import psycopg

    from monitor.storage import migrate
    from monitor.storage.postgres import SCHEMA_VERSION as PG_VERSION

    with pytest.raises(StorageError, match="no rss-monitor schema yet; run `monitor db migrate`"):
        open_storage(postgres_url)
    with pytest.raises(StorageError, match="run `monitor db migrate`"):
        open_storage(postgres_url, readonly=True)
    assert migrate(postgres_url) == (0, PG_VERSION)
    assert migrate(postgres_url) == (PG_VERSION, PG_VERSION)  # nothing to do the second time
    open_storage(postgres_url).close()
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("UPDATE schema_version SET version = %s", (PG_VERSION + 1,))
    with pytest.raises(StorageError, match=r"newer than this rss-monitor understands"):
        open_storage(postgres_url)
    with pytest.raises(StorageError, match=r"newer than this rss-monitor understands"):
        migrate(postgres_url)
    if PG_VERSION > 1:  # an older schema exists once there are two versions
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute("UPDATE schema_version SET version = %s", (PG_VERSION - 1,))
        with pytest.raises(StorageError, match=r"older than this rss-monitor's .* db migrate"):
            open_storage(postgres_url)


def test_a_postgresql_password_never_appears_in_a_message() -> None:
    from monitor.storage import shown_location as shown

    assert shown("postgresql://app:s3cret@db.example:5432/news") == (
        "postgresql://app:****@db.example:5432/news"
    )
    assert shown("postgresql://app@db.example/news") == "postgresql://app@db.example/news"
    with pytest.raises(StorageError) as err:
        open_storage("postgresql://app:s3cret@127.0.0.1:1/news?connect_timeout=2")
    assert "s3cret" not in str(err.value) and "can't" in str(err.value)


def test_rows_of_a_url_position_a_notifier_lost_are_given_up_whatever_the_others_have(
    store: Storage,
) -> None:
    store.commit_poll(
        _state(store),
        [_new(1, outgoing=(("chat", 0), ("chat", 1), ("mail", 0), ("mail", 1), ("mail", 2)))],
    )
    # chat keeps one URL, mail all three: only chat's second row has nowhere to go
    assert store.drop_unrouted({"chat": 1, "mail": 3}) == {"chat": 1}
    assert store.outbox_stats().pending == 4


def test_text_with_a_nul_character_is_stored_and_its_entry_known_again(store: Storage) -> None:
    odd = replace(_entry(1), identity="guid\x00-1", title="Null\x00 title")
    state = _state(store, etag='"e\x00"', last_error="HTTP 500: \x00")
    assert len(store.commit_poll(state, [_new(1, entry=odd, outgoing=(("chat", 0),))])) == 1
    assert store.seen(FEED, ["guid\x00-1"], []) == {"guid\x00-1"}
    assert store.commit_poll(state, [_new(1, entry=odd)]) == []  # not new the second time
    assert store.outbox_stats().pending == 1


def test_feed_counts_by_state_and_due_time(store: Storage) -> None:
    feeds = [f"https://f{i}.example/rss" for i in range(5)]
    store.ensure_feeds([FeedRef(f) for f in feeds])  # FEED is no longer configured
    store.set_due([(feeds[0], T0 - timedelta(hours=1)), (feeds[1], T0 + timedelta(hours=1))])
    store.save_feed_state(replace(store.feed_state(feeds[2]), last_error="HTTP 500", error_count=1))
    store.save_feed_state(replace(store.feed_state(feeds[3]), gone=True, next_due=T0))
    store.pause_feed(store.feed_state(feeds[4]).key)
    counts = store.feed_counts(T0, T0 - timedelta(minutes=30))
    assert (counts.total, counts.paused, counts.gone, counts.failing, counts.ok) == (5, 1, 1, 1, 2)
    # due: feeds[0] (overdue too), [2] (never polled), [3] (due now); not [1], not paused [4]
    assert (counts.due, counts.overdue) == (3, 1)
