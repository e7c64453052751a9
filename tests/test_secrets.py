"""No secret in any output: every command and the daemon, with secrets in many URL shapes.

The real path: `monitor ...` as subprocesses, the daemon with debug logging
(apprise's debug lines quote tokens), a local webhook and SMTP server, and
internet-bound notifiers (Telegram, Slack, Discord) that fail to deliver
through a proxy nobody listens on, so their errors are logged and stored.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.feeds import Item, rss
from tests.servers import FeedServer, Mailbox, Webhook, free_port, running, wait_for
from tests.test_daemon import Daemon

SECRETS = {
    "HOOK_TOKEN": "hk-3f9a7c1e5d2b8a40",
    "TG_TOKEN": "123456789:AAFh2kP9xQ7mZ3vB8nL4cT6yR1wE5uI0oP",
    "SLACK_TOKEN": "TIiajkdnlazkcOXrIdevi7FQ",
    "DISCORD_TOKEN": "JHMHI8qBe7bk2ZwO5U711o3dV_jsXqLmN0pQ",
    "NTFY_PASSWORD": "ntfy-Pass-4417",
    "FEED_TOKEN": "feedtok-7781abc",
    "BAD_INTERVAL": "notaduration-9x7",  # a value a broken config quotes in its error
}
SMTP_PASSWORD = "smtp-S3cret-pw"  # from a credential file

CONFIG = """\
settings:
  interval: {interval}
  retry_delay: 1s
notifiers:
  hook: "json://bot:${{HOOK_TOKEN}}@127.0.0.1:{hook}/hook?+X-Api-Key=${{HOOK_TOKEN}}"
  mail: "mailto://user:${{file:smtp_password}}@127.0.0.1:{smtp}?from=m@example.com&to=n@example.com&mode=insecure"
  telegram: "tgram://${{TG_TOKEN}}/12345"
  slack: "slack://T1JJ3T3L2/A1BRTD4JD/${{SLACK_TOKEN}}/#general"
  discord: "discord://4174216298/${{DISCORD_TOKEN}}"
  ntfy: "ntfy://alerts:${{NTFY_PASSWORD}}@127.0.0.1:{dead}/topic"
feeds:
  - url: "{feed}?token=${{FEED_TOKEN}}"
    name: News
    extract: false
  - url: "http://127.0.0.1:{dead}/feed.xml?token=${{FEED_TOKEN}}"
    name: Down
rules:
  - name: DeepSeek
    keywords: [DeepSeek]
"""


def _spellings(secret: str) -> set[str]:
    return {secret, quote(secret, safe=""), quote(secret)}


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[FeedServer, Webhook, Mailbox, Path, dict[str, str]]]:
    feeds, hook, mail = (
        FeedServer(),
        Webhook(require=("X-Api-Key", SECRETS["HOOK_TOKEN"])),
        Mailbox(),
    )
    with running(feeds, hook, mail):
        creds = tmp_path / "credentials"
        creds.mkdir()
        (creds / "smtp_password").write_text(SMTP_PASSWORD + "\n")
        dead = free_port()
        feeds.put("/feed.xml", rss([Item("DeepSeek R2 vorgestellt", feeds.url("/1"))]))
        config = tmp_path / "feeds.yaml"
        config.write_text(
            CONFIG.format(
                interval="1s",
                hook=hook.port,
                smtp=mail.port,
                dead=dead,
                feed=feeds.url("/feed.xml"),
            )
        )
        env = {
            **SECRETS,
            "CREDENTIALS_DIRECTORY": str(creds),
            # Internet-bound notifiers fail at once and offline, through a dead proxy.
            "HTTPS_PROXY": f"http://127.0.0.1:{dead}",
            "HTTP_PROXY": f"http://127.0.0.1:{dead}",
            "https_proxy": f"http://127.0.0.1:{dead}",
            "http_proxy": f"http://127.0.0.1:{dead}",
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
        yield feeds, hook, mail, config, env


def test_no_command_and_no_daemon_log_line_shows_a_secret(
    setup: tuple[FeedServer, Webhook, Mailbox, Path, dict[str, str]],
) -> None:
    feeds, hook, _mail, config, env = setup
    full_env = {k: v for k, v in os.environ.items() if k not in ("MONITOR_DB", "MONITOR_CONFIG")}
    full_env.update(env)
    full_env["MONITOR_LOG_FORMAT"] = "text"  # the commands log text, the daemon JSON lines
    outputs: list[str] = []

    def monitor(*args: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [sys.executable, "-m", "monitor", "-c", str(config), *args],
            capture_output=True,
            text=True,
            env=full_env,
            cwd=config.parent,
            timeout=120,
        )
        outputs.append(f"$ monitor {' '.join(args)}\n{done.stdout}\n{done.stderr}")
        return done

    check = monitor("-v", "check")
    assert check.returncode == 0, check.stderr
    assert "hook: json://bot:****@127.0.0.1" in check.stdout
    assert "tgram://****/12345" in check.stdout

    notified = monitor("-v", "test-notify")
    assert notified.returncode == 1  # the internet-bound ones fail here
    assert "hook: json://bot:****@" in notified.stdout and ": sent" in notified.stdout
    assert notified.stdout.count("FAILED") == 5
    assert [m["title"] for m in hook.received] == ["[rss-monitor] test notification"]

    polled = monitor("-v", "poll")
    assert polled.returncode == 0, polled.stderr
    assert "[DeepSeek] DeepSeek R2 vorgestellt" in polled.stdout
    assert len(hook.received) == 2
    for args in (
        ["status"],
        ["status", "--json"],
        ["matches"],
        ["matches", "--json"],
        ["rules", "test"],
        ["export-opml"],
    ):
        done = monitor(*args)
        assert done.returncode == 0, done.stderr
    status = json.loads(outputs[-5].split("\n", 1)[1].rsplit("\n\n", 1)[0])
    assert status["outbox"]["pending"] == 5 and status["outbox"]["last_error"]
    assert any(f["error"] for f in status["feeds"])  # the Down feed, with its URL

    daemon = Daemon(
        config, {**full_env, "MONITOR_LOG_FORMAT": "json"}, args=["-v", "-c", str(config), "run"]
    )
    daemon.start()
    try:
        assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
        feeds.put(
            "/feed.xml",
            rss(
                [
                    Item("DeepSeek R2 vorgestellt", feeds.url("/1")),
                    Item("DeepSeek auf Azure", feeds.url("/2")),
                ]
            ),
        )
        assert wait_for(lambda: len(hook.received) == 3, 30), daemon.text()
        assert wait_for(lambda: daemon.text().count("attempt=") >= 8, 30), daemon.text()
        daemon.send(signal.SIGHUP)
        assert wait_for(lambda: "config reloaded" in daemon.text()), daemon.text()
        config.write_text(config.read_text().replace("interval: 1s", "interval: ${BAD_INTERVAL}"))
        daemon.send(signal.SIGHUP)
        assert wait_for(lambda: "config reload failed" in daemon.text()), daemon.text()
        time.sleep(1)
        done = monitor("status")  # the broken config, and its error stored by the daemon
        assert "got '****'" in done.stdout and "got '****'" in done.stderr
    finally:
        code, _ = daemon.stop()
    assert code == 0
    outputs.append(daemon.text())

    everything = "\n".join(outputs)
    # apprise's debug lines were there to leak, as text and as JSON
    assert "DEBUG apprise" in everything
    assert '"level": "debug", "logger": "apprise"' in daemon.text()
    assert "****" in everything
    leaks = {
        name: spelling
        for name, secret in [*SECRETS.items(), ("smtp_password", SMTP_PASSWORD)]
        for spelling in _spellings(secret)
        if spelling in everything
    }
    assert leaks == {}, everything


def test_a_refused_notifier_url_is_reported_without_its_secret(tmp_path: Path) -> None:
    """apprise logs a URL it can't parse in full; while a config loads that is held back."""
    config = tmp_path / "feeds.yaml"
    config.write_text('notifiers:\n  tg: "tgram://${TG_TOKEN}/12345"\n  slack: "slack://a/b"\n')
    token = "not-a-bot-token-4711x"  # no ':', so apprise can't parse it
    env = {**os.environ, "TG_TOKEN": token}
    done = subprocess.run(
        [sys.executable, "-m", "monitor", "-v", "-c", str(config), "check"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert done.returncode == 2
    problems = [line for line in done.stderr.splitlines() if line.startswith("feeds.yaml:")]
    assert problems == [
        "feeds.yaml:2:7: notifier 'tg': apprise does not accept this URL (scheme 'tgram')",
        "feeds.yaml:3:10: notifier 'slack': apprise does not accept this URL (scheme 'slack'): "
        "An invalid Slack (third) Token (None) was specified.",
    ]
    assert token not in done.stdout + done.stderr
