"""How long `monitor check` and `monitor run`'s start-up take on a big feeds.yaml.

    .venv/bin/python benchmarks/bench_config.py [--feeds 100000] [--tags]

Writes a feeds.yaml of N feeds (url and name each; with ``--tags`` also a tag
list, which triples the YAML nodes) in a temporary folder, then times, as whole
processes: `monitor check`; the first `monitor run` up to "monitor running" (the
database created, every feed inserted and planned); and a second start on the
same database, with the daemon's memory (RSS) once it runs. Issue 12's target: under
5 s for check and start-up.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def write_config(path: Path, feeds: int, tags: bool) -> None:
    lines = ["settings:\n  interval: 15m\n  database: bench.db\nfeeds:\n"]
    for i in range(feeds):
        # unroutable test hosts: start-up is timed, not polling
        lines.append(f"  - url: http://feeds{i % 997}.invalid/rss/{i}.xml\n    name: Feed {i}\n")
        if tags:
            lines.append(f"    tags: [t{i % 50}]\n")
    lines.append("rules:\n  - name: DeepSeek\n    keywords: [DeepSeek]\n")
    path.write_text("".join(lines))


def monitor(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "monitor", "-c", str(config), *args]


def time_check(config: Path) -> float:
    started = time.perf_counter()
    subprocess.run(monitor(config, "check"), check=True, capture_output=True, cwd=ROOT)
    return time.perf_counter() - started


def memory(pid: int) -> tuple[float, float]:
    """The process's resident memory now and at its peak (VmRSS, VmHWM), MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def time_start(config: Path) -> tuple[float, float, float]:
    """Seconds until the daemon logs that it runs, and its RSS then and at its peak
    (MB, one second later: the schedule announced); then it is stopped."""
    log = config.parent / "run.log"
    with log.open("wb") as out:
        started = time.perf_counter()
        proc = subprocess.Popen(
            monitor(config, "run"), stdout=out, stderr=subprocess.STDOUT, cwd=ROOT
        )
        try:
            while "monitor running" not in log.read_text(errors="replace"):
                if proc.poll() is not None:
                    raise RuntimeError(log.read_text())
                time.sleep(0.02)
            took = time.perf_counter() - started
            time.sleep(1.0)
            rss, peak = memory(proc.pid)
        finally:
            proc.terminate()
            proc.wait(30)
    return took, rss, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feeds", type=int, default=100_000)
    parser.add_argument("--tags", action="store_true", help="a tag list on every feed too")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rss-monitor-config-") as tmp:
        config = Path(tmp) / "feeds.yaml"
        write_config(config, args.feeds, args.tags)
        size = os.path.getsize(config) / 1e6
        shape = "url, name, tags" if args.tags else "url, name"
        print(f"{args.feeds} feeds ({shape}), feeds.yaml {size:.1f} MB")
        print(f"  monitor check:                {time_check(config):6.2f} s")
        for what in ("first start", "start again"):
            took, rss, peak = time_start(config)
            print(
                f"  monitor run, {what + ':':<16}{took:6.2f} s"
                f"   daemon RSS {rss:5.0f} MB (peak {peak:.0f} MB)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
