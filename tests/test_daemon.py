"""`monitor run` as a subprocess against real local servers: the whole path, end to end."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.feeds import Item, article_page, rss
from tests.servers import FeedServer, Mailbox, Webhook, alive, running, wait_for

STARTED: list[subprocess.Popen[bytes]] = []  # every daemon a test started (see conftest.py)


class Daemon:
    """`python -m monitor run` with its log in a file.

    ``args`` replaces ``-c CONFIG run`` (e.g. the unit's ExecStart), ``cwd``
    the config's folder as the working directory.
    """

    def __init__(
        self,
        config: Path,
        env: dict[str, str] | None = None,
        *,
        args: list[str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.config = config
        # per-poll lines are at DEBUG; several tests wait for them
        self.env = {"MONITOR_LOG_LEVEL": "debug", **os.environ, **(env or {})}
        self.args = args or ["-c", str(config), "run"]
        self.cwd = cwd or config.parent
        self.log = self.cwd / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            self._out.close()
        self._out = self.log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "monitor", *self.args],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            cwd=self.cwd,
            env=self.env,
        )
        STARTED.append(self.proc)  # killed after the test if it failed before stopping it

    def send(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, float]:
        """Send ``sig`` and wait; returns (exit code, seconds it took)."""
        assert self.proc is not None
        started = time.monotonic()
        self.proc.send_signal(sig)
        code = self.proc.wait(timeout=15)
        self._out.close()
        return code, time.monotonic() - started

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def cli(self, *args: str) -> str:
        """Run another ``monitor`` command on the same config; returns its stdout."""
        out = subprocess.run(
            [sys.executable, "-m", "monitor", "-c", str(self.config), *args],
            capture_output=True,
            check=True,
            cwd=self.config.parent,
            env=self.env,
        )
        return out.stdout.decode()

    def status(self) -> dict[str, object]:
        result: dict[str, object] = json.loads(self.cli("status", "--json"))
        return result

    def feed(self) -> dict[str, Any]:
        """The status of the one feed of the config."""
        (feed,) = self.status()["feeds"]  # type: ignore[misc]
        return feed  # type: ignore[no-any-return]


CONFIG = """
settings:
  interval: 1s
  retry_delay: 1s
notifiers:
  chat: "{chat}"
  mail: "{mail}"
feeds:
  - url: {feed}
    name: Testfeed
rules:
  - name: DeepSeek
    keywords: [DeepSeek]
  - name: Azure
    keywords: [Azure]
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[FeedServer, Webhook, Mailbox, Path]]:
    feeds, chat, mail = FeedServer(), Webhook(), Mailbox()
    with running(feeds, chat, mail):
        config = tmp_path / "feeds.yaml"
        feeds.put("/feed.xml", rss([]))
        config.write_text(CONFIG.format(chat=chat.url, mail=mail.url, feed=feeds.url("/feed.xml")))
        yield feeds, chat, mail, config


def _publish(feeds: FeedServer, items: list[Item]) -> None:
    feeds.put("/feed.xml", rss(items))


def _chat_only(config: Path) -> None:
    """No email and no article pages: apprise spaces emails 5.5 s apart, which would
    hold up the chat messages a test waits for."""
    lines = [line for line in config.read_text().splitlines() if not line.startswith("  mail:")]
    config.write_text("\n".join(lines).replace("interval: 1s", "interval: 1s\n  extract: false"))


def test_daemon_alerts_restarts_retries_and_reloads(
    world: tuple[FeedServer, Webhook, Mailbox, Path],
) -> None:
    feeds, chat, mail, config = world
    base = feeds.url("")
    feeds.put(
        "/a1.html",
        article_page("DeepSeek stellt R2 vor", "DeepSeek hat ein neues Modell vorgestellt."),
        "text/html; charset=utf-8",
    )
    feeds.put(
        "/a2.html",
        article_page("Neue Cloud-Regionen", "Microsoft bringt KI-Modelle nach Azure-Regionen."),
        "text/html; charset=utf-8",
    )
    feeds.put(
        "/a3.html",
        article_page("Smartphones im Test", "Sechs Geräte im Vergleich.", sidebar="DeepSeek"),
        "text/html; charset=utf-8",
    )
    items = [
        Item("DeepSeek stellt R2 vor", f"{base}/a1.html"),
        Item("Neue Cloud-Regionen", f"{base}/a2.html"),  # keyword only in the article
        Item("Smartphones im Test", f"{base}/a3.html"),  # keyword only in the sidebar
    ]
    _publish(feeds, items)

    daemon = Daemon(config)
    daemon.start()
    try:
        # 1. new items alert on both channels; the sidebar keyword alerts nothing
        assert wait_for(lambda: len(chat.alerts()) >= 2 and len(mail.alerts()) >= 2), daemon.text()
        time.sleep(2.5)  # more polls: nothing more may arrive
        titles = sorted(chat.alerts())
        assert titles == ["[Azure] Neue Cloud-Regionen", "[DeepSeek] DeepSeek stellt R2 vor"]
        assert sorted(mail.alerts()) == titles
        html_part = mail.messages[0].get_body(("html",))
        assert html_part is not None and "<mark>" in html_part.get_content()
        text_part = mail.messages[0].get_body(("plain",))
        assert text_part is not None and "Testfeed" in text_part.get_content()

        # 2. SIGTERM exits 0 within 10 s; a restart sends nothing twice
        code, took = daemon.stop()
        assert code == 0 and took < 10, daemon.text()
        daemon.start()
        assert wait_for(lambda: daemon.text().count("monitor running") == 2)
        time.sleep(3)
        assert len(chat.alerts()) == 2 and len(mail.alerts()) == 2

        # 3. a chat endpoint that is down, then up, gets its message exactly once;
        #    the email goes out meanwhile and is not sent again
        chat.failing = True
        feeds.put(
            "/a4.html",
            article_page("DeepSeek auf Azure", "DeepSeek-Modelle laufen jetzt auf Azure."),
            "text/html; charset=utf-8",
        )
        items.append(Item("DeepSeek auf Azure", f"{base}/a4.html"))
        _publish(feeds, items)
        assert wait_for(lambda: len(mail.alerts()) == 3), daemon.text()
        assert wait_for(lambda: "attempt=2" in daemon.text()), daemon.text()
        outbox = daemon.status()["outbox"]
        assert isinstance(outbox, dict)
        assert (outbox["pending"], outbox["failed"], outbox["sent"]) == (1, 0, 5)
        assert "503" in str(outbox["last_error"])
        chat.failing = False
        assert wait_for(lambda: len(chat.alerts()) == 3), daemon.text()
        time.sleep(2.5)
        assert len(chat.alerts()) == 3 and len(mail.alerts()) == 3
        assert chat.received[-1]["title"] == "[DeepSeek, Azure] DeepSeek auf Azure"

        # 4. a broken config edit keeps the last good config running and is reported
        good = config.read_text()
        config.write_text(good + "\n  - name: Broken\n    keywords: [x]\n    bogus: 1\n")
        daemon.send(signal.SIGHUP)
        assert wait_for(lambda: "config reload failed" in daemon.text()), daemon.text()
        assert "unknown key 'bogus'" in str(daemon.status()["config_error"])
        feeds.put(
            "/a5.html",
            article_page("Noch mehr zu DeepSeek", "DeepSeek veröffentlicht einen Bericht."),
            "text/html; charset=utf-8",
        )
        items.append(Item("Noch mehr zu DeepSeek", f"{base}/a5.html"))
        _publish(feeds, items)
        assert wait_for(lambda: len(chat.alerts()) == 4), daemon.text()

        # ... and fixing it on disk reloads without a signal
        config.write_text(good.replace("keywords: [Azure]", "keywords: [Azure, Kubernetes]"))
        assert wait_for(lambda: "config reloaded" in daemon.text()), daemon.text()
        assert daemon.status()["config_error"] is None
    finally:
        if daemon.proc and daemon.proc.poll() is None:
            code, took = daemon.stop()
    assert code == 0


def test_kill_9_mid_run_then_restart_sends_each_alert_once(
    world: tuple[FeedServer, Webhook, Mailbox, Path],
) -> None:
    feeds, chat, mail, config = world
    base = feeds.url("")
    items = [Item(f"DeepSeek Meldung {i}", f"{base}/n{i}.html") for i in range(5)]
    for i in range(5):
        feeds.put(
            f"/n{i}.html",
            article_page(f"DeepSeek Meldung {i}", "DeepSeek Text."),
            "text/html",
        )
    daemon = Daemon(config)
    daemon.start()
    assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
    _publish(feeds, items)
    time.sleep(0.3)
    assert daemon.proc is not None
    os.kill(daemon.proc.pid, signal.SIGKILL)
    daemon.proc.wait(5)
    daemon.start()
    # apprise spaces emails to one server 5.5 s apart (its request_rate_per_sec)
    assert wait_for(lambda: len(chat.alerts()) >= 5 and len(mail.alerts()) >= 5, 60), daemon.text()
    time.sleep(2.5)
    code, _ = daemon.stop()
    assert code == 0
    titles = chat.alerts()
    assert sorted(titles) == sorted(f"[DeepSeek] DeepSeek Meldung {i}" for i in range(5))
    assert len(mail.alerts()) == 5


def test_daemon_speaks_sd_notify_ready_watchdog_and_stopping(
    world: tuple[FeedServer, Webhook, Mailbox, Path],
) -> None:
    import socket

    _feeds, _chat, _mail, config = world
    path = config.parent / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(15)
        daemon = Daemon(config, {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"})
        daemon.start()
        received: list[str] = []

        def until(state: str) -> None:
            while not any(state in r for r in received):
                received.append(sock.recv(4096).decode())

        until("READY=1")
        assert any("STATUS=watching 1 feeds" in r for r in received)
        until("WATCHDOG=1")
        watchdogs = sum("WATCHDOG=1" in r for r in received)
        until_more = watchdogs + 2
        while sum("WATCHDOG=1" in r for r in received) < until_more:  # keeps pinging
            received.append(sock.recv(4096).decode())
        assert daemon.proc is not None
        daemon.proc.send_signal(signal.SIGTERM)
        until("STOPPING=1")
        assert daemon.proc.wait(10) == 0
        daemon._out.close()


def _children(pid: int) -> list[int]:
    """Live child processes of ``pid`` (from /proc)."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            out.append(int(entry))
    return out


def test_killed_pool_workers_cost_no_alert_and_die_with_the_daemon(
    world: tuple[FeedServer, Webhook, Mailbox, Path],
) -> None:
    """The OOM killer takes a worker: the daemon starts another and keeps alerting."""
    feeds, chat, _mail, config = world
    base = feeds.url("")
    daemon = Daemon(config)
    daemon.start()
    assert daemon.proc is not None
    assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
    _publish(feeds, [Item("DeepSeek eins", f"{base}/1")])
    assert wait_for(lambda: len(chat.alerts()) >= 1, 30), daemon.text()
    workers = _children(daemon.proc.pid)
    assert workers, "the pool has a worker once an item was parsed"
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    _publish(feeds, [Item("DeepSeek zwei", f"{base}/2"), Item("DeepSeek eins", f"{base}/1")])
    assert wait_for(lambda: len(chat.alerts()) >= 2, 30), daemon.text()
    assert chat.alerts() == [
        "[DeepSeek] DeepSeek eins",
        "[DeepSeek] DeepSeek zwei",
    ]
    assert daemon.proc.poll() is None
    assert "Traceback" not in daemon.text()
    # kill -9 of the daemon leaves no worker behind: they see their pipe close
    workers = _children(daemon.proc.pid)
    assert workers
    code, _ = daemon.stop(signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert wait_for(lambda: not any(alive(p) for p in workers), 10)


# --------------------------------------------------------------------------
# where the config and the database are; secrets from files


REPO = Path(__file__).resolve().parent.parent

SMALL = """
settings:
  interval: 1s
  retry_delay: 1s
{settings}notifiers:
  chat: "{chat}"
feeds:
  - url: {feed}
    name: Testfeed
    extract: false
rules:
  - name: R
    keywords: [{keyword}]
"""


def test_configmap_symlink_swap_is_seen_and_reloaded(
    world: tuple[FeedServer, Webhook, Mailbox, Path],
) -> None:
    """A Kubernetes ConfigMap: feeds.yaml -> ..data/feeds.yaml, ..data -> v1, then -> v2."""
    feeds, chat, _mail, _config = world
    base = feeds.url("")
    conf = _config.parent / "conf"
    for version, keyword in (("v1", "DeepSeek"), ("v2", "Postgres")):  # same size
        (conf / version).mkdir(parents=True)
        text = SMALL.format(
            settings="  database: monitor.db\n",
            chat=chat.url,
            feed=feeds.url("/feed.xml"),
            keyword=keyword,
        )
        (conf / version / "feeds.yaml").write_text(text)
    stamp = (conf / "v1" / "feeds.yaml").stat().st_mtime_ns
    os.utime(conf / "v2" / "feeds.yaml", ns=(stamp, stamp))  # same mtime too
    (conf / "..data").symlink_to("v1")
    (conf / "feeds.yaml").symlink_to("..data/feeds.yaml")

    daemon = Daemon(conf / "feeds.yaml")
    daemon.start()
    try:
        assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
        # relative paths resolve next to the path named, not next to the link's target
        assert (conf / "monitor.db").exists() and not (conf / "v1" / "monitor.db").exists()
        (conf / "..data_tmp").symlink_to("v2")
        os.replace(conf / "..data_tmp", conf / "..data")  # atomic, as the kubelet does it
        assert wait_for(lambda: "config reloaded" in daemon.text()), daemon.text()
        _publish(feeds, [Item("Postgres 18 erschienen", f"{base}/pg")])
        assert wait_for(lambda: len(chat.alerts()) == 1), daemon.text()
        assert chat.received[0]["title"] == "[R] Postgres 18 erschienen"
    finally:
        code, _ = daemon.stop()
    assert code == 0


def _unit_exec(key: str) -> list[str]:
    """The arguments after the program of the shipped unit's ``key=`` line."""
    unit = (REPO / "systemd" / "monitor.service").read_text()
    (line,) = [ln for ln in unit.splitlines() if ln.startswith(f"{key}=")]
    program, *args = shlex.split(line.split("=", 1)[1])
    assert program == "/opt/rss-monitor/venv/bin/monitor"
    return args


def test_service_and_operator_commands_read_the_same_database(
    world: tuple[FeedServer, Webhook, Mailbox, Path],
) -> None:
    """The shipped unit's command line, the installed config, and `monitor -c ... status`."""
    feeds, chat, _mail, config = world
    etc, state = config.parent / "etc", config.parent / "var-lib"
    etc.mkdir()
    state.mkdir()
    installed = etc / "feeds.yaml"
    installed.write_text(  # as the install steps say: the config names the state directory
        SMALL.format(
            settings=f"  database: {state}/monitor.db\n",
            chat=chat.url,
            feed=feeds.url("/feed.xml"),
            keyword="DeepSeek",
        )
    )

    def local(args: list[str]) -> list[str]:
        return [
            a.replace("/etc/rss-monitor", str(etc)).replace("/var/lib/rss-monitor", str(state))
            for a in args
        ]

    assert "--db" not in _unit_exec("ExecStart") + _unit_exec("ExecStartPre")
    daemon = Daemon(installed, args=local(_unit_exec("ExecStart")), cwd=state)
    daemon.start()
    try:
        assert wait_for(lambda: "feed='Testfeed' status=200" in daemon.text()), daemon.text()
        assert f"database {state}/monitor.db" in daemon.text()
    finally:
        code, _ = daemon.stop()
    assert code == 0

    # an operator, from anywhere, with the config only
    env = {k: v for k, v in os.environ.items() if k != "MONITOR_DB"}
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "-c", str(installed), "status", "--json"],
        capture_output=True,
        text=True,
        cwd=config.parent,
        env=env,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["database"] == {
        "path": f"{state}/monitor.db",
        "source": f"settings.database in {installed}",
    }
    assert report["feeds"][0]["last_poll"] is not None
    assert sorted(p.name for p in etc.iterdir()) == ["feeds.yaml"]


def test_rotated_credential_file_reaches_the_endpoint_after_a_reload(
    world: tuple[FeedServer, Webhook, Mailbox, Path],
) -> None:
    """The endpoint wants the new token: the alert waiting in the outbox goes out with it."""
    feeds, chat, _mail, config = world
    base = feeds.url("")
    creds = config.parent / "credentials"
    creds.mkdir()
    (creds / "hook_token").write_text("old-token-1111\n")
    config.write_text(
        SMALL.format(
            settings="",
            chat=chat.url + "?+X-Api-Key=${file:hook_token}",
            feed=feeds.url("/feed.xml"),
            keyword="DeepSeek",
        )
    )
    chat.require = ("X-Api-Key", "new-token-2222")
    daemon = Daemon(config, {"CREDENTIALS_DIRECTORY": str(creds)})
    daemon.start()
    try:
        assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
        _publish(feeds, [Item("DeepSeek eins", f"{base}/1")])
        assert wait_for(lambda: "attempt=2" in daemon.text()), daemon.text()
        assert "401" in str(daemon.status()["outbox"])
        assert chat.received == []

        (creds / "hook_token").write_text("new-token-2222\n")
        daemon.send(signal.SIGHUP)
        assert wait_for(lambda: "config reloaded" in daemon.text()), daemon.text()
        assert wait_for(lambda: len(chat.alerts()) == 1, 30), daemon.text()
        _publish(feeds, [Item("DeepSeek eins", f"{base}/1"), Item("DeepSeek zwei", f"{base}/2")])
        assert wait_for(lambda: len(chat.alerts()) == 2), daemon.text()
    finally:
        code, _ = daemon.stop()
    assert code == 0
    assert chat.alerts() == ["[R] DeepSeek eins", "[R] DeepSeek zwei"]
    assert {h["X-Api-Key"] for h in chat.headers} == {"new-token-2222"}
    assert "old-token-1111" not in daemon.text() and "new-token-2222" not in daemon.text()


def test_reload_composes_a_large_config_off_the_event_loop(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The work of a reload that grows with the config (composing the YAML, building the
    fetch policy from every feed's origin, the notifier targets) runs in a thread, and the
    event loop goes on ticking meanwhile. (No timing: which thread ran what, and whether
    the loop ran while it did.)"""
    import threading

    import monitor.daemon as daemon_module
    from monitor.app import App
    from monitor.config import load_config
    from monitor.daemon import Daemon as MonitorDaemon

    path = tmp_path / "feeds.yaml"
    feeds = "".join(
        f"  - url: https://f{i}.example.com/rss\n    name: Feed {i}\n" for i in range(20000)
    )
    path.write_text(
        f"settings:\n  database: {tmp_path / 'db.sqlite'}\n"
        f"feeds:\n{feeds}rules:\n  - name: R\n    keywords: [x]\n"
    )
    config = load_config(path, {})
    ticks = 0
    ran: dict[str, tuple[int, int]] = {}  # step -> (thread, loop ticks while it ran)

    def watched(name: str, fn: Any) -> Any:
        def run(*args: Any) -> Any:
            before = ticks
            try:
                return fn(*args)
            finally:
                ran[name] = (threading.get_ident(), ticks - before)

        return run

    async def reload_and_watch_the_loop() -> int:
        nonlocal ticks
        app = App(config)
        monkeypatch.setattr(daemon_module, "load_config", watched("compose", load_config))
        monkeypatch.setattr(app, "prepare", watched("prepare", app.prepare))
        daemon = MonitorDaemon(app, {})
        await daemon._plan()  # as at start
        reloading = True

        async def ticker() -> None:
            nonlocal ticks
            while reloading:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        path.write_text(path.read_text().replace("keywords: [x]", "keywords: [y]"))
        await daemon._reload()
        reloading = False
        await task
        assert daemon.app.config.rules[0].keywords == ("y",)
        assert len(daemon.app.context.fetcher.policy.allowed_origins) == 20000
        await app.close()
        return threading.get_ident()

    loop_thread = asyncio.run(reload_and_watch_the_loop())
    assert set(ran) == {"compose", "prepare"}
    for step, (thread, ticked) in ran.items():
        assert thread != loop_thread, f"{step} ran on the event loop's thread"
        assert ticked > 0, f"the event loop stood still while {step} ran"


def test_sigterm_lets_a_slow_poll_in_flight_finish_and_commit(
    world: tuple[FeedServer, Webhook, Mailbox, Path],
) -> None:
    """The grace period is real: the poll finishes, stores its entry, and is not redone."""
    feeds, chat, _mail, config = world
    config.write_text(config.read_text().replace("    name: Testfeed\n", "    extract: false\n"))
    _publish(feeds, [Item("DeepSeek langsam", feeds.url("/slow/1"))])
    feeds.delay["/feed.xml"] = 2.5
    daemon = Daemon(config)
    daemon.start()
    assert wait_for(lambda: feeds.hits.get("/feed.xml", 0) >= 1, 20), daemon.text()
    time.sleep(0.3)  # the request is at the server, waiting for its answer
    code, took = daemon.stop()
    log = daemon.text()
    assert code == 0 and took < 10, log
    assert "status=200 new=1 matched=1" in log, log  # the poll's own result line
    assert "interrupted by shutdown" not in log and "Traceback" not in log, log
    assert log.index("stopping: 1 polls in flight") < log.index("status=200 new=1")

    feeds.delay.clear()
    daemon.start()
    assert wait_for(lambda: daemon.text().count("monitor running") == 2), daemon.text()
    (feed,) = daemon.status()["feeds"]  # type: ignore[misc]
    assert feed["entries"] == 1 and feed["matches"] == 1
    assert wait_for(lambda: len(chat.alerts()) == 1, 20), daemon.text()
    assert wait_for(lambda: "status=200 new=0" in daemon.text() or "unchanged" in daemon.text())
    time.sleep(1.5)
    code, _ = daemon.stop()
    assert code == 0
    assert chat.alerts() == ["[DeepSeek] DeepSeek langsam"]


def test_a_feed_keeps_its_entries_when_its_url_is_edited_or_moves_permanently(
    world: tuple[FeedServer, Webhook, Mailbox, Path],
) -> None:
    feeds, chat, _mail, config = world
    _chat_only(config)
    items = [Item("DeepSeek eins", feeds.url("/1")), Item("Azure zwei", feeds.url("/2"))]
    _publish(feeds, items)
    daemon = Daemon(config)
    daemon.start()
    try:
        assert wait_for(lambda: len(chat.alerts()) == 2, 20), daemon.text()

        # 1. the URL is edited, the name stays: the same feed, nothing is new
        feeds.put("/v2/feed.xml", rss(items))
        config.write_text(config.read_text().replace("/feed.xml", "/v2/feed.xml"))
        assert wait_for(lambda: feeds.hits.get("/v2/feed.xml", 0) >= 2, 20), daemon.text()
        time.sleep(1.5)  # time enough for alerts, if any, to arrive
        assert len(chat.alerts()) == 2, chat.received
        assert "continues the feed configured at" in daemon.text()

        # 2. a 301 to a URL that answers with the feed (and one new item) is adopted
        items.append(Item("DeepSeek drei", feeds.url("/3")))
        feeds.put("/v3/feed.xml", rss(items))
        feeds.special["/v2/feed.xml"] = (301, feeds.url("/v3/feed.xml"))
        assert wait_for(lambda: len(chat.alerts()) == 3, 20), daemon.text()
        feed = daemon.feed()
        assert feed["url"] == feeds.url("/v3/feed.xml")
        assert feed["configured_url"] == feeds.url("/v2/feed.xml")

        # 3. the operator adopts the 301's URL in the config, without the name: the same feed
        text = config.read_text().replace("/v2/feed.xml", "/v3/feed.xml")
        config.write_text(text.replace("    name: Testfeed\n", ""))
        assert wait_for(lambda: daemon.text().count("config reloaded") == 2, 20), daemon.text()
        hits = feeds.hits.get("/v3/feed.xml", 0)
        assert wait_for(lambda: feeds.hits.get("/v3/feed.xml", 0) >= hits + 2, 20)
        feed = daemon.feed()
        assert feed["configured_url"] is None and feed["entries"] == 3
        assert feed["earlier_urls"] == [feeds.url("/feed.xml"), feeds.url("/v2/feed.xml")]
        assert chat.alerts() == [
            "[DeepSeek] DeepSeek eins",
            "[Azure] Azure zwei",
            "[DeepSeek] DeepSeek drei",
        ]
    finally:
        code, _ = daemon.stop()
    assert code == 0 and "Traceback" not in daemon.text(), daemon.text()[-6000:]


def test_a_gone_feed_waits_for_a_resume_and_a_paused_feed_is_not_polled(
    world: tuple[FeedServer, Webhook, Mailbox, Path],
) -> None:
    feeds, chat, _mail, config = world
    _chat_only(config)
    feeds.special["/feed.xml"] = (410, None)
    daemon = Daemon(config)
    daemon.start()
    try:
        assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
        assert wait_for(lambda: daemon.feed()["state"] == "gone", 20), daemon.text()
        hits = feeds.hits["/feed.xml"]
        time.sleep(2.5)
        assert feeds.hits["/feed.xml"] == hits  # asked again in a day, not every second
        assert "GONE (410), asked again daily" in daemon.cli("status")

        # the site is back; the operator resumes the feed: the running daemon polls it
        del feeds.special["/feed.xml"]
        _publish(feeds, [Item("DeepSeek ist zurück", feeds.url("/1"))])
        assert "resumed Testfeed" in daemon.cli("feeds", "resume", "Testfeed")
        assert wait_for(lambda: len(chat.alerts()) == 1, 15), daemon.text()
        assert wait_for(lambda: daemon.feed()["state"] == "ok")

        # paused by its URL: no more polls until resumed
        daemon.cli("feeds", "pause", feeds.url("/feed.xml"))
        time.sleep(3)  # the daemon notices within about 2 s
        hits = feeds.hits["/feed.xml"]
        time.sleep(2.5)
        assert feeds.hits["/feed.xml"] == hits, daemon.text()
        (row,) = [json.loads(line) for line in daemon.cli("feeds", "--json").splitlines()]
        assert (row["name"], row["state"], row["next_poll"]) == ("Testfeed", "paused", None)
        _publish(
            feeds, [Item("DeepSeek ist zurück", feeds.url("/1")), Item("Azure", feeds.url("/2"))]
        )
        daemon.cli("feeds", "resume", "Testfeed")
        assert wait_for(lambda: len(chat.alerts()) == 2, 15), daemon.text()
    finally:
        code, _ = daemon.stop()
    assert code == 0 and "Traceback" not in daemon.text(), daemon.text()[-6000:]
