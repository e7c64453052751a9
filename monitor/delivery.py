"""Delivery from the outbox: each target on its own, retried with backoff.

A row is marked sent only after the notifier accepted it. A crash between
the two sends that one message again on restart (at-least-once at the exact
moment of a crash); every other path sends it exactly once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

from monitor.notify import Sender
from monitor.storage.base import Delivery, Storage

log = logging.getLogger("monitor.deliver")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff: first retry after ``first``, doubling, capped at ``cap``."""

    first: float = 30.0
    cap: float = 3600.0
    give_up_after: float = 2 * 86400.0

    def next_attempt(self, delivery: Delivery, now: datetime) -> datetime | None:
        if (now - delivery.created).total_seconds() >= self.give_up_after:
            return None
        delay = min(self.first * 2 ** min(delivery.attempts, 30), self.cap)
        return now + timedelta(seconds=delay)


Targets = Mapping[tuple[str, str], tuple[str, Sender]]  # (notifier, target) -> (masked, sender)


class Deliverer:
    """Works the outbox: one worker thread per target so one slow target blocks no other."""

    def __init__(
        self,
        *,
        storage: Storage,
        targets: Callable[[], Targets],
        clock: Callable[[], datetime],
        retry: RetryPolicy | None = None,
        max_threads: int = 8,
    ) -> None:
        self._storage = storage
        self._targets = targets
        self._clock = clock
        self._retry = retry or RetryPolicy()
        self._threads = ThreadPoolExecutor(max_threads, thread_name_prefix="deliver")
        self.wake = asyncio.Event()

    async def run_once(self) -> int:
        """Send every due row once; returns how many were sent."""
        due = self._storage.due_deliveries(self._clock(), limit=500)
        groups: dict[tuple[str, str], list[Delivery]] = {}
        for d in due:
            groups.setdefault((d.notifier, d.target), []).append(d)
        targets = self._targets()
        counts = await asyncio.gather(
            *(self._send_group(key, rows, targets.get(key)) for key, rows in groups.items())
        )
        return sum(counts)

    async def _send_group(
        self, key: tuple[str, str], rows: list[Delivery], target: tuple[str, Sender] | None
    ) -> int:
        sent = 0
        loop = asyncio.get_running_loop()
        for d in rows:
            if target is None:
                self._storage.delivery_failed(
                    d.id, f"notifier {d.notifier!r} is no longer configured", None, self._clock()
                )
                log.warning("delivery=%d notifier=%r dropped: no longer configured", d.id, key[0])
                continue
            masked, sender = target
            try:
                error = await loop.run_in_executor(self._threads, sender.send, d.message)
            except Exception as exc:  # a sender must never take the loop down
                error = f"{type(exc).__name__}: {exc}"
            now = self._clock()
            if error is None:
                self._storage.delivered(d.id, now)
                sent += 1
                log.info("delivery=%d notifier=%r target=%s sent", d.id, d.notifier, masked)
                continue
            retry_at = self._retry.next_attempt(d, now)
            self._storage.delivery_failed(d.id, error, retry_at, now)
            log.warning(
                "delivery=%d notifier=%r target=%s attempt=%d error=%r next=%s",
                d.id,
                d.notifier,
                masked,
                d.attempts + 1,
                error,
                retry_at.isoformat(timespec="seconds") if retry_at else "gave up",
            )
            break  # keep this target's order; the rest wait for its next attempt
        return sent

    async def run_forever(self, stop: asyncio.Event, tick: float = 1.0) -> None:
        """Deliver until ``stop`` is set; wakes early when ``wake`` is set."""
        while not stop.is_set():
            self.wake.clear()
            try:
                await self.run_once()
            except Exception:
                log.exception("delivery round failed")
            waiters = [asyncio.ensure_future(e.wait()) for e in (stop, self.wake)]
            _done, pending = await asyncio.wait(
                waiters, timeout=tick, return_when=asyncio.FIRST_COMPLETED
            )
            for p in pending:
                p.cancel()

    def close(self) -> None:
        self._threads.shutdown(wait=False, cancel_futures=True)
