"""Delivery from the outbox: every target on its own sender loop.

A target is one URL of one notifier, named by the notifier and the URL's
position (a reload that changes the URL, e.g. a rotated secret, keeps the
rows: they go to the URL in force). Each target has its own loop, its own
backoff and its own queue in the outbox, so a target that is slow (apprise
spaces emails 5.5 s apart) or down holds up no other, and a target that is
down is tried once per backoff step, not on every tick.

Per row, in order: claim it (with an expiry, so two processes never send the
same row), send it, record the outcome. A row is marked sent only after the
notifier accepted it. Two cases send a message twice, both at-least-once by
design: the process dies between the notifier accepting a message and the
outcome being recorded; or the notifier took longer than our stop grace at
shutdown. When recording fails (database locked, disk full), the target
sends nothing more until the outcome is recorded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from functools import partial
from typing import Any, TypeVar

from monitor.activity import Sink
from monitor.config import NotifierSpec
from monitor.notify import Sender
from monitor.render import (
    UTC,
    Rendered,
    compile_template,
    render_group,
    render_legacy,
    render_notice,
)
from monitor.scheduler import digest_name, digest_trigger, digest_zone, next_fire
from monitor.storage.base import Delivery, Storage
from monitor.types import AlertItem, Message, Notice

log = logging.getLogger("monitor.deliver")
T = TypeVar("T")

Key = tuple[str, int]  # (notifier, the URL's position)


@dataclass(frozen=True, slots=True)
class Target:
    """One URL of one notifier: how it is shown, its sender, its notifier's policies."""

    masked: str
    sender: Sender
    policy: NotifierSpec | None = None  # None: no policies (the console)


Targets = Mapping[Key, Target]

CLAIM_BATCH = 500  # rows a target claims at once: a burst goes out as one message (or a few)
CLAIM_LEASE = 600.0  # seconds a claim holds: far longer than sending a batch
IDLE_CHECK = 2.0  # seconds between looks at the outbox of an idle target
RECORD_RETRY_CAP = 30.0  # seconds between tries to record an outcome
SWEEP_EVERY = 60.0  # seconds between looks for claims of dead processes


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: first retry after ``first``, doubling, capped at ``cap``.

    A target that fails waits ``delay(n)`` after its n-th failure in a row
    before it sends again. The row that failed waits one step longer, so a
    row the target refuses for its own sake (too large, say) can't hold up
    the rows behind it: when the target sends the next one fine, it is well.
    """

    first: float = 30.0
    cap: float = 3600.0
    give_up_after: float = 2 * 86400.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure in a row (>= 1)."""
        return float(min(self.first * 2.0 ** min(max(failures, 1) - 1, 30), self.cap))

    def next_attempt(self, delivery: Delivery, now: datetime) -> datetime | None:
        """When the row is tried again after this failure; None: give it up."""
        if (now - delivery.created).total_seconds() >= self.give_up_after:
            return None
        return now + timedelta(seconds=self.delay(delivery.attempts + 2))


def process_owner() -> str:
    """Who claims rows: host, pid and the process's start time (pids get reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}"


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return "?"


def owner_is_dead(owner: str) -> bool:
    """Whether a claim's owner is a process of this host that no longer runs."""
    host, _, rest = owner.partition(":")
    pid, _, ticks = rest.partition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another host's: its claims run out by themselves
    return ticks == "?" or _start_ticks(int(pid)) != ticks


# -- policies (pure) ------------------------------------------------------------


def quiet_until(now: datetime, quiet: tuple[int, int], tz: tzinfo) -> datetime | None:
    """The end of the quiet period ``now`` is in, or None when it is in none.

    ``quiet`` is (start, end) in minutes after midnight, local to ``tz``; an end
    before the start spans midnight (22:00-07:00).
    """
    local = now.astimezone(tz)
    minute = local.hour * 60 + local.minute
    start, end = quiet
    if start < end:
        inside, end_day = start <= minute < end, local.date()
    elif minute >= start:
        inside, end_day = True, local.date() + timedelta(days=1)
    else:
        inside, end_day = minute < end, local.date()
    if not inside:
        return None
    return datetime.combine(end_day, time(end // 60, end % 60), tzinfo=tz)


def hour_start(now: datetime, tz: tzinfo) -> datetime:
    """The start of the clock hour ``now`` is in, local to ``tz``."""
    return now.astimezone(tz).replace(minute=0, second=0, microsecond=0)


def _slot(key: Key, fire: datetime) -> str:
    """The once-only job of one digest firing for one target (``Storage.claim_slot``)."""
    return f"digest:{key[0]}#{key[1]}@{fire.astimezone(UTC).isoformat()}"


def _ids(rows: Sequence[Delivery]) -> str:
    return ",".join(str(d.id) for d in rows)


@dataclass
class _Target:
    """What the loop of one target remembers."""

    failures: int = 0  # failed sends in a row
    blocked_until: datetime | None = None
    unrecorded: list[tuple[list[Delivery], str | None, datetime]] = field(default_factory=list)
    record_failures: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sending: bool = False
    last_send: datetime | None = None
    # ((digest spec, timezone), its trigger, the next time it fires)
    digest: tuple[tuple[str, str | None], Any, datetime] | None = None


class Deliverer:
    """Works the outbox: one sender loop per target (see the module docstring)."""

    def __init__(
        self,
        *,
        storage: Storage,
        targets: Callable[[], Targets],
        clock: Callable[[], datetime],
        retry: RetryPolicy | None = None,
        db: Executor | None = None,
        owner: str | None = None,
        idle_check: float = IDLE_CHECK,
        max_threads: int = 16,
        admin: Callable[[], tuple[str, int] | None] = lambda: None,
        activity: Sink | None = None,
    ) -> None:
        self._storage = storage
        self._activity = activity  # hears of every message sent or failed, every row given up
        self._targets = targets
        self._admin = admin  # the operator's notifier and its number of URLs
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._db = db
        self.owner = owner or process_owner()
        self._idle_check = idle_check
        self._threads = ThreadPoolExecutor(max_threads, thread_name_prefix="deliver")
        self._state: dict[Key, _Target] = {}
        self._stop = asyncio.Event()

    # -- helpers --

    async def _store(self, fn: Callable[..., T], *args: Any) -> T:
        if self._db is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    def _target(self, key: Key) -> _Target:
        state = self._state.get(key)
        if state is None:
            state = self._state[key] = _Target()
        return state

    def wake(self) -> None:
        """New rows are in the outbox: every idle target looks now."""
        for state in self._state.values():
            state.wake.set()

    def reset_backoff(self) -> None:
        """The config was reloaded (a URL or secret may be fixed): targets try again now."""
        for state in self._state.values():
            state.failures = 0
            state.blocked_until = None
            state.wake.set()

    async def _pause(self, state: _Target, seconds: float) -> None:
        """Sleep up to ``seconds``; a wake (since the last look) or a stop ends it early."""
        waiters = [asyncio.ensure_future(e.wait()) for e in (self._stop, state.wake)]
        try:
            await asyncio.wait(
                waiters, timeout=max(0.0, seconds), return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for w in waiters:
                w.cancel()

    # -- one target --

    async def _record(self, key: Key, state: _Target) -> bool:
        """Record the outcomes still held in memory; False while the store refuses."""
        while state.unrecorded:
            rows, error, at = state.unrecorded[0]
            ids = [d.id for d in rows]
            try:
                if error is None:
                    await self._store(self._storage.delivered, ids, at)
                else:
                    failures = [(d.id, self._retry.next_attempt(d, at)) for d in rows]
                    given_up = [d for d, (_i, nxt) in zip(rows, failures, strict=True) if not nxt]
                    notices = self._given_up(given_up, error)
                    await self._store(self._storage.delivery_failed, failures, error, at, notices)
                    if given_up and self._activity is not None:
                        self._activity.given_up(key[0], len(given_up))
            except Exception as exc:
                state.record_failures += 1
                if state.record_failures == 1:
                    log.error(
                        "delivery=%s notifier=%r could not record that it was %s: %s;"
                        " nothing more goes to this target until it is recorded",
                        _ids(rows),
                        key[0],
                        "sent" if error is None else "not sent",
                        exc,
                    )
                return False
            if state.record_failures:
                log.info("delivery=%s notifier=%r outcome recorded after all", _ids(rows), key[0])
            state.record_failures = 0
            state.unrecorded.pop(0)
        return True

    def _given_up(self, rows: Sequence[Delivery], error: str) -> list[tuple[str, int, Notice]]:
        """Operator notices for alerts given up (never for a notice itself: no loops)."""
        admin = self._admin()
        if admin is None:
            return []
        out = []
        for d in rows:
            if isinstance(d.payload, AlertItem):
                title = d.payload.title or d.payload.link or "(untitled)"
                text = (
                    f"The alert {title!r} ({d.payload.link or 'no link'}) to notifier "
                    f"{d.notifier!r} was given up after {d.attempts + 1} attempts over "
                    f"{self._retry.give_up_after / 3600:g} hours. Last error: {error}. "
                    f"`monitor outbox retry {d.id}` sends it again."
                )
                out.append(
                    (admin[0], admin[1], Notice("delivery_given_up", "alert given up", text))
                )
        return out

    async def _send(
        self,
        key: Key,
        state: _Target,
        target: Target,
        message: Rendered,
        rows: Sequence[Delivery],
        items: Sequence[AlertItem],
    ) -> bool:
        """Send one message (holding ``rows``) and record the outcome; False when it failed."""
        loop = asyncio.get_running_loop()
        state.sending = True
        try:
            # Not cancellable: the thread sends whatever happens to this task,
            # and shutdown waits for it (see run_forever) so it gets recorded.
            error = await asyncio.shield(
                loop.run_in_executor(self._threads, target.sender.send, message, items)
            )
        except asyncio.CancelledError:
            log.warning(
                "delivery=%s notifier=%r target=%s abandoned at shutdown while sending;"
                " it is sent again after the restart",
                _ids(rows),
                key[0],
                target.masked,
            )
            raise
        except Exception as exc:  # a sender must never take the loop down
            error = f"{type(exc).__name__}: {exc}"
        finally:
            state.sending = False
        now = self._clock()
        state.last_send = now
        if self._activity is not None:
            self._activity.sent(key[0], len(rows), items, error, now)
        state.unrecorded.append((list(rows), error, now))
        await self._record(key, state)
        if error is None:
            state.failures = 0
            log.info(
                "delivery=%s notifier=%r target=%s sent%s",
                _ids(rows),
                key[0],
                target.masked,
                f" ({len(rows)} alerts in one message)" if len(rows) > 1 else "",
            )
            return True
        state.failures += 1
        state.blocked_until = now + timedelta(seconds=self._retry.delay(state.failures))
        retry_at = self._retry.next_attempt(rows[0], now)
        log.warning(
            "delivery=%s notifier=%r target=%s attempt=%d error=%r next=%s target_retry=%s",
            _ids(rows),
            key[0],
            target.masked,
            rows[0].attempts + 1,
            error,
            retry_at.isoformat(timespec="seconds") if retry_at else "gave up",
            state.blocked_until.isoformat(timespec="seconds"),
        )
        return False

    async def _hold(
        self, key: Key, state: _Target, spec: NotifierSpec | None, now: datetime
    ) -> tuple[datetime | None, tuple[str, datetime] | None]:
        """Until when this target holds ordinary alerts (None: it doesn't), and the
        digest to send now (its name and the time it was due), if one is due."""
        if spec is None:
            return None, None
        tz = digest_zone(spec.timezone)
        if spec.digest:
            if state.digest is None or state.digest[0] != (spec.digest, spec.timezone):
                trigger = digest_trigger(spec.digest, spec.timezone)
                meta_key = f"digest:{key[0]}#{key[1]}"
                last = (await self._store(self._storage.meta)).get(meta_key)
                if last is None:  # the first look: the next digest is the next one due
                    last = now.isoformat()
                    await self._store(self._storage.set_meta, meta_key, last)
                fire = next_fire(trigger, datetime.fromisoformat(last))
                state.digest = ((spec.digest, spec.timezone), trigger, fire)
            fire = state.digest[2]
            if now < fire:
                return fire, None
            return None, (digest_name(spec.digest), fire)
        if spec.quiet_hours and (until := quiet_until(now, spec.quiet_hours, tz)):
            return until, None
        if spec.max_per_hour:
            start = hour_start(now, tz)
            sent = await self._store(self._storage.sends_since, key[0], key[1], start)
            if sent >= spec.max_per_hour:
                return start + timedelta(hours=1), None
        return None, None

    async def _digest_sent(self, key: Key, state: _Target, fire: datetime) -> None:
        """A digest's time has been dealt with: remember it, and when the next one is."""
        await self._store(self._storage.finish_slot, _slot(key, fire), self.owner)
        await self._store(self._storage.set_meta, f"digest:{key[0]}#{key[1]}", fire.isoformat())
        if state.digest is not None:
            spec, trigger, _ = state.digest
            state.digest = (spec, trigger, next_fire(trigger, fire))

    def _messages(
        self,
        target: Target,
        rows: Sequence[Delivery],
        digest: str | None,
        also: Mapping[int, Sequence[str]],
    ) -> list[tuple[Rendered, list[Delivery], list[AlertItem]]]:
        """The messages that carry ``rows`` to one target (alerts grouped, each
        notice and each row an earlier version rendered on its own)."""
        sender, spec = target.sender, target.policy
        fmt = sender.format
        out: list[tuple[Rendered, list[Delivery], list[AlertItem]]] = []
        alerts = [d for d in rows if isinstance(d.payload, AlertItem)]
        if digest:  # grouped by rules: keep the rows in the order the digest lists them
            alerts.sort(key=lambda d: d.payload.rules if isinstance(d.payload, AlertItem) else ())
        items = [d.payload for d in alerts if isinstance(d.payload, AlertItem)]
        for d in rows:
            if isinstance(d.payload, Notice):
                out.append((render_notice(d.payload, fmt), [d], []))
            elif isinstance(d.payload, Message):
                out.append((render_legacy(d.payload, fmt), [d], []))
        if items:
            tz = digest_zone(spec.timezone) if spec else UTC
            template = compile_template(spec.template, fmt) if spec and spec.template else None
            try:
                messages = render_group(
                    items,
                    fmt,
                    digest=digest,
                    also=also,
                    max_body=sender.max_body,
                    tz=tz,
                    template=template,
                )
            except Exception as exc:  # the template failed on these items: ours stands in
                log.error("notifier=%r template failed (%s); sent without it", target.masked, exc)
                messages = render_group(
                    items, fmt, digest=digest, also=also, max_body=sender.max_body, tz=tz
                )
            start = 0
            for message in messages:
                end = start + message.count
                out.append((message, alerts[start:end], items[start:end]))
                start = end
        return out

    async def _step(self, key: Key, state: _Target, limit: int) -> tuple[int, float | None]:
        """Claim and send what is due for one target.

        Returns (rows sent, seconds until this target should look again; None
        when it is idle).
        """
        if state.unrecorded and not await self._record(key, state):
            return 0, min(2.0**state.record_failures, RECORD_RETRY_CAP)
        now = self._clock()
        if state.blocked_until is not None and now < state.blocked_until:
            return 0, (state.blocked_until - now).total_seconds()
        target = self._targets().get(key)
        if target is None:
            return 0, None
        if state.last_send is not None and target.sender.min_interval:
            # apprise would sleep this long in the send; wait here instead, so what
            # queues meanwhile goes out in the same message
            ready = state.last_send + timedelta(seconds=target.sender.min_interval)
            if now < ready:
                return 0, (ready - now).total_seconds()
        hold, digest = await self._hold(key, state, target.policy, now)
        until = now + timedelta(seconds=CLAIM_LEASE)
        if digest is not None:
            # A digest is sent once, by one process, however many share the store.
            claim = await self._store(
                self._storage.claim_slot, _slot(key, digest[1]), self.owner, now, until
            )
            if claim == "done":  # another process sent it
                await self._digest_sent(key, state, digest[1])
                return 0, 0.0
            if claim == "taken":  # another process is sending it now
                return 0, self._idle_check
        rows = await self._store(
            partial(self._storage.claim_deliveries, priority_only=hold is not None),
            key[0],
            key[1],
            now,
            self.owner,
            until,
            limit,
        )
        if not rows:
            if digest is not None:
                await self._digest_sent(key, state, digest[1])
                return 0, 0.0
            return 0, (hold - now).total_seconds() if hold else None
        sent = 0
        # the outlets whose copies of these stories were folded in (a digest lists them)
        entries = [d.payload.entry for d in rows if isinstance(d.payload, AlertItem)]
        also = await self._store(self._storage.also_reported, entries) if entries else {}
        messages = self._messages(target, rows, digest[0] if digest else None, also)
        for i, (message, batch, items) in enumerate(messages):
            if self._stop.is_set() or not await self._send(
                key, state, target, message, batch, items
            ):
                rest = [
                    d.id
                    for _m, b, _it in messages[i + (0 if self._stop.is_set() else 1) :]
                    for d in b
                ]
                if rest:
                    await self._store(self._storage.release_claims, rest, self.owner)
                return sent, 0.0 if self._stop.is_set() else None
            sent += len(batch)
        if digest is not None and len(rows) < limit:
            await self._digest_sent(key, state, digest[1])
        return sent, (0.0 if len(rows) == limit else None)

    async def _serve(self, key: Key) -> None:
        state = self._target(key)
        while not self._stop.is_set() and key in self._targets():
            state.wake.clear()  # before looking: a wake while we look is not lost
            try:
                _sent, wait = await self._step(key, state, CLAIM_BATCH)
            except asyncio.CancelledError:
                raise
            except Exception:  # the store failed to claim: look again later
                log.exception("notifier=%r target #%d: delivery step failed", key[0], key[1] + 1)
                wait = self._idle_check * 5
            if wait is None:
                wait = self._idle_check
            if wait > 0:
                await self._pause(state, wait)
        if not state.unrecorded:  # else kept for the last try at the end
            self._state.pop(key, None)

    # -- the loops --

    async def run_forever(self, stop: asyncio.Event) -> None:
        """Run one loop per configured target until ``stop``; a send in flight then
        finishes and is recorded before this returns (cancel it to abandon that)."""
        self._stop = stop
        loops: dict[Key, asyncio.Task[None]] = {}
        swept = 0.0
        loop = asyncio.get_running_loop()
        try:
            while not stop.is_set():
                if not swept or loop.time() - swept > SWEEP_EVERY:
                    swept = loop.time()
                    await self._sweep()
                for key in self._targets():
                    if key not in loops or loops[key].done():
                        loops[key] = asyncio.create_task(self._serve(key), name=f"deliver {key}")
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._idle_check)
            self.wake()
            await asyncio.gather(*loops.values(), return_exceptions=True)
        finally:
            for task in loops.values():
                task.cancel()
            await asyncio.gather(*loops.values(), return_exceptions=True)
            await self._record_all()

    async def _sweep(self) -> None:
        """Free the claims of processes of this host that died (a killed `monitor poll`)."""
        try:
            owners = await self._store(self._storage.claim_owners)
            for owner in owners:
                if owner != self.owner and owner_is_dead(owner):
                    await self._store(self._storage.release_owner, owner)
        except Exception as exc:
            log.warning("could not look for claims of dead processes: %s", exc)

    async def _record_all(self) -> None:
        """At the end: one last try at outcomes not recorded yet."""
        for key, state in list(self._state.items()):
            if state.unrecorded and not await self._record(key, state):
                for rows, error, _at in state.unrecorded:
                    log.error(
                        "delivery=%s notifier=%r: could not record that it was %s;"
                        " it is sent again after the restart",
                        _ids(rows),
                        key[0],
                        "sent" if error is None else "not sent",
                    )

    async def run_once(self, keys: Sequence[Key] | None = None) -> int:
        """Send every row due now, each target on its own; returns how many were sent."""
        stop = asyncio.Event()
        self._stop = stop

        async def drain(key: Key) -> int:
            state = self._target(key)
            total = 0
            while True:
                sent, wait = await self._step(key, state, CLAIM_BATCH)
                total += sent
                if wait != 0.0 or state.unrecorded:
                    return total

        wanted = list(self._targets()) if keys is None else list(keys)
        try:
            counts = await asyncio.gather(*(drain(k) for k in wanted))
        finally:
            await self._record_all()
        return sum(counts)

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
