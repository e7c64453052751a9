"""Peer runs, executed by the peers venv's Python (never imported by rss-monitor).

    peers.py feedparser URLS_FILE STATE_FILE   one sequential feedparser.parse(url) pass
    peers.py exec -- CMD ...                   run CMD, report its wall/CPU/peak RSS
    peers.py reader-add DB URLS_FILE           a reader 3.26 database with these feeds
    peers.py reader-update DB                  one reader update of every feed (timed from outside)
    peers.py sink PORT COUNT_FILE              an SMTP sink (aiosmtpd) that appends a line per mail

Each of the first two prints one JSON line: wall, cpu (user+sys) and maxrss_mb of the work.
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


def reader_add(db: str, urls_file: str) -> None:
    from reader import make_reader

    with open(urls_file, encoding="utf-8") as f:
        urls = f.read().split()
    r = make_reader(db)
    for url in urls:
        r.add_feed(url, exist_ok=True)
    r.close()


def reader_update(db: str) -> None:
    """What a cron job of reader runs: every feed now (``scheduled=False``: reader's own
    schedule would skip feeds updated within the hour), one worker (its default)."""
    from reader import make_reader

    r = make_reader(db)
    r.update_feeds(scheduled=False)
    r.close()


def sink(port: int, count_file: str) -> None:
    """Accepts every mail and appends one line per mail to ``count_file``; runs until killed."""
    import signal
    import threading

    from aiosmtpd.controller import Controller

    class Count:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            with open(count_file, "a", encoding="utf-8") as f:
                f.write("1\n")
            return "250 OK"

    controller = Controller(Count(), hostname="127.0.0.1", port=port)
    controller.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    controller.stop()


if __name__ == "__main__":
    if sys.argv[1] == "feedparser":
        feedparser_pass(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "exec":
        exec_cmd(sys.argv[sys.argv.index("--") + 1 :])
    elif sys.argv[1] == "reader-add":
        reader_add(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "reader-update":
        reader_update(sys.argv[2])
    elif sys.argv[1] == "sink":
        sink(int(sys.argv[2]), sys.argv[3])
    else:
        raise SystemExit(__doc__)
