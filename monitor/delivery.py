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
from datetime import datetime, timedelta
from typing import Any, TypeVar

from monitor.notify import Sender
from monitor.storage.base import Delivery, Storage

log = logging.getLogger("monitor.deliver")
T = TypeVar("T")

Key = tuple[str, int]  # (notifier, the URL's position)
Targets = Mapping[Key, tuple[str, Sender]]  # -> (masked URL, sender)

CLAIM_BATCH = 20  # rows a target claims at once
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


@dataclass
class _Target:
    """What the loop of one target remembers."""

    failures: int = 0  # failed sends in a row
    blocked_until: datetime | None = None
    unrecorded: list[tuple[Delivery, str | None, datetime]] = field(default_factory=list)
    record_failures: int = 0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    sending: bool = False


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
    ) -> None:
        self._storage = storage
        self._targets = targets
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
            d, error, at = state.unrecorded[0]
            try:
                if error is None:
                    await self._store(self._storage.delivered, d.id, at)
                else:
                    retry_at = self._retry.next_attempt(d, at)
                    await self._store(self._storage.delivery_failed, d.id, error, retry_at, at)
            except Exception as exc:
                state.record_failures += 1
                if state.record_failures == 1:
                    log.error(
                        "delivery=%d notifier=%r could not record that it was %s: %s;"
                        " nothing more goes to this target until it is recorded",
                        d.id,
                        key[0],
                        "sent" if error is None else "not sent",
                        exc,
                    )
                return False
            if state.record_failures:
                log.info("delivery=%d notifier=%r outcome recorded after all", d.id, key[0])
            state.record_failures = 0
            state.unrecorded.pop(0)
        return True

    async def _send(self, key: Key, state: _Target, d: Delivery) -> bool:
        """Send one claimed row and record the outcome; False when the target failed."""
        target = self._targets().get(key)
        if target is None:  # removed by a reload while claimed: give it back
            await self._store(self._storage.release_claims, [d.id], self.owner)
            return False
        masked, sender = target
        loop = asyncio.get_running_loop()
        state.sending = True
        try:
            # Not cancellable: the thread sends whatever happens to this task,
            # and shutdown waits for it (see run_forever) so it gets recorded.
            error = await asyncio.shield(
                loop.run_in_executor(self._threads, sender.send, d.message)
            )
        except asyncio.CancelledError:
            log.warning(
                "delivery=%d notifier=%r target=%s abandoned at shutdown while sending;"
                " it is sent again after the restart",
                d.id,
                d.notifier,
                masked,
            )
            raise
        except Exception as exc:  # a sender must never take the loop down
            error = f"{type(exc).__name__}: {exc}"
        finally:
            state.sending = False
        now = self._clock()
        state.unrecorded.append((d, error, now))
        await self._record(key, state)
        if error is None:
            state.failures = 0
            log.info("delivery=%d notifier=%r target=%s sent", d.id, d.notifier, masked)
            return True
        state.failures += 1
        delay = self._retry.delay(state.failures)
        state.blocked_until = now + timedelta(seconds=delay)
        retry_at = self._retry.next_attempt(d, now)
        log.warning(
            "delivery=%d notifier=%r target=%s attempt=%d error=%r next=%s target_retry=%s",
            d.id,
            d.notifier,
            masked,
            d.attempts + 1,
            error,
            retry_at.isoformat(timespec="seconds") if retry_at else "gave up",
            state.blocked_until.isoformat(timespec="seconds"),
        )
        return False

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
        until = now + timedelta(seconds=CLAIM_LEASE)
        rows = await self._store(
            self._storage.claim_deliveries, key[0], key[1], now, self.owner, until, limit
        )
        sent = 0
        for i, d in enumerate(rows):
            if self._stop.is_set() or not await self._send(key, state, d):
                rest = [r.id for r in rows[i + 1 :]]
                if rest:
                    await self._store(self._storage.release_claims, rest, self.owner)
                return sent, 0.0 if self._stop.is_set() else None
            sent += 1
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
                for d, error, _at in state.unrecorded:
                    log.error(
                        "delivery=%d notifier=%r: could not record that it was %s;"
                        " it is sent again after the restart",
                        d.id,
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
