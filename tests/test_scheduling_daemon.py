"""Due feeds come from the store, through `monitor run` (a subprocess) and a feed server:
after downtime, overdue feeds are spread over one interval; `monitor poll --feed` beside
a running daemon has the daemon poll; `interval: auto` shows in `status`."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.feeds import Item, rss
from tests.servers import FeedServer, Webhook, running, wait_for
from tests.test_daemon import Daemon


def _config(path: Path, site: FeedServer, n: int, hook: Webhook, interval: str = "10s") -> None:
    feeds = "".join(f"  - url: {site.url(f'/f{i}.xml')}\n    name: Feed {i}\n" for i in range(n))
    path.write_text(
        f"settings: {{interval: {interval}, extract: false}}\n"
        f'notifiers:\n  chat: "{hook.url}"\n'
        f"feeds:\n{feeds}rules:\n  - name: DeepSeek\n    keywords: [DeepSeek]\n"
    )


def _monitor(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=config.parent,
    )


def test_after_downtime_overdue_feeds_are_spread_over_one_interval(tmp_path: Path) -> None:
    site, hook = FeedServer(), Webhook()
    n = 40
    with running(site, hook):
        for i in range(n):
            site.put(f"/f{i}.xml", rss([], title=f"Feed {i}"))
        config = tmp_path / "feeds.yaml"
        _config(config, site, n, hook, interval="20s")
        daemon = Daemon(config)
        daemon.start()
        assert wait_for(lambda: len({p for _t, p in site.requests}) == n, 30), daemon.text()
        code, _ = daemon.stop()
        assert code == 0
        # an hour of downtime: every feed is overdue by far more than its interval
        with sqlite3.connect(tmp_path / "monitor.db") as db:
            db.execute("UPDATE feeds SET next_due = next_due - 3600")
        db.close()
        site.requests.clear()
        daemon.start()
        assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
        started = time.monotonic()
        assert wait_for(lambda: len({p for _t, p in site.requests}) == n, 40), daemon.text()
        code, _ = daemon.stop()
    assert code == 0
    first = {}
    for t, path in site.requests:
        first.setdefault(path, t - started)
    waits = sorted(first.values())
    # spread over the 20 s interval, not one herd at the start
    assert sum(1 for w in waits if w < 4) < n / 2, waits
    assert waits[-1] > 8, waits
    assert "feeds are due at new times" in daemon.text()


def test_poll_feed_beside_the_daemon_has_the_daemon_poll_it(tmp_path: Path) -> None:
    site, hook = FeedServer(), Webhook()
    with running(site, hook):
        site.put("/f0.xml", rss([], title="Feed 0"))
        config = tmp_path / "feeds.yaml"
        _config(config, site, 1, hook, interval="1h")  # the daemon would wait an hour
        daemon = Daemon(config)
        daemon.start()
        try:
            assert wait_for(lambda: site.hits.get("/f0.xml", 0) == 1), daemon.text()
            site.put("/f0.xml", rss([Item("DeepSeek heute", "https://news.example/1")]))
            polled = _monitor(config, "poll", "--feed", "Feed 0", "--json")
            assert polled.returncode == 0, polled.stderr
            (row,) = [json.loads(line) for line in polled.stdout.splitlines()]
            assert (row["feed"], row["title"], row["rules"]) == (
                "Feed 0",
                "DeepSeek heute",
                ["DeepSeek"],
            )
            assert site.hits["/f0.xml"] == 2  # fetched once more: by the daemon
            assert daemon.text().count("feed='Feed 0' status=200") == 2
            assert wait_for(lambda: hook.alerts() == ["[DeepSeek] DeepSeek heute"]), daemon.text()
        finally:
            code, _ = daemon.stop()
    assert code == 0


def test_interval_auto_polls_by_how_often_a_feed_publishes(tmp_path: Path) -> None:
    site, hook = FeedServer(), Webhook()
    with running(site, hook):
        site.put("/f0.xml", rss([], title="Quiet"))
        config = tmp_path / "feeds.yaml"
        _config(config, site, 1, hook, interval="auto")
        config.write_text(
            config.read_text().replace(
                "extract: false}", "extract: false, min_interval: 2s, max_interval: 1h}"
            )
        )
        daemon = Daemon(config)
        daemon.start()
        try:
            assert wait_for(lambda: site.hits.get("/f0.xml", 0) == 1), daemon.text()
            status = json.loads(_monitor(config, "status", "--json").stdout)
            (feed,) = status["feeds"]
            assert feed["interval"] == 3600.0  # nothing published: the longest
            assert feed["interval_why"].startswith("auto: about 0.0 new entries a week")
        finally:
            code, _ = daemon.stop()
    assert code == 0
