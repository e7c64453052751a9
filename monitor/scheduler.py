"""APScheduler drives the polling: one job per feed, at the due time the store holds.

Each feed's job is a one-shot date job; when a poll finishes, the pipeline's
decision (interval, jitter, backoff, Retry-After, ttl) becomes the feed's
next job. Job ids are feed keys, and a feed whose poll is still running is
not started again, so one feed is never polled twice at once; the due time
lives in the store, so a restart resumes where the last run stopped instead
of polling everything at once.

The job only *starts* the poll, as an asyncio task this scheduler owns:
APScheduler's ``shutdown`` cancels the coroutines of running jobs at once,
which would leave no poll in flight for the daemon's grace period to wait
for. ``shutdown`` here stops starting polls, lets the ones in flight finish
(they commit) for up to a grace period, and only then cancels the rest.
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
        self._scheduler = AsyncIOScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    def start(self) -> None:
        self._scheduler.start()

    def schedule(self, key: str, when: datetime) -> None:
        """(Re)schedule the feed's next poll (ignored once shutdown began)."""
        if self._stopping:
            return
        self._scheduler.add_job(
            self._start,
            trigger=DateTrigger(run_date=when),
            args=(key,),
            id=key,
            name=key,
            replace_existing=True,
        )

    def unschedule(self, key: str) -> None:
        """Stop polling a feed (removed from the config, or paused); a poll in flight finishes."""
        job = self._scheduler.get_job(key)
        if job is not None:
            job.remove()

    def keys(self) -> set[str]:
        """Feeds with a poll scheduled or in flight."""
        return {job.id for job in self._scheduler.get_jobs()} | self._tasks.keys()

    def next_run(self, key: str) -> datetime | None:
        """When the feed's next poll starts; None when none is scheduled."""
        job = self._scheduler.get_job(key)
        if job is None:
            return None
        # A job added before the scheduler started has no next_run_time yet.
        when: datetime | None = getattr(job, "next_run_time", None)
        return when

    def running(self, key: str) -> bool:
        """Whether the feed's poll is in flight."""
        return key in self._tasks

    @property
    def busy(self) -> int:
        """Polls in flight."""
        return len(self._tasks)

    async def _start(self, key: str) -> None:
        """The APScheduler job: start the poll as a task of our own and return at once."""
        if key in self._tasks or self._stopping:
            return  # still polling: that poll schedules the next one when it ends
        task = asyncio.create_task(self._run(key), name=f"poll {key}")
        self._tasks[key] = task
        task.add_done_callback(lambda _t: self._tasks.pop(key, None))

    async def _run(self, key: str) -> None:
        try:
            when = await self._poll(key)
        except asyncio.CancelledError:
            # Shutdown cut the poll short after its grace; its transaction never
            # committed, so the next start polls the feed again. Not worth a traceback.
            log.info("poll of %s interrupted by shutdown", key)
            return
        except Exception:
            log.exception("poll of %s crashed; retrying in a minute", key)
            when = datetime.now(UTC) + timedelta(minutes=1)
        if when is not None:
            self.schedule(key, when)

    async def shutdown(self, grace: float) -> int:
        """Start no more polls; give those in flight ``grace`` seconds, then cancel the rest.

        Returns how many polls were cancelled.
        """
        self._stopping = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        tasks = list(self._tasks.values())
        if not tasks:
            return 0
        _done, pending = await asyncio.wait(tasks, timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return len(pending)
