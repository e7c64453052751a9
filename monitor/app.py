"""The composition root: builds the parts from a Config; the one place defaults are chosen."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Callable, Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import TextIO

from monitor import __version__, notify
from monitor.config import DEFAULT_WORKER_MEMORY, Config, FeedSpec
from monitor.delivery import Deliverer, RetryPolicy, Target, Targets
from monitor.fetch import Fetcher, FetchPolicy
from monitor.netsafety import origin
from monitor.pipeline import Context, Poller, PollOutcome, Stopped
from monitor.pool import WorkerPool
from monitor.storage import Storage, open_storage
from monitor.storage.base import FeedRef

log = logging.getLogger("monitor.app")

log = logging.getLogger("monitor.app")

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
        allowed_origins=frozenset(origin(f.url) for f in config.feeds),
    )


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
        self._feeds = {f.key: f for f in config.feeds}
        self._console = console
        self.database = db or config.database_path()
        self.storage: Storage = open_storage(self.database)
        know_feeds(self.storage, config)
        # Store calls of the event loop run here (each thread has its own connection).
        self.db_threads = ThreadPoolExecutor(2, thread_name_prefix="db")
        self.executor = executor
        self.context = Context(config, Fetcher(fetch_policy(config)))
        self._retired: list[Fetcher] = []
        self.targets = build_targets(config, console)
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
        )

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

    def feed(self, key: str) -> FeedSpec | None:
        """The configured feed with this key, or None once it left the config."""
        return self._feeds.get(key)

    def reload(self, config: Config) -> None:
        """Switch to a new valid config; polls in flight finish with the old one."""
        know_feeds(self.storage, config)
        self.switch(config)

    def switch(self, config: Config) -> None:
        """The part of ``reload`` after the store knows the config's feeds (the daemon runs
        ``know_feeds`` in a store thread first, so the event loop never waits for SQLite)."""
        targets = build_targets(config, self._console)  # may raise: nothing changes then
        fetcher = self.context.fetcher
        policy = fetch_policy(config)
        if policy != fetcher.policy:
            self._retired.append(fetcher)  # polls in flight still use it; closed at exit
            fetcher = Fetcher(policy)
        self.config = config
        self._feeds = {f.key: f for f in config.feeds}
        self.context = Context(config, fetcher)
        self.targets = targets
        self.deliverer.reset_backoff()
        if isinstance(self.executor, WorkerPool):
            workers = pool_size(config)
            self.executor.resize(workers)
            self.executor.set_memory_limit(config.settings.worker_memory)
            self.poller.set_offload_limit(2 * workers)

    async def poll(self, key: str) -> datetime | None:
        """Poll one feed by key, for the scheduler; None when it should not be polled again."""
        feed = self.feed(key)
        if feed is None:
            return None
        try:
            outcome = await self.poller.poll(feed)
        except Stopped:  # shutting down: it stays due in the store and is polled after a restart
            return None
        if outcome.alerts:
            self.deliverer.wake()
        return outcome.next_due

    async def poll_round(
        self, feeds: Iterable[FeedSpec], *, dry_run: bool = False, force: bool = False
    ) -> list[PollOutcome]:
        """Poll the given feeds once, concurrently (the fetcher bounds concurrency);
        ``force`` polls paused feeds too."""
        polls = (self.poller.poll(f, dry_run=dry_run, force=force) for f in feeds)
        return list(await asyncio.gather(*polls))

    async def close(self) -> None:
        for fetcher in [self.context.fetcher, *self._retired]:
            await fetcher.close()
        self.deliverer.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.db_threads.shutdown(wait=True)
        self.storage.close()
