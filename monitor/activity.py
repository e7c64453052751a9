"""What the daemon did: the one recorder behind the summary a minute and the metrics.

At scale, one log line per poll is thousands a minute: those lines are at
DEBUG, and the daemon logs one INFO line a minute instead, made from these
counts. The events are taken where results already pass: ``App.poll_claimed``
(the outcome of each poll the scheduler runs), the deliverer (each message
sent or failed, each alert given up), the worker pool (a worker lost or
recycled) and the daemon (a config reload). ``Activity`` counts them for the
summary and hands each on to its sinks: with ``settings.metrics``, the
Prometheus metrics (``metrics.Metrics``), so both tell the same story.
Thread-safe: senders and pool threads report from their threads.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from monitor.types import AlertItem

if TYPE_CHECKING:
    from monitor.pipeline import PollOutcome

# The counters, in the order the summary names them.
COUNTERS = ("polls", "failed_polls", "new_entries", "matched", "messages_sent", "send_failures")


class Sink(Protocol):
    """Something that hears every event (the metrics). Called from any thread."""

    def polled(self, outcome: PollOutcome) -> None:
        """A poll the scheduler ran (not a paused feed skipped)."""

    def sent(
        self,
        notifier: str,
        rows: int,
        items: Sequence[AlertItem],
        error: str | None,
        at: datetime,
    ) -> None:
        """A message holding ``rows`` outbox rows (``items`` the alerts among them) was
        sent (``error`` None) or failed, at ``at``."""

    def given_up(self, notifier: str, rows: int) -> None:
        """Outbox rows given up after their last failed attempt (recorded)."""

    def worker_restarted(self, reason: str) -> None:
        """A worker process was lost (``crashed``) or replaced (``recycled``)."""

    def reloaded(self, ok: bool) -> None:
        """A config reload applied, or failed (the last good config runs on)."""


class Activity:
    """Counters since the last ``take``; every event also goes to the sinks attached."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._sinks: tuple[Sink, ...] = ()

    def attach(self, sink: Sink) -> None:
        """Hand every event from now on to ``sink`` as well."""
        self._sinks = (*self._sinks, sink)

    def detach(self, sink: Sink) -> None:
        self._sinks = tuple(s for s in self._sinks if s is not sink)

    def add(self, **counts: int) -> None:
        with self._lock:
            self._counts.update(counts)

    def polled(self, outcome: PollOutcome) -> None:
        """One poll the scheduler ran, with its new entries and the entries that matched."""
        self.add(
            polls=1,
            failed_polls=int(outcome.error is not None),
            new_entries=outcome.new,
            matched=len(outcome.alerts),
        )
        for sink in self._sinks:
            sink.polled(outcome)

    def sent(
        self,
        notifier: str,
        rows: int,
        items: Sequence[AlertItem],
        error: str | None,
        at: datetime,
    ) -> None:
        """One message (however many alerts it holds, it counts once in the summary)."""
        self.add(**({"messages_sent": 1} if error is None else {"send_failures": 1}))
        for sink in self._sinks:
            sink.sent(notifier, rows, items, error, at)

    def given_up(self, notifier: str, rows: int) -> None:
        for sink in self._sinks:
            sink.given_up(notifier, rows)

    def worker_restarted(self, reason: str) -> None:
        for sink in self._sinks:
            sink.worker_restarted(reason)

    def reloaded(self, ok: bool) -> None:
        for sink in self._sinks:
            sink.reloaded(ok)

    def take(self) -> dict[str, int]:
        """The counts since the last call (every counter, zeros included), and start again."""
        with self._lock:
            counts, self._counts = self._counts, Counter()
        return {name: counts[name] for name in COUNTERS}


def summary(counts: dict[str, int], seconds: float = 60.0) -> str | None:
    """The summary line of ``take``'s counts over ``seconds``; None when nothing happened."""
    if not any(counts.values()):
        return None
    span = "the last minute" if 55 <= seconds <= 65 else f"the last {max(1, round(seconds))} s"
    failed = f" ({counts['failed_polls']} failed)" if counts["failed_polls"] else ""
    line = (
        f"in {span}: {counts['polls']} polls{failed}, {counts['new_entries']} new entries, "
        f"{counts['matched']} matched; {counts['messages_sent']} messages sent"
    )
    if counts["send_failures"]:
        line += f", {counts['send_failures']} sends failed"
    return line
