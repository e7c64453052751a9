"""Soak: the daemon (App + Daemon with the real APScheduler) on many feeds for a while.

    python benchmarks/soak.py [--feeds 10000] [--duration 600] [--interval 900]
                              [--change-share 0.05] [--no-extract]
                              [--retention SECONDS] [--prune-every SECONDS]

The farm (a child process) changes ``change-share`` of the feeds per
interval at random times. The store is seeded as a daemon in steady state
would leave it: every feed polled once (ETag, the 20 items known and their
item index), next polls spread over one interval. Then ``Daemon.run()`` runs for
``duration`` seconds. Polls are timed by wrapping ``app.poller.poll`` (the
App API; no daemon code changes): lateness = poll start - the due time the
previous poll (or the seed) set. Every 5 s it samples RSS/PSS (daemon +
pool workers), CPU and the database's size on disk (file, WAL and shared
memory). ``--retention`` and ``--prune-every`` shorten the retention and the
prune period so that an hour shows whether the size levels off. Writes
benchmarks/out/soak.json and soak.png (plotted by matplotlib from
benchmarks/.venv-peers); a run of 600 s or more also copies the plot to
docs/soak.png (docs/soak-N.png for N feeds other than 10,000).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import multiprocessing
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from array import array
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp
from bench_round import OUT, PEERS, make_config
from farm import ITEMS, Farm
from measure import StallTicker, Tree, compile_package, cpu_delta, pss_mb, rss_mb

from monitor import parse
from monitor.app import App, process_pool
from monitor.config import FeedSpec
from monitor.daemon import Daemon
from monitor.pipeline import PollOutcome
from monitor.storage.base import FeedState, NewEntry
from monitor.types import FeedEntry

DOCS_PNG = Path(__file__).resolve().parent.parent / "docs" / "soak.png"


class PollLog:
    """Every poll of the soak, in flat arrays.

    The log lives in the measured process: a dict per poll would add about
    0.5 KB per poll to the daemon's RSS (some 20 MB in an hour at 10,000
    feeds), growth that is the harness's, not the daemon's. Here: 25 bytes.
    """

    def __init__(self) -> None:
        self.t = array("d")  # seconds since the start
        self.late = array("d")  # start - due time; NaN when unknown
        self.new = array("l")
        self.error = array("b")

    def add(self, t: float, late: float | None, new: int, error: bool) -> None:
        self.t.append(t)
        self.late.append(math.nan if late is None else late)
        self.new.append(new)
        self.error.append(error)

    def __len__(self) -> int:
        return len(self.t)

    def lateness(self, start: int = 0) -> list[float]:
        return [x for x in self.late[start:] if not math.isnan(x)]

    def rows(self) -> list[dict[str, Any]]:
        return [
            {"t": t, "late": None if math.isnan(late) else late}
            for t, late in zip(self.t, self.late, strict=True)
        ]


async def _item_indexes(base: str, feeds: int, db: str) -> None:
    guid = re.compile(rb'<guid isPermaLink="false">farm:\d+:(\d+)</guid>')
    gate = asyncio.Semaphore(32)
    rows: list[tuple[bytes, str]] = []

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        url = f"{base}/feed/{i}"
        async with gate, session.get(url) as response:
            body = await response.read()
            headers = {k.lower(): v for k, v in response.headers.items()}
        clean, charset = parse.sanitize_xml(body, headers)
        if charset:
            headers["content-type"] = f"application/xml; charset={charset}"
        split = parse._item_spans(clean, headers.get("content-type", ""))
        if split is None:
            raise RuntimeError(f"farm feed {i}: the parser would not index it")
        key, spans = split
        pairs = []
        for a, b in spans:
            found = guid.search(clean, a, b)
            if found is None:
                raise RuntimeError(f"farm feed {i}: an item without its guid")
            if int(found.group(1)) < ITEMS:  # the seeded ones (a bump may have come first)
                pairs.append((parse._item_digest(key, clean[a:b]), f"farm:{i}:{found[1].decode()}"))
        index = parse.encode_items(pairs)
        if i < 50 and len(pairs) == len(spans):
            whole = parse.parse_feed(body, url, headers).items
            if parse.decode_items(whole) != parse.decode_items(index):
                raise RuntimeError(f"farm feed {i}: the seeded index is not the parser's")
        rows.append((index, url))

    async with aiohttp.ClientSession() as session:
        for start in range(0, feeds, 5000):
            await asyncio.gather(*(one(session, i) for i in range(start, min(feeds, start + 5000))))
            with sqlite3.connect(db) as conn:
                conn.executemany("UPDATE feeds SET items = ? WHERE key = ?", rows)
            conn.close()
            rows.clear()


def _index_child(base: str, feeds: int, db: str) -> None:
    asyncio.run(_item_indexes(base, feeds, db))


def store_item_indexes(farm: Farm, db: Path) -> None:
    """Store each feed's item index (``ParsedFeed.items``) of its 20 seeded items, as a
    daemon stores it after a poll: without it, every feed's first change in the soak
    would be parsed whole, a one-time cost of an upgrade, not of a daemon in steady
    state.

    Built from the farm's documents with the parser's own item split and digest (a
    full parse of 100,000 documents takes minutes); the first documents are parsed in
    full too, and the two must agree. In a child process, so that reading 100,000
    documents leaves nothing in the measured process's memory.
    """
    child = multiprocessing.get_context("spawn").Process(
        target=_index_child, args=(farm.base, farm.feeds, str(db))
    )
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"indexing the farm's documents failed (exit code {child.exitcode})")


def seed(
    app: App, farm: Farm, interval: float, rng: random.Random, db: Path
) -> dict[str, datetime]:
    """Store every feed as polled once at version 0, with its item index; next polls
    spread over one interval."""
    now = datetime.now(UTC)
    due: dict[str, datetime] = {}
    for i, feed in enumerate(app.config.feeds):
        next_due = now + timedelta(seconds=rng.uniform(5, interval))
        due[feed.key] = next_due
        state = FeedState(
            key=feed.key,
            url=feed.url,
            title=f"Farm feed {i}",
            etag=f'"{i}.0"',
            last_poll=now - timedelta(seconds=interval) + (next_due - now),
            last_status=200,
            last_parsed=now - timedelta(seconds=interval) + (next_due - now),
            next_due=next_due,
        )
        entries = [
            NewEntry(
                entry=FeedEntry(
                    identity=f"farm:{i}:{s}",
                    guid=f"farm:{i}:{s}",
                    link=f"{farm.base}/a/{i}/{s}",
                    title=f"item {s}",
                    summary="",
                    content="",
                ),
                first_seen=now,
            )
            for s in range(ITEMS)
        ]
        app.storage.commit_poll(state, entries)
    store_item_indexes(farm, db)
    # Seeding 100,000 feeds takes a minute or two: the due times count from its end,
    # so no feed starts the soak overdue by the seeding's own duration.
    shift = datetime.now(UTC) - now
    due = {key: when + shift for key, when in due.items()}
    app.storage.set_due(list(due.items()))
    return due


def db_mb(db: Path) -> float:
    """The database's size on disk: the file, its WAL and its shared memory."""
    paths = [db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")]
    return sum(p.stat().st_size for p in paths if p.exists()) / 1e6


async def soak(args: argparse.Namespace, farm: Farm, workdir: Path) -> dict[str, Any]:
    db = workdir / "soak.db"
    config = make_config(
        farm.urls(), db, extract=not args.no_extract, interval=f"{int(args.interval)}s"
    )
    if args.retention is not None:
        config = replace(config, settings=replace(config.settings, retention=args.retention))
    pool = process_pool(config)
    app = App(config, db=str(db), executor=pool)
    t = time.perf_counter()
    due = seed(app, farm, args.interval, random.Random(5), db)
    farm.reset()  # the farm's counts are the soak's
    print(f"seeded {len(due)} feeds in {time.perf_counter() - t:.1f} s", flush=True)

    polls = PollLog()
    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    original = app.poller.poll

    async def timed_poll(
        feed: FeedSpec, *, dry_run: bool = False, force: bool = False, state: Any = None
    ) -> PollOutcome:
        started = datetime.now(UTC)
        # the due time the scheduler claimed the feed at (the store's), else the seeded one
        expected = state.next_due if state is not None and state.next_due else due.get(feed.key)
        t_start = time.monotonic()
        outcome = await original(feed, dry_run=dry_run, force=force, state=state)
        if outcome.next_due is not None:
            due[feed.key] = outcome.next_due
        late = (started - expected).total_seconds() if expected else None
        polls.add(t_start - t0, late, outcome.new, outcome.error is not None)
        return outcome

    app.poller.poll = timed_poll  # type: ignore[method-assign]
    tree = Tree(lambda: [farm.pid])
    ticker = StallTicker()
    ticker.start()
    daemon = Daemon(app, {})
    if args.prune_every is not None:
        daemon.prune_every = args.prune_every
    task = asyncio.create_task(daemon.run())
    cpu0 = tree.cpu()
    cpu_prev = cpu0
    t_prev = time.monotonic()
    seen = 0  # polls already sampled
    try:
        while time.monotonic() - t0 < args.duration:
            await asyncio.sleep(args.sample)
            now = time.monotonic()
            cpu_now = tree.cpu()
            pids = tree.pids()
            window = polls.lateness(seen)
            count, seen = len(polls) - seen, len(polls)
            samples.append(
                {
                    "t": now - t0,
                    "rss_mb": sum(rss_mb(p) for p in pids),
                    "parent_rss_mb": rss_mb(tree.root),
                    "processes": len(pids),
                    "pss_mb": sum(pss_mb(p) for p in pids),
                    "cpu_share": cpu_delta(cpu_prev, cpu_now) / (now - t_prev),
                    "polls": count,
                    "worst_late": max(window, default=0.0),
                    "stall": ticker.worst,
                    "db_mb": db_mb(db),
                }
            )
            ticker.reset()
            s = samples[-1]
            print(
                f"t={s['t']:6.0f}s rss {s['rss_mb']:6.1f} MB pss {s['pss_mb']:6.1f} MB"
                f" cpu {s['cpu_share'] * 100:5.1f}% polls {s['polls']:4d}"
                f" worst late {s['worst_late']:6.2f} s stall {s['stall'] * 1000:5.0f} ms"
                f" db {s['db_mb']:6.1f} MB",
                flush=True,
            )
            cpu_prev, t_prev = cpu_now, now
        total_cpu = cpu_delta(cpu0, tree.cpu())
        wall = time.monotonic() - t0
    finally:
        daemon.stop.set()
        await task
        await ticker.stop()
    late = sorted(polls.lateness())
    return {
        "feeds": args.feeds,
        "interval": args.interval,
        "duration": wall,
        "change_share": args.change_share,
        "extract": not args.no_extract,
        "polls": len(polls),
        "new_items": sum(polls.new),
        "errors": sum(polls.error),
        # The mean of the samples: a total over the whole run would lose the CPU of
        # every worker recycled on the way (only live processes are read).
        "avg_cpu_share": (
            sum(s["cpu_share"] for s in samples) / len(samples) if samples else total_cpu / wall
        ),
        "worst_late": late[-1] if late else None,
        "p99_late": late[int(len(late) * 0.99)] if late else None,
        "median_late": late[len(late) // 2] if late else None,
        "worst_stall": max((s["stall"] for s in samples), default=0.0),
        "rss_first": samples[0]["rss_mb"] if samples else None,
        "rss_last": samples[-1]["rss_mb"] if samples else None,
        "rss_max": max((s["rss_mb"] for s in samples), default=None),
        "pss_max": max((s["pss_mb"] for s in samples), default=None),
        "retention": app.config.settings.retention,
        "db_mb_first": samples[0]["db_mb"] if samples else None,
        "db_mb_last": samples[-1]["db_mb"] if samples else None,
        "db_mb_max": max((s["db_mb"] for s in samples), default=None),
        "worker_starts": pool.started,
        "farm": farm.stats(),
        "samples": samples,
        "poll_log": polls.rows(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds")
    parser.add_argument("--interval", type=float, default=900.0, help="poll interval, seconds")
    parser.add_argument("--change-share", type=float, default=0.05, help="per interval")
    parser.add_argument("--sample", type=float, default=5.0, help="seconds between samples")
    parser.add_argument("--no-extract", action="store_true")
    parser.add_argument("--retention", type=float, help="settings.retention, seconds")
    parser.add_argument("--prune-every", type=float, help="seconds between prunes")
    args = parser.parse_args()
    compile_package()  # the pool workers start as from an installed package
    OUT.mkdir(exist_ok=True)
    farm = Farm(args.feeds, change_share=args.change_share, change_interval=args.interval)
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp, farm:
        result = asyncio.run(soak(args, farm, Path(tmp)))
    data = OUT / "soak.json"
    data.write_text(json.dumps(result, indent=1, default=str))
    summary = {k: v for k, v in result.items() if k not in ("samples", "poll_log")}
    print(json.dumps(summary, indent=1, default=str))
    png = OUT / "soak.png"
    python = PEERS / "bin" / "python"
    if python.exists():
        subprocess.run(
            [str(python), str(Path(__file__).with_name("plot_soak.py")), str(data), str(png)],
            check=True,
        )
        print(f"plot: {png}")
        if args.duration >= 600:
            docs = (
                DOCS_PNG if args.feeds == 10_000 else DOCS_PNG.with_name(f"soak-{args.feeds}.png")
            )
            docs.parent.mkdir(exist_ok=True)
            shutil.copyfile(png, docs)
            print(f"copied to {docs}")
    else:
        print(f"{PEERS} missing: no plot (make bench-soak builds it)")


if __name__ == "__main__":
    main()
