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
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger

log = logging.getLogger("monitor.scheduler")

PollFn = Callable[[str], Awaitable[datetime | None]]


class FeedScheduler:
    """Runs ``poll(key)`` for each feed when it is due; poll returns the next due time."""

    def __init__(self, poll: PollFn) -> None:
        self._poll = poll
        # A job only starts its poll as a task and ends at once, so the poll's next
        # job (scheduled when the poll ends, maybe overdue already) is never skipped
        # by APScheduler as a second instance of a job still running (issue 10).
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


# -- digests ----------------------------------------------------------------------

_DAILY = re.compile(r"^\s*daily\s+(\d{1,2}):(\d{2})\s*$", re.IGNORECASE)
_WEEKLY = re.compile(r"^\s*weekly\s+([a-z]+)\s+(\d{1,2}):(\d{2})\s*$", re.IGNORECASE)
_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def digest_zone(name: str | None) -> tzinfo:
    """A notifier's timezone: the one named, else the system's."""
    if name:
        return ZoneInfo(name)
    local = datetime.now().astimezone().tzinfo
    return local if local is not None else UTC


def digest_trigger(spec: str, timezone: str | None) -> CronTrigger:
    """The schedule of a notifier's ``digest:``: ``daily 08:00``, ``weekly mon 08:00``,
    or a cron expression (five fields, APScheduler's cron trigger). ValueError, with
    a message fit for a config error, for anything else."""
    tz = digest_zone(timezone)
    if m := _DAILY.match(spec):
        hour, minute = int(m[1]), int(m[2])
        if hour > 23 or minute > 59:
            raise ValueError(f"no such time of day in {spec!r}")
        return CronTrigger(hour=hour, minute=minute, timezone=tz)
    if m := _WEEKLY.match(spec):
        day, hour, minute = m[1].lower()[:3], int(m[2]), int(m[3])
        if day not in _DAYS or not m[1].lower().startswith(day):
            raise ValueError(f"no such day {m[1]!r} (mon, tue, wed, thu, fri, sat, sun)")
        if hour > 23 or minute > 59:
            raise ValueError(f"no such time of day in {spec!r}")
        return CronTrigger(day_of_week=day, hour=hour, minute=minute, timezone=tz)
    if len(spec.split()) == 5:
        try:
            return CronTrigger.from_crontab(spec, timezone=tz)
        except ValueError as exc:
            raise ValueError(f"not a cron expression: {exc}") from None
    raise ValueError(
        f"expected 'daily HH:MM', 'weekly DAY HH:MM' or a cron expression, got {spec!r}"
    )


def digest_name(spec: str) -> str:
    """How a digest's messages call it."""
    word = spec.strip().split(maxsplit=1)[0].lower() if spec.strip() else ""
    return {"daily": "Daily digest", "weekly": "Weekly digest"}.get(word, "Digest")


def next_fire(trigger: CronTrigger, after: datetime) -> datetime:
    """The first time the schedule fires after ``after``."""
    when = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    if when is None:  # a cron expression that never fires again
        return after + timedelta(days=36500)
    result: datetime = when
    return result
