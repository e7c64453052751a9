"""Delivery through `monitor run` (a subprocess) and real servers: each target on its
own, nothing lost when a URL changes, nothing sent twice (by a failed record, a
stop, or a second process on the same database)."""

from __future__ import annotations

import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.feeds import Item, rss
from tests.servers import FeedServer, Mailbox, Webhook, running, wait_for
from tests.test_daemon import Daemon

CONFIG = """
settings:
  interval: 1s
  retry_delay: {retry}
  extract: false
notifiers:
{notifiers}
feeds:
  - url: {feed}
    name: Testfeed
rules:
  - name: DeepSeek
    keywords: [DeepSeek]
"""


def _config(path: Path, feed: str, notifiers: dict[str, str], retry: str = "1s") -> None:
    lines = "\n".join(f'  {name}: "{url}"' for name, url in notifiers.items())
    path.write_text(CONFIG.format(feed=feed, notifiers=lines, retry=retry))


def _items(n: int, start: int = 0) -> list[Item]:
    return [Item(f"DeepSeek Meldung {i}", guid=f"g{i}") for i in range(start, start + n)]


def _titles(hook: Webhook) -> list[str]:
    return hook.alerts()


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    server = FeedServer()
    with running(server):
        server.put("/feed.xml", rss([]))
        yield server


def _monitor(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "-c", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=config.parent,
    )


def _attempts(log: str, notifier: str) -> int:
    return len(re.findall(rf"notifier='{notifier}' target=\S+ attempt=", log))


ROUTED = """
settings:
  interval: 1s
  retry_delay: 4s
  extract: false
notifiers:
  chat: "{chat}"
  team: "{team}"
  mail: "{mail}"
feeds:
  - url: {feed}
    name: Testfeed
rules:
  - name: Jobs
    keywords: [Stellenangebot]
    notify: [mail]
  - name: DeepSeek
    keywords: [DeepSeek]
    notify: [chat, team]
"""


def test_dead_targets_hold_up_no_other_target_and_are_not_tried_every_second(
    tmp_path: Path, feeds: FeedServer
) -> None:
    """600 alerts queue for a dead SMTP server and the chat webhook is down: the
    team's webhook still gets its alert at once, and the dead chat is tried once
    per backoff step (4 s, 8 s, ...), not on every tick."""
    chat, team, mail = Webhook(), Webhook(), Mailbox()  # chat and mail never start
    config = tmp_path / "feeds.yaml"
    config.write_text(
        ROUTED.format(chat=chat.url, team=team.url, mail=mail.url, feed=feeds.url("/feed.xml"))
    )
    jobs = [Item(f"Stellenangebot {i}", guid=f"job{i}") for i in range(600)]
    with running(team):
        daemon = Daemon(config)
        daemon.start()
        try:
            assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
            feeds.put("/feed.xml", rss(jobs))
            assert wait_for(lambda: _attempts(daemon.text(), "mail") >= 1, 30), daemon.text()
            feeds.put("/feed.xml", rss([*jobs, *_items(1)]))
            assert wait_for(lambda: len(team.alerts()) == 1, 8), daemon.text()
            assert wait_for(lambda: _attempts(daemon.text(), "chat") >= 1), daemon.text()
            time.sleep(9)
            assert _attempts(daemon.text(), "chat") <= 3, daemon.text()
            feeds.put("/feed.xml", rss([*jobs, *_items(2)]))
            assert wait_for(lambda: len(team.alerts()) == 2, 8), daemon.text()
            notifiers: dict[str, Any] = daemon.status()["outbox"]["notifiers"]  # type: ignore[index]
            assert (notifiers["mail"]["pending"], notifiers["mail"]["sent"]) == (600, 0)
            assert (notifiers["chat"]["pending"], notifiers["chat"]["sent"]) == (2, 0)
            assert notifiers["chat"]["last_error"] and notifiers["mail"]["last_error"]
        finally:
            code, took = daemon.stop()
    assert code == 0 and took < 10
    assert _titles(team) == ["[DeepSeek] DeepSeek Meldung 0", "[DeepSeek] DeepSeek Meldung 1"]


def test_a_slow_mail_server_holds_up_no_chat_alert(tmp_path: Path, feeds: FeedServer) -> None:
    chat, mail = Webhook(), Mailbox()
    mail.slow_down(4)  # and apprise spaces emails to one server 5.5 s apart
    config = tmp_path / "feeds.yaml"
    _config(config, feeds.url("/feed.xml"), {"chat": chat.url, "mail": mail.url})
    with running(chat, mail):
        daemon = Daemon(config)
        daemon.start()
        try:
            assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
            feeds.put("/feed.xml", rss(_items(5)))
            assert wait_for(lambda: len(chat.alerts()) == 5), daemon.text()
            feeds.put("/feed.xml", rss(_items(6)))
            # the new chat alert does not wait for the mail server, still busy with the first
            assert wait_for(lambda: len(chat.alerts()) == 6, 3), daemon.text()
            assert len(mail.alerts()) < 6
            assert wait_for(lambda: len(mail.alerts()) == 6, 60), daemon.text()
        finally:
            code, _ = daemon.stop()
    assert code == 0
    assert len(chat.alerts()) == 6 and len(mail.alerts()) == 6


def test_queued_alerts_follow_a_changed_url_and_only_a_removed_notifier_loses_its_rows(
    tmp_path: Path, feeds: FeedServer
) -> None:
    old_chat, new_chat, mail = Webhook(failing=True), Webhook(), Mailbox()  # mail: closed port
    config = tmp_path / "feeds.yaml"
    _config(config, feeds.url("/feed.xml"), {"chat": old_chat.url, "mail": mail.url})
    with running(old_chat, new_chat):
        daemon = Daemon(config)
        daemon.start()
        try:
            assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
            feeds.put("/feed.xml", rss(_items(2)))
            assert wait_for(lambda: _attempts(daemon.text(), "chat") >= 1), daemon.text()
            assert wait_for(lambda: _attempts(daemon.text(), "mail") >= 1), daemon.text()
            # the chat's URL changes (a new token, a new host) and mail is removed
            _config(config, feeds.url("/feed.xml"), {"chat": new_chat.url})
            daemon.send(signal.SIGHUP)
            assert wait_for(lambda: len(new_chat.alerts()) == 2, 15), daemon.text()
            status = daemon.status()
            notifiers: dict[str, Any] = status["outbox"]["notifiers"]  # type: ignore[index]
            assert notifiers["chat"]["sent"] == 2 and notifiers["chat"]["pending"] == 0
            assert notifiers["mail"]["failed"] == 2 and notifiers["mail"]["pending"] == 0
            assert notifiers["mail"]["configured"] is False
            assert "removed from the config" in notifiers["mail"]["last_error"]
            text = _monitor(config, "status").stdout
            assert "mail: 0 pending, 2 failed, 0 sent (no longer in the config" in text
        finally:
            code, _ = daemon.stop()
    assert code == 0
    assert old_chat.received == []
    assert sorted(_titles(new_chat)) == [
        "[DeepSeek] DeepSeek Meldung 0",
        "[DeepSeek] DeepSeek Meldung 1",
    ]


def test_a_sent_message_whose_record_fails_is_not_sent_again(
    tmp_path: Path, feeds: FeedServer
) -> None:
    """The database is locked (longer than SQLite's busy timeout) right after the
    chat accepted a message: the daemon keeps the outcome and records it later."""
    held = threading.Event()
    db_path = tmp_path / "monitor.db"

    def lock_the_database(_message: dict[str, Any]) -> None:
        if held.is_set():
            return

        def hold() -> None:
            db = sqlite3.connect(db_path, isolation_level=None, timeout=30)
            db.execute("BEGIN EXCLUSIVE")
            held.set()
            time.sleep(8)
            db.execute("COMMIT")
            db.close()

        threading.Thread(target=hold, daemon=True).start()
        held.wait(30)

    chat = Webhook(on_receive=lock_the_database)
    config = tmp_path / "feeds.yaml"
    _config(config, feeds.url("/feed.xml"), {"chat": chat.url})
    with running(chat):
        daemon = Daemon(config)
        daemon.start()
        try:
            assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
            feeds.put("/feed.xml", rss(_items(1)))
            assert wait_for(lambda: len(chat.alerts()) == 1), daemon.text()
            assert wait_for(lambda: "outcome recorded after all" in daemon.text(), 30)
            time.sleep(3)
            assert len(chat.alerts()) == 1, daemon.text()
            outbox = daemon.status()["outbox"]
            assert (outbox["pending"], outbox["sent"]) == (0, 1)  # type: ignore[index]
        finally:
            code, _ = daemon.stop()
    assert code == 0
    assert "could not record that it was sent" in daemon.text()


def test_sigterm_lets_a_send_in_flight_finish_and_records_it(
    tmp_path: Path, feeds: FeedServer
) -> None:
    chat = Webhook(delay=3.0)
    config = tmp_path / "feeds.yaml"
    _config(config, feeds.url("/feed.xml"), {"chat": chat.url})
    with running(chat):
        daemon = Daemon(config)
        daemon.start()
        assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
        feeds.put("/feed.xml", rss(_items(1)))
        assert wait_for(lambda: chat.arrived == 1), daemon.text()
        code, took = daemon.stop()
        assert code == 0 and took < 10, daemon.text()
        assert len(chat.alerts()) == 1
        assert daemon.status()["outbox"]["sent"] == 1  # type: ignore[index]
        # after a restart, nothing is sent again
        chat.delay = 0
        daemon.start()
        assert wait_for(lambda: daemon.text().count("monitor running") == 2), daemon.text()
        time.sleep(4)
        code, _ = daemon.stop()
    assert code == 0
    assert len(chat.alerts()) == 1 and chat.arrived == 1


def test_a_second_daemon_on_the_same_database_refuses_to_start(
    tmp_path: Path, feeds: FeedServer
) -> None:
    chat = Webhook()
    config = tmp_path / "feeds.yaml"
    _config(config, feeds.url("/feed.xml"), {"chat": chat.url})
    with running(chat):
        daemon = Daemon(config)
        daemon.start()
        try:
            assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
            second = _monitor(config, "run", timeout=20)
            assert second.returncode == 1
            assert daemon.proc is not None
            assert f"another `monitor run` (pid {daemon.proc.pid}) is already using" in (
                second.stderr
            )
            assert daemon.proc.poll() is None
        finally:
            code, _ = daemon.stop()
    assert code == 0


def test_monitor_poll_beside_the_daemon_sends_nothing_twice(
    tmp_path: Path, feeds: FeedServer
) -> None:
    chat = Webhook(delay=1.0)
    config = tmp_path / "feeds.yaml"
    _config(config, feeds.url("/feed.xml"), {"chat": chat.url})
    with running(chat):
        daemon = Daemon(config)
        daemon.start()
        try:
            assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
            feeds.put("/feed.xml", rss(_items(4)))
            assert wait_for(lambda: chat.arrived >= 1), daemon.text()
            poll = _monitor(config, "poll")
            assert poll.returncode == 0, poll.stderr
            assert "the running daemon" in poll.stderr
            assert wait_for(lambda: len(chat.alerts()) == 4, 20), daemon.text()
            time.sleep(3)
        finally:
            code, _ = daemon.stop()
    assert code == 0
    assert sorted(_titles(chat)) == sorted(f"[DeepSeek] DeepSeek Meldung {i}" for i in range(4))


def test_two_processes_delivering_one_outbox_send_each_row_once(
    tmp_path: Path, feeds: FeedServer
) -> None:
    chat = Webhook(delay=0.3)
    config = tmp_path / "feeds.yaml"
    _config(config, feeds.url("/feed.xml"), {"chat": chat.url})
    feeds.put("/feed.xml", rss(_items(8)))
    with running(chat):
        command = [sys.executable, "-m", "monitor", "-c", str(config), "poll"]
        procs = [
            subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
            for _ in range(2)
        ]
        results = [p.communicate(timeout=60) for p in procs]
        for p, (_, err) in zip(procs, results, strict=True):
            assert p.returncode == 0, err
        out = _monitor(config, "status", "--json").stdout
    assert '"sent": 8' in out
    assert sorted(_titles(chat)) == sorted(f"[DeepSeek] DeepSeek Meldung {i}" for i in range(8))
