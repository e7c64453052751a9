"""What reaches people, through `monitor run` (a subprocess) and real servers: a burst is
a few messages within seconds, one story from three feeds is one alert, the operator
hears of a broken reload once, and `monitor outbox retry/drop` act on the running daemon."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.feeds import Item, rss
from tests.servers import FeedServer, Mailbox, Webhook, running, wait_for
from tests.test_daemon import Daemon

WIRE = (
    "Das chinesische KI-Unternehmen DeepSeek hat ein neues Sprachmodell vorgestellt, das nach"
    " eigenen Angaben mit deutlich weniger Rechenleistung trainiert wurde als vergleichbare"
    " Modelle aus den USA. Die Gewichte stehen unter einer offenen Lizenz zum Download bereit."
    " Fachleute zeigten sich beeindruckt von den Ergebnissen in Mathematik und Programmierung,"
    " mahnten aber zur Vorsicht bei den Angaben zu den Trainingskosten, die sich nicht"
    " unabhängig prüfen ließen."
)


def _monitor(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=config.parent,
    )


def test_a_burst_of_40_matches_reaches_an_inbox_as_a_few_messages_within_seconds(
    tmp_path: Path,
) -> None:
    site, mail = FeedServer(), Mailbox()
    with running(site, mail):
        site.put("/feed.xml", rss([]))
        config = tmp_path / "feeds.yaml"
        config.write_text(
            f"""
settings: {{interval: 1s, extract: false}}
notifiers:
  mail: "{mail.url}"
feeds:
  - url: {site.url("/feed.xml")}
    name: Testfeed
rules:
  - name: DeepSeek
    keywords: [DeepSeek]
"""
        )
        daemon = Daemon(config)
        daemon.start()
        try:
            assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
            burst = [Item(f"DeepSeek Meldung {i}", f"https://news.example/{i}") for i in range(40)]
            started = time.monotonic()
            site.put("/feed.xml", rss(burst))
            assert wait_for(lambda: len(mail.alerts()) == 40, 30), daemon.text()
            took = time.monotonic() - started
            time.sleep(2)
        finally:
            code, _ = daemon.stop()
    assert code == 0
    assert len(mail.messages) <= 3, [str(m["subject"]) for m in mail.messages]
    assert sorted(mail.alerts()) == sorted(f"[DeepSeek] {it.title}" for it in burst)
    assert took < 15  # apprise alone would space 40 emails over 4 minutes


def test_one_story_from_three_feeds_alerts_once_and_matches_names_the_others(
    tmp_path: Path,
) -> None:
    site, chat = FeedServer(), Webhook()
    with running(site, chat):
        names = ("heise", "golem", "t3n")
        for name in names:
            site.put(f"/{name}.xml", rss([], title=name))
        config = tmp_path / "feeds.yaml"
        feeds = "".join(
            f"  - url: {site.url(f'/{n}.xml')}\n    name: {n}\n    interval: 1s\n" for n in names
        )
        config.write_text(
            f"""
settings: {{extract: false}}
notifiers:
  chat: "{chat.url}"
feeds:
{feeds}rules:
  - name: DeepSeek
    keywords: [DeepSeek]
"""
        )
        daemon = Daemon(config)
        daemon.start()
        try:
            assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
            headlines = {
                "heise": "DeepSeek stellt neues Modell vor",
                "golem": "Neues KI-Modell aus China: DeepSeek legt nach",
                "t3n": "Was DeepSeeks neues Modell kann",
            }
            for n in names:  # one after the other, as the outlets publish it
                link = f"https://{n}.example/artikel?utm_source=rss"
                site.put(f"/{n}.xml", rss([Item(headlines[n], link, description=WIRE)], title=n))
                assert wait_for(lambda n=n: f"feed='{n}' status=200 new=1" in daemon.text())
            time.sleep(2.5)
            matches = [
                json.loads(line)
                for line in _monitor(config, "matches", "--json").stdout.splitlines()
            ]
        finally:
            code, _ = daemon.stop()
    assert code == 0
    assert chat.alerts() == ["[DeepSeek] DeepSeek stellt neues Modell vor"]
    by_feed = {m["feed"]: m for m in matches}
    assert by_feed["heise"]["also_reported_by"] == ["golem", "t3n"]
    assert by_feed["golem"]["copy_of"] == "heise" and by_feed["t3n"]["copy_of"] == "heise"


def test_outbox_retry_and_drop_act_on_the_running_daemon(tmp_path: Path) -> None:
    site, chat, ops = FeedServer(), Webhook(failing=True), Webhook()
    with running(site, chat, ops):
        site.put("/feed.xml", rss([]))
        config = tmp_path / "feeds.yaml"
        good = f"""
settings: {{interval: 1s, retry_delay: 1h, extract: false, admin_notify: ops}}
notifiers:
  chat: "{chat.url}"
  ops: "{ops.url}"
feeds:
  - url: {site.url("/feed.xml")}
    name: Testfeed
rules:
  - name: DeepSeek
    keywords: [DeepSeek]
    notify: [chat]
"""
        config.write_text(good)
        daemon = Daemon(config)
        daemon.start()
        try:
            assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
            site.put("/feed.xml", rss([Item("DeepSeek eins", "https://news.example/1")]))
            assert wait_for(lambda: "attempt=1" in daemon.text()), daemon.text()
            items = [
                Item("DeepSeek eins", "https://news.example/1"),
                Item("DeepSeek zwei", "https://news.example/2"),
            ]
            site.put("/feed.xml", rss(items))
            assert wait_for(lambda: daemon.text().count("new=1 matched=1") == 2), daemon.text()
            rows = [
                json.loads(line)
                for line in _monitor(config, "outbox", "--json").stdout.splitlines()
            ]
            by_title = {r["title"]: r for r in rows}
            assert set(by_title) == {"DeepSeek eins", "DeepSeek zwei"}
            assert by_title["DeepSeek eins"]["attempts"] == 1
            assert "503" in by_title["DeepSeek eins"]["last_error"]
            assert by_title["DeepSeek eins"]["target"].startswith("json://127.0.0.1:")
            # the chat is back; the target waits an hour, but the operator asks for one now
            chat.failing = False
            dropped = _monitor(config, "outbox", "drop", str(by_title["DeepSeek eins"]["id"]))
            assert dropped.returncode == 0, dropped.stderr
            retried = _monitor(config, "outbox", "retry", str(by_title["DeepSeek zwei"]["id"]))
            assert retried.returncode == 0, retried.stderr
            assert wait_for(lambda: len(chat.alerts()) == 1, 15), daemon.text()
            time.sleep(2.5)
            assert chat.alerts() == ["[DeepSeek] DeepSeek zwei"]
            assert _monitor(config, "outbox", "--json").stdout == ""

            # a broken reload: the operator hears of it once, with the place
            config.write_text(
                good.replace("keywords: [DeepSeek]", "keywords: [DeepSeek]\n    bogus: 1")
            )
            daemon.send(signal.SIGHUP)
            assert wait_for(lambda: len(ops.received) == 1, 15), daemon.text()
            time.sleep(3)
        finally:
            code, _ = daemon.stop()
    assert code == 0
    assert [m["title"] for m in ops.received] == ["[rss-monitor] config reload failed"]
    assert "feeds.yaml:12:5: a rule: unknown key 'bogus'" in ops.received[0]["message"]
