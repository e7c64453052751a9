"""What the daemon did lately, for its one-line summary a minute (and later metrics).

At scale, one log line per poll is thousands a minute: those lines are at
DEBUG, and the daemon logs one INFO line a minute instead, made from these
counts. They are taken where results already pass: ``App.poll`` (the
outcome of each poll the scheduler runs) and a wrapper around each target's
sender (``counted``), so the pipeline and the deliverer need no hook.
Thread-safe: senders run in threads.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Sequence

from monitor.notify import Sender
from monitor.render import Format, Rendered
from monitor.types import AlertItem

# The counters, in the order the summary names them.
COUNTERS = ("polls", "failed_polls", "new_entries", "matched", "messages_sent", "send_failures")


class Activity:
    """Counters since the last ``take``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, **counts: int) -> None:
        with self._lock:
            self._counts.update(counts)

    def poll(self, *, new: int, matched: int, failed: bool) -> None:
        """One poll the scheduler ran, with its new entries and the entries that matched."""
        self.add(polls=1, failed_polls=int(failed), new_entries=new, matched=matched)

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


class Counted:
    """A sender whose sends are counted (a message holding several alerts counts once)."""

    def __init__(self, sender: Sender, activity: Activity) -> None:
        self.sender = sender
        self.activity = activity
        self.format: Format = sender.format
        self.max_body: int | None = sender.max_body
        self.min_interval: float = sender.min_interval

    def send(self, message: Rendered, items: Sequence[AlertItem] = ()) -> str | None:
        error = self.sender.send(message, items)
        if error is None:
            self.activity.add(messages_sent=1)
        else:
            self.activity.add(send_failures=1)
        return error
