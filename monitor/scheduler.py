"""APScheduler drives the polling: one job per feed, at the due time the store holds.

Each feed's job is a one-shot date job; when a poll finishes, the pipeline's
decision (interval, jitter, backoff, Retry-After, ttl) becomes the feed's
next job. Job ids are feed keys, and ``_running`` keeps one feed from being
polled twice at once; the due time lives in the store, so a restart resumes
where the last run stopped instead of polling everything at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.date import DateTrigger

log = logging.getLogger("monitor.scheduler")

PollFn = Callable[[str], Awaitable[datetime | None]]


class FeedScheduler:
    """Runs ``poll(key)`` for each feed when it is due; poll returns the next due time."""

    def __init__(self, poll: PollFn) -> None:
        self._poll = poll
        # max_instances 2, not 1: a poll schedules its feed's next job before its
        # own job has ended in APScheduler's count. When that next job is due
        # already (the poll took longer than the interval, e.g. waiting for busy
        # workers), APScheduler would skip it as a second instance and, it being a
        # one-shot job, drop it: the feed was never polled again (issue 10).
        self._scheduler = AsyncIOScheduler(
            job_defaults={"coalesce": True, "max_instances": 2, "misfire_grace_time": None}
        )
        self._running: set[str] = set()

    def start(self) -> None:
        self._scheduler.start()

    def schedule(self, key: str, when: datetime) -> None:
        """(Re)schedule the feed's next poll."""
        self._scheduler.add_job(
            self._run,
            trigger=DateTrigger(run_date=when),
            args=(key,),
            id=key,
            name=key,
            replace_existing=True,
        )

    def unschedule(self, key: str) -> None:
        """Stop polling a feed (removed from the config, or gone)."""
        job = self._scheduler.get_job(key)
        if job is not None:
            job.remove()

    def keys(self) -> set[str]:
        return {job.id for job in self._scheduler.get_jobs()} | self._running

    @property
    def busy(self) -> int:
        """Polls in flight."""
        return len(self._running)

    async def _run(self, key: str) -> None:
        if key in self._running:
            return
        self._running.add(key)
        try:
            when = await self._poll(key)
        except asyncio.CancelledError:
            # Shutdown cut the poll short; its transaction never committed, so
            # the next start polls the feed again. Not an error worth a traceback.
            log.info("poll of %s interrupted by shutdown", key)
            return
        except Exception:
            log.exception("poll of %s crashed; retrying in a minute", key)
            when = datetime.now(UTC) + timedelta(minutes=1)
        finally:
            self._running.discard(key)
        if when is not None:
            self.schedule(key, when)

    def shutdown(self) -> None:
        """Stop starting polls; polls in flight are the daemon's to finish."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
