"""Poll-round benchmark: the daemon's real code path on a local feed farm, and two peers.

    python benchmarks/bench_round.py [--feeds 1000] [--changed 100] [--no-peers]
                                     [--no-profile] [--results benchmarks/out/RESULTS.md]
                                     [--db postgresql://...] [--instances 1,2,3]

``--db postgresql://...`` measures the same rounds on PostgreSQL (in a schema of its
own, dropped after); with ``--instances 1,2,3`` that many processes share each round
on it instead, as several daemons do (``bench_instances.py``).

Ours: ``App(config, db=SQLite file, executor=process_pool())`` and
``App.poll_round`` -- the same fetch, parse, dedup, extract, match, store
and outbox code the daemon runs. All feeds are on one host (127.0.0.1), so
the bench config sets ``concurrency: 50, per_host: 50, host_spacing: 0``. For each scenario
it reports wall time, CPU (this process + pool workers), peak RSS (sum of
each process's peak) and the worst event-loop stall (a 10 ms ticker).

Peers, on the same farm in the same run (from benchmarks/.venv-peers, which
``make bench`` builds): rss2email 3.14 mailing to a local aiosmtpd sink, and
the sequential ``feedparser.parse(url)`` loop. Numbers are for comparison,
not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from farm import Farm
from measure import CountingExecutor, Sampler, StallTicker, Tree, compile_package, cpu_delta

from monitor.app import App, pool_size, process_pool
from monitor.config import Config, parse_config
from monitor.pipeline import PollOutcome

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PEERS = HERE / ".venv-peers"
WORKERS: int | None = None  # --workers: settings.workers of the measured config

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
  - name: security
    keywords: [ransomware, Datenleck]
    fields: [title, summary]
  - name: rare1
    keywords: [Zeppelin, Kernfusion, Lithium]
  - name: rare2
    keywords: [Bundesnetzagentur, antitrust]
  - name: rare3
    keywords: ["Model Context Protocol", "Digital Markets Act"]
  - name: rare4
    keywords: [Graphen, Wasserstoff]
"""
TITLE_ONLY_RULES = """
rules:
  - name: titles
    keywords: [DeepSeek, Azure, OpenAI]
    fields: [title]
"""

# Issue 6 targets at 1,000 feeds (seconds).
TARGETS = {
    "cold": 8.0,
    "all-304": 0.5,
    "changed, extract off": 1.2,
    "changed, extract on": 3.0,
}


DB: str | None = None  # --db: a PostgreSQL URL instead of a SQLite file per run


def make_config(
    urls: list[str], db: Path | str, *, extract: bool, rules: str = RULES, interval: str = "15m"
) -> Config:
    lines = [
        "settings:",
        f'  database: "{db}"',
        "  concurrency: 50",
        "  per_host: 50",
        "  host_spacing: 0",  # every farm feed is on one host; spacing would serialize them
        *([f"  workers: {WORKERS}"] if WORKERS else []),
        f"  extract: {'true' if extract else 'false'}",
        f"  interval: {interval}",
        "feeds:",
        *(f"  - {u}" for u in urls),
    ]
    text = "\n".join(lines) + "\n" + rules
    folder = db.parent if isinstance(db, Path) else Path(tempfile.gettempdir())
    return parse_config(text, folder / "feeds.yaml", {})


@dataclass
class Result:
    name: str
    wall: float
    cpu: float
    peak_mb: float
    peaks: dict[str, float]
    pss_mb: float
    stall: float
    new: int
    errors: int
    alerts: int
    pool_calls: dict[str, int] = field(default_factory=dict)
    farm: dict[str, int] = field(default_factory=dict)


class Harness:
    """One App on one SQLite file, with the process tree and the loop under watch."""

    def __init__(self, farm: Farm, workdir: Path) -> None:
        self.farm = farm
        self.workdir = workdir
        self.tree = Tree(lambda: [farm.pid])
        self.ticker = StallTicker()
        self.db: Path | str = DB or workdir / "bench.db"
        config = make_config(farm.urls(), self.db, extract=False)
        self.executor = CountingExecutor(process_pool(config))
        self.app = App(config, db=str(self.db), executor=self.executor)

    async def warm_pool(self) -> None:
        """Start every worker and import the parser and extractor there (a daemon is warm)."""
        from monitor.stages import extract, parse_feed  # by name: this process stays lean

        loop = asyncio.get_running_loop()
        body = await self.app.context.fetcher.fetch(self.farm.feed_url(0))
        page = await self.app.context.fetcher.fetch(f"{self.farm.base}/a/0/0")
        jobs = []
        for _ in range(8):
            jobs.append(loop.run_in_executor(self.executor.inner, parse_feed, body.body, body.url))
            jobs.append(loop.run_in_executor(self.executor.inner, extract, page.body, page.url))
        await asyncio.gather(*jobs)

    async def measure(self, name: str, run: Callable[[], Awaitable[list[PollOutcome]]]) -> Result:
        self.tree.reset_peaks()
        self.executor.calls.clear()
        self.farm.reset()
        before = self.tree.cpu()
        with Sampler(self.tree) as sampler:
            # The harness's own blocking calls (control requests, /proc reads) would show as
            # a stall: let the ticker wake up once before it is reset.
            await asyncio.sleep(0.05)
            self.ticker.reset()
            start = time.perf_counter()
            outcomes = await run()
            wall = time.perf_counter() - start
            stall = self.ticker.worst
        cpu = cpu_delta(before, self.tree.cpu())
        result = Result(
            name=name,
            wall=wall,
            cpu=cpu,
            peak_mb=self.tree.peak_mb(),
            peaks=self.tree.peaks(),
            pss_mb=sampler.max_pss,
            stall=stall,
            new=sum(o.new for o in outcomes),
            errors=sum(1 for o in outcomes if o.error),
            alerts=sum(len(o.alerts) for o in outcomes),
            pool_calls=dict(self.executor.calls),
            farm=self.farm.stats(),
        )
        print(_result_line(result), flush=True)
        return result

    async def round(self) -> list[PollOutcome]:
        return await self.app.poll_round(self.app.config.feeds)

    def reload(self, *, extract: bool, rules: str = RULES) -> None:
        self.app.reload(make_config(self.farm.urls(), self.db, extract=extract, rules=rules))


def _result_line(r: Result) -> str:
    return (
        f"{r.name:<34} wall {r.wall:7.3f} s  cpu {r.cpu:7.3f} s  peak {r.peak_mb:6.1f} MB"
        f" pss {r.pss_mb:6.1f} MB  stall {r.stall * 1000:6.1f} ms  new {r.new:6d}"
        f"  alerts {r.alerts:5d}  errors {r.errors}  pool {r.pool_calls}  farm {r.farm}"
        f"\n    peak RSS by process: "
        + ", ".join(f"{k} {v:.0f} MB" for k, v in sorted(r.peaks.items()))
    )


async def ours(farm: Farm, workdir: Path, changed: int, profile: bool) -> dict[str, Any]:
    h = Harness(farm, workdir)
    results: list[Result] = []
    checks: dict[str, Any] = {}
    profiles: dict[str, str] = {}
    h.ticker.start()
    try:
        await h.warm_pool()
        results.append(await h.measure("cold", h.round))
        results.append(await h.measure("all-304", h.round))
        farm.bump(changed)
        results.append(await h.measure("changed, extract off", h.round))
        h.reload(extract=True)
        farm.bump(changed)
        results.append(await h.measure("changed, extract on", h.round))

        # Work that can be skipped: is it skipped?
        n = len(farm.urls())
        same = list(range(min(changed, n)))
        farm.set_noetag(same)  # 200 without ETag: the same body as stored
        r = await h.measure("check: same body again (200)", h.round)
        results.append(r)
        checks["same_body"] = {
            "feeds": len(same),
            "feed_200": r.farm.get("feed_200", 0),
            "parse_calls": r.pool_calls.get("parse_feed", 0),
        }
        old = list(range(2 * changed, min(2 * changed + 20, n)))
        farm.set_old(old)
        bumped = farm.bump(20)  # the next 20 in rotation (the old ones)
        r = await h.measure("check: new items older than max_age", h.round)
        results.append(r)
        checks["old_items"] = {
            "feeds": bumped,
            "new": r.new,
            "extract_calls": r.pool_calls.get("extract", 0),
            "article_fetches": r.farm.get("article", 0),
        }
        h.reload(extract=True, rules=TITLE_ONLY_RULES)
        farm.bump(20)
        r = await h.measure("check: extract on, title-only rules", h.round)
        results.append(r)
        checks["title_only_rules"] = {
            "new": r.new,
            "extract_calls": r.pool_calls.get("extract", 0),
            "article_fetches": r.farm.get("article", 0),
        }
        h.reload(extract=True)
        farm.clear()
        await h.round()  # settle: the old-dated feeds' bodies changed back
        if profile:
            farm.bump(changed)
            profiles["changed, extract on"] = await _profiled(h, "changed, extract on")
    finally:
        await h.ticker.stop()
        await h.app.close()
    if profile:
        profiles["cold"] = await _profile_cold(farm, workdir)
    return {"results": results, "checks": checks, "profiles": profiles}


async def _profiled(h: Harness, name: str) -> str:
    prof = cProfile.Profile()
    prof.enable()
    start = time.perf_counter()
    await h.round()
    wall = time.perf_counter() - start
    prof.disable()
    return _profile_text(prof, name, wall)


def _profile_text(prof: cProfile.Profile, name: str, wall: float) -> str:
    buf = io.StringIO()
    stats = pstats.Stats(prof, stream=buf)
    buf.write(
        f"# profile of the event-loop process, round '{name}' ({wall:.2f} s under cProfile)\n"
    )
    stats.sort_stats("tottime").print_stats(25)
    stats.sort_stats("cumulative").print_stats(40)
    path = OUT / f"profile-{name.replace(' ', '_').replace(',', '')}.txt"
    path.write_text(buf.getvalue())
    return str(path)


async def _profile_cold(farm: Farm, workdir: Path) -> str:
    db = workdir / "profile-cold.db"
    config = make_config(farm.urls(), db, extract=False)
    app = App(config, db=str(db), executor=process_pool(config))
    try:
        prof = cProfile.Profile()
        prof.enable()
        start = time.perf_counter()
        await app.poll_round(app.config.feeds)
        wall = time.perf_counter() - start
        prof.disable()
        return _profile_text(prof, "cold", wall)
    finally:
        await app.close()


def stage_costs(farm: Farm, workdir: Path) -> dict[str, float]:
    """Per-item cost of each stage, in this process, on farm documents (ms)."""
    import urllib.request
    from datetime import UTC, datetime

    from monitor import decide
    from monitor.extract import extract
    from monitor.match import compile_rules
    from monitor.normalize import prepare
    from monitor.parse import parse_feed
    from monitor.storage import open_storage
    from monitor.storage.base import FeedState, NewEntry

    config = make_config(farm.urls(), workdir / "stage.db", extract=True)
    bodies = [urllib.request.urlopen(u).read() for u in farm.urls()[:30]]
    pages = [urllib.request.urlopen(f"{farm.base}/a/{i}/{i}").read() for i in range(30)]
    out: dict[str, float] = {}

    t = time.perf_counter()
    parsed = [parse_feed(b, farm.feed_url(i)) for i, b in enumerate(bodies)]
    out["parse_feed per feed"] = (time.perf_counter() - t) / len(bodies) * 1000
    entries = [e for p in parsed for e in p.entries]

    t = time.perf_counter()
    docs = [
        prepare(
            title=e.title,
            summary=e.summary,
            content=e.content,
            author=e.author,
            categories=e.categories,
            link=e.link or "",
        )
        for e in entries
    ]
    out["normalize.prepare per entry"] = (time.perf_counter() - t) / len(entries) * 1000

    matcher = compile_rules(config.rules)
    t = time.perf_counter()
    for d in docs:
        matcher.match(d, feed="Farm feed", tags=())
    out[f"match per entry ({len(config.rules)} rules)"] = (
        (time.perf_counter() - t) / len(docs) * 1000
    )

    t = time.perf_counter()
    articles = [extract(p, f"{farm.base}/a/{i}/{i}") for i, p in enumerate(pages)]
    out["extract per page"] = (time.perf_counter() - t) / len(pages) * 1000
    out["extracted chars per page (avg)"] = sum(len(a.text) for a in articles) / len(articles)

    store = open_storage(str(workdir / "stage.db"))
    now = datetime.now(UTC)
    t = time.perf_counter()
    for i, p in enumerate(parsed):
        records = [
            NewEntry(entry=e, first_seen=now, document=dict(d.fields))
            for e, d in zip(p.entries, docs[i * 20 : i * 20 + 20], strict=False)
        ]
        store.commit_poll(FeedState(key=f"k{i}", url=f"k{i}"), records)
    out["commit_poll per feed (20 entries)"] = (time.perf_counter() - t) / len(parsed) * 1000
    t = time.perf_counter()
    for i in range(len(parsed)):
        store.feed_state(f"k{i}")
    out["feed_state per feed"] = (time.perf_counter() - t) / len(parsed) * 1000
    store.close()
    del decide
    return out


# ----------------------------------------------------------------------------- peers


def _peer_python() -> Path:
    return PEERS / "bin" / "python"


def _peer_json(args: list[str]) -> dict[str, Any]:
    proc = subprocess.run(
        [str(_peer_python()), str(HERE / "peers.py"), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _r2e_config(path: Path, urls: list[str], smtp_port: int) -> None:
    lines = [
        "[DEFAULT]",
        "from = bench@example.com",
        "to = reader@example.com",
        "email-protocol = smtp",
        "smtp-server = 127.0.0.1",
        f"smtp-port = {smtp_port}",
        "smtp-auth = False",
        "smtp-ssl = False",
        "same-server-fetch-interval = 0",
        "",
    ]
    for i, u in enumerate(urls):
        lines += [f"[feed.f{i}]", f"url = {u}", ""]
    path.write_text("\n".join(lines))


def peers(farm: Farm, workdir: Path, changed: int) -> dict[str, dict[str, Any]]:
    """rss2email and the feedparser loop: cold, all-304, then ``changed`` feeds changed."""
    urls_file = workdir / "urls.txt"
    urls_file.write_text("\n".join(farm.urls()))
    state = workdir / "fp-state.json"
    port = _free_port()
    sink_cmd = ["-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Sink", "-l", f"127.0.0.1:{port}"]
    sink = subprocess.Popen(
        [str(_peer_python()), *sink_cmd],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    r2e_cfg = workdir / "r2e.cfg"
    r2e_data = workdir / "r2e.json"
    _r2e_config(r2e_cfg, farm.urls(), port)
    r2e = [str(PEERS / "bin" / "r2e"), "-c", str(r2e_cfg), "-d", str(r2e_data), "run"]
    out: dict[str, dict[str, Any]] = {"feedparser loop": {}, "rss2email": {}}
    try:
        _wait_port(port)
        for scenario in ("cold", "all-304", "changed"):
            if scenario == "changed":
                farm.bump(changed)
            farm.reset()
            fp = _peer_json(["feedparser", str(urls_file), str(state)])
            out["feedparser loop"][scenario] = fp
            print(f"peer feedparser loop  {scenario:<8} {fp['wall']:7.2f} s", flush=True)
            farm.reset()
            r = _peer_json(["exec", "--", *r2e])
            r["farm"] = farm.stats()
            if r["rc"] != 0:
                print(f"rss2email failed: {r['stderr']}", file=sys.stderr)
            out["rss2email"][scenario] = r
            print(f"peer rss2email        {scenario:<8} {r['wall']:7.2f} s", flush=True)
    finally:
        sink.terminate()
        sink.wait(10)
    return out


def _wait_port(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the SMTP sink did not start")


# ----------------------------------------------------------------------------- report


def report(
    n: int,
    changed: int,
    mine: dict[str, Any],
    costs: dict[str, float],
    peer: dict[str, dict[str, Any]] | None,
    command: str,
) -> str:
    rs: list[Result] = mine["results"]
    lines = [
        f"# Poll-round benchmark: {n} feeds x 20 items, {changed} changed",
        "",
        f"Command: `{command}` (machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}).",
        "Farm: aiohttp in a child process on 127.0.0.1, feeds ~58 KB, article pages 20-60 KB.",
        "Ours: `App.poll_round` (real fetch/parse/dedup/extract/match/store/outbox, "
        + ("PostgreSQL" if DB else "SQLite WAL")
        + "),",
        f"{WORKERS or pool_size()} worker processes,"
        " `concurrency: 50, per_host: 50, host_spacing: 0`,",
        "10 rules. CPU = this process + the pool's workers; peak RSS = sum of each process's",
        "peak (VmHWM; a page shared by processes counts once per process, so this is an",
        "upper bound); peak PSS = the largest sampled sum of PSS every 0.25 s (shared pages",
        "split between the processes that share them: the real footprint).",
        "",
        "| scenario | wall s | target s | CPU s | peak RSS MB | peak PSS MB | worst stall ms"
        " | new | alerts |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rs:
        target = TARGETS.get(r.name)
        mark = ""
        if target is not None:
            mark = f"{target:g} {'ok' if r.wall <= target else 'MISSED'}"
        lines.append(
            f"| {r.name} | {r.wall:.2f} | {mark} | {r.cpu:.2f} | {r.peak_mb:.0f} | {r.pss_mb:.0f} |"
            f" {r.stall * 1000:.0f} | {r.new} | {r.alerts} |"
        )
    if peer:
        by = {r.name: r for r in rs}
        pairs = (
            ("cold", "cold"),
            ("all-304", "all-304"),
            ("changed", "changed, extract off"),
        )
        lines += [
            "",
            "## Peers on the same farm, same run",
            "",
            "| scenario | ours wall s | rss2email wall s (CPU s) | feedparser loop wall s (CPU s)"
            " | rss2email / ours | feedparser loop / ours |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for p, o in pairs:
            r2 = peer["rss2email"].get(p, {})
            fp = peer["feedparser loop"].get(p, {})
            w = by[o].wall
            lines.append(
                f"| {p} | {w:.2f} | {r2.get('wall', 0):.2f} ({r2.get('cpu', 0):.2f}) |"
                f" {fp.get('wall', 0):.2f} ({fp.get('cpu', 0):.2f}) |"
                f" {r2.get('wall', 0) / w:.1f}x | {fp.get('wall', 0) / w:.1f}x |"
            )
        lines.append("")
        lines.append(
            "rss2email mails every new item over SMTP to a local aiosmtpd sink; peak RSS:"
            f" rss2email {max(v.get('maxrss_mb', 0) for v in peer['rss2email'].values()):.0f} MB,"
            " feedparser loop"
            f" {max(v.get('maxrss_mb', 0) for v in peer['feedparser loop'].values()):.0f} MB."
        )
    lines += ["", "## Stage costs (one process, farm documents)", ""]
    lines += [f"- {k}: {v:.2f}" for k, v in costs.items()]
    lines += ["", "## Skippable work", ""]
    for k, v in mine["checks"].items():
        lines.append(f"- {k}: {json.dumps(v)}")
    if mine["profiles"]:
        lines += [
            "",
            "Profiles: "
            + ", ".join(str(Path(p).relative_to(HERE.parent)) for p in mine["profiles"].values()),
        ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--no-profile", action="store_true")
    parser.add_argument("--workers", type=int, help="settings.workers (default: automatic)")
    parser.add_argument("--results", type=Path, default=OUT / "RESULTS.md")
    parser.add_argument("--db", help="postgresql://...: measure on PostgreSQL (a fresh schema)")
    parser.add_argument(
        "--instances", help="e.g. 1,2,3: processes sharing each round on --db (PostgreSQL)"
    )
    args = parser.parse_args()
    compile_package()  # the pool workers start as from an installed package
    global WORKERS, DB
    WORKERS = args.workers
    if args.instances:
        import bench_instances

        text = bench_instances.bench(
            args.db or "sqlite",
            [int(n) for n in args.instances.split(",")],
            args.feeds,
            args.changed,
            args.workers or 1,
            "python benchmarks/bench_round.py " + " ".join(sys.argv[1:]),
        )
        print()
        print(text)
        return
    schema = ""
    if args.db:
        import bench_instances

        from monitor.storage import migrate

        DB, schema = bench_instances.fresh_postgres(args.db)
        migrate(DB)
        args.no_profile = True  # the profiles are of the SQLite path
    OUT.mkdir(exist_ok=True)
    run_peers = not args.no_peers
    if run_peers and not _peer_python().exists():
        print(f"{PEERS} missing (make bench builds it): peers skipped", file=sys.stderr)
        run_peers = False
    with tempfile.TemporaryDirectory(prefix="bench-round-") as tmp, Farm(args.feeds) as farm:
        workdir = Path(tmp)
        mine = asyncio.run(ours(farm, workdir, args.changed, not args.no_profile))
        costs = stage_costs(farm, workdir)
        for k, v in costs.items():
            print(f"stage cost: {k}: {v:.2f}")
        peer = peers(farm, workdir, args.changed) if run_peers else None
    if schema:
        bench_instances.drop_postgres(args.db, schema)
    command = "python benchmarks/bench_round.py " + " ".join(sys.argv[1:])
    text = report(args.feeds, args.changed, mine, costs, peer, command.strip())
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    (OUT / "results.json").write_text(
        json.dumps(
            {
                "ours": [r.__dict__ for r in mine["results"]],
                "checks": mine["checks"],
                "peers": peer,
            },
            indent=1,
            default=str,
        )
    )
    print()
    print(text)


if __name__ == "__main__":
    main()
