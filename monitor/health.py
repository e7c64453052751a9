"""Is the daemon alive? The verdict ``/healthz`` gives, from heartbeats the event loop writes.

The metrics server answers from its own thread, so it can say that the event
loop is stuck (that is what a 503 is for). The loop writes two monotonic
timestamps: a beat every ``BEAT_EVERY`` seconds from a task of its own (the
loop turns), and the start of each scheduler tick (due feeds are claimed, so
polls happen). The server's thread reads them and ``judge`` decides: pure, the
time passed in, so a test gives it any clock.

- ``ok`` (200): the loop beat within ``LOOP_LATE`` s and the last tick started
  within ``TICK_LATE`` s of when it was due;
- ``starting`` (200): the scheduler has not ticked yet, for up to ``TICK_LATE`` s
  after start (settling the outbox and planning 100,000 feeds take a moment);
- ``stalled`` (503): either is late, with how late in ``reason``;
- ``stopping`` (503): SIGTERM arrived.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass

BEAT_EVERY = 1.0  # seconds between the event loop's beats
LOOP_LATE = 10.0  # seconds without a beat: the event loop is stuck
TICK_LATE = 30.0  # seconds a scheduler tick may be late: no feed is claimed meanwhile


class MetricsError(Exception):
    """The metrics server can't listen where ``settings.metrics`` says (the message says
    where and why)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``/healthz`` answers."""

    healthy: bool
    status: str  # ok, starting, stalled, stopping
    reason: str | None = None

    @property
    def code(self) -> int:
        return 200 if self.healthy else 503

    def body(self) -> bytes:
        out = {"status": self.status}
        if self.reason:
            out["reason"] = self.reason
        return json.dumps(out).encode() + b"\n"


def judge(
    now: float,
    *,
    started: float,
    beat: float,
    tick: float | None,
    tick_every: float,
    stopping: bool = False,
    loop_late: float = LOOP_LATE,
    tick_late: float = TICK_LATE,
) -> Verdict:
    """The verdict at ``now`` (monotonic seconds, like the rest): ``beat`` is the loop's
    last beat, ``tick`` the start of the last scheduler tick (None: none yet)."""
    if stopping:
        return Verdict(False, "stopping", "the daemon is stopping")
    stuck = now - beat
    if stuck > loop_late:
        return Verdict(False, "stalled", f"event loop stuck for {stuck:.0f} s")
    if tick is None:
        waited = now - started
        if waited > tick_late:
            return Verdict(False, "stalled", f"scheduler not started after {waited:.0f} s")
        return Verdict(True, "starting")
    late = now - tick - tick_every
    if late > tick_late:
        return Verdict(False, "stalled", f"scheduler tick {late:.0f} s late")
    return Verdict(True, "ok")


class Heartbeat:
    """The timestamps the event loop writes and the server's thread reads.

    Plain float attributes: one writer (the loop), readers that only need a
    recent value, so no lock.
    """

    def __init__(self, *, tick_every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.tick_every = tick_every
        self.started = clock()
        self.last_beat = self.started
        self.last_tick: float | None = None
        self.is_stopping = False

    def beat(self) -> None:
        """The event loop turned."""
        self.last_beat = self.clock()

    def ticked(self) -> None:
        """A scheduler tick started."""
        self.last_tick = self.clock()

    def stopping(self) -> None:
        self.is_stopping = True

    def verdict(self) -> Verdict:
        return judge(
            self.clock(),
            started=self.started,
            beat=self.last_beat,
            tick=self.last_tick,
            tick_every=self.tick_every,
            stopping=self.is_stopping,
        )
