"""The chaos test (issue 10): kill -9 of the daemon and its workers at random moments
while feeds publish and notifiers fail and recover; then every alert has arrived on
every notifier, with duplicates only from kills in the documented window.

`python -m tests.chaos --kills 100` (or `make bench-chaos`) runs it longer."""

from __future__ import annotations

import random
from pathlib import Path

from tests.chaos import run_chaos


def test_every_alert_arrives_on_every_notifier_through_kills_and_flapping_notifiers(
    tmp_path: Path,
) -> None:
    seed = random.randrange(1_000_000)
    report = run_chaos(tmp_path, kills=20, feeds=3, publish_every=1.5, seed=seed)
    log = (tmp_path / "daemon.log").read_text(errors="replace")
    print(f"{report.line()} (seed {seed})")
    assert report.daemon_kills + report.worker_kills >= 20
    assert report.published >= 10
    assert report.missing == {"chat": [], "mail": []}, f"seed {seed}\n{log[-4000:]}"
    # at most one message in flight per notifier when a kill lands
    for name, extra in report.duplicates.items():
        assert extra <= report.daemon_kills, f"{name}: seed {seed}\n{log[-4000:]}"
