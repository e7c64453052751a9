"""Delivery policies with an injected clock, through the real path otherwise: a feed server,
the pipeline, the store (SQLite, and PostgreSQL with MONITOR_TEST_POSTGRES), the deliverer,
apprise, a webhook receiver and an SMTP server.

Quiet hours release what they held as one message; a cap folds what is over it into one
message at the end of the hour; a digest comes once, grouped by rule, listing the outlets
of a story under its first report; a rule with ``priority: high`` passes them all; the
operator hears once when a feed fails and once when it recovers, when an alert is given
up, and nothing in between.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from monitor.app import App
from monitor.config import parse_config
from tests.feeds import Item, rss
from tests.servers import FeedServer, Mailbox, Webhook, running

WIRE = (
    "Das chinesische KI-Unternehmen DeepSeek hat ein neues Sprachmodell vorgestellt, das nach"
    " eigenen Angaben mit deutlich weniger Rechenleistung trainiert wurde als vergleichbare"
    " Modelle aus den USA. Die Gewichte stehen unter einer offenen Lizenz zum Download bereit."
    " Fachleute zeigten sich beeindruckt von den Ergebnissen in Mathematik und Programmierung,"
    " mahnten aber zur Vorsicht bei den Angaben zu den Trainingskosten."
)


@dataclass
class Clock:
    now: datetime

    def __call__(self) -> datetime:
        return self.now


@dataclass
class World:
    site: FeedServer
    chat: Webhook
    ops: Webhook
    mail: Mailbox
    tmp: Path
    db: str  # a SQLite path or a PostgreSQL URL (conftest's ``database``)


@pytest.fixture
def world(tmp_path: Path, database: str) -> Iterator[World]:
    site, chat, ops, mail = FeedServer(), Webhook(), Webhook(), Mailbox()
    with running(site, chat, ops, mail):
        for name in ("a", "b", "c"):
            site.put(f"/{name}.xml", rss([], title=f"Feed {name.upper()}"))
        yield World(site, chat, ops, mail, tmp_path, database)


def _hhmm(when: datetime) -> str:
    return when.strftime("%H:%M")


def _app(w: World, clock: Clock, chat_policy: str = "", mail_policy: str = "") -> App:
    text = f"""
settings:
  extract: false
  retry_delay: 1s
  admin_notify: ops
  admin_failures: 2
notifiers:
  chat: {{url: "{w.chat.url}", timezone: UTC{chat_policy}}}
  mail: {{url: "{w.mail.url}", timezone: UTC{mail_policy}}}
  ops: "{w.ops.url}"
feeds:
  - url: {w.site.url("/a.xml")}
    name: Feed A
  - url: {w.site.url("/b.xml")}
    name: Feed B
  - url: {w.site.url("/c.xml")}
    name: Feed C
rules:
  - name: DeepSeek
    keywords: [DeepSeek]
    notify: [chat, mail]
  - name: Outage
    keywords: [Ausfall]
    priority: high
    notify: [chat, mail]
"""
    config = parse_config(text, w.tmp / "feeds.yaml", {})
    return App(config, db=w.db, console=io.StringIO(), clock=clock)


_LOOP: asyncio.AbstractEventLoop | None = (
    None  # one loop per test: the app's HTTP session lives in it
)


def _run(coro: Any) -> Any:
    global _LOOP
    if _LOOP is None or _LOOP.is_closed():
        _LOOP = asyncio.new_event_loop()
    return _LOOP.run_until_complete(coro)


def _round(app: App) -> int:
    async def go() -> int:
        await app.poll_round(app.config.feeds)
        return await app.deliverer.run_once()

    return int(_run(go()))


def _deliver(app: App) -> int:
    return int(_run(app.deliverer.run_once()))


def _publish(w: World, feed: str, *titles: str, body: str = "") -> None:
    w.site.put(
        f"/{feed}.xml",
        rss(
            [
                Item(t, f"https://news.example/{feed}/{i}", description=body)
                for i, t in enumerate(titles)
            ],
            title=f"Feed {feed.upper()}",
        ),
    )


def _close(app: App) -> None:
    global _LOOP
    _run(app.close())
    assert _LOOP is not None
    _LOOP.close()
    _LOOP = None


def test_quiet_hours_hold_alerts_and_release_them_as_one_message(world: World) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    clock = Clock(now)
    quiet = f', quiet_hours: "{_hhmm(now - timedelta(hours=1))}-{_hhmm(now + timedelta(hours=1))}"'
    app = _app(world, clock, chat_policy=quiet)
    try:
        _publish(world, "a", "DeepSeek eins", "DeepSeek zwei", "DeepSeek drei")
        _round(app)
        assert world.chat.received == []  # quiet: held
        assert sorted(world.mail.alerts()) == [
            f"[DeepSeek] DeepSeek {n}" for n in ("drei", "eins", "zwei")
        ]
        # a high-priority rule is not held
        _publish(world, "b", "Ausfall bei Azure")
        _round(app)
        assert world.chat.alerts() == ["[Outage] Ausfall bei Azure"]
        # the quiet period ends: what it held goes out as one message
        clock.now = now + timedelta(hours=1, minutes=1)
        _deliver(app)
        assert len(world.chat.received) == 2
        assert sorted(world.chat.alerts()[1:]) == [
            f"[DeepSeek] DeepSeek {n}" for n in ("drei", "eins", "zwei")
        ]
        assert world.chat.received[1]["title"].startswith("[DeepSeek] 3 new articles: ")
    finally:
        _close(app)


def test_a_cap_folds_what_is_over_it_into_one_message_at_the_end_of_the_hour(
    world: World,
) -> None:
    start = datetime.now(UTC).replace(minute=10, second=0, microsecond=0)
    clock = Clock(start)
    app = _app(world, clock, chat_policy=", max_per_hour: 2")
    try:
        titles = []
        for i in range(5):  # five polls, each with one new alert, a minute apart
            titles.append(f"DeepSeek Meldung {i}")
            _publish(world, "a", *titles)
            clock.now = start + timedelta(minutes=i)
            _round(app)
        assert [len(m["alerts"]) for m in world.chat.received] == [1, 1]
        # an urgent one passes the cap
        _publish(world, "b", "Ausfall im Rechenzentrum")
        _round(app)
        assert world.chat.alerts()[-1] == "[Outage] Ausfall im Rechenzentrum"
        clock.now = start.replace(minute=59)
        _deliver(app)
        assert len(world.chat.received) == 3  # still within the hour
        clock.now = start.replace(minute=0) + timedelta(hours=1, seconds=5)
        _deliver(app)
        assert len(world.chat.received) == 4
        assert sorted(world.chat.received[3]["alerts"][i]["title"] for i in range(3)) == [
            f"DeepSeek Meldung {i}" for i in (2, 3, 4)
        ]
        assert len(world.mail.alerts()) == 6  # the other notifier has no cap
    finally:
        _close(app)


def test_a_digest_comes_once_grouped_by_rule_with_the_outlets_of_each_story(
    world: World,
) -> None:
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    clock = Clock(now)
    due = now + timedelta(hours=1)
    app = _app(world, clock, mail_policy=f', digest: "daily {_hhmm(due)}"')
    try:
        _deliver(app)  # the first look: the next digest is the one at that time
        _publish(world, "a", "DeepSeek stellt neues Modell vor", body=WIRE)
        _round(app)
        _publish(world, "b", "Neues Modell aus China: DeepSeek legt nach", body=WIRE)  # a copy
        _publish(world, "c", "DeepSeek in Azure", "Ausfall bei DeepSeek")
        _round(app)
        # the copy folded into the first report: the chat got two alerts, not three
        assert sorted(world.chat.alerts()) == [
            "[DeepSeek, Outage] Ausfall bei DeepSeek",
            "[DeepSeek] DeepSeek in Azure",
            "[DeepSeek] DeepSeek stellt neues Modell vor",
        ]
        # the high-priority alert went to the digest notifier at once, the rest waits
        assert world.mail.alerts() == ["[DeepSeek, Outage] Ausfall bei DeepSeek"]
        clock.now = due - timedelta(seconds=1)
        _deliver(app)
        assert len(world.mail.messages) == 1
        clock.now = due + timedelta(seconds=30)
        _deliver(app)
        _deliver(app)
        assert len(world.mail.messages) == 2  # once
        digest = world.mail.messages[1]
        assert str(digest["subject"]) == "[DeepSeek] Daily digest: 2 articles (DeepSeek 2)"
        part = digest.get_body(("html",))
        assert part is not None
        html = part.get_content()
        assert "<h3>DeepSeek (2)</h3>" in html
        assert "Also reported by: Feed B" in html
        # the next digest is tomorrow's: nothing more today
        _publish(world, "a", "DeepSeek stellt neues Modell vor", "DeepSeek: noch eine Meldung")
        _round(app)
        assert len(world.mail.messages) == 2
        clock.now = due + timedelta(days=1, seconds=1)
        _deliver(app)
        assert len(world.mail.messages) == 3
        assert world.mail.alerts()[-1] == "[DeepSeek] DeepSeek: noch eine Meldung"
    finally:
        _close(app)


def test_a_digest_is_sent_once_by_two_processes_sharing_the_store(world: World) -> None:
    """Two processes (on PostgreSQL: two instances) at one digest's time: the first
    sends it; an alert the second records just after is not a second digest of the
    same firing, it waits for the next one."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    clock = Clock(now)
    due = now + timedelta(hours=1)
    policy = f', digest: "daily {_hhmm(due)}"'
    one, two = _app(world, clock, chat_policy=policy), _app(world, clock, chat_policy=policy)
    try:
        _deliver(one)  # the first looks: the next digest is the one at that time
        _deliver(two)
        _publish(world, "a", "DeepSeek eins")
        _round(one)
        assert world.chat.received == []  # held for the digest
        clock.now = due + timedelta(seconds=30)
        _deliver(one)
        assert len(world.chat.received) == 1
        _publish(world, "b", "DeepSeek zwei")
        _round(two)  # recorded by the other process, at the same firing
        _deliver(two)
        _deliver(one)
        assert len(world.chat.received) == 1, world.chat.received  # one digest, not two
        assert world.chat.alerts() == ["[DeepSeek] DeepSeek eins"]
        clock.now = due + timedelta(days=1, seconds=1)
        _deliver(two)
        _deliver(one)
        assert len(world.chat.received) == 2
        assert world.chat.alerts()[-1] == "[DeepSeek] DeepSeek zwei"
    finally:
        _run(one.close())
        _close(two)


def test_the_operator_hears_once_when_a_feed_fails_and_once_when_it_recovers(
    world: World,
) -> None:
    clock = Clock(datetime.now(UTC))
    app = _app(world, clock)
    try:
        world.site.special["/c.xml"] = (500, None)
        for _ in range(5):  # admin_failures: 2
            _round(app)
        assert [m["title"] for m in world.ops.received] == ["[rss-monitor] feed Feed C is failing"]
        assert "HTTP 500" in world.ops.received[0]["message"]
        del world.site.special["/c.xml"]
        _round(app)
        _round(app)
        assert [m["title"] for m in world.ops.received][1:] == [
            "[rss-monitor] feed Feed C recovered"
        ]
    finally:
        _close(app)


def test_the_operator_hears_when_an_alert_is_given_up(world: World) -> None:
    start = datetime.now(UTC)
    clock = Clock(start)
    world.chat.failing = True
    app = _app(world, clock)
    try:
        _publish(world, "a", "DeepSeek eins")
        _round(app)
        assert world.ops.received == []
        clock.now = start + timedelta(days=3)  # past two days of tries
        _deliver(app)
        _deliver(app)
        assert [m["title"] for m in world.ops.received] == ["[rss-monitor] alert given up"]
        text = world.ops.received[0]["message"]
        assert "DeepSeek eins" in text and "monitor outbox retry" in text
        status = app.storage.outbox_stats().notifiers["chat"]
        assert (status.failed, status.pending) == (1, 0)
    finally:
        _close(app)


def test_an_amp_copy_that_names_its_article_as_canonical_is_the_same_story(
    world: World,
) -> None:
    from tests.feeds import article_page

    # the keyword is in the pages only: they are read, and name their canonical URL
    page = article_page("KI-Labor legt nach", "DeepSeek hat ein neues Modell vorgestellt.")
    amp = page.replace(
        "<head>", '<head><link rel="canonical" href="https://news.example/artikel-1">', 1
    )
    other = article_page(
        "Neues Modell aus China", "Ein chinesisches Labor zeigt ein Sprachmodell namens DeepSeek."
    ).replace(
        "<head>",
        '<head><link rel="canonical" href="http://news.example/artikel-1?utm_source=rss#top">',
        1,
    )
    world.site.put("/amp/artikel-1.html", amp, "text/html; charset=utf-8")
    world.site.put("/artikel-1.html", other, "text/html; charset=utf-8")
    text = f"""
settings: {{extract: true}}
notifiers:
  chat: "{world.chat.url}"
feeds:
  - url: {world.site.url("/a.xml")}
    name: Feed A
  - url: {world.site.url("/b.xml")}
    name: Feed B
rules:
  - name: DeepSeek
    keywords: [DeepSeek]
"""
    config = parse_config(text, world.tmp / "feeds.yaml", {})
    app = App(config, db=world.db, console=io.StringIO())
    try:
        world.site.put(
            "/a.xml", rss([Item("KI-Labor legt nach", world.site.url("/amp/artikel-1.html"))])
        )
        _round(app)
        # the other page names the same article (http, a tracking parameter, a fragment)
        world.site.put(
            "/b.xml", rss([Item("Neues Modell aus China", world.site.url("/artikel-1.html"))])
        )
        _round(app)
        assert world.chat.alerts() == ["[DeepSeek] KI-Labor legt nach"]
    finally:
        _close(app)
