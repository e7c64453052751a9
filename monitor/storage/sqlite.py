"""SQLite storage: the embedded default (WAL, numbered migrations)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from monitor import decide
from monitor.storage import codec
from monitor.storage.base import (
    CarriedOver,
    Delivery,
    DueTime,
    FeedCounts,
    FeedRef,
    FeedState,
    FeedStats,
    Instance,
    MatchRecord,
    NewEntry,
    NotifierOutbox,
    OutboxRow,
    OutboxStats,
    Outgoing,
    SlotClaim,
    StorageError,
    StoredArticle,
)
from monitor.story import band_keys
from monitor.types import Notice

# Each migration takes the schema from version N to N+1; never edit a released one.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE feeds (
        key TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        title TEXT,
        etag TEXT,
        last_modified TEXT,
        body_hash TEXT,
        last_poll REAL,
        last_status INTEGER,
        last_error TEXT,
        error_count INTEGER NOT NULL DEFAULT 0,
        next_due REAL,
        gone INTEGER NOT NULL DEFAULT 0,
        article_error TEXT
    );
    CREATE TABLE entries (
        id INTEGER PRIMARY KEY,
        feed TEXT NOT NULL REFERENCES feeds(key),
        identity TEXT NOT NULL,
        link TEXT,
        title TEXT NOT NULL,
        published REAL,
        first_seen REAL NOT NULL,
        UNIQUE (feed, identity)
    );
    CREATE INDEX entries_feed_link ON entries (feed, link);
    CREATE TABLE matches (
        entry INTEGER PRIMARY KEY REFERENCES entries(id),
        rules TEXT NOT NULL,
        terms TEXT NOT NULL,
        hits TEXT NOT NULL DEFAULT '[]',
        snippet TEXT,
        created REAL NOT NULL
    );
    CREATE INDEX matches_created ON matches (created);
    CREATE TABLE articles (
        entry INTEGER PRIMARY KEY REFERENCES entries(id),
        fields TEXT NOT NULL,
        stored REAL NOT NULL
    );
    CREATE INDEX articles_stored ON articles (stored);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        entry INTEGER NOT NULL REFERENCES entries(id),
        notifier TEXT NOT NULL,
        target TEXT NOT NULL,
        message TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_error TEXT,
        created REAL NOT NULL,
        sent REAL,
        UNIQUE (entry, notifier, target)
    );
    CREATE INDEX outbox_due ON outbox (status, next_attempt);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: outbox rows belong to a notifier's name and its URL's position (``target``
    # holds the position from now on; rows of version 1 hold a hash of the URL,
    # adopted by ``adopt_targets``), and are claimed before they are sent.
    """
    ALTER TABLE outbox ADD COLUMN claimed_by TEXT;
    ALTER TABLE outbox ADD COLUMN claim_until REAL;
    CREATE INDEX outbox_target ON outbox (notifier, target, status, next_attempt);
    """,
    # 3: feed identity: `key` stays the feed's identity (its entries keep pointing
    # at it) while the URL the config lists it at, `configured`, may change;
    # earlier URLs in feed_urls. Poisoned documents and entries; pause.
    """
    ALTER TABLE feeds ADD COLUMN configured TEXT;
    UPDATE feeds SET configured = key;
    CREATE UNIQUE INDEX feeds_configured ON feeds (configured);
    ALTER TABLE feeds ADD COLUMN name TEXT;
    ALTER TABLE feeds ADD COLUMN paused INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE feeds ADD COLUMN failed_hash TEXT;
    ALTER TABLE feeds ADD COLUMN failed_error TEXT;
    ALTER TABLE feeds ADD COLUMN failed_tries INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE feeds ADD COLUMN failing_entries TEXT;
    ALTER TABLE feeds ADD COLUMN entry_error TEXT;
    CREATE TABLE feed_urls (
        id INTEGER PRIMARY KEY,
        feed TEXT NOT NULL REFERENCES feeds(key),
        url TEXT NOT NULL,
        UNIQUE (feed, url)
    );
    """,
    # 4: the outbox keeps the alert as data (rendered when it is sent, grouped with
    # what waits for the same target), operator notices (no entry), priority.
    """
    CREATE TABLE outbox_new (
        id INTEGER PRIMARY KEY,
        entry INTEGER REFERENCES entries(id),
        notifier TEXT NOT NULL,
        target TEXT NOT NULL,
        message TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt REAL NOT NULL,
        last_error TEXT,
        created REAL NOT NULL,
        sent REAL,
        claimed_by TEXT,
        claim_until REAL,
        priority INTEGER NOT NULL DEFAULT 0,
        UNIQUE (entry, notifier, target)
    );
    INSERT INTO outbox_new (id, entry, notifier, target, message, status, attempts,
        next_attempt, last_error, created, sent, claimed_by, claim_until)
        SELECT id, entry, notifier, target, message, status, attempts, next_attempt,
        last_error, created, sent, claimed_by, claim_until FROM outbox;
    DROP TABLE outbox;
    ALTER TABLE outbox_new RENAME TO outbox;
    CREATE INDEX outbox_due ON outbox (status, next_attempt);
    CREATE INDEX outbox_target ON outbox (notifier, target, status, next_attempt);
    CREATE INDEX outbox_sent ON outbox (notifier, target, sent);
    """,
    # 5: one story, one alert. A matched entry's story (canonical link and text
    # fingerprint, with its band keys for finding similar ones), and per rule
    # whether it was the first report or a copy folded into the first.
    """
    CREATE TABLE stories (
        entry INTEGER PRIMARY KEY REFERENCES entries(id),
        canonical TEXT,
        fingerprint BLOB NOT NULL,
        seen REAL NOT NULL
    );
    CREATE INDEX stories_canonical ON stories (canonical, seen);
    CREATE INDEX stories_seen ON stories (seen);
    CREATE TABLE story_bands (
        key INTEGER NOT NULL,
        entry INTEGER NOT NULL REFERENCES stories(entry)
    );
    CREATE INDEX story_bands_key ON story_bands (key);
    CREATE INDEX story_bands_entry ON story_bands (entry);
    CREATE TABLE story_rules (
        entry INTEGER NOT NULL REFERENCES stories(entry),
        rule TEXT NOT NULL,
        first INTEGER REFERENCES stories(entry),
        PRIMARY KEY (entry, rule)
    );
    CREATE INDEX story_rules_first ON story_rules (first);
    """,
    # 6: due feeds come from the store: which feeds the config lists (active),
    # leases on the ones being polled, the publishing rate for `interval: auto`;
    # retention for everything: when an entry was last listed by its feed, and
    # when the feed's document last parsed.
    """
    ALTER TABLE feeds ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE feeds ADD COLUMN leased_by TEXT;
    ALTER TABLE feeds ADD COLUMN lease_until REAL;
    ALTER TABLE feeds ADD COLUMN rate REAL NOT NULL DEFAULT 0;
    ALTER TABLE feeds ADD COLUMN rate_at REAL;
    ALTER TABLE feeds ADD COLUMN last_parsed REAL;
    ALTER TABLE feeds ADD COLUMN last_new REAL;
    CREATE INDEX feeds_due ON feeds (active, paused, next_due);
    ALTER TABLE entries ADD COLUMN last_listed REAL;
    CREATE INDEX entries_first_seen ON entries (first_seen);
    CREATE INDEX outbox_created ON outbox (status, created);
    """,
    # 7: once-only jobs (a digest's firing) are claimed as a row, so a digest is sent
    # once even when another process (`monitor poll`) delivers beside the daemon.
    """
    CREATE TABLE slots (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        claim_until REAL NOT NULL,
        done INTEGER NOT NULL DEFAULT 0,
        created REAL NOT NULL
    );
    """,
    # 8: whether the feed's last parsed document lists an entry, kept on the entry, so
    # that pruning reads the unlisted ones by index instead of passing over every entry
    # an old feed still lists (millions, at 100,000 feeds) on each pass; the index by
    # first_seen alone served only that search.
    """
    ALTER TABLE entries ADD COLUMN listed INTEGER NOT NULL DEFAULT 1;
    UPDATE entries SET listed = 0 WHERE (SELECT f.last_parsed IS NULL
        OR coalesce(entries.last_listed, entries.first_seen) < f.last_parsed
        FROM feeds f WHERE f.key = entries.feed);
    CREATE INDEX entries_unlisted ON entries (first_seen) WHERE listed = 0;
    DROP INDEX entries_first_seen;
    """,
    # 9: the index of each feed's last document's items (parse.encode_items), so
    # that the items of the next one that are byte for byte the same are not parsed.
    """
    ALTER TABLE feeds ADD COLUMN items BLOB;
    """,
    # 10: a story's band keys are searched only while it leads (is the first report
    # for one of its rules, or became so when its first was pruned): a story copied
    # by hundreds of feeds made every later copy read hundreds of bands per key.
    """
    ALTER TABLE story_bands ADD COLUMN leads INTEGER NOT NULL DEFAULT 1;
    UPDATE story_bands SET leads = 0 WHERE NOT EXISTS (SELECT 1 FROM story_rules r
        WHERE r.entry = story_bands.entry AND r.first IS NULL);
    CREATE INDEX story_bands_leads ON story_bands (key) WHERE leads = 1;
    DROP INDEX story_bands_key;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)


def _chunks(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    """``items`` in slices of ``size`` (SQLite's limit on bound parameters is 32,766)."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _statements(script: str) -> list[str]:
    """The statements of a migration script (``execute`` takes one at a time)."""
    out: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            out.append(current.strip())
            current = ""
    if current.strip():
        out.append(current.strip())
    return out


class SQLiteStorage:
    """The Storage protocol on one SQLite file (see storage.base for the contract).

    Each thread that uses the store gets a connection of its own, so the
    daemon can run store calls in threads (a write that waits for SQLite's
    lock then never stalls the event loop) and each transaction stays on
    one connection. ``:memory:`` is a shared in-memory database, so every
    thread sees the same one.

    ``readonly=True`` is for commands that only read (``status``, ``matches``,
    ``rules test``): the file must exist and have this code's schema (it is
    never created or migrated), and every connection is ``mode=ro``. It reads
    a database the daemon is writing, WAL included. In WAL mode SQLite makes
    the -wal and -shm files next to the database if they are missing, even
    for a reader; it leaves them for the next writer, and when it runs as
    root it gives them the database file's owner, so the service can still
    open them.
    """

    shared = False  # one daemon per file (the lock file)

    def __init__(self, path: str | Path, *, readonly: bool = False) -> None:
        self.path = str(path)
        self.readonly = readonly
        self._uri = False
        self._target = self.path
        if self.path == ":memory:":
            if readonly:
                raise StorageError("an in-memory database can't be opened read-only")
            self._target = f"file:rss-monitor-{id(self)}?mode=memory&cache=shared"
            self._uri = True
        elif readonly:
            # Never create or migrate: a command that only reads must find the service's
            # database, not make a new empty one (mode=ro fails on a missing file).
            if not os.path.exists(self.path):
                raise StorageError(f"no database at {self.path}")
            self._target = f"file:{quote(os.path.abspath(self.path))}?mode=ro"
            self._uri = True
        self._local = threading.local()
        self._conns: list[sqlite3.Connection] = []
        self._conns_lock = threading.Lock()
        # Write transactions of this process's threads take turns here: SQLite's own
        # lock makes a loser sleep 1, 2, 5, 10... ms and ask again (its busy handler),
        # which cost a one-shot round of 1,000 quick state writes a fifth of its time.
        # Other processes still meet at SQLite's lock (busy_timeout).
        self._write_lock = threading.RLock()
        self._lock_fd: int | None = None
        self._prune_from: tuple[float, int] | None = None  # where prune_history goes on
        try:
            self._connect()
            if readonly:
                self._check_version()
            else:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._migrate()
        except sqlite3.Error as exc:
            self.close()
            raise StorageError(self._open_error(exc)) from None
        except StorageError:
            self.close()
            raise

    def _open_error(self, exc: sqlite3.Error) -> str:
        name = getattr(exc, "sqlite_errorname", "")
        if self.readonly and name in ("SQLITE_READONLY_DIRECTORY", "SQLITE_READONLY_CANTINIT"):
            # In WAL mode even a reader needs the -wal and -shm files next to the database.
            folder = os.path.dirname(os.path.abspath(self.path))
            return (
                f"can't read database {self.path}: SQLite needs to create its -wal and -shm "
                f"files in {folder}, which this user can't write; run the command as the "
                "service's user or root"
            )
        return f"can't open database {self.path}: {exc}"

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self._target, isolation_level=None, check_same_thread=False, uri=self._uri
        )
        db.execute("PRAGMA busy_timeout=5000")
        if self.readonly:
            db.execute("PRAGMA query_only=ON")
        else:
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA foreign_keys=ON")
        self._local.db = db
        with self._conns_lock:
            self._conns.append(db)
        return db

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction on this thread's connection (BEGIN IMMEDIATE: the
        write lock is taken at once, so the transaction never fails half-way on it)."""
        with self._write_lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @property
    def _db(self) -> sqlite3.Connection:
        """This thread's connection (opened on its first use)."""
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        return db if db is not None else self._connect()

    def _newer(self, version: int) -> StorageError:
        return StorageError(
            f"database {self.path} has schema version {version}, newer than this "
            f"rss-monitor understands ({SCHEMA_VERSION}); upgrade rss-monitor"
        )

    def _check_version(self) -> None:
        """A read-only open can't migrate: refuse a schema other than ours."""
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise self._newer(version)
        if version == 0:
            raise StorageError(f"{self.path} is not an rss-monitor database (it has no schema)")
        if version < SCHEMA_VERSION:
            raise StorageError(
                f"database {self.path} has schema version {version}, older than this "
                f"rss-monitor's ({SCHEMA_VERSION}); starting the daemon (monitor run) "
                "upgrades it"
            )

    def _migrate(self) -> None:
        """Apply the migrations the file lacks, each in one write transaction that reads
        the version under the write lock: two processes opening a new database at
        once (a daemon and `monitor poll`) don't both apply one."""
        while True:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                (version,) = self._db.execute("PRAGMA user_version").fetchone()
                if version > SCHEMA_VERSION:
                    raise self._newer(version)
                if version == SCHEMA_VERSION:
                    self._db.execute("COMMIT")
                    return
                for statement in _statements(MIGRATIONS[version]):
                    self._db.execute(statement)
                self._db.execute(f"PRAGMA user_version={version + 1}")
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # feeds ---------------------------------------------------------------

    def ensure_feeds(self, feeds: Iterable[FeedRef]) -> list[CarriedOver]:
        refs = list(feeds)
        known = {
            str(url): (name, bool(active))
            for url, name, active in self._db.execute(
                "SELECT configured, name, active FROM feeds WHERE configured IS NOT NULL"
            )
        }
        wanted = {r.url for r in refs}
        listed = sum(1 for _n, active in known.values() if active)
        if listed == len(wanted) and all(known.get(r.url) == (r.name, True) for r in refs):
            return []  # the usual reload: nothing to write
        with self._transaction():
            carried = self._sync_feeds(refs)
            # Only the feeds the config lists are polled (the others keep their
            # entries, in case they come back or another URL continues them). Only
            # the flags that change are written: a first start inserts 100,000 feeds
            # already active, and rewriting each flag again cost most of a second.
            flips = [
                (int(want), str(url))
                for url, active in self._db.execute(
                    "SELECT configured, active FROM feeds WHERE configured IS NOT NULL"
                )
                if bool(active) != (want := str(url) in wanted)
            ]
            self._db.executemany("UPDATE feeds SET active = ? WHERE configured = ?", flips)
            self._db.execute("UPDATE feeds SET active = 0 WHERE active = 1 AND configured IS NULL")
        return carried

    def _sync_feeds(self, refs: list[FeedRef]) -> list[CarriedOver]:
        db = self._db
        rows = db.execute(
            "SELECT key, configured, url, name, last_poll FROM feeds WHERE configured IS NOT NULL"
        ).fetchall()
        by_url = {str(r[1]): r for r in rows}
        wanted = {r.url for r in refs}
        db.executemany(
            "UPDATE feeds SET name = ? WHERE configured = ?",
            [(r.name, r.url) for r in refs if r.url in by_url and by_url[r.url][3] != r.name],
        )
        unknown = [r for r in refs if r.url not in by_url]
        if not unknown:
            return []
        orphans = [r for r in rows if r[1] not in wanted]
        earlier: dict[str, list[str]] = {}
        if orphans:
            for feed, url in db.execute("SELECT feed, url FROM feed_urls ORDER BY id"):
                earlier.setdefault(str(feed), []).append(str(url))
        stored = [
            decide.StoredFeed(
                key=str(key),
                configured=str(configured),
                polled=str(url),
                name=name,
                earlier=tuple(earlier.get(str(key), ())),
                last_poll=codec.dt(last_poll),
            )
            for key, configured, url, name, last_poll in orphans
        ]
        carries = decide.carry_over([decide.Claim(r.url, r.name) for r in unknown], stored)
        names = {r.url: r.name for r in unknown}
        out = []
        for c in carries:
            (old_url,) = db.execute("SELECT url FROM feeds WHERE key = ?", (c.key,)).fetchone()
            db.executemany(
                "INSERT OR IGNORE INTO feed_urls (feed, url) VALUES (?, ?)",
                [(c.key, u) for u in dict.fromkeys((c.earlier, old_url)) if u != c.url],
            )
            db.execute("DELETE FROM feed_urls WHERE feed = ? AND url = ?", (c.key, c.url))
            # A fixed URL is the operator's answer to a failing or gone feed: poll it soon.
            db.execute(
                "UPDATE feeds SET configured = ?, url = ?, name = ?,"
                " next_due = CASE WHEN gone OR error_count > 0 THEN NULL ELSE next_due END,"
                " gone = 0, error_count = 0, last_error = NULL WHERE key = ?",
                (c.url, c.url, names[c.url], c.key),
            )
            out.append(CarriedOver(c.key, c.url, c.earlier, c.reason, c.rivals))
        carried = {c.url for c in carries}
        rest = [r for r in unknown if r.url not in carried]
        taken: set[str] = set()
        for i in range(0, len(rest), 500):
            chunk = [r.url for r in rest[i : i + 500]]
            marks = ",".join("?" * len(chunk))
            taken.update(
                row[0] for row in db.execute(f"SELECT key FROM feeds WHERE key IN ({marks})", chunk)
            )
        # the usual case in one statement (a first start with 100,000 feeds); a URL
        # whose key an earlier feed holds gets a key of its own
        db.executemany(
            "INSERT INTO feeds (key, url, configured, name) VALUES (?, ?, ?, ?)",
            [(r.url, r.url, r.url, r.name) for r in rest if r.url not in taken],
        )
        for ref in rest:
            if ref.url in taken:
                self._insert_feed(ref.url, ref.name)
        return out

    def _insert_feed(self, url: str, name: str | None) -> str:
        """A new feed configured at ``url``; its key is the URL unless an earlier feed has it."""
        key, n = url, 1
        while self._db.execute("SELECT 1 FROM feeds WHERE key = ?", (key,)).fetchone():
            n += 1
            key = f"{url}#{n}"
        self._db.execute(
            "INSERT INTO feeds (key, url, configured, name) VALUES (?, ?, ?, ?)",
            (key, url, url, name),
        )
        return key

    _STATE_COLUMNS = (
        "key, url, configured, title, etag, last_modified, body_hash, last_poll, last_status,"
        " last_error, error_count, next_due, gone, paused, failed_hash, failed_error,"
        " failed_tries, failing_entries, entry_error, article_error, rate, rate_at,"
        " last_parsed, last_new, items"
    )
    _EARLIER = (
        ", (SELECT json_group_array(url) FROM (SELECT url FROM feed_urls u WHERE u.feed = f.key"
        " ORDER BY u.id))"
    )

    @staticmethod
    def _feed_row(
        row: tuple[object, ...], earlier_urls: tuple[str, ...] | None = None
    ) -> FeedState:
        (key, url, configured, title, etag, lm, bh, lp, ls, le, ec, nd, gone, paused) = row[:14]
        (fh, fe, ft, failing, ee, ae, rate, rate_at, parsed, last_new) = row[14:24]
        items = row[24]
        earlier = row[25] if len(row) > 25 else None
        return FeedState(
            key=str(key),
            url=str(url),
            configured=str(configured or key),
            title=title,  # type: ignore[arg-type]
            etag=etag,  # type: ignore[arg-type]
            last_modified=lm,  # type: ignore[arg-type]
            body_hash=bh,  # type: ignore[arg-type]
            last_poll=codec.dt(lp),  # type: ignore[arg-type]
            last_status=ls,  # type: ignore[arg-type]
            last_error=le,  # type: ignore[arg-type]
            error_count=int(ec),  # type: ignore[call-overload]
            next_due=codec.dt(nd),  # type: ignore[arg-type]
            gone=bool(gone),
            paused=bool(paused),
            failed_hash=fh,  # type: ignore[arg-type]
            failed_error=fe,  # type: ignore[arg-type]
            failed_tries=int(ft or 0),  # type: ignore[call-overload]
            failing_entries=tuple((str(i), int(n)) for i, n in json.loads(str(failing)))
            if failing
            else (),
            entry_error=ee,  # type: ignore[arg-type]
            article_error=ae,  # type: ignore[arg-type]
            earlier_urls=(
                earlier_urls
                if earlier_urls is not None
                else tuple(json.loads(str(earlier)))
                if earlier
                else ()
            ),
            rate=float(rate or 0.0),  # type: ignore[arg-type]
            rate_at=codec.dt(rate_at),  # type: ignore[arg-type]
            last_parsed=codec.dt(parsed),  # type: ignore[arg-type]
            last_new=codec.dt(last_new),  # type: ignore[arg-type]
            items=bytes(items) if items else b"",  # type: ignore[call-overload]
        )

    def feed_state(self, url: str) -> FeedState:
        row = self._db.execute(
            f"SELECT {self._STATE_COLUMNS}{self._EARLIER} FROM feeds f WHERE configured = ?",
            (url,),
        ).fetchone()
        if row is None:
            key = self._insert_feed(url, None)
            return FeedState(key=key, url=url, configured=url)
        return self._feed_row(row)

    def feed_states(self) -> list[FeedState]:
        earlier: dict[str, list[str]] = {}
        for feed, url in self._db.execute("SELECT feed, url FROM feed_urls ORDER BY id"):
            earlier.setdefault(feed, []).append(url)
        rows = self._db.execute(f"SELECT {self._STATE_COLUMNS} FROM feeds f ORDER BY key")
        return [self._feed_row(r, tuple(earlier.get(r[0], ()))) for r in rows]

    def due_times(self, before: datetime | None = None) -> list[DueTime]:
        rows = self._db.execute(
            "SELECT key, configured, next_due, last_poll, paused, rate FROM feeds"
            " WHERE active = 1 AND (? IS NULL OR next_due IS NULL OR next_due < ?)",
            (codec.ts(before), codec.ts(before)),
        )
        return [
            DueTime(k, c or k, codec.dt(n), codec.dt(lp), bool(p), float(r or 0.0))
            for k, c, n, lp, p, r in rows
        ]

    def feed_stats(self) -> dict[str, FeedStats]:
        stats: dict[str, FeedStats] = {}
        for key, n in self._db.execute("SELECT feed, count(*) FROM entries GROUP BY feed"):
            stats[key] = FeedStats(entries=int(n))
        for key, n in self._db.execute(
            "SELECT e.feed, count(*) FROM matches m JOIN entries e ON e.id = m.entry"
            " GROUP BY e.feed"
        ):
            stats[key] = replace(stats.get(key, FeedStats()), matches=int(n))
        return stats

    # due feeds --------------------------------------------------------------

    def claim_due_feeds(
        self, now: datetime, owner: str, until: datetime, limit: int
    ) -> list[FeedState]:
        if limit <= 0:
            return []
        # Never polled (NULL, first in the index) and due (a range of feeds_due) as two
        # searches merged in order: "next_due IS NULL OR next_due <= ?" bounds no range,
        # and with fewer due feeds than the limit (every tick but the busiest) SQLite
        # read the whole index: 10 ms at 100,000 feeds, four times a second.
        t = now.timestamp()
        with self._transaction():
            keys = [
                r[0]
                for r in self._db.execute(
                    "UPDATE feeds SET leased_by = ?, lease_until = ? WHERE key IN ("
                    " SELECT key FROM ("
                    "  SELECT key, next_due FROM feeds WHERE active = 1 AND paused = 0"
                    "  AND next_due IS NULL AND (lease_until IS NULL OR lease_until <= ?)"
                    "  UNION ALL"
                    "  SELECT key, next_due FROM feeds WHERE active = 1 AND paused = 0"
                    "  AND next_due <= ? AND (lease_until IS NULL OR lease_until <= ?)"
                    "  ORDER BY next_due LIMIT ?)) RETURNING key",
                    (owner, until.timestamp(), t, t, t, limit),
                )
            ]
        if not keys:
            return []
        marks = ",".join("?" * len(keys))
        rows = self._db.execute(
            f"SELECT {self._STATE_COLUMNS}{self._EARLIER} FROM feeds f WHERE key IN ({marks})"
            " ORDER BY next_due, key",
            keys,
        )
        return [self._feed_row(r) for r in rows]

    def renew_leases(self, keys: Sequence[str], owner: str, until: datetime) -> None:
        with self._transaction():
            self._db.executemany(
                "UPDATE feeds SET lease_until = ? WHERE key = ? AND leased_by = ?",
                [(until.timestamp(), k, owner) for k in keys],
            )

    def release_feeds(self, keys: Sequence[str] | None, owner: str) -> int:
        with self._transaction():
            if keys is None:
                cur = self._db.execute(
                    "UPDATE feeds SET leased_by = NULL, lease_until = NULL WHERE leased_by = ?",
                    (owner,),
                )
                return cur.rowcount
            self._db.executemany(
                "UPDATE feeds SET leased_by = NULL, lease_until = NULL"
                " WHERE key = ? AND leased_by = ?",
                [(k, owner) for k in keys],
            )
            return len(keys)

    def lease_owners(self) -> set[str]:
        rows = self._db.execute("SELECT DISTINCT leased_by FROM feeds WHERE leased_by IS NOT NULL")
        return {str(r[0]) for r in rows}

    def set_due(self, due: Sequence[tuple[str, datetime]]) -> None:
        with self._transaction():
            self._db.executemany(
                "UPDATE feeds SET next_due = ? WHERE key = ?",
                [(when.timestamp(), key) for key, when in due],
            )

    def next_due(self) -> datetime | None:
        row = self._db.execute(
            "SELECT min(next_due) FROM feeds WHERE active = 1 AND paused = 0"
        ).fetchone()
        return codec.dt(row[0]) if row else None

    def feed_counts(self, now: datetime, late: datetime) -> FeedCounts:
        row = self._db.execute(
            "SELECT count(*), sum(paused), sum(paused = 0 AND gone),"
            " sum(paused = 0 AND gone = 0 AND error_count > 0),"
            " sum(paused = 0 AND (next_due IS NULL OR next_due <= ?)),"
            " sum(paused = 0 AND next_due IS NOT NULL AND next_due < ?)"
            " FROM feeds WHERE active = 1",
            (now.timestamp(), late.timestamp()),
        ).fetchone()
        return FeedCounts(*(int(n or 0) for n in row))

    def request_poll(self, keys: Sequence[str], now: datetime) -> None:
        with self._transaction():
            self._db.executemany(
                "UPDATE feeds SET next_due = ? WHERE key = ?", [(now.timestamp(), k) for k in keys]
            )

    def _write_state(self, s: FeedState) -> None:
        configured = s.configured or s.key
        # A URL polled before and left for a permanent redirect's target is an earlier URL.
        self._db.execute(
            "INSERT OR IGNORE INTO feed_urls (feed, url) SELECT key, url FROM feeds"
            " WHERE key = ? AND url != ? AND url != configured AND configured = ?",
            (s.key, s.url, configured),
        )
        self._db.execute(
            "INSERT INTO feeds (key, url, configured, title, etag, last_modified, body_hash,"
            " last_poll, last_status, last_error, error_count, next_due, gone, failed_hash,"
            " failed_error, failed_tries, failing_entries, entry_error, article_error,"
            " rate, rate_at, last_parsed, last_new, items)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(key) DO UPDATE SET"
            " url=excluded.url, title=excluded.title, etag=excluded.etag,"
            " last_modified=excluded.last_modified, body_hash=excluded.body_hash,"
            " last_poll=excluded.last_poll, last_status=excluded.last_status,"
            " last_error=excluded.last_error, error_count=excluded.error_count,"
            " next_due=excluded.next_due, gone=excluded.gone,"
            " failed_hash=excluded.failed_hash, failed_error=excluded.failed_error,"
            " failed_tries=excluded.failed_tries,"
            " failing_entries=excluded.failing_entries, entry_error=excluded.entry_error,"
            " article_error=excluded.article_error, rate=excluded.rate,"
            " rate_at=excluded.rate_at, last_parsed=excluded.last_parsed,"
            " last_new=excluded.last_new, items=excluded.items, leased_by=NULL, lease_until=NULL"
            # A poll that was in flight while a reload moved the feed to another URL
            # describes the old URL: its entries count, its state does not.
            " WHERE feeds.configured IS excluded.configured",
            (
                s.key,
                s.url,
                configured,
                s.title,
                s.etag,
                s.last_modified,
                s.body_hash,
                codec.ts(s.last_poll),
                s.last_status,
                s.last_error,
                s.error_count,
                codec.ts(s.next_due),
                int(s.gone),
                s.failed_hash,
                s.failed_error,
                s.failed_tries,
                json.dumps(s.failing_entries) if s.failing_entries else None,
                s.entry_error,
                s.article_error,
                s.rate,
                codec.ts(s.rate_at),
                codec.ts(s.last_parsed),
                codec.ts(s.last_new),
                s.items or None,
            ),
        )

    def save_feed_state(
        self, state: FeedState, notices: Sequence[tuple[str, int, Notice]] = ()
    ) -> None:
        self.save_feed_states([(state, notices)])

    def save_feed_states(
        self, polls: Sequence[tuple[FeedState, Sequence[tuple[str, int, Notice]]]]
    ) -> None:
        with self._transaction():
            for state, notices in polls:
                self._write_state(state)
                self._notices(notices, state.last_poll or datetime.now(UTC))

    def pause_feed(self, key: str) -> None:
        self._control("UPDATE feeds SET paused = 1 WHERE key = ?", (key,))

    def resume_feed(self, key: str, now: datetime) -> None:
        self._control(
            "UPDATE feeds SET paused = 0, gone = 0, error_count = 0, failed_hash = NULL,"
            " failed_error = NULL, failed_tries = 0, next_due = ? WHERE key = ?",
            (now.timestamp(), key),
        )

    def _control(self, sql: str, args: tuple[object, ...]) -> None:
        """An operator's change, and a new ``feeds_changed`` for a running daemon to notice."""
        with self._transaction():
            self._db.execute(sql, args)
            self._bump("feeds_changed")

    # entries ---------------------------------------------------------------

    def seen(self, key: str, identities: Sequence[str], links: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for column, values in (("identity", identities), ("link", links)):
            values = [v for v in values if v]
            for i in range(0, len(values), 500):
                chunk = values[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT {column} FROM entries WHERE feed = ? AND {column} IN ({marks})",
                    (key, *chunk),
                )
                found.update(r[0] for r in rows)
        return found

    def commit_poll(
        self,
        state: FeedState,
        entries: Sequence[NewEntry],
        notices: Sequence[tuple[str, int, Notice]] = (),
        listed: Sequence[str] = (),
    ) -> list[int]:
        ids: list[int] = []
        now = state.last_poll or datetime.now(UTC)
        with self._transaction():
            self._write_state(state)
            self._notices(notices, now)
            for i in range(0, len(listed), 500):
                chunk = list(listed[i : i + 500])
                marks = ",".join("?" * len(chunk))
                self._db.execute(
                    f"UPDATE entries SET last_listed = ?, listed = 1"
                    f" WHERE feed = ? AND identity IN ({marks})",
                    (now.timestamp(), state.key, *chunk),
                )
            for new in entries:
                e = new.entry
                cur = self._db.execute(
                    "INSERT OR IGNORE INTO entries (feed, identity, link, title, published,"
                    " first_seen, last_listed) VALUES (?,?,?,?,?,?,?)",
                    (
                        state.key,
                        e.identity,
                        e.link,
                        e.title,
                        codec.ts(e.published),
                        codec.ts(new.first_seen),
                        codec.ts(new.first_seen),
                    ),
                )
                if cur.rowcount == 0:  # raced with another poll of the same feed
                    continue
                entry_id = int(cur.lastrowid or 0)
                ids.append(entry_id)
                created = codec.ts(new.first_seen)
                if new.document is not None:
                    self._db.execute(
                        "INSERT INTO articles (entry, fields, stored) VALUES (?,?,?)",
                        (entry_id, json.dumps(dict(new.document), ensure_ascii=False), created),
                    )
                if new.matches:
                    self._db.execute(
                        "INSERT INTO matches (entry, rules, terms, hits, snippet, created)"
                        " VALUES (?,?,?,?,?,?)",
                        (
                            entry_id,
                            json.dumps([m.rule for m in new.matches]),
                            json.dumps(codec.terms(new.matches)),
                            codec.hits_json(new.matches),
                            codec.snippet_json(new.snippet),
                            created,
                        ),
                    )
                outgoing: Sequence[Outgoing] = new.outgoing
                if new.story is not None:
                    copies = self._fold_story(
                        entry_id, state.key, new, [m.rule for m in new.matches]
                    )
                    outgoing = codec.without_rules(outgoing, copies)
                self._db.executemany(
                    "INSERT OR IGNORE INTO outbox (entry, notifier, target, message,"
                    " next_attempt, created, priority) VALUES (?,?,?,?,?,?,?)",
                    [
                        (
                            entry_id,
                            o.notifier,
                            o.target,
                            codec.item_json(o.item),
                            created,
                            created,
                            int(o.item.priority),
                        )
                        for o in outgoing
                    ],
                )
            # what the document no longer lists (it was listed before it was parsed);
            # a feed never parsed lists nothing
            parsed = state.last_parsed.timestamp() if state.last_parsed else math.inf
            self._db.execute(
                "UPDATE entries SET listed = 0 WHERE feed = ? AND listed = 1"
                " AND coalesce(last_listed, first_seen) < ?",
                (state.key, parsed),
            )
        return ids

    def _fold_story(
        self, entry_id: int, feed: str, new: NewEntry, rules: Sequence[str]
    ) -> set[str]:
        """Record an entry's story; returns the rules it is a copy for (in the transaction).

        For each rule, the first report within the window with the same
        canonical link, or of another feed with a similar fingerprint, makes
        this a copy. Not of the same feed: two articles of one outlet share its
        boilerplate (a standing paragraph, an author's bio), and a feed's own
        repeats are caught by its entry identities already.
        """
        story = new.story
        assert story is not None
        since = new.first_seen.timestamp() - story.window
        fp = story.fingerprint
        keys = band_keys(fp)
        candidates: dict[int, bytes] = {}
        if story.canonical:
            for e, blob in self._db.execute(
                "SELECT entry, fingerprint FROM stories WHERE canonical = ? AND seen >= ?",
                (story.canonical, since),
            ):
                candidates[e] = blob
        same_link = set(candidates)
        for i in range(0, len(keys), 500):
            chunk = keys[i : i + 500]
            marks = ",".join("?" * len(chunk))
            for e, blob in self._db.execute(
                "SELECT DISTINCT s.entry, s.fingerprint FROM story_bands b JOIN stories s"
                " ON s.entry = b.entry JOIN entries n ON n.id = s.entry"
                f" WHERE b.key IN ({marks}) AND b.leads = 1 AND s.seen >= ? AND n.feed != ?",
                (*chunk, since, feed),
            ):
                candidates[e] = blob
        firsts = [
            e
            for e, blob in sorted(candidates.items())
            if e in same_link or codec.similar_stored(fp, blob)
        ]
        self._db.execute(
            "INSERT OR REPLACE INTO stories (entry, canonical, fingerprint, seen) VALUES (?,?,?,?)",
            (entry_id, story.canonical, fp.to_bytes(), new.first_seen.timestamp()),
        )
        copies: set[str] = set()
        for rule in rules:
            first = None
            if firsts:
                marks = ",".join("?" * len(firsts))
                row = self._db.execute(
                    f"SELECT entry FROM story_rules WHERE rule = ? AND first IS NULL"
                    f" AND entry IN ({marks}) ORDER BY entry LIMIT 1",
                    (rule, *firsts),
                ).fetchone()
                first = row[0] if row else None
            self._db.execute(
                "INSERT OR REPLACE INTO story_rules (entry, rule, first) VALUES (?,?,?)",
                (entry_id, rule, first),
            )
            if first is not None:
                copies.add(rule)
        # A copy for every rule it matched is never a first: its bands wait unsearched
        # until its first is pruned (_forget_stories).
        leads = int(len(copies) < len(rules))
        self._db.executemany(
            "INSERT INTO story_bands (key, entry, leads) VALUES (?, ?, ?)",
            [(k, entry_id, leads) for k in keys],
        )
        return copies

    def also_reported(self, entries: Sequence[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        for i in range(0, len(entries), 500):
            chunk = list(entries[i : i + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT DISTINCT r.first, coalesce(f.title, f.configured, f.key), r.entry"
                " FROM story_rules r JOIN entries e ON e.id = r.entry JOIN feeds f"
                f" ON f.key = e.feed WHERE r.first IN ({marks}) ORDER BY r.entry",
                chunk,
            )
            for first, feed, _entry in rows:
                names = out.setdefault(first, [])
                if feed not in names:
                    names.append(feed)
        return out

    # outbox ------------------------------------------------------------------

    _DELIVERY_COLUMNS = "id, notifier, target, message, attempts, created, priority, entry"

    @staticmethod
    def _delivery(row: tuple[object, ...], now: datetime) -> Delivery:
        i, n, t, m, a, c, pr, e = row
        target = int(t) if isinstance(t, int) or str(t).isdigit() else -1  # type: ignore[call-overload]
        return Delivery(
            int(i),  # type: ignore[call-overload]
            str(n),
            target,
            codec.payload(str(m), e),  # type: ignore[arg-type]
            int(a),  # type: ignore[call-overload]
            codec.dt(c) or now,  # type: ignore[arg-type]
            bool(pr),
        )

    def due_deliveries(self, now: datetime, limit: int = 100) -> list[Delivery]:
        rows = self._db.execute(
            f"SELECT {self._DELIVERY_COLUMNS} FROM outbox"
            " WHERE status = 'pending' AND next_attempt <= ? ORDER BY next_attempt, id LIMIT ?",
            (now.timestamp(), limit),
        )
        return [self._delivery(r, now) for r in rows]

    def claim_deliveries(
        self,
        notifier: str,
        target: int,
        now: datetime,
        owner: str,
        until: datetime,
        limit: int,
        *,
        priority_only: bool = False,
    ) -> list[Delivery]:
        urgent = " AND (priority = 1 OR entry IS NULL)" if priority_only else ""
        with self._transaction():
            rows = self._db.execute(
                f"UPDATE outbox SET claimed_by = ?, claim_until = ? WHERE id IN ("
                " SELECT id FROM outbox WHERE notifier = ? AND target = ? AND status = 'pending'"
                f" AND next_attempt <= ? AND (claim_until IS NULL OR claim_until <= ?){urgent}"
                " ORDER BY next_attempt, id LIMIT ?)"
                f" RETURNING {self._DELIVERY_COLUMNS}, next_attempt",
                (
                    owner,
                    until.timestamp(),
                    notifier,
                    str(target),
                    now.timestamp(),
                    now.timestamp(),
                    limit,
                ),
            ).fetchall()
        rows.sort(key=lambda r: (r[-1], r[0]))  # RETURNING has no order of its own
        return [self._delivery(r[:-1], now) for r in rows]

    def add_notice(self, notifier: str, targets: int, notice: Notice, now: datetime) -> None:
        with self._transaction():
            self._notices([(notifier, targets, notice)], now)

    def _notices(self, notices: Sequence[tuple[str, int, Notice]], now: datetime) -> None:
        self._db.executemany(
            "INSERT INTO outbox (entry, notifier, target, message, next_attempt, created,"
            " priority) VALUES (NULL,?,?,?,?,?,1)",
            [
                (notifier, str(t), codec.notice_json(notice), now.timestamp(), now.timestamp())
                for notifier, targets, notice in notices
                for t in range(targets)
            ],
        )

    def sends_since(self, notifier: str, target: int, since: datetime) -> int:
        row = self._db.execute(
            "SELECT count(DISTINCT sent) FROM outbox WHERE notifier = ? AND target = ?"
            " AND sent >= ?",
            (notifier, str(target), since.timestamp()),
        ).fetchone()
        return int(row[0])

    def outbox_rows(self, *, failed_only: bool = False, limit: int = 1000) -> list[OutboxRow]:
        statuses = "('failed')" if failed_only else "('pending', 'failed')"
        rows = self._db.execute(
            "SELECT o.id, o.notifier, o.target, o.status, o.message, e.title, e.link,"
            " o.attempts, o.last_error, o.created, o.next_attempt FROM outbox o"
            f" LEFT JOIN entries e ON e.id = o.entry WHERE o.status IN {statuses}"
            " ORDER BY o.id DESC LIMIT ?",
            (limit,),
        )
        out = []
        for i, n, t, st, msg, title, link, a, err, created, nxt in rows:
            if title is None:  # an operator notice (or an entry pruned since)
                payload = codec.payload(msg, None)
                title = payload.subject if isinstance(payload, Notice) else payload.title
            out.append(
                OutboxRow(
                    id=i,
                    notifier=n,
                    target=int(t) if str(t).isdigit() else -1,
                    status=st,
                    title=title,
                    link=link,
                    attempts=a,
                    last_error=err,
                    created=codec.dt(created) or datetime.now(UTC),
                    next_attempt=codec.dt(nxt) if st == "pending" else None,
                )
            )
        return out

    def retry_deliveries(self, ids: Sequence[int] | None, now: datetime) -> int:
        with self._transaction():
            if ids is None:
                cur = self._db.execute(
                    "UPDATE outbox SET status = 'pending', next_attempt = ?, created = ?,"
                    " claimed_by = NULL, claim_until = NULL WHERE status = 'failed'",
                    (now.timestamp(), now.timestamp()),
                )
                done = cur.rowcount
            else:
                done = 0
                for i in ids:
                    cur = self._db.execute(
                        "UPDATE outbox SET status = 'pending', next_attempt = ?, created = ?"
                        " WHERE id = ? AND status IN ('pending', 'failed')",
                        (now.timestamp(), now.timestamp(), i),
                    )
                    done += cur.rowcount
            self._bump("outbox_changed")
        return done

    def drop_delivery(self, delivery_id: int) -> bool:
        with self._transaction():
            cur = self._db.execute(
                "UPDATE outbox SET status = 'dropped', claimed_by = NULL, claim_until = NULL"
                " WHERE id = ? AND status IN ('pending', 'failed')",
                (delivery_id,),
            )
            # No bump: the rows left wait out their target's backoff as before; only a
            # retry asks the running daemon to try a target now.
        return cur.rowcount > 0

    def _bump(self, key: str) -> None:
        """A new value of a meta counter, for a running daemon to notice an operator's change."""
        self._db.execute(
            "INSERT INTO meta (key, value) VALUES (?, '1') ON CONFLICT(key)"
            " DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
            (key,),
        )

    def release_claims(self, delivery_ids: Sequence[int], owner: str) -> None:
        self._db.executemany(
            "UPDATE outbox SET claimed_by = NULL, claim_until = NULL"
            " WHERE id = ? AND claimed_by = ?",
            [(i, owner) for i in delivery_ids],
        )

    def claim_owners(self) -> set[str]:
        rows = self._db.execute(
            "SELECT DISTINCT claimed_by FROM outbox WHERE claimed_by IS NOT NULL"
            " AND status = 'pending'"
        )
        return {str(r[0]) for r in rows}

    def release_owner(self, owner: str) -> int:
        cur = self._db.execute(
            "UPDATE outbox SET claimed_by = NULL, claim_until = NULL WHERE claimed_by = ?",
            (owner,),
        )
        # its digest in progress: another process may send it now
        self._db.execute("UPDATE slots SET claim_until = 0 WHERE owner = ? AND NOT done", (owner,))
        return cur.rowcount

    def next_delivery_due(self, notifier: str, target: int) -> datetime | None:
        row = self._db.execute(
            "SELECT min(max(next_attempt, coalesce(claim_until, 0))) FROM outbox"
            " WHERE notifier = ? AND target = ? AND status = 'pending'",
            (notifier, str(target)),
        ).fetchone()
        return codec.dt(row[0]) if row else None

    def delivered(self, delivery_ids: Sequence[int], now: datetime) -> None:
        with self._transaction():
            self._db.executemany(
                "UPDATE outbox SET status = 'sent', sent = ?, attempts = attempts + 1,"
                " last_error = NULL, claimed_by = NULL, claim_until = NULL WHERE id = ?",
                [(now.timestamp(), i) for i in delivery_ids],
            )

    def delivery_failed(
        self,
        failures: Sequence[tuple[int, datetime | None]],
        error: str,
        now: datetime,
        notices: Sequence[tuple[str, int, Notice]] = (),
    ) -> None:
        with self._transaction():
            for delivery_id, next_attempt in failures:
                if next_attempt is None:
                    self._db.execute(
                        "UPDATE outbox SET status = 'failed', attempts = attempts + 1,"
                        " last_error = ?, claimed_by = NULL, claim_until = NULL WHERE id = ?",
                        (error, delivery_id),
                    )
                else:
                    self._db.execute(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = ?,"
                        " next_attempt = ?, claimed_by = NULL, claim_until = NULL WHERE id = ?",
                        (error, next_attempt.timestamp(), delivery_id),
                    )
            self._notices(notices, now)

    def adopt_targets(self, notifier: str, positions: Mapping[str, int]) -> int:
        """Rows of schema 1 name a URL by its hash: give them the URL's position.

        ``positions`` maps each configured URL's old key to its position; when
        the notifier has one URL, every such row belongs to it.
        """
        rows = self._db.execute(
            "SELECT id, target FROM outbox WHERE notifier = ? AND status = 'pending'"
            " AND target GLOB '*[^0-9]*'",
            (notifier,),
        ).fetchall()
        moved = 0
        for row_id, key in rows:
            position = positions.get(key)
            if position is None and len(set(positions.values())) == 1:
                position = next(iter(positions.values()))
            if position is not None:
                cur = self._db.execute(
                    "UPDATE OR IGNORE outbox SET target = ? WHERE id = ?", (str(position), row_id)
                )
                moved += cur.rowcount
        return moved

    def drop_unrouted(self, urls: Mapping[str, int]) -> dict[str, int]:
        """Give up the pending rows no configured notifier URL can take.

        ``urls`` maps each configured notifier to its number of URLs. A row of
        a notifier that is gone, or of a URL position it no longer has, is
        marked failed saying so; returns how many per notifier.
        """
        dropped: dict[str, int] = {}
        rows = self._db.execute(
            "SELECT id, notifier, target FROM outbox WHERE status = 'pending'"
        ).fetchall()
        for row_id, notifier, target in rows:
            count = urls.get(notifier)
            if count is None:
                why = f"notifier {notifier!r} was removed from the config"
            elif not str(target).isdigit():
                why = f"notifier {notifier!r}: its URL changed before this alert was sent"
            elif int(target) >= count:
                why = f"notifier {notifier!r} has no URL #{int(target) + 1} any more"
            else:
                continue
            self._db.execute(
                "UPDATE outbox SET status = 'failed', last_error = ?, claimed_by = NULL,"
                " claim_until = NULL WHERE id = ? AND status = 'pending'",
                (why, row_id),
            )
            dropped[notifier] = dropped.get(notifier, 0) + 1
        return dropped

    def outbox_stats(self) -> OutboxStats:
        per: dict[str, NotifierOutbox] = {}
        totals = {"pending": 0, "failed": 0, "sent": 0}
        rows = self._db.execute(
            "SELECT notifier, status, count(*) FROM outbox GROUP BY notifier, status"
        )
        counts: dict[str, dict[str, int]] = {}
        for notifier, status, count in rows:
            counts.setdefault(notifier, {})[status] = int(count)
            totals[status] = totals.get(status, 0) + int(count)
        for notifier, c in counts.items():
            per[notifier] = NotifierOutbox(
                c.get("pending", 0), c.get("failed", 0), c.get("sent", 0)
            )
        errors = self._db.execute(
            "SELECT o.notifier, o.last_error FROM outbox o JOIN (SELECT notifier, max(id) AS id"
            " FROM outbox WHERE last_error IS NOT NULL AND status != 'sent' GROUP BY notifier)"
            " last ON last.id = o.id"
        )
        for notifier, error in errors:
            per[notifier] = replace(per[notifier], last_error=error)
        row = self._db.execute(
            "SELECT last_error FROM outbox WHERE last_error IS NOT NULL AND status != 'sent'"
            " ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return OutboxStats(
            pending=totals["pending"],
            failed=totals["failed"],
            sent=totals["sent"],
            last_error=row[0] if row else None,
            notifiers=per,
        )

    # history -------------------------------------------------------------

    def matches_since(self, since: datetime, rule: str | None = None) -> list[MatchRecord]:
        rows = self._db.execute(
            "SELECT e.id, e.feed, coalesce(f.title, f.configured, f.key), e.title, e.link,"
            " e.published,"
            " m.created, m.rules,"
            " m.terms, m.hits, m.snippet FROM matches m JOIN entries e ON e.id = m.entry"
            " JOIN feeds f ON f.key = e.feed WHERE m.created >= ?"
            " ORDER BY m.created DESC, e.id DESC",
            (since.timestamp(),),
        )
        out = []
        for entry, key, feed, title, link, published, created, rules, terms, hits, snip in rows:
            rules_t = tuple(json.loads(rules))
            if rule is not None and rule not in rules_t:
                continue
            out.append(
                MatchRecord(
                    feed=feed,
                    title=title,
                    link=link,
                    published=codec.dt(published),
                    seen=codec.dt(created) or since,
                    rules=rules_t,
                    terms=tuple(json.loads(terms)),
                    matches=codec.matches(hits),
                    snippet=codec.snippet(snip),
                    entry=entry,
                    key=key,
                )
            )
        also = self.also_reported([r.entry for r in out])
        firsts = self._copies_of([r.entry for r in out])
        return [
            replace(r, also=tuple(also.get(r.entry, ())), copy_of=firsts.get(r.entry)) for r in out
        ]

    def _copies_of(self, entries: Sequence[int]) -> dict[int, str]:
        """For entries that are later copies of a story: the feed of its first report."""
        out: dict[int, str] = {}
        for i in range(0, len(entries), 500):
            chunk = list(entries[i : i + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                "SELECT r.entry, coalesce(f.title, f.configured, f.key) FROM story_rules r"
                " JOIN entries e ON e.id = r.first JOIN feeds f ON f.key = e.feed"
                f" WHERE r.entry IN ({marks}) AND r.first IS NOT NULL",
                chunk,
            )
            for entry, feed in rows:
                out.setdefault(entry, feed)
        return out

    def articles_since(self, since: datetime) -> list[StoredArticle]:
        rows = self._db.execute(
            "SELECT coalesce(f.configured, f.key), coalesce(f.title, f.configured, f.key),"
            " e.title, e.link, a.stored, a.fields"
            " FROM articles a"
            " JOIN entries e ON e.id = a.entry JOIN feeds f ON f.key = e.feed"
            " WHERE a.stored >= ? ORDER BY a.stored, a.entry",
            (since.timestamp(),),
        )
        return [
            StoredArticle(key, feed, title, link, codec.dt(stored) or since, json.loads(fields))
            for key, feed, title, link, stored, fields in rows
        ]

    # Which entries may go: not listed by their feed's last parsed document (else the
    # identity would be new again), first seen and last listed before the cutoff, no
    # pending send. `listed = 0` keeps the search on the entries_unlisted index.
    _PRUNABLE = (
        "e.listed = 0 AND e.first_seen < ? AND coalesce(e.last_listed, e.first_seen) < ?"
        " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.entry = e.id AND o.status = 'pending')"
    )

    def prune_history(self, before: datetime, limit: int = 2000) -> int:
        # The search reads the unlisted entries alone (by index: the millions a feed
        # still lists are never read), outside the write lock (WAL: readers never wait),
        # from where the last batch of this pass ended: entries kept for a pending send
        # or a recent listing are passed over once per pass, not once per batch, and a
        # poll waiting to commit waits for the deletes alone. They are checked again
        # under the lock.
        cutoff = before.timestamp()
        start, after = self._prune_from or (float("-inf"), -1)
        rows = self._db.execute(
            "SELECT e.id, e.first_seen FROM entries e"
            f" WHERE e.first_seen >= ? AND (e.first_seen > ? OR e.id > ?) AND {self._PRUNABLE}"
            " ORDER BY e.first_seen, e.id LIMIT ?",
            (start, start, after, cutoff, cutoff, limit),
        ).fetchall()
        self._prune_from = (rows[-1][1], rows[-1][0]) if len(rows) == limit else None
        with self._transaction():
            old: list[int] = []
            for chunk in _chunks([r[0] for r in rows], 500):
                marks = ",".join("?" * len(chunk))
                old += [
                    r[0]
                    for r in self._db.execute(
                        f"SELECT e.id FROM entries e WHERE e.id IN ({marks}) AND {self._PRUNABLE}",
                        (*chunk, cutoff, cutoff),
                    )
                ]
            for chunk in _chunks(old, 500):
                marks = ",".join("?" * len(chunk))
                self._forget_stories(chunk)
                self._db.execute(f"DELETE FROM outbox WHERE entry IN ({marks})", chunk)
                self._db.execute(f"DELETE FROM articles WHERE entry IN ({marks})", chunk)
                self._db.execute(f"DELETE FROM matches WHERE entry IN ({marks})", chunk)
                self._db.execute(f"DELETE FROM entries WHERE id IN ({marks})", chunk)
            # operator notices (no entry) that were sent or given up
            self._db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE entry IS NULL"
                " AND status != 'pending' AND created < ? LIMIT ?)",
                (cutoff, limit),
            )
            self._db.execute("DELETE FROM slots WHERE done AND created < ?", (cutoff,))
        # Fewer than found (re-listed meanwhile, or a send queued): the caller may stop
        # early, and the next prune goes on from the same place.
        return len(old)

    def prune_stories(self, before: datetime, limit: int = 2000) -> int:
        """Forget the stories first seen before ``before`` (past the story window)."""
        with self._transaction():
            old = [
                r[0]
                for r in self._db.execute(
                    "SELECT entry FROM stories WHERE seen < ? ORDER BY seen LIMIT ?",
                    (before.timestamp(), limit),
                )
            ]
            if not old:
                return 0
            self._forget_stories(old)
        return len(old)

    def _forget_stories(self, old: Sequence[int]) -> None:
        """Drop these entries' stories (in the transaction); their copies become first
        reports, searched from now on."""
        marks = ",".join("?" * len(old))
        self._db.execute(f"DELETE FROM story_bands WHERE entry IN ({marks})", old)
        self._db.execute(
            "UPDATE story_bands SET leads = 1 WHERE leads = 0 AND entry IN"
            f" (SELECT entry FROM story_rules WHERE first IN ({marks}))",
            old,
        )
        self._db.execute(f"UPDATE story_rules SET first = NULL WHERE first IN ({marks})", old)
        self._db.execute(f"DELETE FROM story_rules WHERE entry IN ({marks})", old)
        self._db.execute(f"DELETE FROM stories WHERE entry IN ({marks})", old)

    def prune(self, text_before: datetime, limit: int | None = None) -> int:
        if limit is None:
            cur = self._db.execute(
                "DELETE FROM articles WHERE stored < ?", (text_before.timestamp(),)
            )
        else:
            cur = self._db.execute(
                "DELETE FROM articles WHERE entry IN (SELECT entry FROM articles"
                " WHERE stored < ? ORDER BY stored LIMIT ?)",
                (text_before.timestamp(), limit),
            )
        return cur.rowcount

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._db.execute("DELETE FROM meta WHERE key = ?", (key,))
        else:
            self._db.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE"
                " SET value = excluded.value",
                (key, value),
            )

    def meta(self) -> dict[str, str]:
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    # once-only jobs ----------------------------------------------------------

    def claim_slot(self, name: str, owner: str, now: datetime, until: datetime) -> SlotClaim:
        with self._transaction():
            row = self._db.execute(
                "INSERT INTO slots (name, owner, claim_until, done, created) VALUES (?,?,?,0,?)"
                " ON CONFLICT(name) DO UPDATE SET owner = excluded.owner,"
                " claim_until = excluded.claim_until WHERE NOT slots.done"
                " AND (slots.owner = excluded.owner OR slots.claim_until <= ?) RETURNING owner",
                (name, owner, until.timestamp(), now.timestamp(), now.timestamp()),
            ).fetchone()
            if row is not None:
                return "mine"
            done = self._db.execute("SELECT done FROM slots WHERE name = ?", (name,)).fetchone()
        return "done" if done and done[0] else "taken"

    def finish_slot(self, name: str, owner: str) -> None:
        self._db.execute("UPDATE slots SET done = 1 WHERE name = ? AND owner = ?", (name, owner))

    # the daemon's lock ------------------------------------------------------

    def _lock_path(self) -> str | None:
        # a read-only open (a URI too) asks the same lock file whether a daemon runs
        return None if self.path == ":memory:" else self.path + ".lock"

    def lock_for_daemon(self, owner: str = "") -> None:
        path = self._lock_path()
        if path is None:
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            pid = self.daemon_pid()
            who = f" (pid {pid})" if pid else ""
            raise StorageError(
                f"another `monitor run`{who} is already using the database {self.path};"
                " one daemon per SQLite database"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._lock_fd = fd  # held until close() or the process ends (also by kill -9)

    def heartbeat(self) -> None:
        """Nothing: the lock file says whether the one daemon runs."""

    def instances(self) -> list[Instance]:
        return []

    def dead_owners(self) -> set[str]:
        return set()

    def daemon_pid(self) -> int | None:
        if self._lock_fd is not None:
            return os.getpid()
        path = self._lock_path()
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except OSError:  # held: a daemon runs
                text = os.read(fd, 32).decode(errors="replace").strip()
                return int(text) if text.isdigit() else 0
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for db in conns:
            db.close()
