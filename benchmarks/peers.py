"""Peer runs, executed by the peers venv's Python (never imported by rss-monitor).

    peers.py feedparser URLS_FILE STATE_FILE   one sequential feedparser.parse(url) pass
    peers.py exec -- CMD ...                   run CMD, report its wall/CPU/peak RSS

Each prints one JSON line: wall, cpu (user+sys) and maxrss_mb of the work.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time


def _report(
    wall: float, usage: resource.struct_rusage, cpu_before: float = 0.0, **extra: object
) -> None:
    cpu = usage.ru_utime + usage.ru_stime - cpu_before
    print(json.dumps({"wall": wall, "cpu": cpu, "maxrss_mb": usage.ru_maxrss / 1024, **extra}))


def feedparser_pass(urls_file: str, state_file: str) -> None:
    """The naive loop: feedparser.parse(url) per feed, with the ETag of the last pass."""
    import feedparser

    with open(urls_file, encoding="utf-8") as f:
        urls = f.read().split()
    state: dict[str, str] = {}
    if os.path.exists(state_file):
        with open(state_file, encoding="utf-8") as f:
            state = json.load(f)
    before = resource.getrusage(resource.RUSAGE_SELF)
    start = time.perf_counter()
    statuses: dict[str, int] = {}
    entries = 0
    for url in urls:
        d = feedparser.parse(url, etag=state.get(url))
        status = str(d.get("status"))
        statuses[status] = statuses.get(status, 0) + 1
        entries += len(d.entries)
        if d.get("etag"):
            state[url] = d.etag
    wall = time.perf_counter() - start
    with open(state_file, "w", encoding="utf-8") as f:
        json.dump(state, f)
    _report(
        wall,
        resource.getrusage(resource.RUSAGE_SELF),
        before.ru_utime + before.ru_stime,
        statuses=statuses,
        entries=entries,
    )


def exec_cmd(cmd: list[str]) -> None:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - start
    _report(
        wall,
        resource.getrusage(resource.RUSAGE_CHILDREN),
        rc=proc.returncode,
        stderr=proc.stderr[-2000:],
    )


if __name__ == "__main__":
    if sys.argv[1] == "feedparser":
        feedparser_pass(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "exec":
        exec_cmd(sys.argv[sys.argv.index("--") + 1 :])
    else:
        raise SystemExit(__doc__)
