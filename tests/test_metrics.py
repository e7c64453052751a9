"""Metrics and health (settings.metrics): the address, the verdict of /healthz, the
metrics the events feed, and `monitor run` scraped over real HTTP."""

from __future__ import annotations

import json
import platform
import signal
import socket
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor import __version__
from monitor.activity import Activity
from monitor.config import ConfigError, Listen, parse_config, parse_listen
from monitor.health import Heartbeat, MetricsError, judge
from monitor.metrics import Metrics, MetricsServer, StoreSnapshot, bind
from monitor.pipeline import PollOutcome
from monitor.storage.base import FeedCounts, NotifierOutbox
from monitor.types import AlertItem
from monitor.update import Alert
from tests.feeds import Item, rss
from tests.servers import FeedServer, Webhook, free_port, running, wait_for
from tests.test_daemon import Daemon

pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")


# --------------------------------------------------------------------------
# the address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9464", Listen("127.0.0.1", 9464)),
        ("[::1]:9464", Listen("::1", 9464)),
        (":9464", Listen("", 9464)),  # every interface, as node_exporter's --web.listen-address
        ("localhost:9464", Listen("localhost", 9464)),
        ("0.0.0.0:80", Listen("0.0.0.0", 80)),
        (" 127.0.0.1:0 ", Listen("127.0.0.1", 0)),  # a free port, logged
    ],
)
def test_metrics_address_is_host_port_as_exporters_take_it(text: str, expected: Listen) -> None:
    assert parse_listen(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("9464", "'9464' has no port; write host:port, e.g. 127.0.0.1:9464"),
        ("127.0.0.1:", "'' is not a port"),
        ("127.0.0.1:65536", "'65536' is not a port (0-65535)"),
        ("::1:9464", "put an IPv6 address in brackets: [::1]:9464"),
        ("[::g]:9464", "'::g' is not an IPv6 address"),
        ("[::1]9464", "'[::1]9464' is not [IPv6 address]:port"),
        ("http://127.0.0.1:9464", "write host:port, e.g. 127.0.0.1:9464"),
        ("a:b:9464", "'a:b:9464' is not an address"),
        ("exa_mple:9464", "'exa_mple' is not an IP address or host name"),
    ],
)
def test_a_bad_metrics_address_says_what_to_write(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=r".*") as info:
        parse_listen(text)
    assert message in str(info.value)


def test_a_bad_metrics_address_is_a_config_error_at_its_place() -> None:
    text = "settings:\n  metrics: 9464\nfeeds:\n  - url: https://example.org/rss\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, Path("/etc/monitor/feeds.yaml"), {})
    assert [str(p) for p in info.value.problems] == [
        "feeds.yaml:2:12: settings.metrics: '9464' has no port; write host:port,"
        " e.g. 127.0.0.1:9464 (or :9464 for every interface)"
    ]


def test_metrics_are_off_by_default() -> None:
    config = parse_config("feeds:\n  - url: https://example.org/rss\n", Path("f.yaml"), {})
    assert config.settings.metrics is None


# --------------------------------------------------------------------------
# /healthz


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_health_verdicts() -> None:
    def at(now: float, beat: float = 100.0, tick: float | None = 100.0, **kw: bool) -> str:
        v = judge(now, started=90.0, beat=beat, tick=tick, tick_every=0.25, **kw)
        return f"{v.code} {v.status} {v.reason or ''}".strip()

    assert at(101.0) == "200 ok"
    assert at(110.0, tick=None) == "200 starting"
    assert at(125.0, beat=124.0, tick=None) == "503 stalled scheduler not started after 35 s"
    assert at(142.0, beat=100.0) == "503 stalled event loop stuck for 42 s"
    assert at(142.25, beat=142.0, tick=100.0) == "503 stalled scheduler tick 42 s late"
    assert at(101.0, stopping=True) == "503 stopping the daemon is stopping"


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.fixture
def server_with_clock() -> Iterator[tuple[MetricsServer, Heartbeat, Clock]]:
    clock = Clock()
    health = Heartbeat(tick_every=0.25, clock=clock)
    server = MetricsServer(Metrics("1.2.3", health), health, Listen("127.0.0.1", 0))
    try:
        yield server, health, clock
    finally:
        server.close()


def test_healthz_is_503_with_the_reason_once_the_event_loop_stops_beating(
    server_with_clock: tuple[MetricsServer, Heartbeat, Clock],
) -> None:
    server, health, clock = server_with_clock
    health.beat()
    health.ticked()
    code, body = _get(f"{server.url}/healthz")
    assert (code, json.loads(body)) == (200, {"status": "ok"})
    assert b"\nrss_monitor_healthy 1.0\n" in _get(f"{server.url}/metrics")[1]
    clock.now += 42  # the loop neither beat nor ticked since: the server's thread still answers
    code, body = _get(f"{server.url}/healthz")
    assert (code, json.loads(body)) == (
        503,
        {"status": "stalled", "reason": "event loop stuck for 42 s"},
    )
    assert b"\nrss_monitor_healthy 0.0\n" in _get(f"{server.url}/metrics")[1]
    health.beat()  # the loop turns again, but no tick has claimed feeds for 42 s
    code, body = _get(f"{server.url}/healthz")
    assert (code, json.loads(body)) == (
        503,
        {"status": "stalled", "reason": "scheduler tick 42 s late"},
    )


def test_the_server_answers_metrics_and_404_elsewhere(
    server_with_clock: tuple[MetricsServer, Heartbeat, Clock],
) -> None:
    server, _health, _clock = server_with_clock
    code, body = _get(f"{server.url}/metrics")
    assert code == 200
    assert 'rss_monitor_build_info{python="' in body.decode()
    assert 'version="1.2.3"' in body.decode()
    assert _get(f"{server.url}/nothing")[0] == 404


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(MetricsError) as info:
            bind(Listen("127.0.0.1", port))
    assert str(info.value).startswith(f"settings.metrics: can't listen on 127.0.0.1:{port}: ")
    assert "Address already in use" in str(info.value)
    assert "another process listens there" in str(info.value)


def test_every_interface_listens_on_ipv4_too() -> None:
    server = bind(Listen("", 0))
    try:
        port = server.server_address[1]
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        server.server_close()


# --------------------------------------------------------------------------
# what the events make of the metrics


def _samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(metrics.exposition().decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_events_reach_the_metrics_through_the_activity_recorder() -> None:
    metrics, activity = Metrics("1.2.3"), Activity()
    activity.attach(metrics)
    alert = Alert("f", "DeepSeek R2", "https://x.example/1", None, ("DeepSeek", "AI"), ())
    activity.polled(PollOutcome("f", 200, None, 3, (alert, alert), None, seconds=0.3))
    activity.polled(PollOutcome("f", 304, None, 0, (), None, "not_modified", seconds=0.01))
    activity.polled(PollOutcome("f", None, "boom", 0, (), None, "error", "timeout", 20.0))
    at = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    item = AlertItem("f", "t", None, at - timedelta(seconds=90), ("DeepSeek",), ())
    activity.sent("chat", 2, (item, item), None, at)
    activity.sent("chat", 1, (), "HTTP 503", at)
    activity.given_up("chat", 1)
    activity.worker_restarted("crashed")
    activity.reloaded(False)
    metrics.set_store(
        StoreSnapshot({"chat": NotifierOutbox(pending=4, failed=1)}, FeedCounts(5, 1, 1, 1, 2, 1))
    )
    s = _samples(metrics)
    assert s[("rss_monitor_polls_total", (("error", ""), ("outcome", "ok")))] == 1
    assert s[("rss_monitor_polls_total", (("error", ""), ("outcome", "not_modified")))] == 1
    assert s[("rss_monitor_polls_total", (("error", "timeout"), ("outcome", "error")))] == 1
    assert s[("rss_monitor_poll_duration_seconds_count", ())] == 3
    assert s[("rss_monitor_entries_total", ())] == 3
    assert s[("rss_monitor_matches_total", (("rule", "DeepSeek"),))] == 2
    assert s[("rss_monitor_matches_total", (("rule", "AI"),))] == 2
    chat = ("notifier", "chat")
    assert s[("rss_monitor_deliveries_total", (chat, ("outcome", "sent")))] == 2
    assert s[("rss_monitor_deliveries_total", (chat, ("outcome", "failed")))] == 1
    assert s[("rss_monitor_deliveries_total", (chat, ("outcome", "given_up")))] == 1
    assert s[("rss_monitor_alert_latency_seconds_count", (chat,))] == 2
    assert s[("rss_monitor_alert_latency_seconds_bucket", (("le", "60.0"), chat))] == 0
    assert s[("rss_monitor_alert_latency_seconds_bucket", (("le", "120.0"), chat))] == 2
    assert s[("rss_monitor_worker_restarts_total", (("reason", "crashed"),))] == 1
    assert s[("rss_monitor_config_reloads_total", (("result", "failed"),))] == 1
    assert s[("rss_monitor_config_last_reload_successful", ())] == 0
    assert s[("rss_monitor_outbox_pending", (chat,))] == 4
    assert s[("rss_monitor_outbox_failed", (chat,))] == 1
    assert s[("rss_monitor_feeds", (("state", "ok"),))] == 2
    assert s[("rss_monitor_feeds", (("state", "failing"),))] == 1
    assert s[("rss_monitor_feeds_due", ())] == 2
    assert s[("rss_monitor_feeds_overdue", ())] == 1
    # the summary a minute counted the same events
    assert activity.take() == {
        "polls": 3,
        "failed_polls": 1,
        "new_entries": 3,
        "matched": 2,
        "messages_sent": 1,
        "send_failures": 1,
    }


# --------------------------------------------------------------------------
# `monitor run`, scraped


def _scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, body = _get(f"{base}/metrics")
    assert code == 200
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _metric(base: str, name: str, **labels: str) -> float | None:
    return _scrape(base).get((name, tuple(sorted(labels.items()))))


def test_monitor_run_serves_metrics_that_count_its_polls_matches_and_deliveries(
    tmp_path: Path,
) -> None:
    site, chat = FeedServer(), Webhook()
    items = [
        Item("DeepSeek stellt R2 vor", "https://news.example/1"),
        Item("Wetter: Sonne satt", "https://news.example/2"),
        Item("DeepSeek-Modell im Test", "https://news.example/3"),
    ]
    with running(site, chat):
        site.put("/feed.xml", rss(items))
        config = tmp_path / "feeds.yaml"
        config.write_text(
            textwrap.dedent(
                f"""\
                settings: {{interval: 1s, extract: false, metrics: "127.0.0.1:0"}}
                notifiers:
                  chat: "{chat.url}"
                feeds:
                  - url: {site.url("/feed.xml")}
                    name: Testfeed
                rules:
                  - name: DeepSeek
                    keywords: [DeepSeek]
                """
            )
        )
        daemon = Daemon(config)
        daemon.start()
        try:
            assert wait_for(lambda: "metrics on http://127.0.0.1:" in daemon.text()), daemon.text()
            line = next(x for x in daemon.text().splitlines() if "metrics on http://" in x)
            base = line.split("metrics on ", 1)[1].split("/metrics", 1)[0]
            assert wait_for(lambda: len(chat.alerts()) == 2, 30), daemon.text()
            sent = ("rss_monitor_deliveries_total", {"notifier": "chat", "outcome": "sent"})
            assert wait_for(lambda: _metric(base, sent[0], **sent[1]) == 2), _scrape(base)
            polled = {"outcome": "ok", "error": ""}
            assert wait_for(lambda: (_metric(base, "rss_monitor_polls_total", **polled) or 0) >= 1)
            assert wait_for(lambda: json.loads(_get(f"{base}/healthz")[1]) == {"status": "ok"}), (
                _get(f"{base}/healthz")
            )
            health = _get(f"{base}/healthz")
            daemon.send(signal.SIGHUP)
            assert wait_for(lambda: "config reloaded" in daemon.text()), daemon.text()
            reloads = ("rss_monitor_config_reloads_total", {"result": "ok"})
            assert wait_for(lambda: _metric(base, reloads[0], **reloads[1]) == 1)
            metrics = _scrape(base)
        finally:
            code, _ = daemon.stop()
    assert code == 0
    assert health == (200, b'{"status": "ok"}\n')
    assert metrics[("rss_monitor_matches_total", (("rule", "DeepSeek"),))] == 2
    assert metrics[("rss_monitor_entries_total", ())] == 3
    chat_sent = (("notifier", "chat"), ("outcome", "sent"))
    assert metrics[("rss_monitor_deliveries_total", chat_sent)] == 2
    assert metrics[("rss_monitor_alert_latency_seconds_count", (("notifier", "chat"),))] == 2
    assert metrics[("rss_monitor_poll_duration_seconds_count", ())] >= 1
    assert metrics[("rss_monitor_config_last_reload_successful", ())] == 1
    assert ("rss_monitor_outbox_pending", (("notifier", "chat"),)) in metrics
    assert sum(v for (name, _l), v in metrics.items() if name == "rss_monitor_feeds") == 1
    build = (("python", platform.python_version()), ("version", __version__))
    assert metrics[("rss_monitor_build_info", build)] == 1


def test_monitor_run_stops_with_a_clear_error_when_the_metrics_port_is_taken(
    tmp_path: Path,
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = tmp_path / "feeds.yaml"
        config.write_text(
            f'settings: {{metrics: "127.0.0.1:{port}"}}\nfeeds:\n  - url: http://127.0.0.1:1/\n'
        )
        done = subprocess.run(
            [sys.executable, "-m", "monitor", "-c", str(config), "run"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert done.returncode == 1, done.stderr
    assert (
        f"monitor: settings.metrics: can't listen on 127.0.0.1:{port}: [Errno 98] Address"
        " already in use (another process listens there: another monitor run, or an exporter)"
    ) in done.stderr
    assert "Traceback" not in done.stderr


def test_a_reload_moves_the_metrics_server_and_the_counters_go_on(tmp_path: Path) -> None:
    site = FeedServer()
    with running(site):
        site.put("/feed.xml", rss([Item("Wetter", "https://news.example/1")]))
        config = tmp_path / "feeds.yaml"
        first, second = free_port(), free_port()

        def write(port: int | None) -> None:
            metrics = f', metrics: "127.0.0.1:{port}"' if port is not None else ""
            config.write_text(
                f"settings: {{interval: 1s, extract: false{metrics}}}\n"
                f"feeds:\n  - url: {site.url('/feed.xml')}\n"
            )

        write(first)
        daemon = Daemon(config)
        daemon.start()
        try:
            old = f"http://127.0.0.1:{first}"
            assert wait_for(lambda: f"metrics on {old}/metrics" in daemon.text()), daemon.text()
            polls = "rss_monitor_poll_duration_seconds_count"
            assert wait_for(lambda: (_metric(old, polls) or 0) >= 1), daemon.text()
            before = _metric(old, polls) or 0
            write(second)
            daemon.send(signal.SIGHUP)
            new = f"http://127.0.0.1:{second}"
            assert wait_for(lambda: f"metrics on {new}/metrics" in daemon.text()), daemon.text()
            assert (_metric(new, polls) or 0) >= before  # the same counters, not new ones
            with pytest.raises(OSError):
                urllib.request.urlopen(f"{old}/healthz", timeout=5)
            write(None)  # off again
            daemon.send(signal.SIGHUP)
            assert wait_for(lambda: "metrics off" in daemon.text()), daemon.text()
            with pytest.raises(OSError):
                urllib.request.urlopen(f"{new}/healthz", timeout=5)
        finally:
            code, _ = daemon.stop()
    assert code == 0
