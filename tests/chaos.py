"""Chaos run: `monitor run` killed again and again while feeds publish and notifiers flap.

A local farm of feeds publishes new matching items all the time; the chat
webhook and the SMTP server fail and recover at random; the daemon and its
worker processes get `kill -9` at random moments, and the daemon is started
again each time. At the end publishing stops, both notifiers are healthy, and
one clean run drains the outbox. Then every published item must have reached
both notifiers; an item that arrived twice is a duplicate, counted (the one
window where that is allowed: a kill between a notifier accepting a message and
the outbox recording it).

With ``db`` (a PostgreSQL URL) and ``instances`` > 1, that many daemons share the
database, each killed and started again at random: every item must still arrive.

Used by tests/test_chaos.py (short) and benchmarks/chaos.py (as long as you like).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from tests.feeds import Item, rss
from tests.servers import FeedServer, Mailbox, Webhook, alive, running, wait_for

CONFIG = """
settings:
  interval: 1s
  retry_delay: 1s
  extract: false
  workers: 2
notifiers:
  chat: "{chat}"
  mail: "{mail}"
feeds:
{feeds}
rules:
  - name: DeepSeek
    keywords: [DeepSeek]
"""


@dataclass
class Report:
    """What a chaos run did and saw."""

    published: int = 0
    daemon_kills: int = 0
    worker_kills: int = 0
    flaps: int = 0
    missing: dict[str, list[str]] = field(default_factory=dict)
    duplicates: dict[str, int] = field(default_factory=dict)  # notifier -> extra copies
    drain_seconds: float = 0.0
    seconds: float = 0.0

    def line(self) -> str:
        return (
            f"chaos: {self.published} items, {self.daemon_kills} daemon kills, "
            f"{self.worker_kills} worker kills, {self.flaps} notifier flaps in "
            f"{self.seconds:.0f} s; drained in {self.drain_seconds:.0f} s; missing "
            f"{sum(len(v) for v in self.missing.values())}; duplicates "
            + ", ".join(f"{k} {v}" for k, v in sorted(self.duplicates.items()))
        )


def _children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def _all_gone(pids: list[int]) -> bool:
    return not any(alive(p) for p in pids)


class _Publisher(threading.Thread):
    """Adds a new matching item to a random feed every ``every`` seconds."""

    def __init__(self, server: FeedServer, feeds: int, every: float, rng: random.Random) -> None:
        super().__init__(daemon=True)
        self.server, self.every, self.rng = server, every, rng
        self.items: list[list[Item]] = [[] for _ in range(feeds)]
        self.titles: list[str] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def publish_one(self) -> None:
        with self.lock:
            n = len(self.titles)
            feed = self.rng.randrange(len(self.items))
            title = f"DeepSeek Chaos {n}"
            self.items[feed].append(Item(title, guid=f"chaos-{n}"))
            self.titles.append(title)
            self.server.put(f"/f{feed}.xml", rss(self.items[feed][-50:], title=f"Feed {feed}"))

    def run(self) -> None:
        while not self.stop.wait(self.rng.uniform(0.3, 2 * self.every)):
            self.publish_one()


def run_chaos(
    workdir: Path,
    *,
    kills: int = 20,
    feeds: int = 3,
    publish_every: float = 1.5,
    seed: int | None = None,
    drain_timeout: float = 300.0,
    log: bool = False,
    db: str | None = None,
    instances: int = 1,
) -> Report:
    """One chaos run in ``workdir``; returns what happened (never raises on a miss)."""
    rng = random.Random(seed)
    report = Report()
    started = time.monotonic()
    site, chat, mail = FeedServer(), Webhook(), Mailbox()
    with running(site, chat, mail):
        for i in range(feeds):
            site.put(f"/f{i}.xml", rss([], title=f"Feed {i}"))
        config = workdir / "feeds.yaml"
        config.write_text(
            CONFIG.format(
                chat=chat.url,
                mail=mail.url,
                feeds="\n".join(
                    f"  - url: {site.url(f'/f{i}.xml')}\n    name: Feed {i}" for i in range(feeds)
                ),
            )
        )
        daemon_log = (workdir / "daemon.log").open("ab")
        command = [sys.executable, "-m", "monitor", "-c", str(config), "run"]

        env = {**os.environ, **({"MONITOR_DB": db} if db else {})}

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(command, stdout=daemon_log, stderr=subprocess.STDOUT, env=env)

        publisher = _Publisher(site, feeds, publish_every, rng)
        publisher.start()
        procs = [start() for _ in range(instances)]
        try:
            while report.daemon_kills + report.worker_kills < kills:
                time.sleep(rng.uniform(0.5, 3.0))
                if rng.random() < 0.3:  # a notifier goes down, or comes back
                    target = rng.choice([chat, mail])
                    target.failing = not target.failing
                    report.flaps += 1
                n = rng.randrange(len(procs))
                proc = procs[n]
                workers = _children(proc.pid)
                if workers and rng.random() < 0.4:
                    os.kill(rng.choice(workers), signal.SIGKILL)
                    report.worker_kills += 1
                else:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait(10)
                    report.daemon_kills += 1
                    # its workers see their pipe close and exit (none is left behind)
                    wait_for(partial(_all_gone, workers), 10)
                    procs[n] = start()
                if log:
                    print(f"  {report.daemon_kills + report.worker_kills} kills", flush=True)
            publisher.stop.set()
            publisher.join()
            report.published = len(publisher.titles)
            chat.failing = mail.failing = False
            drain_started = time.monotonic()
            expected = Counter(f"[DeepSeek] {t}" for t in publisher.titles)

            def arrived() -> bool:
                return set(expected) <= set(chat.alerts()) and set(expected) <= set(mail.alerts())

            wait_for(arrived, drain_timeout, every=0.5)
            report.drain_seconds = time.monotonic() - drain_started
            time.sleep(2)  # anything still arriving would be a duplicate
        finally:
            publisher.stop.set()
            for proc in procs:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(15)
            daemon_log.close()
        got = {"chat": Counter(chat.alerts()), "mail": Counter(mail.alerts())}
    for name, counts in got.items():
        report.missing[name] = sorted(set(expected) - set(counts))
        report.duplicates[name] = sum(c - 1 for c in counts.values() if c > 1)
    report.seconds = time.monotonic() - started
    return report


def main() -> int:
    """``python -m tests.chaos [--kills N] [--feeds N] [--seed N]``: a longer chaos run."""
    import argparse
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kills", type=int, default=100)
    parser.add_argument("--feeds", type=int, default=5)
    parser.add_argument("--publish-every", type=float, default=1.0)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--db", help="postgresql://...: the daemons' database (a fresh schema)")
    parser.add_argument("--instances", type=int, default=1, help="daemons at once (PostgreSQL)")
    args = parser.parse_args()
    if args.instances > 1 and not args.db:
        parser.error("several instances need --db postgresql://...")
    schema = db = None
    if args.db:
        import uuid

        import psycopg

        from monitor.storage import migrate

        schema = f"chaos_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(args.db, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
        db = f"{args.db}{'&' if '?' in args.db else '?'}options=-csearch_path%3D{schema}"
        migrate(db)
    with tempfile.TemporaryDirectory(prefix="rss-monitor-chaos-") as tmp:
        try:
            report = run_chaos(
                Path(tmp),
                kills=args.kills,
                feeds=args.feeds,
                publish_every=args.publish_every,
                seed=args.seed,
                drain_timeout=1800,
                log=True,
                db=db,
                instances=args.instances,
            )
        finally:
            if schema:
                with psycopg.connect(args.db, autocommit=True) as conn:
                    conn.execute(f"DROP SCHEMA {schema} CASCADE")
        print(report.line())
        if any(report.missing.values()):
            print(f"MISSING: {report.missing}")
            print((Path(tmp) / "daemon.log").read_text()[-5000:])
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
