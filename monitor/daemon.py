"""The daemon's lifecycle: start, signals, config reloads, sd_notify, clean stop.

Signal handlers only set events (as gunicorn does); the main loop acts on
them. SIGTERM/SIGINT stop: no new polls, in-flight polls get ``STOP_GRACE``
seconds to finish and commit; what is left then is cancelled (each poll
commits in one transaction, so a cancelled one rolls back cleanly); a send in
flight finishes within the same grace and is recorded; the daemon exits 0 well
within systemd's 10 s. SIGHUP, or a change of feeds.yaml (or a ``${file:...}``
credential it reads) on disk, reloads the config; a broken edit is logged,
shown by ``monitor status``, and the last good config keeps running. Each
reload adds the new config's secrets to the log's redactor. ``monitor feeds
pause`` and ``resume``, ``monitor poll --feed`` and ``monitor outbox retry`` write
the store, where the daemon finds them within seconds, so it needs no signal
(and the command no permission to send one). With ``settings.metrics`` the daemon
serves /metrics and /healthz from a thread (``metrics.py``): a task beats a heartbeat
every second, each scheduler tick marks another, and /healthz judges them
(``health.py``); a reload moves, starts or stops that server.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from monitor import __version__, activity, logs
from monitor.app import App, know_feeds, process_pool
from monitor.config import Config, ConfigError, Listen, format_duration, load_config
from monitor.health import BEAT_EVERY, Heartbeat, MetricsError
from monitor.pool import WorkerPool
from monitor.redact import Redactor
from monitor.scheduler import TICK, FeedScheduler
from monitor.sdnotify import sd_notify, watchdog_interval
from monitor.storage import shown_location
from monitor.types import Notice

if TYPE_CHECKING:  # prometheus_client is imported only when settings.metrics is set
    from monitor.metrics import Metrics, MetricsServer
    from monitor.storage.base import FeedCounts, OutboxStats

log = logging.getLogger("monitor.daemon")

STOP_GRACE = 6.0  # seconds in-flight polls get after SIGTERM
CONFIG_CHECK = 2.0  # seconds between looks at feeds.yaml and its credential files
OUTBOX_CHECK = 2.0  # seconds between looks for `monitor outbox retry/drop` in the store
RETENTION_CHECK = 3600.0  # seconds between prunes of stored article text
PRUNE_RETRY = 60.0  # seconds until a failed prune is tried again
PRUNE_BATCH = 2000  # rows per transaction: SQLite's write lock is never held for long
PRUNE_PAUSE = 0.05  # seconds between batches, so a poll waiting to commit gets its turn
PRUNE_YIELD = 3.0  # and at least three times a batch's own time
SUMMARY_EVERY = 60.0  # seconds between the INFO summaries (per-poll lines are at DEBUG)
HEARTBEAT_EVERY = 5.0  # seconds between heartbeats on a shared store (PostgreSQL)
METRICS_REFRESH = 15.0  # seconds between reads of the store's gauges (settings.metrics)

Fingerprint = tuple[tuple[int, int, int, int] | None, ...]


def fingerprint(paths: Iterable[Path]) -> Fingerprint:
    """What the files named by ``paths`` are now, following symlinks.

    The device and inode of the file a link points to now, not only its
    mtime: a Kubernetes ConfigMap update swaps a ``..data`` symlink to a new
    directory, whose feeds.yaml may well have the same mtime and size.
    """
    out: list[tuple[int, int, int, int] | None] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size))
    return tuple(out)


def _watched(config: Config) -> tuple[Path, ...]:
    return (config.path, *config.files)


class Daemon:
    """``monitor run``."""

    def __init__(self, app: App, env: Mapping[str, str], redactor: Redactor | None = None) -> None:
        self.app = app
        self.env = env
        self.redactor = redactor or Redactor()
        self.redactor.add(app.config.secrets)
        self.stop = asyncio.Event()
        self.reload_requested = asyncio.Event()
        self.health = Heartbeat(tick_every=TICK)
        self.scheduler = FeedScheduler(
            claim=app.claim_due,
            poll=app.poll_claimed,
            renew=app.renew,
            # concurrency polls fetching, as many more waiting for the workers (pipeline)
            limit=lambda: 2 * self.app.config.settings.concurrency,
            on_tick=self.health.ticked,
        )
        self.metrics: Metrics | None = None
        self.server: MetricsServer | None = None
        self.metrics_every = METRICS_REFRESH
        self._watched = _watched(app.config)
        self._fingerprint = fingerprint(self._watched)
        self.prune_every = RETENTION_CHECK
        self.prune_retry = PRUNE_RETRY
        self.summary_every = SUMMARY_EVERY
        self._summary_since = 0.0

    async def _plan(self) -> None:
        """Spread first polls and, after downtime, overdue ones (in a store thread)."""
        try:
            changed = await asyncio.get_running_loop().run_in_executor(
                self.app.db_threads, self.app.plan
            )
        except Exception:
            log.exception("could not plan the feeds' due times; they are polled as they are due")
            return
        if changed:
            log.info("%d feeds are due at new times (first polls, or overdue ones spread)", changed)

    # -- metrics and health (settings.metrics) --

    def _serve_metrics(self, listen: Listen | None) -> MetricsServer | None:
        """Serve the metrics at ``listen`` (None: not at all); returns the server of an
        earlier address, for the caller to close (closing waits up to half a second).
        MetricsError when the new address can't be bound: the server running before (if
        any) goes on."""
        if listen == (self.server.listen if self.server is not None else None):
            return None
        new = None
        if listen is not None:
            from monitor.metrics import Metrics, MetricsServer

            metrics = self.metrics or Metrics(__version__, self.health)
            metrics.know(self.app.config, (name for name, _ in self.app.targets))
            new = MetricsServer(metrics, self.health, listen)  # may raise MetricsError
            if self.metrics is None:
                self.metrics = metrics
                self.app.activity.attach(metrics)
            log.info("metrics on %s/metrics, health check on %s/healthz", new.url, new.url)
        old, self.server = self.server, new
        if listen is None and self.metrics is not None:
            self.app.activity.detach(self.metrics)
            self.metrics = None
            log.info("metrics off (settings.metrics removed)")
        return old

    async def _reload_metrics(self, config: Config) -> None:
        """A reload moves the metrics server to a new ``settings.metrics`` (or stops or
        starts it); when the new address can't be bound, the old server goes on."""
        try:
            old = self._serve_metrics(config.settings.metrics)
            if old is not None:
                await asyncio.to_thread(old.close)
        except MetricsError as exc:
            where = f"still on {self.server.url}" if self.server else "metrics stay off"
            log.error("%s; %s", exc, where)
        if self.metrics is not None:
            self.metrics.know(config, (name for name, _ in self.app.targets))

    async def _beat(self) -> None:
        """The event loop's heartbeat, for /healthz (read by the server's thread)."""
        while not self.stop.is_set():
            self.health.beat()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), BEAT_EVERY)

    def _read_store(self) -> tuple[OutboxStats, FeedCounts]:
        from monitor.metrics import OVERDUE

        now = datetime.now(UTC)
        late = now - timedelta(seconds=OVERDUE)
        return self.app.storage.outbox_stats(), self.app.storage.feed_counts(now, late)

    async def _refresh_metrics(self) -> None:
        """Read the store's gauges every ``metrics_every`` seconds, in a store thread:
        a scrape reads the last snapshot and never waits for the store or the loop."""
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            metrics = self.metrics
            if metrics is not None:
                from monitor.metrics import StoreSnapshot
                from monitor.storage.base import NotifierOutbox

                try:
                    outbox, feeds = await loop.run_in_executor(
                        self.app.db_threads, self._read_store
                    )
                    per = {name: NotifierOutbox() for name, _ in self.app.targets}
                    per.update(outbox.notifiers)
                    pool = self.app.executor
                    workers = len(pool.pids()) if isinstance(pool, WorkerPool) else None
                    metrics.set_store(StoreSnapshot(per, feeds, workers))
                except Exception as exc:  # the store is busy or broken: the next time
                    log.warning("reading the store for the metrics failed: %s", exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.metrics_every)

    async def _watch_outbox(self) -> None:
        """Apply ``monitor outbox retry`` (written to the store) within seconds: the
        targets waiting in backoff look again. (Feeds paused, resumed or asked for by
        ``monitor poll --feed`` need nothing: the scheduler reads due feeds from the store.)"""
        loop = asyncio.get_running_loop()
        outbox_seen = None
        while not self.stop.is_set():
            try:
                meta = await loop.run_in_executor(self.app.db_threads, self.app.storage.meta)
                outbox = meta.get("outbox_changed") or ""
                if outbox_seen is not None and outbox != outbox_seen:
                    log.info("outbox rows retried: every target looks again")
                    self.app.deliverer.reset_backoff()
                outbox_seen = outbox
            except Exception as exc:  # the store is busy or broken: try again next time
                log.error("reading the outbox's changes failed: %s", exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), OUTBOX_CHECK)

    async def _reload(self) -> None:
        old = self.app.config
        # Taken before reading, so an edit made while we read triggers another reload.
        self._fingerprint = fingerprint(self._watched)
        try:
            # Off the loop: composing a 10,000-feed feeds.yaml takes seconds.
            config = await asyncio.to_thread(load_config, old.path, self.env)
            self.redactor.add(config.secrets)  # before anything about the new config is logged
            if _watched(config) != self._watched:  # ${file:...} added or dropped
                self._watched = _watched(config)
                self._fingerprint = fingerprint(self._watched)
            prepared = await asyncio.to_thread(self.app.prepare, config)
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.app.db_threads, know_feeds, self.app.storage, config)
            self.app.switch(config, prepared)
        except ConfigError as exc:
            self.redactor.add(exc.secrets)
            for problem in exc.problems:
                log.error("config reload failed, keeping the last good config: %s", problem)
            self.app.storage.set_meta("config_error", str(exc))
            await self._tell_operator(
                Notice(
                    "reload_failed",
                    "config reload failed",
                    f"The reload of {old.path} failed; the last good config keeps running.\n{exc}",
                )
            )
            sd_notify("STATUS=config reload failed; running the last good config")
            self.app.activity.reloaded(False)
            return
        except Exception as exc:
            log.error("config reload failed, keeping the last good config: %s", exc)
            self.app.storage.set_meta("config_error", self.redactor.redact(str(exc)))
            self.app.activity.reloaded(False)
            return
        self.app.storage.set_meta("config_error", None)
        await self._reload_metrics(config)
        self.app.activity.reloaded(True)
        logs.apply(config.settings)
        for warning in config.warnings:
            log.warning("%s", warning)
        await self._settle_outbox()
        await self._plan()
        if config.database_path() != old.database_path():
            log.warning(
                "settings.database changed; the daemon keeps using %s until it restarts",
                shown_location(self.app.database),
            )
        log.info("config reloaded: %d feeds, %d rules", len(config.feeds), len(config.rules))
        gc.collect()
        gc.freeze()  # the new config, as at start-up
        sd_notify(f"STATUS=watching {len(config.feeds)} feeds")

    async def _tell_operator(self, notice: Notice) -> None:
        """Queue a notice for ``settings.admin_notify`` (of the config running)."""
        admin = self.app.admin()
        if admin is None:
            return
        try:
            await asyncio.get_running_loop().run_in_executor(
                self.app.db_threads,
                self.app.storage.add_notice,
                admin[0],
                admin[1],
                notice,
                datetime.now(UTC),
            )
            self.app.deliverer.wake()
        except Exception:
            log.exception("could not queue a notice for the operator")

    async def _settle_outbox(self) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(
                self.app.db_threads, self.app.settle_outbox
            )
        except Exception:
            log.exception("could not fit the outbox to the config; retried at the next reload")

    async def _watch_config(self) -> None:
        while not self.stop.is_set():
            await asyncio.sleep(CONFIG_CHECK)
            now = fingerprint(self._watched)
            # A file missing for a moment (an editor's save, a link being swapped) is no change.
            if now != self._fingerprint and now[0] is not None:
                log.info("feeds.yaml or a credential file it reads changed on disk")
                self.reload_requested.set()

    async def _heartbeat(self) -> None:
        """On a shared store: say this instance is alive, and free the leases and claims of
        instances that are not (killed, or cut off): their feeds are polled and their
        alerts sent by the others."""
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            try:
                await loop.run_in_executor(self.app.db_threads, self.app.storage.heartbeat)
                freed = await loop.run_in_executor(self.app.db_threads, self.app.release_dead)
                if freed:
                    log.info("took over %d leases and claims of instances that stopped", freed)
            except Exception as exc:  # the database is away: the next beat tries again
                log.error("heartbeat failed: %s", exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), HEARTBEAT_EVERY)

    async def _watchdog(self, every: float) -> None:
        while not self.stop.is_set():
            sd_notify("WATCHDOG=1")
            await asyncio.sleep(every)

    async def _housekeeping(self) -> None:
        """Drop stored article text older than the retention, every ``prune_every`` seconds.

        The store works in its own threads, a batch per transaction, so neither
        the event loop nor a poll waiting to commit waits for a big prune. A
        failure is logged and retried after ``prune_retry`` seconds, forever:
        housekeeping never ends before the daemon does.
        """
        loop = asyncio.get_running_loop()
        while not self.stop.is_set():
            settings = self.app.config.settings
            now = datetime.now(UTC)
            cutoff = now - timedelta(seconds=settings.retention)
            # stories are needed for their window only (twice it: a reload may widen it)
            stories_before = now - timedelta(seconds=2 * settings.story_window)
            dropped = 0
            wait = self.prune_every
            try:
                for prune, before in (
                    (self.app.storage.prune, cutoff),
                    (self.app.storage.prune_stories, stories_before),
                    # entries, their matches and sent outbox rows; never an identity
                    # its feed still lists (it would be new again)
                    (self.app.storage.prune_history, cutoff),
                ):
                    while not self.stop.is_set():
                        started = loop.time()
                        n = await loop.run_in_executor(
                            self.app.db_threads, prune, before, PRUNE_BATCH
                        )
                        dropped += n if prune == self.app.storage.prune else 0
                        if n < PRUNE_BATCH:
                            break
                        # a backlog (the first month's entries all at once, a shorter
                        # retention) takes a quarter of the store's time at most
                        took = loop.time() - started
                        await asyncio.sleep(max(PRUNE_PAUSE, PRUNE_YIELD * took))
            except Exception as exc:
                log.error(
                    "pruning stored article text failed, trying again in %g s: %s",
                    self.prune_retry,
                    exc,
                )
                wait = self.prune_retry
            if dropped:
                log.info("dropped the stored text of %d articles older than the retention", dropped)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), wait)

    def _log_summary(self) -> None:
        """One INFO line of what happened since the last one (nothing: no line)."""
        now = asyncio.get_running_loop().time()
        seconds, self._summary_since = now - self._summary_since, now
        counts = self.app.activity.take()
        line = activity.summary(counts, seconds)
        if line:
            log.info("%s", line, extra=dict(counts))

    async def _summarize(self) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.stop.wait(), self.summary_every)
            if not self.stop.is_set():
                self._log_summary()

    async def _announce_schedule(self) -> None:
        """Say when the next polls are due: after a restart the schedule resumes, and
        the next poll may be most of an interval away."""
        now = datetime.now(UTC)
        try:
            times = await asyncio.get_running_loop().run_in_executor(
                self.app.db_threads, self.app.storage.due_times
            )
        except Exception as exc:
            log.warning("could not read when the feeds are due: %s", exc)
            return
        due = [(max(t.next_due or now, now), t.configured) for t in times if not t.paused]
        feeds = len(self.app.config.feeds)
        paused = f"; {feeds - len(due)} paused" if feeds > len(due) else ""
        if not due:
            log.info("no feed to poll%s", paused)
            return
        (first, url), (last, _) = min(due), max(due)
        spec = self.app.feed(url)
        soon = sum(1 for when, _ in due if when <= now + timedelta(minutes=1))
        log.info(
            "next poll: %s at %s (%s); %d of %d feeds due within a minute, all by %s%s",
            spec.label() if spec else url,
            first.isoformat(timespec="seconds"),
            "now"
            if first <= now + timedelta(seconds=1)
            else f"in {format_duration((first - now).total_seconds())}",
            soon,
            len(due),
            last.isoformat(timespec="seconds"),
            paused,
            extra={"next_poll": first.isoformat(timespec="seconds"), "due_within_a_minute": soon},
        )

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        loop.add_signal_handler(signal.SIGHUP, self.reload_requested.set)
        # First: a metrics address that can't be bound stops the start (MetricsError).
        self._serve_metrics(self.app.config.settings.metrics)
        try:
            return await self._run(loop)
        finally:
            if self.server is not None:
                self.server.close()
                self.server = None

    async def _run(self, loop: asyncio.AbstractEventLoop) -> int:
        store = self.app.storage
        store.set_meta("started", datetime.now(UTC).isoformat(timespec="seconds"))
        store.set_meta("config_error", None)
        await self._settle_outbox()
        await self._plan()
        self.scheduler.start()
        self._summary_since = loop.time()
        tasks = [
            asyncio.create_task(self.app.deliverer.run_forever(self.stop)),
            asyncio.create_task(self._watch_config()),
            asyncio.create_task(self._housekeeping()),
            asyncio.create_task(self._watch_outbox()),
            asyncio.create_task(self._summarize()),
            asyncio.create_task(self._beat()),
            asyncio.create_task(self._refresh_metrics()),
        ]
        if store.shared:
            tasks.append(asyncio.create_task(self._heartbeat()))
        every = watchdog_interval()
        if every:
            tasks.append(asyncio.create_task(self._watchdog(every)))
        config = self.app.config
        for warning in config.warnings:
            log.warning("%s", warning)
        log.info(
            "monitor running: %d feeds, %d rules, %d notifiers, database %s",
            len(config.feeds),
            len(config.rules),
            len(config.notifiers),
            shown_location(self.app.database),
        )
        await self._announce_schedule()
        # What start-up built lives as long as the daemon (the config's 100,000 feeds,
        # imported modules): out of the cyclic collector's reach, a full collection
        # walks only what polls allocate. (Garbage of the start-up is collected first.)
        gc.collect()
        gc.freeze()
        sd_notify(f"READY=1\nSTATUS=watching {len(config.feeds)} feeds")
        while not self.stop.is_set():
            waiters = [asyncio.ensure_future(e.wait()) for e in (self.stop, self.reload_requested)]
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            for w in waiters:
                w.cancel()
            if self.reload_requested.is_set() and not self.stop.is_set():
                self.reload_requested.clear()
                sd_notify("RELOADING=1")
                await self._reload()
                sd_notify("READY=1")
        return await self._shutdown(tasks)

    async def _shutdown(self, tasks: list[asyncio.Task[None]]) -> int:
        sd_notify("STOPPING=1")
        self.health.stopping()  # /healthz: 503 "stopping" until the server closes
        log.info("stopping: %d polls in flight", self.scheduler.busy)
        self.app.poller.stop()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE
        # The deliverer saw the stop too: it sends nothing new, and a send in
        # flight finishes and is recorded (bounded by the same grace).
        deliver, others = tasks[0], tasks[1:]
        for t in others:
            t.cancel()
        cancelled = await self.scheduler.shutdown(STOP_GRACE)
        if cancelled:
            log.warning(
                "%d polls did not finish within %g s and were cancelled (nothing of them"
                " was stored; they poll again after a restart)",
                len(cancelled),
                STOP_GRACE,
            )
            with contextlib.suppress(Exception):  # else their leases run out by themselves
                await loop.run_in_executor(
                    self.app.db_threads, self.app.storage.release_feeds, cancelled, self.app.owner
                )
        await asyncio.wait([deliver], timeout=max(0.0, deadline - loop.time()))
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._log_summary()  # the part of a minute since the last one
        await self.app.close()
        log.info("stopped")
        return 0


async def run_daemon(
    config: Config, env: Mapping[str, str], db: str | None, *, redactor: Redactor | None = None
) -> int:
    """Run until SIGTERM; returns the exit code. ``redactor`` is the log's (see cli)."""
    app = App(config, db=db, executor=process_pool(config))
    try:
        # one daemon per SQLite database; on PostgreSQL one instance among several
        app.storage.lock_for_daemon(app.owner)
    except Exception:
        await app.close()
        raise
    try:
        return await Daemon(app, env, redactor).run()
    except MetricsError:  # settings.metrics can't be bound: nothing started yet
        await app.close()
        raise
