"""The storage contract, and the records that go in and out of it.

Guarantees every implementation gives (SPEC section 6):

* An entry is new the first time its identity is seen for its feed; an
  entry re-published with a new guid but a link already seen is not new.
* ``commit_poll`` writes the feed's new state, its new entries, their
  matches and outbox rows in ONE transaction: after a crash either all of
  a poll is there or none of it, so nothing is matched twice and no match
  loses its alert.
* Each (entry, notifier, URL position) has at most one outbox row. A row
  belongs to the notifier's name and its URL's position in the config, not
  to the URL itself: after a reload that changed the URL (a rotated secret)
  it goes to the current one.
* A row is claimed (with an expiry) before it is sent; while a claim runs,
  no other claimant gets the row, so two processes never send it both.
* A feed has a stable ``key`` that its entries belong to; the URL the config
  lists it at (``configured``) may change. ``ensure_feeds`` carries a stored
  feed over to a new configured URL when they are the same feed
  (``decide.carry_over``), so its entries are not new again.
* Polls (``save_feed_state``, ``commit_poll``) never change a feed's identity
  (its configured URL, its name) or ``paused``, and write its state only while
  the feed is still configured at ``state.configured``: a poll that was in
  flight while a reload moved the feed can't undo the move (its entries are
  recorded all the same).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from monitor.story import Fingerprint
from monitor.types import AlertItem, FeedEntry, Message, Notice, RuleMatch, Snippet


class StorageError(Exception):
    """The store can't be used (newer schema, unreadable file, ...)."""


@dataclass(frozen=True, slots=True)
class FeedRef:
    """A feed as the config lists it: what the store needs to know it again."""

    url: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class CarriedOver:
    """A stored feed that continues at a new configured URL (see ``ensure_feeds``)."""

    key: str
    url: str  # configured now
    earlier: str  # configured before
    reason: str
    rivals: tuple[str, ...] = ()  # other new URLs that could have been it


@dataclass(frozen=True, slots=True)
class FeedState:
    """What the store remembers of one feed between polls."""

    key: str  # the stable identity its entries belong to: the URL it was first configured at
    url: str  # the URL polled now (a permanent redirect's target, once that answered a feed)
    configured: str | None = None  # the URL the config lists it at; None: the key
    title: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    last_poll: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    error_count: int = 0
    next_due: datetime | None = None
    gone: bool = False  # answered 410: asked again daily until it answers with a feed
    paused: bool = False  # `monitor feeds pause`: not polled until resumed
    failed_hash: str | None = None  # sha256 of the last document that failed to parse ...
    failed_error: str | None = None  # ... and why: the same bytes are not parsed again
    failed_tries: int = 0  # ... once this says so (decide.poisoned)
    # identity -> polls in a row on which matching that new entry failed
    failing_entries: tuple[tuple[str, int], ...] = ()
    entry_error: str | None = None  # the last entry recorded without matching, and why
    article_error: str | None = None  # the last article page that could not be used, and why
    earlier_urls: tuple[str, ...] = ()  # configured or polled before
    rate: float = 0.0  # new entries a week, decayed (decide.publishing_rate): `interval: auto`
    rate_at: datetime | None = None  # when ``rate`` was last brought up to date
    last_parsed: datetime | None = None  # the last poll whose document parsed
    last_new: datetime | None = None  # the last poll that brought a new entry
    # the index of the last parsed document's items (parse.encode_items): those of the
    # next document that are byte for byte the same are not parsed again
    items: bytes = b""

    @property
    def condition(self) -> str:
        """``paused``, ``gone``, ``failing`` (its last poll failed) or ``ok``."""
        if self.paused:
            return "paused"
        if self.gone:
            return "gone"
        return "failing" if self.last_error else "ok"


@dataclass(frozen=True, slots=True)
class DueTime:
    """What planning the due times of a configured feed needs (a light read of 100,000)."""

    key: str
    configured: str
    next_due: datetime | None
    last_poll: datetime | None
    paused: bool
    rate: float


@dataclass(frozen=True, slots=True)
class FeedCounts:
    """How many configured feeds are in each state, and how many wait for their poll
    (for the metrics: a light count, read every few seconds)."""

    total: int = 0
    paused: int = 0
    gone: int = 0  # not paused
    failing: int = 0  # neither paused nor gone; the last poll failed
    due: int = 0  # not paused; due now (or never polled)
    overdue: int = 0  # not paused; due since before ``late``

    @property
    def ok(self) -> int:
        return self.total - self.paused - self.gone - self.failing


@dataclass(frozen=True, slots=True)
class FeedStats:
    """Counts of a feed's history, for ``status`` (a query, never part of a poll)."""

    entries: int = 0
    matches: int = 0


@dataclass(frozen=True, slots=True)
class Outgoing:
    """An outbox row to create: one alert for one target of one notifier."""

    notifier: str
    target: int  # the position of the URL in the notifier's list (0 for a single URL)
    item: AlertItem


@dataclass(frozen=True, slots=True)
class NewEntry:
    """A new entry with what the poll decided about it."""

    entry: FeedEntry
    first_seen: datetime
    matches: tuple[RuleMatch, ...] = ()  # with their hits, for `monitor matches`
    snippet: Snippet | None = None
    document: Mapping[str, str] | None = None  # normalized text, kept for `rules test`
    outgoing: tuple[Outgoing, ...] = ()
    story: Story | None = None  # matched entries: what folds copies of the same story


@dataclass(frozen=True, slots=True)
class Story:
    """What identifies an entry's story across feeds: its canonical link and the
    fingerprint of its text (``monitor.story``), and how long a story counts."""

    canonical: str | None
    fingerprint: Fingerprint
    window: float  # seconds (settings.story_window)


@dataclass(frozen=True, slots=True)
class Delivery:
    """A pending outbox row: an alert (with its entry's id), an operator notice, or a
    message an earlier version rendered."""

    id: int
    notifier: str
    target: int  # the URL's position; -1 for a row of schema 1 not adopted yet
    payload: AlertItem | Notice | Message
    attempts: int
    created: datetime
    priority: bool = False


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """An outbox row as ``monitor outbox`` lists it."""

    id: int
    notifier: str
    target: int
    status: str  # pending, failed, sent, dropped
    title: str
    link: str | None
    attempts: int
    last_error: str | None
    created: datetime
    next_attempt: datetime | None


@dataclass(frozen=True, slots=True)
class MatchRecord:
    """A stored match, for ``monitor matches``."""

    feed: str
    title: str
    link: str | None
    published: datetime | None
    seen: datetime
    rules: tuple[str, ...]
    terms: tuple[str, ...]
    matches: tuple[RuleMatch, ...] = ()
    snippet: Snippet | None = None
    also: tuple[str, ...] = ()  # the feeds that reported the same story later
    copy_of: str | None = None  # for a later copy: the feed that reported it first
    entry: int = 0
    key: str = ""  # the feed's key


@dataclass(frozen=True, slots=True)
class StoredArticle:
    """The stored normalized text of an entry, for ``monitor rules test``."""

    feed_key: str
    feed: str
    title: str
    link: str | None
    seen: datetime
    fields: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NotifierOutbox:
    """The outbox rows of one notifier, by status, and its last delivery error."""

    pending: int = 0
    failed: int = 0
    sent: int = 0
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    pending: int
    failed: int
    sent: int
    last_error: str | None
    notifiers: Mapping[str, NotifierOutbox] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Instance:
    """A running ``monitor run`` on a store made for several (``Storage.instances``)."""

    owner: str  # of its leases and claims (``delivery.process_owner``)
    host: str
    pid: int
    started: datetime
    seen: datetime | None = None  # its last heartbeat


SlotClaim = Literal["mine", "done", "taken"]


class Storage(Protocol):
    """Persistent state of the monitor; see the module docstring for the contract."""

    # Several `monitor run` instances may share this store (PostgreSQL): each keeps a
    # heartbeat, and the leases and claims of one that stops beating are freed.
    shared: bool

    def ensure_feeds(self, feeds: Iterable[FeedRef]) -> list[CarriedOver]:
        """Know every feed of the config; ``feeds`` is the whole config, in its order.

        A configured URL the store knows is that feed (its name is updated).
        An unknown one continues a stored feed that no URL of the config
        names any more when ``decide.carry_over`` says they are the same feed:
        entries, validators, schedule and title carry over, the old URLs are
        remembered, and a gone feed resumes (a failing or gone one is polled
        soon). Any other unknown URL is a new feed. One transaction; returns
        the carried-over feeds.
        """

    def feed_state(self, url: str) -> FeedState:
        """The state of the feed configured at ``url`` (created empty if unknown)."""

    def feed_states(self) -> list[FeedState]:
        """Every known feed's stored state (its counts: ``feed_stats``)."""

    def due_times(self, before: datetime | None = None) -> list[DueTime]:
        """The due times of the feeds the config lists (``ensure_feeds``), for planning;
        with ``before``, only those due before it or never polled."""

    def feed_stats(self) -> dict[str, FeedStats]:
        """Per feed key: how many entries and matches it has stored (for ``status``)."""

    def claim_due_feeds(
        self, now: datetime, owner: str, until: datetime, limit: int
    ) -> list[FeedState]:
        """Lease up to ``limit`` feeds that are due (configured, not paused, not leased
        by anyone now) to ``owner`` until ``until``; oldest due first. A feed is
        polled by one process at a time: its lease ends when its state is written
        (``save_feed_state``, ``commit_poll``), released, or runs out."""

    def renew_leases(self, keys: Sequence[str], owner: str, until: datetime) -> None:
        """Keep ``owner``'s leases on these feeds (polls still running) until ``until``."""

    def release_feeds(self, keys: Sequence[str] | None, owner: str) -> int:
        """End ``owner``'s leases on these feeds (None: all of them, e.g. of a dead process)."""

    def lease_owners(self) -> set[str]:
        """The owners of leases on feeds now."""

    def set_due(self, due: Sequence[tuple[str, datetime]]) -> None:
        """Set feeds' next due times (a plan: first polls spread, overdue ones spread)."""

    def next_due(self) -> datetime | None:
        """The earliest due time of the feeds that are polled."""

    def feed_counts(self, now: datetime, late: datetime) -> FeedCounts:
        """Configured feeds by state; due ones: due at ``now``, overdue: due before ``late``."""

    def request_poll(self, keys: Sequence[str], now: datetime) -> None:
        """Make feeds due now (``monitor poll --feed`` beside a running daemon)."""

    def save_feed_state(
        self, state: FeedState, notices: Sequence[tuple[str, int, Notice]] = ()
    ) -> None:
        """Store a poll that brought no entries (error, 304, unchanged body).

        ``notices`` (notifier, its number of URLs, notice) are queued for the
        operator in the same transaction, so a feed's failing/recovered notice
        is sent exactly when its state says so.
        """

    def save_feed_states(
        self, polls: Sequence[tuple[FeedState, Sequence[tuple[str, int, Notice]]]]
    ) -> None:
        """``save_feed_state`` for several polls in one transaction: the state writes of
        a round of polls that brought nothing new (most of them) committed together."""

    def seen(self, key: str, identities: Sequence[str], links: Sequence[str]) -> set[str]:
        """Which of these identities, or links, the feed (by ``FeedState.key``) has had."""

    def commit_poll(
        self,
        state: FeedState,
        entries: Sequence[NewEntry],
        notices: Sequence[tuple[str, int, Notice]] = (),
        listed: Sequence[str] = (),
    ) -> list[int]:
        """Write state, entries, matches, outbox rows and ``notices`` in one transaction.

        ``listed`` are the identities of entries already known that the
        document still lists: they are kept past the retention for dedup.

        One story, one alert: an entry with a ``story`` whose canonical link, or
        whose fingerprint is ``story.similar`` to that of an entry already
        alerted for the same rule within ``story.window``, is recorded as a copy
        of that first entry for that rule, and its outbox rows lose that rule
        (a row left without rules is not written).
        """

    def pause_feed(self, key: str) -> None:
        """Stop polling a feed until ``resume_feed``; changes the ``feeds_changed`` meta."""

    def resume_feed(self, key: str, now: datetime) -> None:
        """Poll a paused, gone or failing feed again at ``now``: clears paused, gone, the
        error count and the failed document's hash (its bytes are parsed again);
        changes the ``feeds_changed`` meta, which a running daemon watches."""

    def due_deliveries(self, now: datetime, limit: int = 100) -> list[Delivery]:
        """Pending outbox rows whose next attempt is due, oldest first (claimed or not)."""

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
        """Claim up to ``limit`` due rows of one target for ``owner`` until ``until``.

        Rows claimed by another owner whose claim has not run out are not
        returned: two processes never hold (and send) the same row. Oldest
        first by next attempt. ``priority_only``: only rows of a high-priority
        rule and operator notices (during quiet hours, past a cap).
        """

    def also_reported(self, entries: Sequence[int]) -> dict[int, list[str]]:
        """For each of these (first) entries, the feeds whose copies of its story were
        folded into it, in the order they came."""

    def add_notice(self, notifier: str, targets: int, notice: Notice, now: datetime) -> None:
        """Queue an operator notice for each of a notifier's ``targets`` URLs."""

    def sends_since(self, notifier: str, target: int, since: datetime) -> int:
        """How many messages one target has been sent since ``since`` (rows sent
        together count once)."""

    def outbox_rows(self, *, failed_only: bool = False, limit: int = 1000) -> list[OutboxRow]:
        """Outbox rows for ``monitor outbox``: not sent ones (only failed ones), newest first."""

    def retry_deliveries(self, ids: Sequence[int] | None, now: datetime) -> int:
        """Make failed (or, by id, pending) rows due now, as new; None: every failed row."""

    def drop_delivery(self, delivery_id: int) -> bool:
        """Drop a row that was not sent (status ``dropped``); False when there is none."""

    def release_claims(self, delivery_ids: Sequence[int], owner: str) -> None:
        """Give back claimed rows that were not sent."""

    def claim_owners(self) -> set[str]:
        """The owners of claims on pending rows."""

    def release_owner(self, owner: str) -> int:
        """Drop every claim of an owner known to be dead; returns how many."""

    def next_delivery_due(self, notifier: str, target: int) -> datetime | None:
        """When the next pending row of one target can be sent (None: none pending)."""

    def delivered(self, delivery_ids: Sequence[int], now: datetime) -> None:
        """Mark rows sent in one message (and release their claims), in one transaction."""

    def delivery_failed(
        self,
        failures: Sequence[tuple[int, datetime | None]],
        error: str,
        now: datetime,
        notices: Sequence[tuple[str, int, Notice]] = (),
    ) -> None:
        """Record a failed attempt of rows sent in one message: (id, next attempt) each,
        None meaning give up (status 'failed'). ``notices`` (notifier, URLs, notice)
        are queued in the same transaction (an operator told a row was given up)."""

    def adopt_targets(self, notifier: str, positions: Mapping[str, int]) -> int:
        """Give pending rows of an older schema (target: a URL hash) their URL's position."""

    def drop_unrouted(self, urls: Mapping[str, int]) -> dict[str, int]:
        """Fail the pending rows of notifiers (or URL positions) no longer configured.

        ``urls``: notifier name -> number of URLs. Returns rows failed per notifier.
        """

    def outbox_stats(self) -> OutboxStats:
        """Counts of the outbox by status."""

    def matches_since(self, since: datetime, rule: str | None = None) -> list[MatchRecord]:
        """Stored matches, newest first."""

    def articles_since(self, since: datetime) -> list[StoredArticle]:
        """Stored normalized article texts, oldest first."""

    def prune_history(self, before: datetime, limit: int = 2000) -> int:
        """Forget up to ``limit`` entries first seen before ``before`` (the retention),
        with their matches and outbox rows (sent, failed or dropped; never pending), unless
        their feed still lists them (listed since its document last changed): an
        entry a feed lists is never new again. Returns how many entries."""

    def prune_stories(self, before: datetime, limit: int = 2000) -> int:
        """Forget up to ``limit`` stories first seen before ``before``; returns how many."""

    def prune(self, text_before: datetime, limit: int | None = None) -> int:
        """Drop stored article texts older than ``text_before``; returns how many.

        With ``limit``, at most that many (the oldest) in one short transaction:
        call again while it returns ``limit``. Entries themselves are never
        dropped, so an entry is never new twice.
        """

    def lock_for_daemon(self, owner: str = "") -> None:
        """Hold this database for the calling process's ``monitor run`` until close().

        StorageError when another process holds it (one daemon per SQLite
        database). PostgreSQL allows several instances: each registers as
        ``owner`` (its leases' and claims' owner) and keeps a ``heartbeat``.
        """

    def heartbeat(self) -> None:
        """This instance is alive (a few seconds apart; nothing on SQLite)."""

    def instances(self) -> list[Instance]:
        """The instances running on this store, by heartbeat (empty on SQLite: see
        ``daemon_pid``)."""

    def dead_owners(self) -> set[str]:
        """Owners of instances that stopped beating (killed, or cut off): their leases
        and claims can be freed at once. Empty on SQLite (a dead process of this host
        is found by its pid, ``delivery.owner_is_dead``)."""

    def claim_slot(self, name: str, owner: str, now: datetime, until: datetime) -> SlotClaim:
        """Claim a once-only job (a digest's firing) by its unique ``name`` until ``until``.

        ``mine``: this owner holds it (new, already its own, or another owner's claim
        ran out before it was done): do it, then ``finish_slot``. ``done``: it was
        done. ``taken``: another owner holds it now.
        """

    def finish_slot(self, name: str, owner: str) -> None:
        """Mark a once-only job done."""

    def daemon_pid(self) -> int | None:
        """The pid of the daemon holding this database, 0 when unknown, None when none runs."""

    def set_meta(self, key: str, value: str | None) -> None:
        """Remember (or forget, with None) a fact about the daemon, e.g. a reload error."""

    def meta(self) -> dict[str, str]:
        """Every remembered fact."""

    def close(self) -> None:
        """Release the connection."""
