"""The one-shot path as whole processes: `monitor poll` beside rss2email and reader.

    python benchmarks/bench_oneshot.py [--feeds 1000] [--changed 100] [--repeat 3]
                                       [--no-peers] [--against DIR]
                                       [--results benchmarks/out/RESULTS-oneshot.md]

What a cron user runs, timed from spawn to exit, CPU from the child's rusage
(``os.wait4``: the process and the children it reaped, so our worker
processes count), on the farm of ``bench_round.py`` (1,000 loopback feeds x
20 items), every tool in the same run:

- ours: ``monitor -c feeds.yaml poll`` with the 1,000 farm feeds, the rules
  of ``bench_round.py``, extraction off, and one email notifier
  (``mailto://`` to a local aiosmtpd sink): what matched is delivered
  before the process exits. All feeds are on one host, so the config sets
  ``concurrency: 50, per_host: 50, host_spacing: 0`` as ``bench_round.py``
  does.
- rss2email 3.14: ``r2e run``, mailing every new item to the same sink.
- reader 3.26: ``update_feeds(scheduled=False)`` (every feed, its default
  one worker) on a reader database that lists the same feeds; reader sends
  no email.

Scenarios: cold (every tool's first round: 20,000 entries), all-304 (nothing
changed), changed (``--changed`` feeds with one new item each). all-304 and
changed run ``--repeat`` times (the farm bumps again before each changed
round); the median is reported. The peers come from benchmarks/.venv-peers
(``make bench-oneshot`` builds it); none is a dependency of rss-monitor.

``--against DIR`` also runs another version of rss-monitor, as ``before``, in
the same run (``python -m monitor`` with DIR first on the import path, a
database of its own): ``git archive REV | tar -x -C DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_round import RULES, _free_port, _r2e_config, _wait_port
from farm import Farm
from measure import compile_package

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
PEERS = HERE / ".venv-peers"
PEER_PY = PEERS / "bin" / "python"
SCENARIOS = ("cold", "all-304", "changed")
# Issue 12 part 6: how many times faster than which peer, per scenario.
TARGETS = {"cold": ("reader", 2.5), "all-304": ("rss2email", 3.0), "changed": ("rss2email", 4.0)}


@dataclass
class Run:
    wall: float
    cpu: float
    maxrss_mb: float
    rc: int
    mails: int
    requests: dict[str, int]
    summary: str  # the last line the process wrote to stderr (ours: what it polled)


def monitor_command() -> list[str]:
    """The console script next to this Python (what cron runs), else ``python -m monitor``."""
    script = Path(sys.executable).with_name("monitor")
    return [str(script)] if script.exists() else [sys.executable, "-m", "monitor"]


def write_ours(path: Path, urls: Sequence[str], smtp_port: int | None) -> None:
    """Our feeds.yaml: with ``smtp_port``, alerts are mailed there; else printed (stderr)."""
    mail = (
        f"mailto://127.0.0.1:{smtp_port}?from=monitor@example.com&to=news@example.com&mode=insecure"
    )
    lines = [
        "settings:",
        "  database: monitor.db",
        "  concurrency: 50",
        "  per_host: 50",
        "  host_spacing: 0",  # every farm feed is on one host, as in bench_round.py
        "  extract: false",
        "  interval: 15m",
        # The farm's items repeat 400 texts: one story, one alert would keep a changed
        # round from alerting (and from sending mail) at all.
        "  story_window: 0",
        *(["notifiers:", f'  mail: "{mail}"'] if smtp_port else []),
        "feeds:",
        *(f"  - {u}" for u in urls),
    ]
    path.write_text("\n".join(lines) + "\n" + RULES)


class Sink:
    """The SMTP sink (aiosmtpd, from the peers venv) that counts mails."""

    def __init__(self, workdir: Path) -> None:
        self.port = _free_port()
        self.count_file = workdir / "mails.txt"
        self.count_file.touch()
        self.proc = subprocess.Popen(
            [str(PEER_PY), str(HERE / "peers.py"), "sink", str(self.port), str(self.count_file)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_port(self.port)

    def count(self) -> int:
        return len(self.count_file.read_text().splitlines())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def timed(
    cmd: Sequence[str],
    cwd: Path,
    log: Path,
    farm: Farm,
    sink: Sink,
    env: dict[str, str] | None = None,
) -> Run:
    """Run ``cmd`` to its end: wall from spawn to exit, CPU and peak RSS from wait4."""
    farm.reset()
    mails = sink.count()
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        err.seek(0)
        text = err.read().decode(errors="replace")
    proc.returncode = os.waitstatus_to_exitcode(status)
    with log.open("a") as f:
        f.write(f"\n$ {' '.join(cmd)}\n{text}")
    time.sleep(0.2)  # the sink writes its count after it answered the last mail
    return Run(
        wall=wall,
        cpu=usage.ru_utime + usage.ru_stime,
        maxrss_mb=usage.ru_maxrss / 1024,
        rc=proc.returncode,
        mails=sink.count() - mails,
        requests=farm.stats(),
        summary=text.strip().splitlines()[-1][:200] if text.strip() else "",
    )


def bench(
    feeds: int, changed: int, repeat: int, peers: bool, against: Path | None = None
) -> dict[str, dict[str, list[Run]]]:
    results: dict[str, dict[str, list[Run]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-oneshot-") as tmp, Farm(feeds) as farm:
        work = Path(tmp)
        sink = Sink(work) if PEER_PY.exists() else None
        if sink is None:
            raise SystemExit(f"{PEERS} missing: `make bench-oneshot` builds it")
        try:
            tools: dict[str, list[str]] = {}
            ours = work / "ours"
            ours.mkdir()
            # The cold round's alerts go to the console (reader sends none; rss2email mails
            # 20,000); from then on the same feeds and database with the email notifier.
            write_ours(ours / "feeds-cold.yaml", farm.urls(), None)
            write_ours(ours / "feeds.yaml", farm.urls(), sink.port)
            tools["ours"] = [*monitor_command(), "-c", str(ours / "feeds.yaml"), "poll"]
            cold = {"ours": [*monitor_command(), "-c", str(ours / "feeds-cold.yaml"), "poll"]}
            envs: dict[str, dict[str, str]] = {}
            if against is not None:
                before = work / "before"
                before.mkdir()
                write_ours(before / "feeds-cold.yaml", farm.urls(), None)
                write_ours(before / "feeds.yaml", farm.urls(), sink.port)
                python = [sys.executable, "-m", "monitor", "-c"]
                tools["before"] = [*python, str(before / "feeds.yaml"), "poll"]
                cold["before"] = [*python, str(before / "feeds-cold.yaml"), "poll"]
                envs["before"] = {**os.environ, "PYTHONPATH": str(against.resolve())}
            if peers:
                urls = work / "urls.txt"
                urls.write_text("\n".join(farm.urls()))
                reader_db = work / "reader.sqlite"
                subprocess.run(
                    [str(PEER_PY), str(HERE / "peers.py"), "reader-add", str(reader_db), str(urls)],
                    check=True,
                )
                tools["reader"] = [
                    str(PEER_PY),
                    str(HERE / "peers.py"),
                    "reader-update",
                    str(reader_db),
                ]
                _r2e_config(work / "r2e.cfg", farm.urls(), sink.port)
                r2e = str(PEERS / "bin" / "r2e")
                tools["rss2email"] = [
                    r2e,
                    "-c",
                    str(work / "r2e.cfg"),
                    "-d",
                    str(work / "r2e.json"),
                    "run",
                ]
            for scenario in SCENARIOS:
                rounds = 1 if scenario == "cold" else repeat
                for _ in range(rounds):
                    if scenario == "changed":
                        farm.bump(changed)
                    for name, cmd in tools.items():
                        if scenario == "cold":
                            cmd = cold.get(name, cmd)
                        run = timed(cmd, ours, work / f"{name}.log", farm, sink, envs.get(name))
                        results.setdefault(name, {}).setdefault(scenario, []).append(run)
                        print(
                            f"{name:<10} {scenario:<8} wall {run.wall:7.2f} s  cpu {run.cpu:7.2f} s"
                            f"  rss {run.maxrss_mb:5.0f} MB  rc {run.rc}  mails {run.mails}"
                            f"  farm {run.requests}\n    {run.summary}",
                            flush=True,
                        )
                        if run.rc != 0:
                            tail = (work / f"{name}.log").read_text()[-1500:]
                            print(f"{name} failed (exit {run.rc}):\n{tail}", file=sys.stderr)
        finally:
            sink.stop()
    return results


def _median(runs: list[Run], what: str) -> float:
    return float(statistics.median(getattr(r, what) for r in runs))


def report(results: dict[str, dict[str, list[Run]]], feeds: int, changed: int, command: str) -> str:
    lines = [
        f"# One-shot rounds as whole processes: {feeds} feeds x 20 items, {changed} changed",
        "",
        f"Command: `{command}` (machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}).",
        "Each tool runs as a whole process, timed from spawn to exit; CPU = user + system of",
        "the process and the children it reaped (our worker processes), from `wait4`. The",
        "median of the repeated rounds (all-304, changed); cold is one round. Ours:",
        "`monitor -c feeds.yaml poll`, extraction off, 10 rules, alerts mailed to a local",
        "aiosmtpd sink; rss2email 3.14 `r2e run` mails every new item to the same sink;",
        "reader 3.26 `update_feeds(scheduled=False)` (1 worker) sends no email.",
        "",
        "| scenario | tool | wall s | CPU s | peak RSS MB | mails | runs |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for scenario in SCENARIOS:
        for tool, by in results.items():
            runs = by.get(scenario, [])
            if not runs:
                continue
            lines.append(
                f"| {scenario} | {tool} | {_median(runs, 'wall'):.2f} | {_median(runs, 'cpu'):.2f}"
                f" | {max(r.maxrss_mb for r in runs):.0f} | {int(_median(runs, 'mails'))}"
                f" | {', '.join(f'{r.wall:.2f}' for r in runs)} |"
            )
    peers = [p for p in ("reader", "rss2email") if p in results]
    if peers:
        lines += [
            "",
            "| scenario | tool | reader / tool (wall) | rss2email / tool (wall) | target |",
            "| --- | --- | --- | --- | --- |",
        ]
        for scenario in SCENARIOS:
            for tool in [t for t in ("ours", "before") if t in results]:
                w = _median(results[tool][scenario], "wall")
                ratios = {p: _median(results[p][scenario], "wall") / w for p in peers}
                peer, factor = TARGETS[scenario]
                verdict = "ok" if ratios.get(peer, 0) >= factor else "MISSED"
                lines.append(
                    f"| {scenario} | {tool} | {ratios.get('reader', 0):.2f}x"
                    f" | {ratios.get('rss2email', 0):.2f}x | {factor:g}x {peer}: {verdict} |"
                )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--changed", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="all-304 and changed rounds")
    parser.add_argument("--no-peers", action="store_true")
    parser.add_argument("--against", type=Path, help="another rss-monitor source tree")
    parser.add_argument("--results", type=Path, default=OUT / "RESULTS-oneshot.md")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    compile_package(*([args.against] if args.against else []))
    results = bench(args.feeds, args.changed, args.repeat, not args.no_peers, args.against)
    command = "python benchmarks/bench_oneshot.py " + " ".join(sys.argv[1:])
    text = report(results, args.feeds, args.changed, command.strip())
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(text)
    (OUT / "oneshot.json").write_text(
        json.dumps(
            {k: {s: [asdict(r) for r in v] for s, v in by.items()} for k, by in results.items()},
            indent=1,
        )
    )
    print()
    print(text)


if __name__ == "__main__":
    main()
