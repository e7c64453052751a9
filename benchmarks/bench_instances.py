"""Poll rounds with several instances on one database (issue 12): 1, 2, 3 ... processes.

    python benchmarks/bench_instances.py --db postgresql://postgres@127.0.0.1:5432/test \\
        [--instances 1,2,3] [--feeds 1000] [--changed 100] [--workers 1]
    python benchmarks/bench_instances.py --db sqlite --instances 1     # the reference

Each instance is a process of its own with the daemon's parts (``App``, its worker
pool of ``--workers`` processes) on the shared database, taking due feeds the
way the daemon's scheduler does: ``App.claim_due`` (leases) as poll slots free
up (``concurrency: 50``), ``App.poll_claimed`` for each. A round makes every
feed due (``set_due``), starts all instances at once and ends when none finds
a due feed; wall time is until the last instance is done. Each feed must be
polled once in total per round: the per-instance counts show how the leases
spread the work. The farm is ``benchmarks/farm.py`` (1,000 feeds x 20 items on
127.0.0.1, ETag/304); PostgreSQL runs in a schema of its own, dropped after.

CPU is the instances and their workers (from /proc); ``db CPU`` is every
process named ``postgres`` on the host (the server; another user's queries
count too), else empty.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from farm import Farm
from measure import Tree, cpu_delta, cpu_seconds

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"

RULES = """
rules:
  - name: deepseek
    keywords: [DeepSeek]
  - name: ki
    keywords: ["künstliche Intelligenz", "KI-Modelle"]
  - name: cloud
    keywords: [Azure]
    exclude: [ransomware]
  - name: chips
    all: [Nvidia, Halbleiter]
  - name: quantum
    keywords: [Quantencomputer, OpenAI]
"""
SLOTS = 50  # polls in flight per instance (settings.concurrency)


def write_config(path: Path, urls: list[str], db: str, *, extract: bool, workers: int) -> None:
    lines = [
        "settings:",
        f'  database: "{db}"',
        f"  concurrency: {SLOTS}",
        f"  per_host: {SLOTS}",
        "  host_spacing: 0",
        f"  workers: {workers}",
        f"  extract: {'true' if extract else 'false'}",
        "  interval: 15m",
        "feeds:",
        *(f"  - {u}" for u in urls),
    ]
    path.write_text("\n".join(lines) + "\n" + RULES)


# -- an instance (a child process) ------------------------------------------------------


async def _round(app: Any) -> int:
    """Poll due feeds as slots free up until none is due; returns how many were polled."""
    inflight: set[asyncio.Task[None]] = set()
    polled = 0
    while True:
        free = SLOTS - len(inflight)
        states = await app.claim_due(free) if free > 0 else []
        for state in states:
            inflight.add(asyncio.create_task(app.poll_claimed(state)))
        polled += len(states)
        if not inflight:
            return polled
        done, inflight = await asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()


async def _child(config_path: Path) -> None:
    from monitor.app import App, process_pool
    from monitor.config import load_config
    from monitor.stages import parse_feed

    config = load_config(config_path, os.environ)
    pool = process_pool(config)
    app = App(config, executor=pool)
    loop = asyncio.get_running_loop()
    body = await app.context.fetcher.fetch(config.feeds[0].url)
    await asyncio.gather(
        *(loop.run_in_executor(pool, parse_feed, body.body, body.url) for _ in range(4))
    )  # warm workers: a daemon is warm
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "quit":
                break
            if command == "reload":
                app.reload(load_config(config_path, os.environ))
                print(json.dumps({"reloaded": True}), flush=True)
                continue
            app.activity.take()
            polled = await _round(app)
            counts = app.activity.take()
            print(
                json.dumps(
                    {
                        "polls": polled,
                        "new": counts.get("new_entries", 0),
                        "matched": counts.get("matched", 0),
                        "failed": counts.get("failed_polls", 0),
                    }
                ),
                flush=True,
            )
    finally:
        await app.close()
        pool.shutdown(wait=True)


# -- the parent ---------------------------------------------------------------------


def _postgres_cpu() -> float:
    total = 0.0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() != "postgres":
                    continue
            total += cpu_seconds(int(pid))
        except (OSError, ValueError):
            continue
    return total


class Instances:
    def __init__(self, n: int, config: Path) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, __file__, "--child", str(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for _ in range(n)
        ]
        for p in self.procs:
            assert p.stdout is not None
            line = p.stdout.readline()
            if line.strip() != "ready":
                raise RuntimeError(f"an instance did not start: {line!r}")

    def ask(self, command: str) -> list[dict[str, Any]]:
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write(command + "\n")
            p.stdin.flush()
        out = []
        for p in self.procs:
            assert p.stdout is not None
            out.append(json.loads(p.stdout.readline()))
        return out

    def close(self) -> None:
        for p in self.procs:
            assert p.stdin is not None
            p.stdin.write("quit\n")
            p.stdin.flush()
        for p in self.procs:
            p.wait(60)


def _make_due(db: str, urls: list[str]) -> None:
    from monitor.storage import open_storage

    store = open_storage(db)
    try:
        now = datetime.now(UTC)
        keys = [s.key for s in store.feed_states() if (s.configured or s.key) in set(urls)]
        store.set_due([(k, now) for k in keys])
    finally:
        store.close()


def run(
    farm: Farm, db: str, n: int, changed: int, workers: int, workdir: Path
) -> list[dict[str, Any]]:
    config = workdir / f"feeds-{n}.yaml"
    urls = farm.urls()
    write_config(config, urls, db, extract=False, workers=workers)
    tree = Tree(lambda: [farm.pid])
    instances = Instances(n, config)
    results = []
    try:
        for name in ("cold", "all-304", "changed, extract off", "changed, extract on"):
            if name == "changed, extract on":
                write_config(config, urls, db, extract=True, workers=workers)
                instances.ask("reload")
            if name.startswith("changed"):
                farm.bump(changed)
            _make_due(db, urls)
            farm.reset()
            before, db_before = tree.cpu(), _postgres_cpu()
            start = time.perf_counter()
            each = instances.ask("round")
            wall = time.perf_counter() - start
            cpu = cpu_delta(before, tree.cpu())
            db_cpu = _postgres_cpu() - db_before
            polls = [r["polls"] for r in each]
            row = {
                "instances": n,
                "scenario": name,
                "wall": wall,
                "cpu": cpu,
                "db_cpu": db_cpu if db.startswith("postgres") else None,
                "polls": polls,
                "new": sum(r["new"] for r in each),
                "matched": sum(r["matched"] for r in each),
                "failed": sum(r["failed"] for r in each),
                "feed_requests": farm.stats().get("feed_200", 0) + farm.stats().get("feed_304", 0),
            }
            print(json.dumps(row), flush=True)
            results.append(row)
    finally:
        instances.close()
    return results


def fresh_postgres(base: str) -> tuple[str, str]:
    import psycopg

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options=-csearch_path%3D{schema}", schema


def drop_postgres(base: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


def report(rows: list[dict[str, Any]], db: str, feeds: int, command: str) -> str:
    lines = [
        f"| instances | scenario | wall s | CPU s (instances) | db CPU s | polls per instance"
        f" | new | feed requests ({feeds} feeds) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        db_cpu = f"{r['db_cpu']:.2f}" if r["db_cpu"] is not None else "-"
        lines.append(
            f"| {r['instances']} | {r['scenario']} | {r['wall']:.2f} | {r['cpu']:.2f} | {db_cpu}"
            f" | {' + '.join(map(str, r['polls']))} | {r['new']} | {r['feed_requests']} |"
        )
    head = f"Database: {db.split('?')[0]}; command: `{command}`"
    return head + "\n\n" + "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        asyncio.run(_child(Path(sys.argv[2])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", required=True, help="postgresql://... or sqlite")
    parser.add_argument("--instances", default="1,2,3", help="e.g. 1,2,3")
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--workers", type=int, default=1, help="worker processes per instance")
    args = parser.parse_args()
    command = "python benchmarks/bench_instances.py " + " ".join(sys.argv[1:])
    counts = [int(n) for n in args.instances.split(",")]
    text = bench(args.db, counts, args.feeds, args.changed, args.workers, command)
    print()
    print(text)


def bench(
    db_arg: str, counts: list[int], feeds: int, changed: int, workers: int, command: str
) -> str:
    """Run the rounds for each number of instances; returns the report (also in out/)."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-instances-") as tmp, Farm(feeds) as farm:
        for n in counts:
            if db_arg.startswith("postgres"):
                from monitor.storage import migrate

                db, schema = fresh_postgres(db_arg)
                migrate(db)
            else:
                if n > 1:
                    raise SystemExit("several instances need PostgreSQL (one daemon per SQLite)")
                db, schema = str(Path(tmp) / f"bench-{n}.db"), ""
            try:
                rows += run(farm, db, n, changed, workers, Path(tmp))
            finally:
                if schema:
                    drop_postgres(db_arg, schema)
    text = report(rows, db_arg, feeds, command)
    OUT.mkdir(exist_ok=True)
    (OUT / "instances.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
