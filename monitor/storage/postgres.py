"""PostgreSQL storage: several ``monitor run`` instances on one database (psycopg 3).

The same contract as the SQLite store (``storage.base``), made for several
processes on several hosts at once:

* each entry is recorded once: ``UNIQUE (feed, identity)`` with
  ``ON CONFLICT DO NOTHING`` (a second instance committing the same poll
  waits for the first and records nothing);
* each due feed is leased by one instance: ``claim_due_feeds`` picks rows
  ``FOR UPDATE SKIP LOCKED``; a lease ends with the feed's state write, a
  release, or when it runs out (a killed instance's feeds are taken over);
* each outbox row is claimed by one instance (``claim_deliveries``, the same
  way) until it is sent or its claim runs out;
* one story, one alert: folding a story takes a transaction-scoped advisory
  lock, so two instances never both see themselves as the first report;
* each instance registers itself (``lock_for_daemon``) and keeps a heartbeat;
  an instance that stopped beating is dead, its leases and claims are freed
  (``dead_owners``); ``monitor status`` lists the live ones;
* a once-only job (a digest's firing) is claimed as a ``slots`` row.

Schema migrations are explicit (``monitor db migrate``, ``migrate``): an
instance refuses a database without this code's schema version, older or
newer, and says what to do. The version lives in the ``schema_version`` table.

Timestamps are ``timestamptz`` and come back as aware UTC datetimes. Each
thread gets its own connection (the daemon runs store calls in threads, as
with SQLite); connections are in autocommit mode and every write that needs
several statements runs in one explicit transaction.

This is the only module that imports psycopg.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.types.string import StrDumper, StrDumperUnknown

from monitor import decide
from monitor.storage import shown_location as shown
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
    Storage,
    StorageError,
    StoredArticle,
)
from monitor.storage.codec import (
    hits_json,
    item_json,
    matches,
    notice_json,
    payload,
    similar_stored,
    snippet,
    snippet_json,
    terms,
    without_rules,
)
from monitor.story import band_keys
from monitor.types import Notice

T = TypeVar("T")

# Each migration takes the schema from version N to N+1; never edit a released one.
# (Numbered on their own: the PostgreSQL schema started at SQLite's version 6.)
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE feeds (
        key TEXT PRIMARY KEY,
        url TEXT NOT NULL,
        configured TEXT UNIQUE,
        name TEXT,
        title TEXT,
        etag TEXT,
        last_modified TEXT,
        body_hash TEXT,
        last_poll TIMESTAMPTZ,
        last_status INTEGER,
        last_error TEXT,
        error_count INTEGER NOT NULL DEFAULT 0,
        next_due TIMESTAMPTZ,
        gone BOOLEAN NOT NULL DEFAULT FALSE,
        paused BOOLEAN NOT NULL DEFAULT FALSE,
        article_error TEXT,
        failed_hash TEXT,
        failed_error TEXT,
        failed_tries INTEGER NOT NULL DEFAULT 0,
        failing_entries TEXT,
        entry_error TEXT,
        active BOOLEAN NOT NULL DEFAULT TRUE,
        leased_by TEXT,
        lease_until TIMESTAMPTZ,
        rate DOUBLE PRECISION NOT NULL DEFAULT 0,
        rate_at TIMESTAMPTZ,
        last_parsed TIMESTAMPTZ,
        last_new TIMESTAMPTZ
    );
    CREATE INDEX feeds_due ON feeds ((coalesce(next_due, '-infinity'::timestamptz)))
        WHERE active AND NOT paused;
    CREATE INDEX feeds_leased ON feeds (leased_by) WHERE leased_by IS NOT NULL;
    CREATE TABLE feed_urls (
        id BIGSERIAL PRIMARY KEY,
        feed TEXT NOT NULL REFERENCES feeds(key),
        url TEXT NOT NULL,
        UNIQUE (feed, url)
    );
    CREATE TABLE entries (
        id BIGSERIAL PRIMARY KEY,
        feed TEXT NOT NULL REFERENCES feeds(key),
        identity TEXT NOT NULL,
        link TEXT,
        title TEXT NOT NULL,
        published TIMESTAMPTZ,
        first_seen TIMESTAMPTZ NOT NULL,
        last_listed TIMESTAMPTZ,
        UNIQUE (feed, identity)
    );
    CREATE INDEX entries_feed_link ON entries (feed, link);
    CREATE INDEX entries_first_seen ON entries (first_seen);
    CREATE TABLE matches (
        entry BIGINT PRIMARY KEY REFERENCES entries(id),
        rules TEXT NOT NULL,
        terms TEXT NOT NULL,
        hits TEXT NOT NULL DEFAULT '[]',
        snippet TEXT,
        created TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX matches_created ON matches (created);
    CREATE TABLE articles (
        entry BIGINT PRIMARY KEY REFERENCES entries(id),
        fields TEXT NOT NULL,
        stored TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX articles_stored ON articles (stored);
    CREATE TABLE outbox (
        id BIGSERIAL PRIMARY KEY,
        entry BIGINT REFERENCES entries(id),
        notifier TEXT NOT NULL,
        target INTEGER NOT NULL,
        message TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'pending',
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt TIMESTAMPTZ NOT NULL,
        last_error TEXT,
        created TIMESTAMPTZ NOT NULL,
        sent TIMESTAMPTZ,
        claimed_by TEXT,
        claim_until TIMESTAMPTZ,
        priority BOOLEAN NOT NULL DEFAULT FALSE,
        UNIQUE (entry, notifier, target)
    );
    CREATE INDEX outbox_due ON outbox (status, next_attempt);
    CREATE INDEX outbox_target ON outbox (notifier, target, status, next_attempt);
    CREATE INDEX outbox_sent ON outbox (notifier, target, sent);
    CREATE INDEX outbox_created ON outbox (status, created);
    CREATE INDEX outbox_entry ON outbox (entry);
    CREATE INDEX outbox_claimed ON outbox (claimed_by) WHERE claimed_by IS NOT NULL;
    CREATE TABLE stories (
        entry BIGINT PRIMARY KEY REFERENCES entries(id),
        canonical TEXT,
        fingerprint BYTEA NOT NULL,
        seen TIMESTAMPTZ NOT NULL
    );
    CREATE INDEX stories_canonical ON stories (canonical, seen);
    CREATE INDEX stories_seen ON stories (seen);
    CREATE TABLE story_bands (
        key BIGINT NOT NULL,
        entry BIGINT NOT NULL REFERENCES stories(entry)
    );
    CREATE INDEX story_bands_key ON story_bands (key);
    CREATE INDEX story_bands_entry ON story_bands (entry);
    CREATE TABLE story_rules (
        entry BIGINT NOT NULL REFERENCES stories(entry),
        rule TEXT NOT NULL,
        first BIGINT REFERENCES stories(entry),
        PRIMARY KEY (entry, rule)
    );
    CREATE INDEX story_rules_first ON story_rules (first);
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE instances (
        owner TEXT PRIMARY KEY,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        started TIMESTAMPTZ NOT NULL,
        seen TIMESTAMPTZ NOT NULL
    );
    CREATE TABLE slots (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        claim_until TIMESTAMPTZ NOT NULL,
        done BOOLEAN NOT NULL DEFAULT FALSE,
        created TIMESTAMPTZ NOT NULL
    );
    """,
    # 2: whether the feed's last parsed document lists an entry, kept on the entry, so
    # that pruning reads the unlisted ones by index instead of passing over every entry
    # an old feed still lists on each pass; the index by first_seen alone served only
    # that search.
    """
    ALTER TABLE entries ADD COLUMN listed BOOLEAN NOT NULL DEFAULT TRUE;
    UPDATE entries e SET listed = FALSE FROM feeds f WHERE f.key = e.feed
        AND (f.last_parsed IS NULL OR coalesce(e.last_listed, e.first_seen) < f.last_parsed);
    CREATE INDEX entries_unlisted ON entries (first_seen, id) WHERE NOT listed;
    DROP INDEX entries_first_seen;
    """,
    # 3: the index of each feed's last document's items (parse.encode_items), so
    # that the items of the next one that are byte for byte the same are not parsed.
    """
    ALTER TABLE feeds ADD COLUMN items BYTEA;
    """,
    # 4: a story's band keys are searched only while it leads (is the first report
    # for one of its rules, or became so when its first was pruned): a story copied
    # by hundreds of feeds made every later copy read hundreds of bands per key.
    """
    ALTER TABLE story_bands ADD COLUMN leads BOOLEAN NOT NULL DEFAULT TRUE;
    UPDATE story_bands b SET leads = FALSE WHERE NOT EXISTS (SELECT 1 FROM story_rules r
        WHERE r.entry = b.entry AND r.first IS NULL);
    CREATE INDEX story_bands_leads ON story_bands (key) WHERE leads;
    DROP INDEX story_bands_key;
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

HEARTBEAT_TIMEOUT = 30.0  # seconds without a heartbeat after which an instance is dead

# Advisory lock keys (transaction-scoped): one writer at a time for these.
_LOCK_MIGRATE = 0x726D_0001
_LOCK_FEEDS = 0x726D_0002  # ensure_feeds, feed_state's insert
_LOCK_STORIES = 0x726D_0003  # story folding and the prunes that delete stories

_STATE_COLUMNS = (
    "key, url, configured, title, etag, last_modified, body_hash, last_poll, last_status,"
    " last_error, error_count, next_due, gone, paused, failed_hash, failed_error,"
    " failed_tries, failing_entries, entry_error, article_error, rate, rate_at,"
    " last_parsed, last_new, items"
)
_EARLIER = (
    ", (SELECT coalesce(json_agg(u.url ORDER BY u.id), '[]'::json) FROM feed_urls u"
    " WHERE u.feed = f.key)"
)
_DELIVERY_COLUMNS = "id, notifier, target, message, attempts, created, priority, entry"


def _nul_free(text: str) -> str:
    """PostgreSQL's text can't hold NUL; SQLite's can. Feed text is untrusted: a NUL that
    got this far (an ETag, an error message) must not make a poll fail forever."""
    return text.replace("\x00", "\ufffd")


class _NulFreeText(StrDumper):
    def dump(self, obj: str) -> Any:
        return super().dump(_nul_free(obj))


class _NulFreeUnknown(StrDumperUnknown):
    def dump(self, obj: str) -> Any:
        return super().dump(_nul_free(obj))


def _utc(value: datetime | None) -> datetime | None:
    return value.astimezone(UTC) if value is not None else None


def _retrying(fn: Callable[..., T]) -> Callable[..., T]:
    """Run a write again when PostgreSQL chose it as a deadlock victim (rare: several
    instances writing the same rows in another order); its transaction rolled back."""

    def wrapper(*args: Any, **kwargs: Any) -> T:
        for attempt in range(3):
            try:
                return fn(*args, **kwargs)
            except (pg_errors.DeadlockDetected, pg_errors.SerializationFailure):
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def migrate(url: str) -> tuple[int, int]:
    """Bring the database at ``url`` to this code's schema (``monitor db migrate``).

    Returns (version before, version after). A database newer than this code
    is refused. Safe to run from several hosts at once (an advisory lock).
    """
    try:
        conn = psycopg.connect(url, autocommit=True)
    except psycopg.Error as exc:
        raise StorageError(f"can't connect to {shown(url)}: {exc}".strip()) from None
    try:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_MIGRATE,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
            before = int(row[0]) if row and row[0] is not None else 0
            if before > SCHEMA_VERSION:
                raise _newer(url, before)
            for version in range(before, SCHEMA_VERSION):
                conn.execute(MIGRATIONS[version])
            conn.execute("DELETE FROM schema_version")
            conn.execute("INSERT INTO schema_version (version) VALUES (%s)", (SCHEMA_VERSION,))
        return before, SCHEMA_VERSION
    except psycopg.Error as exc:
        raise StorageError(f"migrating {shown(url)} failed: {exc}") from None
    finally:
        conn.close()


def _newer(url: str, version: int) -> StorageError:
    return StorageError(
        f"database {shown(url)} has schema version {version}, newer than this "
        f"rss-monitor understands ({SCHEMA_VERSION}); upgrade rss-monitor"
    )


# Which entries may go: not listed by their feed's last parsed document (else the
# identity would be new again), first seen and last listed before the cutoff, no send
# still pending. `NOT e.listed` keeps the search on the entries_unlisted index.
_PRUNABLE = (
    "NOT e.listed AND e.first_seen < %s AND coalesce(e.last_listed, e.first_seen) < %s"
    " AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.entry = e.id AND o.status = 'pending')"
)


class PostgresStorage:
    """The Storage protocol on a PostgreSQL database (see the module docstring).

    ``url`` is a libpq URL (``postgresql://user@host:5432/db``; libpq's
    ``options`` parameter may set a ``search_path``). ``readonly=True`` is
    for commands that only read: every transaction is read-only.
    """

    shared = True  # several instances: heartbeats, and a dead one's leases are freed

    def __init__(self, url: str, *, readonly: bool = False) -> None:
        self.url = url
        self.path = shown(url)  # what messages name
        self.readonly = readonly
        self._local = threading.local()
        self._prune_from: tuple[datetime, int] | None = None  # where prune_history goes on
        self._conns: list[psycopg.Connection[Any]] = []
        self._conns_lock = threading.Lock()
        self._owner: str | None = None  # set by lock_for_daemon: this instance's row
        try:
            self._connect()
            self._check_version()
        except psycopg.Error as exc:
            self.close()
            raise StorageError(f"can't open database {self.path}: {exc}".strip()) from None
        except StorageError:
            self.close()
            raise

    # connections -------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        db: psycopg.Connection[Any] = psycopg.connect(self.url, autocommit=True)
        db.adapters.register_dumper(str, _NulFreeText)  # in arrays
        db.adapters.register_dumper(str, _NulFreeUnknown)  # the default for a str
        db.execute("SET TIME ZONE 'UTC'")
        if self.readonly:
            db.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
        self._local.db = db
        with self._conns_lock:
            self._conns.append(db)
        return db

    @property
    def _db(self) -> psycopg.Connection[Any]:
        """This thread's connection (opened on first use, again after it broke)."""
        db: psycopg.Connection[Any] | None = getattr(self._local, "db", None)
        if db is None or db.closed or db.broken:
            return self._connect()
        return db

    @contextlib.contextmanager
    def _transaction(self, *locks: int) -> Iterator[psycopg.Connection[Any]]:
        """One transaction on this thread's connection, holding these advisory locks."""
        db = self._db
        with db.transaction():
            for lock in locks:
                db.execute("SELECT pg_advisory_xact_lock(%s)", (lock,))
            yield db

    def _execute(self, sql: str, args: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        return self._db.execute(sql, args)

    def _many(self, db: psycopg.Connection[Any], sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            with db.cursor() as cur:
                cur.executemany(sql, rows)

    # schema ---------------------------------------------------------------------

    def schema_version(self) -> int:
        row = self._execute("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        if not row or not row[0]:
            return 0
        row = self._execute("SELECT max(version) FROM schema_version").fetchone()
        return int(row[0]) if row and row[0] is not None else 0

    def _check_version(self) -> None:
        """Never migrate here: instances on several hosts must not race a schema change,
        and an operator decides when it happens (``monitor db migrate``)."""
        version = self.schema_version()
        if version > SCHEMA_VERSION:
            raise _newer(self.path, version)
        if version == 0:
            raise StorageError(
                f"database {self.path} has no rss-monitor schema yet; run `monitor db migrate`"
                " (with the same config or --db) to create it"
            )
        if version < SCHEMA_VERSION:
            raise StorageError(
                f"database {self.path} has schema version {version}, older than this "
                f"rss-monitor's ({SCHEMA_VERSION}); run `monitor db migrate` to upgrade it"
                " (stop the instances of the older rss-monitor first)"
            )

    # feeds --------------------------------------------------------------------

    @_retrying
    def ensure_feeds(self, feeds: Iterable[FeedRef]) -> list[CarriedOver]:
        refs = list(feeds)
        known = {
            str(url): (name, bool(active))
            for url, name, active in self._execute(
                "SELECT configured, name, active FROM feeds WHERE configured IS NOT NULL"
            )
        }
        wanted = {r.url for r in refs}
        listed = sum(1 for _n, active in known.values() if active)
        if listed == len(wanted) and all(known.get(r.url) == (r.name, True) for r in refs):
            return []  # the usual reload (and every instance but the first): nothing to write
        with self._transaction(_LOCK_FEEDS) as db:
            carried = self._sync_feeds(db, refs)
            db.execute(
                "UPDATE feeds SET active = coalesce(configured = ANY(%s), FALSE)"
                " WHERE active IS DISTINCT FROM coalesce(configured = ANY(%s), FALSE)",
                (list(wanted), list(wanted)),
            )
        return carried

    def _sync_feeds(self, db: psycopg.Connection[Any], refs: list[FeedRef]) -> list[CarriedOver]:
        rows = db.execute(
            "SELECT key, configured, url, name, last_poll FROM feeds WHERE configured IS NOT NULL"
        ).fetchall()
        by_url = {str(r[1]): r for r in rows}
        wanted = {r.url for r in refs}
        self._many(
            db,
            "UPDATE feeds SET name = %s WHERE configured = %s",
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
                last_poll=_utc(last_poll),
            )
            for key, configured, url, name, last_poll in orphans
        ]
        carries = decide.carry_over([decide.Claim(r.url, r.name) for r in unknown], stored)
        names = {r.url: r.name for r in unknown}
        out = []
        for c in carries:
            row = db.execute("SELECT url FROM feeds WHERE key = %s", (c.key,)).fetchone()
            old_url = row[0] if row else c.url
            self._many(
                db,
                "INSERT INTO feed_urls (feed, url) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [(c.key, u) for u in dict.fromkeys((c.earlier, old_url)) if u != c.url],
            )
            db.execute("DELETE FROM feed_urls WHERE feed = %s AND url = %s", (c.key, c.url))
            # A fixed URL is the operator's answer to a failing or gone feed: poll it soon.
            db.execute(
                "UPDATE feeds SET configured = %s, url = %s, name = %s,"
                " next_due = CASE WHEN gone OR error_count > 0 THEN NULL ELSE next_due END,"
                " gone = FALSE, error_count = 0, last_error = NULL WHERE key = %s",
                (c.url, c.url, names[c.url], c.key),
            )
            out.append(CarriedOver(c.key, c.url, c.earlier, c.reason, c.rivals))
        carried = {c.url for c in carries}
        rest = [r for r in unknown if r.url not in carried]
        taken = {
            row[0]
            for row in db.execute(
                "SELECT key FROM feeds WHERE key = ANY(%s)", ([r.url for r in rest],)
            )
        }
        self._many(
            db,
            "INSERT INTO feeds (key, url, configured, name) VALUES (%s, %s, %s, %s)",
            [(r.url, r.url, r.url, r.name) for r in rest if r.url not in taken],
        )
        for ref in rest:
            if ref.url in taken:
                self._insert_feed(db, ref.url, ref.name)
        return out

    def _insert_feed(self, db: psycopg.Connection[Any], url: str, name: str | None) -> str:
        """A new feed configured at ``url``; its key is the URL unless an earlier feed has it."""
        key, n = url, 1
        while db.execute("SELECT 1 FROM feeds WHERE key = %s", (key,)).fetchone():
            n += 1
            key = f"{url}#{n}"
        db.execute(
            "INSERT INTO feeds (key, url, configured, name) VALUES (%s, %s, %s, %s)",
            (key, url, url, name),
        )
        return key

    @staticmethod
    def _feed_row(row: Sequence[Any], earlier_urls: tuple[str, ...] | None = None) -> FeedState:
        (key, url, configured, title, etag, lm, bh, lp, ls, le, ec, nd, gone, paused) = row[:14]
        (fh, fe, ft, failing, ee, ae, rate, rate_at, parsed, last_new) = row[14:24]
        items = row[24]
        earlier = row[25] if len(row) > 25 else None
        return FeedState(
            key=str(key),
            url=str(url),
            configured=str(configured or key),
            title=title,
            etag=etag,
            last_modified=lm,
            body_hash=bh,
            last_poll=_utc(lp),
            last_status=ls,
            last_error=le,
            error_count=int(ec),
            next_due=_utc(nd),
            gone=bool(gone),
            paused=bool(paused),
            failed_hash=fh,
            failed_error=fe,
            failed_tries=int(ft or 0),
            failing_entries=tuple((str(i), int(n)) for i, n in json.loads(str(failing)))
            if failing
            else (),
            entry_error=ee,
            article_error=ae,
            earlier_urls=(
                earlier_urls
                if earlier_urls is not None
                else tuple(str(u) for u in earlier)
                if earlier
                else ()
            ),
            rate=float(rate or 0.0),
            rate_at=_utc(rate_at),
            last_parsed=_utc(parsed),
            last_new=_utc(last_new),
            items=bytes(items) if items else b"",
        )

    def feed_state(self, url: str) -> FeedState:
        sql = f"SELECT {_STATE_COLUMNS}{_EARLIER} FROM feeds f WHERE configured = %s"
        row = self._execute(sql, (url,)).fetchone()
        if row is None:
            with self._transaction(_LOCK_FEEDS) as db:
                row = db.execute(sql, (url,)).fetchone()  # another instance may have made it
                if row is None:
                    key = self._insert_feed(db, url, None)
                    return FeedState(key=key, url=url, configured=url)
        return self._feed_row(row)

    def feed_states(self) -> list[FeedState]:
        earlier: dict[str, list[str]] = {}
        for feed, url in self._execute("SELECT feed, url FROM feed_urls ORDER BY id"):
            earlier.setdefault(feed, []).append(url)
        rows = self._execute(f"SELECT {_STATE_COLUMNS} FROM feeds f ORDER BY key")
        return [self._feed_row(r, tuple(earlier.get(r[0], ()))) for r in rows]

    def due_times(self, before: datetime | None = None) -> list[DueTime]:
        rows = self._execute(
            "SELECT key, configured, next_due, last_poll, paused, rate FROM feeds"
            " WHERE active AND (%s::timestamptz IS NULL OR next_due IS NULL OR next_due < %s)",
            (before, before),
        )
        return [
            DueTime(k, c or k, _utc(n), _utc(lp), bool(p), float(r or 0.0))
            for k, c, n, lp, p, r in rows
        ]

    def feed_stats(self) -> dict[str, FeedStats]:
        stats: dict[str, FeedStats] = {}
        for key, n in self._execute("SELECT feed, count(*) FROM entries GROUP BY feed"):
            stats[key] = FeedStats(entries=int(n))
        for key, n in self._execute(
            "SELECT e.feed, count(*) FROM matches m JOIN entries e ON e.id = m.entry"
            " GROUP BY e.feed"
        ):
            stats[key] = replace(stats.get(key, FeedStats()), matches=int(n))
        return stats

    # due feeds ------------------------------------------------------------------

    @_retrying
    def claim_due_feeds(
        self, now: datetime, owner: str, until: datetime, limit: int
    ) -> list[FeedState]:
        if limit <= 0:
            return []
        # SKIP LOCKED: a feed another instance is claiming (or writing) right now is
        # not waited for; it is never handed to two instances.
        rows = self._execute(
            f"WITH claimed AS (UPDATE feeds SET leased_by = %s, lease_until = %s WHERE key IN ("
            # never polled (NULL) counts as due first; the expression is feeds_due's
            " SELECT key FROM feeds WHERE active AND NOT paused"
            " AND coalesce(next_due, '-infinity'::timestamptz) <= %s"
            " AND (lease_until IS NULL OR lease_until <= %s)"
            " ORDER BY coalesce(next_due, '-infinity'::timestamptz)"
            " LIMIT %s FOR UPDATE SKIP LOCKED) RETURNING key)"
            f" SELECT {_STATE_COLUMNS}{_EARLIER} FROM feeds f WHERE key IN"
            " (SELECT key FROM claimed)",
            (owner, until, now, now, limit),
        ).fetchall()
        # the CTE's snapshot shows the rows as they were: the lease is ours now
        states = [self._feed_row(r) for r in rows]
        far = datetime.min.replace(tzinfo=UTC)
        states.sort(key=lambda s: (s.next_due or far, s.key))
        return states

    def renew_leases(self, keys: Sequence[str], owner: str, until: datetime) -> None:
        if keys:
            self._execute(
                "UPDATE feeds SET lease_until = %s WHERE key = ANY(%s) AND leased_by = %s",
                (until, list(keys), owner),
            )

    def release_feeds(self, keys: Sequence[str] | None, owner: str) -> int:
        if keys is None:
            cur = self._execute(
                "UPDATE feeds SET leased_by = NULL, lease_until = NULL WHERE leased_by = %s",
                (owner,),
            )
            return int(cur.rowcount)
        self._execute(
            "UPDATE feeds SET leased_by = NULL, lease_until = NULL"
            " WHERE key = ANY(%s) AND leased_by = %s",
            (list(keys), owner),
        )
        return len(keys)

    def lease_owners(self) -> set[str]:
        rows = self._execute("SELECT DISTINCT leased_by FROM feeds WHERE leased_by IS NOT NULL")
        return {str(r[0]) for r in rows}

    def set_due(self, due: Sequence[tuple[str, datetime]]) -> None:
        with self._transaction() as db:
            self._many(
                db,
                "UPDATE feeds SET next_due = %s WHERE key = %s",
                [(when, key) for key, when in due],
            )

    def next_due(self) -> datetime | None:
        row = self._execute(
            "SELECT min(next_due) FROM feeds WHERE active AND NOT paused"
        ).fetchone()
        return _utc(row[0]) if row else None

    def feed_counts(self, now: datetime, late: datetime) -> FeedCounts:
        row = self._execute(
            "SELECT count(*), count(*) FILTER (WHERE paused),"
            " count(*) FILTER (WHERE NOT paused AND gone),"
            " count(*) FILTER (WHERE NOT paused AND NOT gone AND error_count > 0),"
            " count(*) FILTER (WHERE NOT paused AND (next_due IS NULL OR next_due <= %s)),"
            " count(*) FILTER (WHERE NOT paused AND next_due IS NOT NULL AND next_due < %s)"
            " FROM feeds WHERE active",
            (now, late),
        ).fetchone()
        return FeedCounts(*(int(n or 0) for n in row))

    def request_poll(self, keys: Sequence[str], now: datetime) -> None:
        self._execute("UPDATE feeds SET next_due = %s WHERE key = ANY(%s)", (now, list(keys)))

    def _write_state(self, db: psycopg.Connection[Any], s: FeedState) -> None:
        configured = s.configured or s.key
        # One statement (atomic on its own): a URL polled before and left for a permanent
        # redirect's target is an earlier URL (the CTE reads the row before the update).
        db.execute(
            "WITH earlier AS (INSERT INTO feed_urls (feed, url) SELECT key, url FROM feeds"
            " WHERE key = %s AND url != %s AND url != configured AND configured = %s"
            " ON CONFLICT DO NOTHING)"
            " INSERT INTO feeds (key, url, configured, title, etag, last_modified, body_hash,"
            " last_poll, last_status, last_error, error_count, next_due, gone, failed_hash,"
            " failed_error, failed_tries, failing_entries, entry_error, article_error,"
            " rate, rate_at, last_parsed, last_new, items)"
            " VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)"
            " ON CONFLICT (key) DO UPDATE SET"
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
            " WHERE feeds.configured IS NOT DISTINCT FROM excluded.configured",
            (
                s.key,
                s.url,
                configured,
                s.key,
                s.url,
                configured,
                s.title,
                s.etag,
                s.last_modified,
                s.body_hash,
                s.last_poll,
                s.last_status,
                s.last_error,
                s.error_count,
                s.next_due,
                s.gone,
                s.failed_hash,
                s.failed_error,
                s.failed_tries,
                json.dumps(s.failing_entries) if s.failing_entries else None,
                s.entry_error,
                s.article_error,
                s.rate,
                s.rate_at,
                s.last_parsed,
                s.last_new,
                s.items or None,
            ),
        )

    @_retrying
    def save_feed_state(
        self, state: FeedState, notices: Sequence[tuple[str, int, Notice]] = ()
    ) -> None:
        if not notices:  # the usual poll (304, unchanged, an error): one statement
            self._write_state(self._db, state)
            return
        with self._transaction() as db:
            self._write_state(db, state)
            self._notices(db, notices, state.last_poll or datetime.now(UTC))

    def save_feed_states(
        self, polls: Sequence[tuple[FeedState, Sequence[tuple[str, int, Notice]]]]
    ) -> None:
        with self._transaction() as db:
            for state, notices in polls:
                self._write_state(db, state)
                if notices:
                    self._notices(db, notices, state.last_poll or datetime.now(UTC))

    def pause_feed(self, key: str) -> None:
        self._control("UPDATE feeds SET paused = TRUE WHERE key = %s", (key,))

    def resume_feed(self, key: str, now: datetime) -> None:
        self._control(
            "UPDATE feeds SET paused = FALSE, gone = FALSE, error_count = 0, failed_hash = NULL,"
            " failed_error = NULL, failed_tries = 0, next_due = %s WHERE key = %s",
            (now, key),
        )

    def _control(self, sql: str, args: tuple[object, ...]) -> None:
        """An operator's change, and a new ``feeds_changed`` for running daemons to notice."""
        with self._transaction() as db:
            db.execute(sql, args)
            self._bump(db, "feeds_changed")

    # entries --------------------------------------------------------------------

    def seen(self, key: str, identities: Sequence[str], links: Sequence[str]) -> set[str]:
        found: set[str] = set()
        for column, values in (("identity", identities), ("link", links)):
            asked: dict[str, list[str]] = {}  # as stored -> as asked (see _nul_free)
            for v in values:
                if v:
                    asked.setdefault(_nul_free(v), []).append(v)
            if asked:
                rows = self._execute(
                    f"SELECT {column} FROM entries WHERE feed = %s AND {column} = ANY(%s)",
                    (key, list(asked)),
                )
                for (stored,) in rows:
                    found.update(asked.get(stored, ()))
        return found

    @_retrying
    def commit_poll(
        self,
        state: FeedState,
        entries: Sequence[NewEntry],
        notices: Sequence[tuple[str, int, Notice]] = (),
        listed: Sequence[str] = (),
    ) -> list[int]:
        ids: list[int] = []
        now = state.last_poll or datetime.now(UTC)
        locks = (_LOCK_STORIES,) if any(n.story is not None for n in entries) else ()
        with self._transaction(*locks) as db:
            self._write_state(db, state)
            self._notices(db, notices, now)
            if listed:
                db.execute(
                    "UPDATE entries SET last_listed = %s, listed = TRUE"
                    " WHERE feed = %s AND identity = ANY(%s)",
                    (now, state.key, list(listed)),
                )
            # One statement for the entries, one batch each for their rows: a poll is a
            # handful of round trips to the server, not a few per entry.
            inserted = self._insert_entries(db, state.key, entries)
            articles, found, outbox = [], [], []
            for new in entries:
                entry_id = inserted.pop(_nul_free(new.entry.identity), None)
                if entry_id is None:  # another instance (or poll) recorded it first
                    continue
                ids.append(entry_id)
                created = new.first_seen
                if new.document is not None:
                    fields = json.dumps(dict(new.document), ensure_ascii=False)
                    articles.append((entry_id, fields, created))
                if new.matches:
                    found.append(
                        (
                            entry_id,
                            json.dumps([m.rule for m in new.matches]),
                            json.dumps(terms(new.matches)),
                            hits_json(new.matches),
                            snippet_json(new.snippet),
                            created,
                        )
                    )
                outgoing: Sequence[Outgoing] = new.outgoing
                if new.story is not None:
                    copies = self._fold_story(
                        db, entry_id, state.key, new, [m.rule for m in new.matches]
                    )
                    outgoing = without_rules(outgoing, copies)
                outbox += [
                    (
                        entry_id,
                        o.notifier,
                        o.target,
                        item_json(o.item),
                        created,
                        created,
                        o.item.priority,
                    )
                    for o in outgoing
                ]
            self._many(
                db, "INSERT INTO articles (entry, fields, stored) VALUES (%s,%s,%s)", articles
            )
            self._many(
                db,
                "INSERT INTO matches (entry, rules, terms, hits, snippet, created)"
                " VALUES (%s,%s,%s,%s,%s,%s)",
                found,
            )
            self._many(
                db,
                "INSERT INTO outbox (entry, notifier, target, message,"
                " next_attempt, created, priority) VALUES (%s,%s,%s,%s,%s,%s,%s)"
                " ON CONFLICT DO NOTHING",
                outbox,
            )
            # what the document no longer lists (it was listed before it was parsed);
            # a feed never parsed lists nothing
            db.execute(
                "UPDATE entries SET listed = FALSE WHERE feed = %s AND listed"
                " AND coalesce(last_listed, first_seen) < %s",
                (state.key, state.last_parsed or datetime.max.replace(tzinfo=UTC)),
            )
        return ids

    @staticmethod
    def _insert_entries(
        db: psycopg.Connection[Any], feed: str, entries: Sequence[NewEntry]
    ) -> dict[str, int]:
        """Insert the entries not recorded yet; returns identity (as stored) -> id of each."""
        if not entries:
            return {}
        rows = db.execute(
            "INSERT INTO entries (feed, identity, link, title, published, first_seen,"
            " last_listed) SELECT %s, i, l, t, p, f, f FROM unnest(%s::text[], %s::text[],"
            " %s::text[], %s::timestamptz[], %s::timestamptz[]) AS n(i, l, t, p, f)"
            " ON CONFLICT (feed, identity) DO NOTHING RETURNING id, identity",
            (
                feed,
                [n.entry.identity for n in entries],
                [n.entry.link for n in entries],
                [n.entry.title for n in entries],
                [n.entry.published for n in entries],
                [n.first_seen for n in entries],
            ),
        ).fetchall()
        return {str(identity): int(i) for i, identity in rows}

    def _fold_story(
        self,
        db: psycopg.Connection[Any],
        entry_id: int,
        feed: str,
        new: NewEntry,
        rules: Sequence[str],
    ) -> set[str]:
        """Record an entry's story; returns the rules it is a copy for (see the SQLite
        store: the same rules; here under the stories' advisory lock)."""
        story = new.story
        assert story is not None
        since = new.first_seen - timedelta(seconds=story.window)
        fp = story.fingerprint
        keys = band_keys(fp)
        candidates: dict[int, bytes] = {}
        if story.canonical:
            for e, blob in db.execute(
                "SELECT entry, fingerprint FROM stories WHERE canonical = %s AND seen >= %s",
                (story.canonical, since),
            ):
                candidates[int(e)] = bytes(blob)
        same_link = set(candidates)
        if keys:
            for e, blob in db.execute(
                "SELECT DISTINCT s.entry, s.fingerprint FROM story_bands b JOIN stories s"
                " ON s.entry = b.entry JOIN entries n ON n.id = s.entry"
                " WHERE b.key = ANY(%s) AND b.leads AND s.seen >= %s AND n.feed != %s",
                (list(keys), since, feed),
            ):
                candidates[int(e)] = bytes(blob)
        firsts = [
            e
            for e, blob in sorted(candidates.items())
            if e in same_link or similar_stored(fp, blob)
        ]
        db.execute(
            "INSERT INTO stories (entry, canonical, fingerprint, seen) VALUES (%s,%s,%s,%s)"
            " ON CONFLICT (entry) DO UPDATE SET canonical = excluded.canonical,"
            " fingerprint = excluded.fingerprint, seen = excluded.seen",
            (entry_id, story.canonical, fp.to_bytes(), new.first_seen),
        )
        copies: set[str] = set()
        for rule in rules:
            first = None
            if firsts:
                row = db.execute(
                    "SELECT entry FROM story_rules WHERE rule = %s AND first IS NULL"
                    " AND entry = ANY(%s) ORDER BY entry LIMIT 1",
                    (rule, firsts),
                ).fetchone()
                first = int(row[0]) if row else None
            db.execute(
                "INSERT INTO story_rules (entry, rule, first) VALUES (%s,%s,%s)"
                " ON CONFLICT (entry, rule) DO UPDATE SET first = excluded.first",
                (entry_id, rule, first),
            )
            if first is not None:
                copies.add(rule)
        # A copy for every rule it matched is never a first: its bands wait unsearched
        # until its first is pruned (_forget_stories).
        leads = len(copies) < len(rules)
        self._many(
            db,
            "INSERT INTO story_bands (key, entry, leads) VALUES (%s, %s, %s)",
            [(k, entry_id, leads) for k in keys],
        )
        return copies

    def also_reported(self, entries: Sequence[int]) -> dict[int, list[str]]:
        out: dict[int, list[str]] = {}
        if not entries:
            return out
        rows = self._execute(
            "SELECT DISTINCT r.first, coalesce(f.title, f.configured, f.key), r.entry"
            " FROM story_rules r JOIN entries e ON e.id = r.entry JOIN feeds f"
            " ON f.key = e.feed WHERE r.first = ANY(%s) ORDER BY r.entry",
            (list(entries),),
        )
        for first, feed, _entry in rows:
            names = out.setdefault(int(first), [])
            if feed not in names:
                names.append(feed)
        return out

    # outbox ---------------------------------------------------------------------

    @staticmethod
    def _delivery(row: Sequence[Any], now: datetime) -> Delivery:
        i, n, t, m, a, c, pr, e = row
        return Delivery(
            int(i),
            str(n),
            int(t),
            payload(str(m), e),
            int(a),
            _utc(c) or now,
            bool(pr),
        )

    def due_deliveries(self, now: datetime, limit: int = 100) -> list[Delivery]:
        rows = self._execute(
            f"SELECT {_DELIVERY_COLUMNS} FROM outbox WHERE status = 'pending'"
            " AND next_attempt <= %s ORDER BY next_attempt, id LIMIT %s",
            (now, limit),
        )
        return [self._delivery(r, now) for r in rows]

    @_retrying
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
        urgent = " AND (priority OR entry IS NULL)" if priority_only else ""
        rows = self._execute(
            "UPDATE outbox SET claimed_by = %s, claim_until = %s WHERE id IN ("
            " SELECT id FROM outbox WHERE notifier = %s AND target = %s AND status = 'pending'"
            f" AND next_attempt <= %s AND (claim_until IS NULL OR claim_until <= %s){urgent}"
            " ORDER BY next_attempt, id LIMIT %s FOR UPDATE SKIP LOCKED)"
            f" RETURNING {_DELIVERY_COLUMNS}, next_attempt",
            (owner, until, notifier, target, now, now, limit),
        ).fetchall()
        rows.sort(key=lambda r: (r[-1], r[0]))  # RETURNING has no order of its own
        return [self._delivery(r[:-1], now) for r in rows]

    def add_notice(self, notifier: str, targets: int, notice: Notice, now: datetime) -> None:
        with self._transaction() as db:
            self._notices(db, [(notifier, targets, notice)], now)

    def _notices(
        self, db: psycopg.Connection[Any], notices: Sequence[tuple[str, int, Notice]], now: datetime
    ) -> None:
        self._many(
            db,
            "INSERT INTO outbox (entry, notifier, target, message, next_attempt, created,"
            " priority) VALUES (NULL,%s,%s,%s,%s,%s,TRUE)",
            [
                (notifier, t, notice_json(notice), now, now)
                for notifier, targets, notice in notices
                for t in range(targets)
            ],
        )

    def sends_since(self, notifier: str, target: int, since: datetime) -> int:
        row = self._execute(
            "SELECT count(DISTINCT sent) FROM outbox WHERE notifier = %s AND target = %s"
            " AND sent >= %s",
            (notifier, target, since),
        ).fetchone()
        return int(row[0])

    def outbox_rows(self, *, failed_only: bool = False, limit: int = 1000) -> list[OutboxRow]:
        statuses = ["failed"] if failed_only else ["pending", "failed"]
        rows = self._execute(
            "SELECT o.id, o.notifier, o.target, o.status, o.message, e.title, e.link,"
            " o.attempts, o.last_error, o.created, o.next_attempt FROM outbox o"
            " LEFT JOIN entries e ON e.id = o.entry WHERE o.status = ANY(%s)"
            " ORDER BY o.id DESC LIMIT %s",
            (statuses, limit),
        )
        out = []
        for i, n, t, st, msg, title, link, a, err, created, nxt in rows:
            if title is None:  # an operator notice (or an entry pruned since)
                p = payload(msg, None)
                title = p.subject if isinstance(p, Notice) else p.title
            out.append(
                OutboxRow(
                    id=int(i),
                    notifier=n,
                    target=int(t),
                    status=st,
                    title=title,
                    link=link,
                    attempts=int(a),
                    last_error=err,
                    created=_utc(created) or datetime.now(UTC),
                    next_attempt=_utc(nxt) if st == "pending" else None,
                )
            )
        return out

    def retry_deliveries(self, ids: Sequence[int] | None, now: datetime) -> int:
        with self._transaction() as db:
            if ids is None:
                cur = db.execute(
                    "UPDATE outbox SET status = 'pending', next_attempt = %s, created = %s,"
                    " claimed_by = NULL, claim_until = NULL WHERE status = 'failed'",
                    (now, now),
                )
            else:
                cur = db.execute(
                    "UPDATE outbox SET status = 'pending', next_attempt = %s, created = %s"
                    " WHERE id = ANY(%s) AND status IN ('pending', 'failed')",
                    (now, now, list(ids)),
                )
            done = int(cur.rowcount)
            self._bump(db, "outbox_changed")
        return done

    def drop_delivery(self, delivery_id: int) -> bool:
        cur = self._execute(
            "UPDATE outbox SET status = 'dropped', claimed_by = NULL, claim_until = NULL"
            " WHERE id = %s AND status IN ('pending', 'failed')",
            (delivery_id,),
        )
        return int(cur.rowcount) > 0

    def _bump(self, db: psycopg.Connection[Any], key: str) -> None:
        """A new value of a meta counter, for running daemons to notice an operator's change."""
        db.execute(
            "INSERT INTO meta (key, value) VALUES (%s, '1') ON CONFLICT (key)"
            " DO UPDATE SET value = (meta.value::bigint + 1)::text",
            (key,),
        )

    def release_claims(self, delivery_ids: Sequence[int], owner: str) -> None:
        if delivery_ids:
            self._execute(
                "UPDATE outbox SET claimed_by = NULL, claim_until = NULL"
                " WHERE id = ANY(%s) AND claimed_by = %s",
                (list(delivery_ids), owner),
            )

    def claim_owners(self) -> set[str]:
        rows = self._execute(
            "SELECT DISTINCT claimed_by FROM outbox WHERE claimed_by IS NOT NULL"
            " AND status = 'pending'"
        )
        return {str(r[0]) for r in rows}

    def release_owner(self, owner: str) -> int:
        cur = self._execute(
            "UPDATE outbox SET claimed_by = NULL, claim_until = NULL WHERE claimed_by = %s",
            (owner,),
        )
        # its digest in progress: another instance sends it now
        self._execute(
            "UPDATE slots SET claim_until = '-infinity' WHERE owner = %s AND NOT done", (owner,)
        )
        return int(cur.rowcount)

    def next_delivery_due(self, notifier: str, target: int) -> datetime | None:
        row = self._execute(
            "SELECT min(greatest(next_attempt, coalesce(claim_until, next_attempt))) FROM outbox"
            " WHERE notifier = %s AND target = %s AND status = 'pending'",
            (notifier, target),
        ).fetchone()
        return _utc(row[0]) if row else None

    def delivered(self, delivery_ids: Sequence[int], now: datetime) -> None:
        self._execute(
            "UPDATE outbox SET status = 'sent', sent = %s, attempts = attempts + 1,"
            " last_error = NULL, claimed_by = NULL, claim_until = NULL WHERE id = ANY(%s)",
            (now, list(delivery_ids)),
        )

    @_retrying
    def delivery_failed(
        self,
        failures: Sequence[tuple[int, datetime | None]],
        error: str,
        now: datetime,
        notices: Sequence[tuple[str, int, Notice]] = (),
    ) -> None:
        with self._transaction() as db:
            for delivery_id, next_attempt in failures:
                if next_attempt is None:
                    db.execute(
                        "UPDATE outbox SET status = 'failed', attempts = attempts + 1,"
                        " last_error = %s, claimed_by = NULL, claim_until = NULL WHERE id = %s",
                        (error, delivery_id),
                    )
                else:
                    db.execute(
                        "UPDATE outbox SET attempts = attempts + 1, last_error = %s,"
                        " next_attempt = %s, claimed_by = NULL, claim_until = NULL WHERE id = %s",
                        (error, next_attempt, delivery_id),
                    )
            self._notices(db, notices, now)

    def adopt_targets(self, notifier: str, positions: Mapping[str, int]) -> int:
        """Nothing to adopt: rows that name a URL by its hash are SQLite's schema 1 only."""
        return 0

    def drop_unrouted(self, urls: Mapping[str, int]) -> dict[str, int]:
        dropped: dict[str, int] = {}
        names = list(urls)
        rows = self._execute(
            "SELECT o.id, o.notifier, o.target FROM outbox o"
            " LEFT JOIN unnest(%s::text[], %s::int[]) AS u(name, n) ON u.name = o.notifier"
            " WHERE o.status = 'pending' AND (u.name IS NULL OR o.target >= u.n)",
            (names, [urls[n] for n in names]),
        ).fetchall()
        for row_id, notifier, target in rows:
            count = urls.get(notifier)
            if count is None:
                why = f"notifier {notifier!r} was removed from the config"
            elif int(target) >= count:
                why = f"notifier {notifier!r} has no URL #{int(target) + 1} any more"
            else:
                continue
            self._execute(
                "UPDATE outbox SET status = 'failed', last_error = %s, claimed_by = NULL,"
                " claim_until = NULL WHERE id = %s AND status = 'pending'",
                (why, row_id),
            )
            dropped[notifier] = dropped.get(notifier, 0) + 1
        return dropped

    def outbox_stats(self) -> OutboxStats:
        per: dict[str, NotifierOutbox] = {}
        totals = {"pending": 0, "failed": 0, "sent": 0}
        counts: dict[str, dict[str, int]] = {}
        for notifier, status, count in self._execute(
            "SELECT notifier, status, count(*) FROM outbox GROUP BY notifier, status"
        ):
            counts.setdefault(notifier, {})[status] = int(count)
            totals[status] = totals.get(status, 0) + int(count)
        for notifier, c in counts.items():
            per[notifier] = NotifierOutbox(
                c.get("pending", 0), c.get("failed", 0), c.get("sent", 0)
            )
        for notifier, error in self._execute(
            "SELECT DISTINCT ON (notifier) notifier, last_error FROM outbox"
            " WHERE last_error IS NOT NULL AND status != 'sent' ORDER BY notifier, id DESC"
        ):
            per[notifier] = replace(per[notifier], last_error=error)
        row = self._execute(
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

    # history --------------------------------------------------------------------

    def matches_since(self, since: datetime, rule: str | None = None) -> list[MatchRecord]:
        rows = self._execute(
            "SELECT e.id, e.feed, coalesce(f.title, f.configured, f.key), e.title, e.link,"
            " e.published, m.created, m.rules, m.terms, m.hits, m.snippet"
            " FROM matches m JOIN entries e ON e.id = m.entry"
            " JOIN feeds f ON f.key = e.feed WHERE m.created >= %s"
            " ORDER BY m.created DESC, e.id DESC",
            (since,),
        )
        out = []
        for entry, key, feed, title, link, published, created, rules, trm, hits, snip in rows:
            rules_t = tuple(json.loads(rules))
            if rule is not None and rule not in rules_t:
                continue
            out.append(
                MatchRecord(
                    feed=feed,
                    title=title,
                    link=link,
                    published=_utc(published),
                    seen=_utc(created) or since,
                    rules=rules_t,
                    terms=tuple(json.loads(trm)),
                    matches=matches(hits),
                    snippet=snippet(snip),
                    entry=int(entry),
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
        if not entries:
            return out
        rows = self._execute(
            "SELECT r.entry, coalesce(f.title, f.configured, f.key) FROM story_rules r"
            " JOIN entries e ON e.id = r.first JOIN feeds f ON f.key = e.feed"
            " WHERE r.entry = ANY(%s) AND r.first IS NOT NULL ORDER BY r.entry, r.rule",
            (list(entries),),
        )
        for entry, feed in rows:
            out.setdefault(int(entry), feed)
        return out

    def articles_since(self, since: datetime) -> list[StoredArticle]:
        rows = self._execute(
            "SELECT coalesce(f.configured, f.key), coalesce(f.title, f.configured, f.key),"
            " e.title, e.link, a.stored, a.fields FROM articles a"
            " JOIN entries e ON e.id = a.entry JOIN feeds f ON f.key = e.feed"
            " WHERE a.stored >= %s ORDER BY a.stored, a.entry",
            (since,),
        )
        return [
            StoredArticle(key, feed, title, link, _utc(stored) or since, json.loads(fields))
            for key, feed, title, link, stored, fields in rows
        ]

    def _forget_stories(self, db: psycopg.Connection[Any], old: list[int]) -> None:
        db.execute("DELETE FROM story_bands WHERE entry = ANY(%s)", (old,))
        # their copies become first reports, searched from now on
        db.execute(
            "UPDATE story_bands SET leads = TRUE WHERE NOT leads AND entry IN"
            " (SELECT entry FROM story_rules WHERE first = ANY(%s))",
            (old,),
        )
        db.execute("UPDATE story_rules SET first = NULL WHERE first = ANY(%s)", (old,))
        db.execute("DELETE FROM story_rules WHERE entry = ANY(%s)", (old,))
        db.execute("DELETE FROM stories WHERE entry = ANY(%s)", (old,))

    @_retrying
    def prune_history(self, before: datetime, limit: int = 2000) -> int:
        # As on SQLite: the search reads the unlisted entries alone, by index, before
        # the story lock is taken (a poll folding stories waits for the deletes alone),
        # and goes on where the last batch of this pass ended, so entries kept for a
        # pending send or a recent listing are passed over once a pass.
        start, after = self._prune_from or (datetime.min.replace(tzinfo=UTC), -1)
        rows = self._execute(
            "SELECT e.id, e.first_seen FROM entries e"
            f" WHERE (e.first_seen, e.id) > (%s, %s) AND {_PRUNABLE}"
            " ORDER BY e.first_seen, e.id LIMIT %s",
            (start, after, before, before, limit),
        ).fetchall()
        self._prune_from = (rows[-1][1], int(rows[-1][0])) if len(rows) == limit else None
        if not rows:
            return 0
        with self._transaction(_LOCK_STORIES) as db:
            # checked again: listed again or given a send since the search
            old = [
                int(r[0])
                for r in db.execute(
                    f"SELECT e.id FROM entries e WHERE e.id = ANY(%s) AND {_PRUNABLE}"
                    " FOR UPDATE OF e SKIP LOCKED",
                    ([int(r[0]) for r in rows], before, before),
                )
            ]
            if not old:
                return 0
            self._forget_stories(db, old)
            db.execute("DELETE FROM outbox WHERE entry = ANY(%s)", (old,))
            db.execute("DELETE FROM articles WHERE entry = ANY(%s)", (old,))
            db.execute("DELETE FROM matches WHERE entry = ANY(%s)", (old,))
            db.execute("DELETE FROM entries WHERE id = ANY(%s)", (old,))
            # operator notices (no entry) that were sent or given up; digests' slots
            db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE entry IS NULL"
                " AND status != 'pending' AND created < %s LIMIT %s)",
                (before, limit),
            )
            db.execute("DELETE FROM slots WHERE done AND created < %s", (before,))
            db.execute("DELETE FROM instances WHERE seen < %s", (before,))
        return len(old)

    @_retrying
    def prune_stories(self, before: datetime, limit: int = 2000) -> int:
        with self._transaction(_LOCK_STORIES) as db:
            old = [
                int(r[0])
                for r in db.execute(
                    "SELECT entry FROM stories WHERE seen < %s ORDER BY seen LIMIT %s",
                    (before, limit),
                )
            ]
            if old:
                self._forget_stories(db, old)
        return len(old)

    def prune(self, text_before: datetime, limit: int | None = None) -> int:
        if limit is None:
            cur = self._execute("DELETE FROM articles WHERE stored < %s", (text_before,))
        else:
            cur = self._execute(
                "DELETE FROM articles WHERE entry IN (SELECT entry FROM articles"
                " WHERE stored < %s ORDER BY stored LIMIT %s FOR UPDATE SKIP LOCKED)",
                (text_before, limit),
            )
        return int(cur.rowcount)

    def set_meta(self, key: str, value: str | None) -> None:
        if value is None:
            self._execute("DELETE FROM meta WHERE key = %s", (key,))
        else:
            self._execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE"
                " SET value = excluded.value",
                (key, value),
            )

    def meta(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self._execute("SELECT key, value FROM meta")}

    # once-only jobs ---------------------------------------------------------------

    def claim_slot(self, name: str, owner: str, now: datetime, until: datetime) -> SlotClaim:
        row = self._execute(
            "INSERT INTO slots (name, owner, claim_until, done, created)"
            " VALUES (%s, %s, %s, FALSE, %s) ON CONFLICT (name) DO UPDATE"
            " SET owner = excluded.owner, claim_until = excluded.claim_until"
            " WHERE NOT slots.done AND (slots.owner = excluded.owner OR slots.claim_until <= %s)"
            " RETURNING owner",
            (name, owner, until, now, now),
        ).fetchone()
        if row is not None:
            return "mine"
        row = self._execute("SELECT done FROM slots WHERE name = %s", (name,)).fetchone()
        return "done" if row and row[0] else "taken"

    def finish_slot(self, name: str, owner: str) -> None:
        self._execute("UPDATE slots SET done = TRUE WHERE name = %s AND owner = %s", (name, owner))

    # instances ----------------------------------------------------------------------

    def lock_for_daemon(self, owner: str = "") -> None:
        """Register this process as one of the instances (several may run; each beats
        its heartbeat, ``heartbeat``)."""
        self._owner = owner or f"{socket.gethostname()}:{os.getpid()}:?"
        self._execute(
            "INSERT INTO instances (owner, host, pid, started, seen)"
            " VALUES (%s, %s, %s, now(), now()) ON CONFLICT (owner) DO UPDATE"
            " SET seen = now()",
            (self._owner, socket.gethostname(), os.getpid()),
        )

    def heartbeat(self) -> None:
        if self._owner is None:
            return
        cur = self._execute("UPDATE instances SET seen = now() WHERE owner = %s", (self._owner,))
        if cur.rowcount == 0:  # forgotten meanwhile (a long pause): register again
            self.lock_for_daemon(self._owner)

    def instances(self) -> list[Instance]:
        rows = self._execute(
            "SELECT owner, host, pid, started, seen FROM instances"
            " WHERE seen > now() - make_interval(secs => %s) ORDER BY started, owner",
            (HEARTBEAT_TIMEOUT,),
        )
        return [
            Instance(str(o), str(h), int(p), _utc(s) or datetime.now(UTC), _utc(seen))
            for o, h, p, s, seen in rows
        ]

    def dead_owners(self) -> set[str]:
        rows = self._execute(
            "SELECT owner FROM instances WHERE seen <= now() - make_interval(secs => %s)",
            (HEARTBEAT_TIMEOUT,),
        )
        return {str(r[0]) for r in rows}

    def daemon_pid(self) -> int | None:
        if self._owner is not None:
            return os.getpid()
        live = self.instances()
        if not live:
            return None
        here = [i for i in live if i.host == socket.gethostname()]
        return here[0].pid if here else 0

    def close(self) -> None:
        if self._owner is not None:
            with contextlib.suppress(psycopg.Error):  # a clean stop: no longer an instance
                self._execute("DELETE FROM instances WHERE owner = %s", (self._owner,))
            self._owner = None
        with self._conns_lock:
            conns, self._conns = self._conns, []
        for db in conns:
            with contextlib.suppress(psycopg.Error):
                db.close()


def _conforms(store: PostgresStorage) -> Storage:
    """mypy checks here that PostgresStorage is a Storage (``open_storage`` loads the
    module lazily, so nothing else would)."""
    return store
