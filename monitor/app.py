"""The composition root: builds the parts from a Config; the one place defaults are chosen."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO, TypeVar

from monitor import __version__, decide, notify
from monitor.activity import Activity
from monitor.config import DEFAULT_WORKER_MEMORY, Config, FeedSpec, check_notifiers
from monitor.delivery import Deliverer, RetryPolicy, Target, Targets, owner_is_dead, process_owner
from monitor.fetch import Fetcher, FetchPolicy
from monitor.netsafety import origin
from monitor.pipeline import Context, Poller, PollOutcome, Stopped
from monitor.pool import WorkerPool
from monitor.storage import Storage, open_storage
from monitor.storage.base import FeedRef, FeedState

log = logging.getLogger("monitor.app")
T = TypeVar("T")
LEASE = 15.0  # seconds a claimed feed stays leased (renewed while its poll runs)

USER_AGENT = f"rss-monitor/{__version__} (+https://pypi.org/project/rss-monitor/)"


def utcnow() -> datetime:
    return datetime.now(UTC)


def fetch_policy(config: Config) -> FetchPolicy:
    s = config.settings
    return FetchPolicy(
        user_agent=s.user_agent or USER_AGENT,
        timeout=s.timeout,
        max_bytes=s.max_bytes,
        per_host_limit=s.per_host,
        min_host_spacing=s.host_spacing,
        total_limit=s.concurrency,
        allow_private=s.allow_private_addresses,
        allowed_origins=_origins(f.url for f in config.feeds),
    )


def _origins(urls: Iterable[str]) -> frozenset[str]:
    """The origins of these URLs; each scheme://host:port part parsed once (100,000 feeds
    are on far fewer hosts)."""
    by_prefix: dict[str, str] = {}
    for url in urls:
        end = url.find("/", url.find("//") + 2)
        prefix = url if end < 0 else url[:end]
        if prefix not in by_prefix:
            by_prefix[prefix] = origin(prefix)
    return frozenset(by_prefix.values())


@dataclass(frozen=True, slots=True)
class Prepared:
    """A new config's notifier targets and fetch policy, built before the switch."""

    targets: Targets
    policy: FetchPolicy


def build_targets(config: Config, console: TextIO | None = None) -> Targets:
    """(notifier, URL position) -> its target; the console when none is configured."""
    targets: dict[tuple[str, int], Target] = {}
    for n in config.notifiers:
        for position, url in enumerate(n.urls):
            targets[(n.name, position)] = Target(
                notify.mask(url, config.secrets),
                notify.AppriseSender(url, config.secrets),
                n,
            )
    if not config.notifiers:
        sender = notify.ConsoleSender(console) if console else notify.ConsoleSender()
        targets[(notify.CONSOLE, 0)] = Target("console", sender)
    return targets


def know_feeds(storage: Storage, config: Config) -> None:
    """Make the store know every feed of ``config``; log the feeds that moved to a new URL."""
    for moved in storage.ensure_feeds(FeedRef(f.url, f.name) for f in config.feeds):
        log.info(
            "feed at %s continues the feed configured at %s (%s): its entries are not new",
            moved.url,
            moved.earlier,
            moved.reason,
        )
        if moved.rivals:
            log.warning(
                "%s could also have been the feed configured at %s; it starts as a new feed",
                ", ".join(moved.rivals),
                moved.earlier,
            )


def pool_size(config: Config | None = None) -> int:
    """Worker processes: ``settings.workers``, else one per CPU this process may use, at most 4."""
    if config is not None and config.settings.workers is not None:
        return config.settings.workers
    try:
        cpus = len(os.sched_getaffinity(0))  # a container's or taskset's CPUs, not the host's
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 4))


def process_pool(config: Config | None = None) -> WorkerPool:
    """Parsing, extraction and matching run here, off the event loop (see pool.py), each
    worker under ``settings.worker_memory``."""
    memory = config.settings.worker_memory if config is not None else DEFAULT_WORKER_MEMORY
    return WorkerPool(pool_size(config), memory_limit=memory)


class App:
    """Everything a running monitor needs, wired together."""

    def __init__(
        self,
        config: Config,
        *,
        db: str | None = None,
        executor: Executor | None = None,
        retry: RetryPolicy | None = None,
        rng: random.Random | None = None,
        console: TextIO | None = None,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.config = config
        self.clock = clock
        self.owner = process_owner()  # of leases on feeds and claims on outbox rows
        self._feeds = {f.url: f for f in config.feeds}
        self._console = console
        self.database = db or config.database_path()
        self.storage: Storage = open_storage(self.database)
        know_feeds(self.storage, config)
        # Store calls of the event loop run here (each thread has its own connection).
        self.db_threads = ThreadPoolExecutor(2, thread_name_prefix="db")
        self.executor = executor
        self.context = Context(config, Fetcher(fetch_policy(config)))
        self._retired: list[Fetcher] = []
        # what the daemon did: its summary a minute, and the metrics when they are on
        self.activity = Activity()
        if isinstance(executor, WorkerPool):  # its workers lost or recycled count as restarts
            executor.on_restart = self.activity.worker_restarted
        # Built when first needed: a notifier's target loads apprise (see notify.py).
        self._targets: Targets | None = None
        self._checking: asyncio.Future[Config] | None = None
        self.rng = rng or random.Random()
        self.poller = Poller(
            context=lambda: self.context,
            storage=self.storage,
            executor=executor,
            clock=clock,
            rng=self.rng,
            offload_limit=2 * pool_size(config),
            poll_limit=config.settings.concurrency,
            db=self.db_threads,
        )
        self.deliverer = Deliverer(
            storage=self.storage,
            targets=lambda: self.targets,
            clock=clock,
            retry=retry or RetryPolicy(first=config.settings.retry_delay),
            db=self.db_threads,
            admin=self.admin,
            owner=self.owner,
            activity=self.activity,
        )

    @property
    def targets(self) -> Targets:
        """(notifier, URL position) -> its target (``build_targets``), built on first use."""
        if self._targets is None:
            self._targets = build_targets(self.config, self._console)
        return self._targets

    def start_checking_notifiers(self) -> None:
        """Start ``check_notifiers`` in a thread, so apprise loads while a round goes on
        (``monitor poll``, once it knows it has something to send)."""
        if self._checking is None and self.config.unchecked:
            loop = asyncio.get_running_loop()
            self._checking = loop.run_in_executor(None, check_notifiers, self.config)

    async def check_notifiers(self) -> None:
        """Have apprise check the notifier URLs the config was loaded without checking
        (``config.check_notifiers``; ``monitor poll`` does so only when it has something
        to send). Raises ConfigError as loading the config would have."""
        if not self.config.unchecked:
            return
        self.start_checking_notifiers()
        assert self._checking is not None
        try:
            self.config = await self._checking
        finally:
            self._checking = None

    def admin(self) -> tuple[str, int] | None:
        """The notifier for operator notices (``settings.admin_notify``) and its URLs."""
        name = self.config.settings.admin_notify
        return (name, self.config.notifier_urls()[name]) if name else None

    def settle_outbox(self) -> dict[str, int]:
        """Fit the outbox to the config in force (the daemon's, at start and on reload).

        Rows written by an older schema name their URL by a hash: they get its
        position. Rows of a notifier removed from the config, or of a URL
        position it no longer has, are failed and say so; returns how many per
        notifier.
        """
        store = self.storage
        for n in self.config.notifiers:
            store.adopt_targets(n.name, {notify.target_key(u): i for i, u in enumerate(n.urls)})
        dropped = store.drop_unrouted(self.config.notifier_urls())
        for name, count in dropped.items():
            log.warning(
                "notifier=%r is no longer configured: %d queued alerts for it are given up"
                " (see `monitor status`)",
                name,
                count,
            )
        return dropped

    def feed(self, url: str) -> FeedSpec | None:
        """The configured feed at this URL, or None once it left the config."""
        return self._feeds.get(url)

    def reload(self, config: Config) -> None:
        """Switch to a new valid config; polls in flight finish with the old one."""
        know_feeds(self.storage, config)
        self.switch(config, self.prepare(config))

    def prepare(self, config: Config) -> Prepared:
        """What ``switch`` needs that grows with the config (the fetch policy parses every
        feed's origin: 0.7 s at 100,000 feeds on distinct hosts); the daemon runs it in a
        thread so the event loop never waits for it. Raises when a notifier URL is bad."""
        return Prepared(build_targets(config, self._console), fetch_policy(config))

    def switch(self, config: Config, prepared: Prepared) -> None:
        """The part of ``reload`` after the store knows the config's feeds and ``prepare``
        ran (the daemon runs both off the event loop); cheap, and nothing fails here."""
        targets, policy = prepared.targets, prepared.policy
        fetcher = self.context.fetcher
        if policy != fetcher.policy:
            self._retired.append(fetcher)  # polls in flight still use it; closed at exit
            fetcher = Fetcher(policy)
        self.config = config
        self._feeds = {f.url: f for f in config.feeds}
        self.context = Context(config, fetcher)
        self._targets = targets
        self.deliverer.reset_backoff()
        if isinstance(self.executor, WorkerPool):
            workers = pool_size(config)
            self.executor.resize(workers)
            self.executor.set_memory_limit(config.settings.worker_memory)
            self.poller.set_offload_limit(2 * workers)

    async def _db(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.db_threads, fn, *args)

    async def claim_due(self, limit: int) -> list[FeedState]:
        """Lease up to ``limit`` due feeds to this process (the scheduler's tick)."""
        now = self.clock()
        until = now + timedelta(seconds=LEASE)
        return await self._db(self.storage.claim_due_feeds, now, self.owner, until, limit)

    async def renew(self, keys: Sequence[str]) -> None:
        """Keep the leases of the polls in flight."""
        until = self.clock() + timedelta(seconds=LEASE)
        await self._db(self.storage.renew_leases, keys, self.owner, until)

    async def poll_claimed(self, state: FeedState) -> None:
        """Poll a feed the scheduler claimed; its state write ends the lease."""
        feed = self._feeds.get(state.configured or state.key)
        if feed is None:  # left the config meanwhile
            await self._db(self.storage.release_feeds, [state.key], self.owner)
            return
        try:
            outcome = await self.poller.poll(feed, state=state)
        except Stopped:  # shutting down: still due, polled after a restart
            await self._db(self.storage.release_feeds, [state.key], self.owner)
            return
        if outcome.status is not None or outcome.error is not None:  # not skipped (paused)
            self.activity.polled(outcome)
        if outcome.alerts:
            self.deliverer.wake()

    def release_dead(self) -> int:
        """Free the feed leases and outbox claims of instances that died: on a shared
        store (PostgreSQL) those that stopped beating their heartbeat, and any process
        of this host that no longer runs. Returns how many were freed (in a store thread)."""
        store = self.storage
        dead = store.dead_owners()
        freed = 0
        for owner in store.lease_owners() | store.claim_owners() | dead:
            if owner != self.owner and (owner in dead or owner_is_dead(owner)):
                freed += store.release_feeds(None, owner) + store.release_owner(owner)
        return freed

    def plan(self) -> int:
        """Spread the due times the config needs (in a store thread; at start and reload).

        A feed never polled starts soon, thousands of them spread out
        (``decide.first_due``); a feed overdue by more than its interval (the
        daemon was down) is spread over one interval instead of being polled
        with all the others at once. Leases of processes of this host that
        died are released. Returns how many due times changed.
        """
        now = self.clock()
        dead = self.storage.dead_owners()
        for owner in self.storage.lease_owners():
            if owner != self.owner and (owner in dead or owner_is_dead(owner)):
                self.storage.release_feeds(None, owner)
        settings = self.config.settings
        # Only a feed overdue by more than its interval changes: read just the ones
        # overdue by more than the shortest interval (a restart reads a handful).
        intervals = [self.config.feed_interval(f) for f in self.config.feeds]
        shortest = min((i or settings.min_interval for i in intervals), default=0.0)
        times = {t.configured: t for t in self.storage.due_times(now - timedelta(seconds=shortest))}
        feeds = []
        for f in self.config.feeds:
            t = times.get(f.url)
            if t is None or t.paused:
                continue
            interval = self.config.feed_interval(f)
            if interval is None:  # auto: by the feed's publishing rate
                interval = decide.auto_interval(
                    t.rate, settings.min_interval, settings.max_interval
                )
            feeds.append((t.key, t.next_due, t.last_poll, interval))
        due = decide.plan_due(now, feeds, self.rng)
        if due:
            self.storage.set_due(due)
        return len(due)

    async def poll_round(
        self,
        feeds: Iterable[FeedSpec],
        *,
        dry_run: bool = False,
        force: bool = False,
        states: Mapping[str, FeedState] | None = None,
        on_outcome: Callable[[PollOutcome], None] | None = None,
    ) -> list[PollOutcome]:
        """Poll the given feeds once, concurrently (the fetcher bounds concurrency);
        ``force`` polls paused feeds too; ``states``: the stored states the caller read
        already, by configured URL (each other feed's is read as it is polled);
        ``on_outcome`` hears of each poll as it ends."""
        known = states or {}

        async def poll(feed: FeedSpec) -> PollOutcome:
            state = known.get(feed.url)
            outcome = await self.poller.poll(feed, dry_run=dry_run, force=force, state=state)
            if on_outcome is not None:
                on_outcome(outcome)
            return outcome

        return list(await asyncio.gather(*(poll(f) for f in feeds)))

    async def close(self) -> None:
        if self._checking is not None:  # a check no one waits for any more
            self._checking.cancel()
        for fetcher in [self.context.fetcher, *self._retired]:
            await fetcher.close()
        self.deliverer.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.db_threads.shutdown(wait=True)
        self.storage.close()
