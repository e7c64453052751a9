"""Prometheus metrics and ``/healthz`` (``settings.metrics``): the one module that
imports prometheus_client.

``Metrics`` is a sink of ``activity.Activity``: it hears the same events the
summary a minute counts (polls, sends, alerts given up, worker restarts,
reloads), from whatever thread they happen in (prometheus_client's metrics are
thread-safe). What the store knows (the outbox by notifier, feeds by state,
due and overdue) is read by the daemon every ``REFRESH`` seconds in a store
thread and handed over whole as a ``StoreSnapshot``; a scrape reads the last
one and never waits for the store or the event loop.

``MetricsServer`` serves ``/metrics`` (prometheus_client's WSGI app: text or
OpenMetrics, gzip) and ``/healthz`` (``health.Verdict``) from threads of its
own, so it answers while the event loop is stuck and ``/healthz`` can say so.
Every metric is named ``rss_monitor_*``; see the README's "Metrics and health".
"""

from __future__ import annotations

import contextlib
import platform
import socket
import socketserver
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
    make_wsgi_app,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from monitor.config import Config, Listen
from monitor.health import Heartbeat, MetricsError
from monitor.storage.base import FeedCounts, NotifierOutbox
from monitor.types import AlertItem

if TYPE_CHECKING:
    from monitor.pipeline import PollOutcome

PREFIX = "rss_monitor"
REFRESH = 15.0  # seconds between reads of the store's gauges (a common scrape interval)
OVERDUE = 60.0  # seconds past its due time a feed counts as overdue
POLL_OUTCOMES = ("ok", "not_modified", "unchanged", "error")
DELIVERY_OUTCOMES = ("sent", "failed", "given_up")
RESTART_REASONS = ("crashed", "recycled")
# a poll: from a 304 in milliseconds to a slow site with extraction of its articles
POLL_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
# published -> delivered: minutes when all is well; hours for digests, quiet hours, outages
LATENCY_BUCKETS = (
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
    900.0,
    1800.0,
    3600.0,
    7200.0,
    21600.0,
    86400.0,
    172800.0,
)
FEED_STATES = ("ok", "failing", "gone", "paused")


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """What the store knew at the last refresh (None: not read yet)."""

    outbox: Mapping[str, NotifierOutbox] = field(default_factory=dict)
    feeds: FeedCounts | None = None
    workers: int | None = None  # worker processes running


class _StoreCollector(Collector):
    """The gauges of the last ``StoreSnapshot``: a scrape sees one snapshot whole."""

    def __init__(self, snapshot: Callable[[], StoreSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterable[GaugeMetricFamily]:
        snap = self._snapshot()
        pending = GaugeMetricFamily(
            f"{PREFIX}_outbox_pending",
            "Alerts and notices in the outbox waiting to be sent, per notifier",
            labels=["notifier"],
        )
        failed = GaugeMetricFamily(
            f"{PREFIX}_outbox_failed",
            "Alerts and notices given up (monitor outbox --failed), per notifier",
            labels=["notifier"],
        )
        for name, counts in sorted(snap.outbox.items()):
            pending.add_metric([name], counts.pending)
            failed.add_metric([name], counts.failed)
        yield pending
        yield failed
        if snap.feeds is not None:
            feeds = GaugeMetricFamily(
                f"{PREFIX}_feeds", "Configured feeds by state", labels=["state"]
            )
            by_state = {
                "ok": snap.feeds.ok,
                "failing": snap.feeds.failing,
                "gone": snap.feeds.gone,
                "paused": snap.feeds.paused,
            }
            for state in FEED_STATES:
                feeds.add_metric([state], by_state[state])
            yield feeds
            yield GaugeMetricFamily(
                f"{PREFIX}_feeds_due",
                "Feeds due for a poll now (waiting for it or being polled)",
                value=snap.feeds.due,
            )
            yield GaugeMetricFamily(
                f"{PREFIX}_feeds_overdue",
                f"Feeds due for more than {OVERDUE:g} s: polling falls behind",
                value=snap.feeds.overdue,
            )
        if snap.workers is not None:
            yield GaugeMetricFamily(
                f"{PREFIX}_workers", "Worker processes running now", value=snap.workers
            )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []  # what it yields depends on the snapshot


class _HealthCollector(Collector):
    """``/healthz``'s verdict as a gauge, at scrape time: /metrics answers from its own
    thread while the event loop is stuck, so ``up`` alone can't tell."""

    def __init__(self, health: Heartbeat) -> None:
        self._health = health

    def collect(self) -> Iterable[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            f"{PREFIX}_healthy",
            "1 while /healthz answers 200 (the event loop turns, the scheduler ticks), else 0",
            value=1 if self._health.verdict().healthy else 0,
        )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return []


class Metrics:
    """The daemon's metrics, in a registry of their own (an ``activity.Sink``);
    ``health``: its verdict as ``rss_monitor_healthy`` too."""

    def __init__(self, version: str, health: Heartbeat | None = None) -> None:
        # no *_created series next to every counter: noise for a daemon's metrics
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        build = Gauge(
            f"{PREFIX}_build_info",
            "rss-monitor's version and Python's; always 1",
            ["version", "python"],
            registry=r,
        )
        build.labels(version, platform.python_version()).set(1)
        self.polls = Counter(
            f"{PREFIX}_polls",
            "Polls of feeds by outcome (ok, not_modified, unchanged, error) and error kind",
            ["outcome", "error"],
            registry=r,
        )
        self.poll_seconds = Histogram(
            f"{PREFIX}_poll_duration_seconds",
            "How long a poll of a feed took: fetch, parse, articles, match, store",
            buckets=POLL_BUCKETS,
            registry=r,
        )
        self.entries = Counter(f"{PREFIX}_entries", "New entries recorded", registry=r)
        self.matches = Counter(
            f"{PREFIX}_matches", "New entries that matched, per rule", ["rule"], registry=r
        )
        self.deliveries = Counter(
            f"{PREFIX}_deliveries",
            "Outbox rows (alerts, notices) per notifier by outcome: sent; failed (an"
            " attempt failed: retried later); given_up (the last attempt failed)",
            ["notifier", "outcome"],
            registry=r,
        )
        self.latency = Histogram(
            f"{PREFIX}_alert_latency_seconds",
            "From an entry's published time to its alert's delivery (entries with a date),"
            " per notifier",
            ["notifier"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.restarts = Counter(
            f"{PREFIX}_worker_restarts",
            "Worker processes replaced: crashed (died or killed in a call), recycled"
            " (after a call that grew its memory or ran out of it)",
            ["reason"],
            registry=r,
        )
        self.reloads = Counter(
            f"{PREFIX}_config_reloads",
            "Config reloads (SIGHUP or a change on disk) by result",
            ["result"],
            registry=r,
        )
        self.reload_ok = Gauge(
            f"{PREFIX}_config_last_reload_successful",
            "1 when the last config reload applied (or none was tried), 0 when it failed",
            registry=r,
        )
        self.reload_ok.set(1)
        for outcome in POLL_OUTCOMES[:3]:
            self.polls.labels(outcome, "")
        for reason in RESTART_REASONS:
            self.restarts.labels(reason)
        for result in ("ok", "failed"):
            self.reloads.labels(result)
        self._snapshot = StoreSnapshot()
        r.register(_StoreCollector(lambda: self._snapshot))
        if health is not None:
            r.register(_HealthCollector(health))

    def know(self, config: Config, notifiers: Iterable[str] = ()) -> None:
        """Start the series of the config's rules and notifiers at 0, so a rate over
        them is defined before the first match or delivery (at start, at each reload)."""
        for rule in config.rules:
            self.matches.labels(rule.name)
        for name in [*(n.name for n in config.notifiers), *notifiers]:
            for outcome in DELIVERY_OUTCOMES:
                self.deliveries.labels(name, outcome)

    def set_store(self, snapshot: StoreSnapshot) -> None:
        """The store's gauges from now on (read by the daemon off the event loop)."""
        self._snapshot = snapshot

    # -- activity.Sink --

    def polled(self, outcome: PollOutcome) -> None:
        self.polls.labels(outcome.outcome, outcome.error_kind).inc()
        self.poll_seconds.observe(outcome.seconds)
        if outcome.new:
            self.entries.inc(outcome.new)
        for alert in outcome.alerts:
            for rule in alert.rules:
                self.matches.labels(rule).inc()

    def sent(
        self,
        notifier: str,
        rows: int,
        items: Sequence[AlertItem],
        error: str | None,
        at: datetime,
    ) -> None:
        self.deliveries.labels(notifier, "sent" if error is None else "failed").inc(rows)
        if error is None:
            for item in items:
                if item.published is not None:
                    seconds = (at - item.published).total_seconds()
                    self.latency.labels(notifier).observe(max(0.0, seconds))

    def given_up(self, notifier: str, rows: int) -> None:
        self.deliveries.labels(notifier, "given_up").inc(rows)

    def worker_restarted(self, reason: str) -> None:
        self.restarts.labels(reason).inc()

    def reloaded(self, ok: bool) -> None:
        self.reloads.labels("ok" if ok else "failed").inc()
        self.reload_ok.set(1 if ok else 0)

    def exposition(self) -> bytes:
        """The metrics in Prometheus' text format (what a scrape of /metrics gets)."""
        return bytes(generate_latest(self.registry))


# -- the server -----------------------------------------------------------------

INDEX = b"""<html><head><title>rss-monitor</title></head><body>
<h1>rss-monitor</h1><p><a href="/metrics">/metrics</a> <a href="/healthz">/healthz</a></p>
</body></html>
"""

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def _app(metrics: Metrics, health: Heartbeat) -> Callable[[dict[str, Any], StartResponse], Any]:
    prometheus = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        if path == "/metrics":
            return prometheus(environ, start_response)  # type: ignore[no-any-return]
        if path == "/healthz":
            verdict = health.verdict()
            status = "200 OK" if verdict.healthy else "503 Service Unavailable"
            headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
            start_response(status, headers)
            return [verdict.body()]
        if path == "/":
            start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
            return [INDEX]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /metrics or /healthz\n"]

    return app


class _Handler(WSGIRequestHandler):
    timeout = 30  # seconds: a client that sends nothing does not hold a thread forever

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: a scrape every 15 s is not news."""


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True  # a restart binds again at once (no TIME_WAIT wait)

    def __init__(self, family: socket.AddressFamily, address: tuple[Any, ...], dual: bool):
        self.address_family = family
        self._dual = dual
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        if self._dual:  # "::" for every interface, IPv4 as well (as Go exporters do)
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        # Not HTTPServer.server_bind: it looks the host's name up (getfqdn, a DNS query).
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


def _addresses(listen: Listen) -> Iterator[tuple[socket.AddressFamily, tuple[Any, ...], bool]]:
    """Where to bind, best first: every interface is IPv6 and IPv4 at once where the host
    has IPv6, else IPv4's; a name is resolved."""
    if listen.host == "":
        if socket.has_ipv6:
            yield socket.AF_INET6, ("::", listen.port), True
        yield socket.AF_INET, ("0.0.0.0", listen.port), False
        return
    infos = socket.getaddrinfo(
        listen.host, listen.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, _type, _proto, _name, sockaddr = infos[0]
    yield family, tuple(sockaddr), False


def bind(listen: Listen) -> _Server:
    """A server bound to ``listen``; MetricsError saying where and why when it can't be."""
    where = f"settings.metrics: can't listen on {listen}"
    try:
        candidates = list(_addresses(listen))
    except OSError as exc:
        raise MetricsError(f"{where}: {listen.host!r} does not resolve: {exc}") from None
    error: OSError | None = None
    for family, address, dual in candidates:
        try:
            return _Server(family, address, dual)
        except OSError as exc:
            error = error or exc
    hint = ""
    if error is not None and error.errno == 98:  # EADDRINUSE
        hint = " (another process listens there: another monitor run, or an exporter)"
    elif error is not None and error.errno == 99:  # EADDRNOTAVAIL
        hint = " (no interface of this host has that address)"
    elif error is not None and error.errno == 13:  # EACCES
        hint = " (ports below 1024 need privileges: pick one like 9464)"
    raise MetricsError(f"{where}: {error}{hint}")


class MetricsServer:
    """``/metrics`` and ``/healthz`` at ``listen``, from threads of their own."""

    def __init__(self, metrics: Metrics, health: Heartbeat, listen: Listen) -> None:
        self.listen = listen
        self._server = bind(listen)  # here: a bind failure stops `monitor run` at once
        self._server.set_app(_app(metrics, health))
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.5}, name="metrics"
        )
        self._thread.daemon = True
        self._thread.start()

    @property
    def url(self) -> str:
        """Where it listens (the port picked, for ``:0``)."""
        host, port = self._server.server_address[:2]
        host = str(host)
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def close(self) -> None:
        """Stop listening (waits up to the poll interval for the serving thread)."""
        with contextlib.suppress(Exception):
            self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
