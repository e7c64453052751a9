"""Several `monitor run` instances on one PostgreSQL database (issue 12, part 5).

Three real daemons (subprocesses) share one database and one feeds.yaml; a local
feed server logs every request and a webhook every alert. The request log shows
each feed polled once per interval in total (not once per instance), the webhook
each alert once, a digest once; after one instance is killed with SIGKILL, the
other two poll its feeds and send the new alerts within two intervals.

Needs MONITOR_TEST_POSTGRES (skipped without it, see conftest).
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.app import App
from monitor.config import parse_config
from monitor.storage import migrate, open_storage
from monitor.storage.base import FeedRef, NewEntry, Outgoing
from monitor.types import AlertItem, FeedEntry
from tests.feeds import Item, rss
from tests.servers import FeedServer, Webhook, running, wait_for
from tests.test_daemon import Daemon

FEEDS = 12
INTERVAL = 5.0  # seconds; the checks below are in intervals


def _config(path: Path, site: FeedServer, chat: Webhook, digest: Webhook) -> None:
    feeds = "".join(
        f"  - url: {site.url(f'/f{i}.xml')}\n    name: Feed {i}\n" for i in range(FEEDS)
    )
    path.write_text(
        f"settings: {{interval: {INTERVAL:g}s, extract: false, workers: 1, retry_delay: 1s}}\n"
        f"notifiers:\n"
        f'  chat: "{chat.url}"\n'
        f"  digest:\n    url: \"{digest.url}\"\n    digest: '* * * * *'\n    timezone: UTC\n"
        f"feeds:\n{feeds}"
        "rules:\n"
        "  - name: DeepSeek\n    keywords: [DeepSeek]\n    notify: [chat]\n"
        "  - name: Azure\n    keywords: [Azure]\n    notify: [digest]\n"
    )


def _publish(site: FeedServer, items: dict[int, list[Item]]) -> None:
    for i in range(FEEDS):
        site.put(f"/f{i}.xml", rss(items.get(i, []), title=f"Feed {i}"))


def _polls(site: FeedServer, since: float, until: float) -> dict[str, list[float]]:
    """Feed path -> the times it was requested in [since, until)."""
    out: dict[str, list[float]] = {f"/f{i}.xml": [] for i in range(FEEDS)}
    for t, path in list(site.requests):
        if since <= t < until and path in out:
            out[path].append(t)
    return out


def _gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


def test_three_instances_share_the_feeds_send_each_alert_once_and_take_over_a_killed_one(
    tmp_path: Path, postgres_url: str
) -> None:
    migrate(postgres_url)  # `monitor db migrate`: instances never migrate by themselves
    site, chat, digest = FeedServer(), Webhook(), Webhook()
    # The digest fires at every minute: start well before one, so the first firing
    # comes after the first polls recorded its alerts.
    if datetime.now(UTC).second > 40:
        time.sleep(62 - datetime.now(UTC).second)
    with running(site, chat, digest):
        first = {i: [Item(f"DeepSeek story {i}", f"https://news.example/{i}/1")] for i in range(6)}
        for i in range(6, 9):  # for the digest only
            first[i] = [Item(f"Azure story {i}", f"https://news.example/{i}/1")]
        _publish(site, first)
        config = tmp_path / "feeds.yaml"
        _config(config, site, chat, digest)
        daemons = []
        for n in range(3):
            folder = tmp_path / f"instance{n}"
            folder.mkdir()
            daemons.append(Daemon(config, {"MONITOR_DB": postgres_url}, cwd=folder))
        for d in daemons:
            d.start()
        try:
            assert wait_for(lambda: all("monitor running" in d.text() for d in daemons), 60), [
                d.text() for d in daemons
            ]
            status = daemons[0].status()
            assert len(status["instances"]) == 3, status  # type: ignore[arg-type]
            expected = [f"[DeepSeek] DeepSeek story {i}" for i in range(6)]
            assert wait_for(lambda: sorted(chat.alerts()) == sorted(expected), 30), (
                chat.alerts(),
                [d.text() for d in daemons],
            )
            steady = time.monotonic()
            time.sleep(4 * INTERVAL)  # four intervals with three instances

            victim = daemons[0]
            assert victim.proc is not None
            killed = time.monotonic()
            victim.stop(signal.SIGKILL)
            second = {
                i: [*first.get(i, []), Item(f"DeepSeek later {i}", f"https://news.example/{i}/2")]
                for i in range(FEEDS)
            }
            _publish(site, second)
            later = [f"[DeepSeek] DeepSeek later {i}" for i in range(FEEDS)]
            assert wait_for(lambda: set(later) <= set(chat.alerts()), 6 * INTERVAL), (
                chat.alerts(),
                [d.text() for d in daemons[1:]],
            )
            time.sleep(4 * INTERVAL)  # four intervals with two instances
            ended = time.monotonic()
            # the digest: every Azure story in one message, sent by one instance
            azure = [f"[Azure] Azure story {i}" for i in range(6, 9)]
            assert wait_for(lambda: sorted(digest.alerts()) == sorted(azure), 90), (
                digest.received,
                [d.text() for d in daemons],
            )
            time.sleep(2 * INTERVAL)  # time enough for a second copy to arrive, if any
        finally:
            codes = [d.stop()[0] for d in daemons[1:]]
    assert codes == [0, 0]

    # every feed polled once per interval in total while three instances ran ...
    for path, times in _polls(site, steady, killed).items():
        assert len(times) >= 3, (path, times)  # four intervals: at least three polls
        assert min(_gaps(times)) > INTERVAL / 2, (path, _gaps(times))  # never twice at once
    # ... and after the kill: the survivors took over within two intervals
    for path, times in _polls(site, killed, ended).items():
        assert times and times[0] - killed <= 2 * INTERVAL, (path, times, killed)
        gaps = _gaps(times)
        assert gaps and min(gaps) > INTERVAL / 2 and max(gaps) <= 2 * INTERVAL, (path, gaps)
    # every alert delivered once, the ones found before the kill and after it
    counts = Counter(chat.alerts())
    assert counts == Counter(expected + later), counts
    # the digest once, not once per instance
    assert len(digest.received) == 1, digest.received
    assert sorted(digest.alerts()) == sorted(azure)
    # the three instances shared the polls (each log names the feeds it polled)
    polled = [
        sum(d.text().count(f"feed='Feed {i}' status=") for i in range(FEEDS)) for d in daemons
    ]
    assert sum(1 for n in polled if n) >= 2, polled


def test_an_instance_on_another_host_that_stops_beating_loses_its_leases_and_claims(
    tmp_path: Path, postgres_url: str
) -> None:
    """Its pid says nothing here (another host): its heartbeat does."""
    import psycopg  # an optional dependency: only when PostgreSQL tests run

    migrate(postgres_url)
    feed = "https://news.example/feed.xml"
    config = parse_config(f"feeds: [{feed}]\n", tmp_path / "feeds.yaml", {})
    app = App(config, db=postgres_url, console=io.StringIO())
    elsewhere = open_storage(postgres_url)
    owner = "elsewhere.example:4242:1"
    try:
        elsewhere.lock_for_daemon(owner)
        elsewhere.ensure_feeds([FeedRef(feed)])
        now = datetime.now(UTC)
        later = now + timedelta(hours=1)
        entry = FeedEntry("id-1", "id-1", "https://news.example/1", "DeepSeek", "", "")
        item = AlertItem("News", "DeepSeek", "https://news.example/1", now, ("r",), ("deepseek",))
        new = NewEntry(entry, now, outgoing=(Outgoing("console", 0, item),))
        elsewhere.commit_poll(elsewhere.feed_state(feed), [new])
        # it holds the feed (a poll in flight) and the alert (a send in flight)
        assert len(elsewhere.claim_due_feeds(now, owner, later, 10)) == 1
        assert len(elsewhere.claim_deliveries("console", 0, now, owner, later, 10)) == 1
        assert app.release_dead() == 0  # alive: nothing to take over
        with psycopg.connect(postgres_url, autocommit=True) as db:
            db.execute("UPDATE instances SET seen = now() - interval '1 minute'")
        assert app.release_dead() == 2  # dead: its lease and its claim are free
        assert [s.key for s in app.storage.claim_due_feeds(now, app.owner, later, 10)] == [feed]
        (row,) = app.storage.claim_deliveries("console", 0, now, app.owner, later, 10)
        assert row.payload == replace(item, entry=row.payload.entry)  # type: ignore[union-attr]
    finally:
        elsewhere.close()
        asyncio.run(app.close())


def _cli(config: Path, *args: str, db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "-c", str(config), "--db", db, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=config.parent,
    )


def test_db_migrate_creates_the_schema_an_instance_refuses_to_start_without(
    tmp_path: Path, postgres_url: str
) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds: [https://news.example/feed.xml]\n")
    refused = _cli(config, "run", db=postgres_url)
    assert refused.returncode == 1
    assert "has no rss-monitor schema yet; run `monitor db migrate`" in refused.stderr
    status = _cli(config, "status", db=postgres_url)
    assert status.returncode == 1 and "monitor db migrate" in status.stderr
    created = _cli(config, "db", "migrate", db=postgres_url)
    assert created.returncode == 0, created.stderr
    assert "schema created to version" in created.stdout
    again = _cli(config, "db", "migrate", db=postgres_url)
    assert "is up to date" in again.stdout
    status = _cli(config, "status", "--json", db=postgres_url)
    assert status.returncode == 0, status.stderr
    report = json.loads(status.stdout)
    assert (report["running"], report["instances"]) == (False, [])
    # SQLite migrates on every open: the command only says so
    sqlite = _cli(config, "db", "migrate", db=str(tmp_path / "monitor.db"))
    assert sqlite.returncode == 0 and "migrated automatically" in sqlite.stdout
