"""APScheduler drives the polling: one ticking job claims the feeds that are due.

Which feed is due when lives in the store (``next_due``), not in memory: the
ticking job claims due feeds from the store in batches, each with a lease, and
hands them to the poller, as many as there are free poll slots. A feed leased
to a poll is not claimed again (by this process or another on the same
database) until the poll writes its state, which ends the lease, or the lease
runs out because the process died. Polls in flight renew their leases. A
restart resumes where the last run stopped; `monitor feeds pause/resume` and
`monitor poll --feed` beside a running daemon just write the store.

A poll runs as an asyncio task this scheduler owns: APScheduler's
``shutdown`` cancels the coroutines of running jobs at once, which would leave
no poll in flight for the daemon's grace period to wait for. ``shutdown``
here stops claiming, lets the polls in flight finish (they commit) for up to a
grace period, and only then cancels the rest.

APScheduler is imported where it is used: delivery (also in ``monitor poll``)
needs the digest helpers here, and only a digest needs APScheduler's cron
trigger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from monitor.storage.base import FeedState

if TYPE_CHECKING:
    from apscheduler.triggers.cron import CronTrigger

log = logging.getLogger("monitor.scheduler")

TICK = 0.25  # seconds between claims of due feeds (a finished poll claims at once too)
BATCH = 500  # feeds claimed at once at most
RENEW_EVERY = 5.0  # seconds between renewals of the leases of polls in flight

ClaimFn = Callable[[int], Awaitable[Sequence[FeedState]]]
PollFn = Callable[[FeedState], Awaitable[None]]
RenewFn = Callable[[Sequence[str]], Awaitable[None]]


class FeedScheduler:
    """Claims due feeds from the store and polls them, at most ``limit()`` at once."""

    def __init__(
        self,
        *,
        claim: ClaimFn,
        poll: PollFn,
        renew: RenewFn,
        limit: Callable[[], int],
        tick: float = TICK,
        on_tick: Callable[[], None] = lambda: None,
    ) -> None:
        self._claim_fn = claim
        self._on_tick = on_tick  # the health check's heartbeat: ticks happen
        self._poll = poll
        self._renew = renew
        self._limit = limit
        self._tick_every = tick
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        self._scheduler = AsyncIOScheduler(
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = False
        self._claiming = asyncio.Lock()
        self._ticks: set[asyncio.Task[None]] = set()  # claims the ticking job started
        self._backlog = False  # the last claim took all it asked for: more may be due
        self._renewed = 0.0

    def start(self) -> None:
        from apscheduler.triggers.interval import IntervalTrigger

        self._scheduler.add_job(
            self._fire,
            IntervalTrigger(seconds=self._tick_every),
            id="tick",
            name="claim due feeds",
        )
        self._scheduler.start()

    def add_job(self, fn: Callable[[], Awaitable[None]], trigger: object, name: str) -> None:
        """Another job on the same scheduler (cron-style housekeeping)."""
        self._scheduler.add_job(fn, trigger, id=name, name=name)

    @property
    def busy(self) -> int:
        """Polls in flight."""
        return len(self._tasks)

    def running(self, key: str) -> bool:
        """Whether the feed's poll is in flight here."""
        return key in self._tasks

    async def _fire(self) -> None:
        """The ticking job: starts a claim unless one is still running, and returns at
        once. (Were the claim the job, every tick that came while a slow claim waited
        for the store would be APScheduler's warning "maximum number of running
        instances reached", some 20 an hour at 100,000 feeds.)"""
        if self._stopping or self._claiming.locked():
            return
        task = asyncio.create_task(self.tick(), name="claim due feeds")
        self._ticks.add(task)
        task.add_done_callback(self._ticks.discard)

    async def tick(self) -> None:
        """Claim what is due (as many as there are free slots) and start those polls."""
        if self._stopping or self._claiming.locked():
            return
        self._on_tick()  # here: a claim that hangs (a stuck store) stops the heartbeat
        async with self._claiming:
            loop = asyncio.get_running_loop()
            if self._tasks and loop.time() - self._renewed >= RENEW_EVERY:
                self._renewed = loop.time()
                with contextlib.suppress(Exception):  # a lease runs out later, no harm now
                    await self._renew(list(self._tasks))
            while not self._stopping:
                free = min(self._limit() - len(self._tasks), BATCH)
                if free <= 0:
                    self._backlog = True
                    return
                try:
                    states = await self._claim_fn(free)
                except Exception as exc:  # the store is busy or broken: next tick
                    log.error("claiming due feeds failed: %s", exc)
                    return
                self._backlog = len(states) == free
                for state in states:
                    self._start(state)
                if not self._backlog:
                    return

    def _start(self, state: FeedState) -> None:
        key = state.key
        if key in self._tasks:  # can't happen with leases; never poll a feed twice at once
            return
        task = asyncio.create_task(self._run(state), name=f"poll {key}")
        self._tasks[key] = task
        task.add_done_callback(lambda _t: self._done(key))

    def _done(self, key: str) -> None:
        self._tasks.pop(key, None)
        if self._backlog and not self._stopping:  # a slot is free and more are due
            asyncio.get_running_loop().create_task(self.tick())

    async def _run(self, state: FeedState) -> None:
        try:
            await self._poll(state)
        except asyncio.CancelledError:
            # Shutdown cut the poll short after its grace; its transaction never
            # committed, so the next start polls the feed again. Not worth a traceback.
            log.info("poll of %s interrupted by shutdown", state.configured or state.key)
        except Exception:
            log.exception("poll of %s crashed", state.configured or state.key)

    async def shutdown(self, grace: float) -> list[str]:
        """Claim no more; give the polls in flight ``grace`` seconds, then cancel the rest.

        Returns the keys of the feeds whose polls were cancelled.
        """
        self._stopping = True
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
        if self._ticks:  # a claim in flight: its polls are polls in flight too
            _done, stuck = await asyncio.wait(set(self._ticks), timeout=grace)
            for task in stuck:  # a store that hangs: its leases run out
                task.cancel()
        tasks = dict(self._tasks)
        if not tasks:
            return []
        _done, pending = await asyncio.wait(tasks.values(), timeout=grace)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        return [key for key, task in tasks.items() if task in pending]


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
    from apscheduler.triggers.cron import CronTrigger

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
