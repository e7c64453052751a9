"""The composition root: builds the parts from a Config; the one place defaults are chosen."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Iterable
from concurrent.futures import Executor
from datetime import UTC, datetime
from typing import TextIO

from monitor import __version__, notify
from monitor.config import DEFAULT_WORKER_MEMORY, Config, FeedSpec
from monitor.delivery import Deliverer, RetryPolicy, Targets
from monitor.fetch import Fetcher, FetchPolicy
from monitor.netsafety import origin
from monitor.pipeline import Context, Poller, PollOutcome
from monitor.pool import WorkerPool
from monitor.storage import Storage, open_storage

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
    """(notifier, target key) -> (masked URL, sender); the console when none is configured."""
    targets: dict[tuple[str, str], tuple[str, notify.Sender]] = {}
    for n in config.notifiers:
        for url in n.urls:
            targets[(n.name, notify.target_key(url))] = (
                notify.mask(url),
                notify.AppriseSender(url),
            )
    if not config.notifiers:
        sender = notify.ConsoleSender(console) if console else notify.ConsoleSender()
        targets[(notify.CONSOLE, notify.CONSOLE)] = ("console", sender)
    return targets


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
    ) -> None:
        self.config = config
        self._feeds = {f.key: f for f in config.feeds}
        self._console = console
        self.storage: Storage = open_storage(db or config.database_path())
        self.storage.ensure_feeds(f.key for f in config.feeds)
        self.executor = executor
        self.context = Context(config, Fetcher(fetch_policy(config)))
        self._retired: list[Fetcher] = []
        self.targets = build_targets(config, console)
        self.rng = rng or random.Random()
        self.poller = Poller(
            context=lambda: self.context,
            storage=self.storage,
            executor=executor,
            clock=utcnow,
            rng=self.rng,
            offload_limit=2 * pool_size(config),
            poll_limit=config.settings.concurrency,
        )
        self.deliverer = Deliverer(
            storage=self.storage,
            targets=lambda: self.targets,
            clock=utcnow,
            retry=retry or RetryPolicy(first=config.settings.retry_delay),
        )

    def feed(self, key: str) -> FeedSpec | None:
        """The configured feed with this key, or None once it left the config."""
        return self._feeds.get(key)

    def reload(self, config: Config) -> None:
        """Switch to a new valid config; polls in flight finish with the old one."""
        targets = build_targets(config, self._console)  # may raise: nothing changes then
        self.storage.ensure_feeds(f.key for f in config.feeds)
        fetcher = self.context.fetcher
        policy = fetch_policy(config)
        if policy != fetcher.policy:
            self._retired.append(fetcher)  # polls in flight still use it; closed at exit
            fetcher = Fetcher(policy)
        self.config = config
        self._feeds = {f.key: f for f in config.feeds}
        self.context = Context(config, fetcher)
        self.targets = targets
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
        outcome = await self.poller.poll(feed)
        if outcome.alerts:
            self.deliverer.wake.set()
        return outcome.next_due

    async def poll_round(
        self, feeds: Iterable[FeedSpec], *, dry_run: bool = False
    ) -> list[PollOutcome]:
        """Poll the given feeds once, concurrently (the fetcher bounds concurrency)."""
        return list(await asyncio.gather(*(self.poller.poll(f, dry_run=dry_run) for f in feeds)))

    async def close(self) -> None:
        for fetcher in [self.context.fetcher, *self._retired]:
            await fetcher.close()
        self.deliverer.close()
        if self.executor is not None:
            self.executor.shutdown(wait=False, cancel_futures=True)
        self.storage.close()
