"""The command line against real local servers and real SQLite files (in-process `main`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.cli import main
from tests.feeds import Item, article_page, entity_bomb, many_items, rss
from tests.servers import FeedServer, Mailbox, Webhook, running


@pytest.fixture
def site() -> Iterator[FeedServer]:
    server = FeedServer()
    with running(server):
        yield server


def _config(tmp_path: Path, feeds: str, rules: str, notifiers: str = "", extra: str = "") -> Path:
    path = tmp_path / "feeds.yaml"
    path.write_text(
        f"settings:\n  interval: 1m\n{extra}"
        + (f"notifiers:\n{notifiers}" if notifiers else "")
        + f"feeds:\n{feeds}rules:\n{rules}"
    )
    return path


RULES = "  - name: DeepSeek\n    keywords: [DeepSeek]\n  - name: Azure\n    keywords: [Azure]\n"


def _json_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_poll_json_prints_one_object_per_matched_entry(
    site: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = site.url("")
    site.put(
        "/feed.xml",
        rss(
            [
                Item("DeepSeek R2 auf Azure", f"{base}/1", description="Neues Modell"),
                Item("Nichts Neues", f"{base}/2", description="Wetter"),
                Item("Azure-Portfolio wächst", f"{base}/3"),
            ]
        ),
    )
    cfg = _config(
        tmp_path, f"  - url: {site.url('/feed.xml')}\n    name: Test\n    extract: false\n", RULES
    )

    assert main(["-c", str(cfg), "poll", "--json"]) == 0
    rows = _json_lines(capsys.readouterr().out)

    assert [(r["title"], r["rules"], r["terms"]) for r in rows] == [
        ("DeepSeek R2 auf Azure", ["DeepSeek", "Azure"], ["DeepSeek", "Azure"]),
        ("Azure-Portfolio wächst", ["Azure"], ["Azure"]),
    ]
    assert {tuple(sorted(r)) for r in rows} == {
        ("feed", "link", "published", "rules", "terms", "title")
    }
    assert rows[0]["feed"] == "Test" and rows[0]["link"] == f"{base}/1"
    assert isinstance(rows[0]["published"], str)

    # stored: the same entries are not new on the next round
    assert main(["-c", str(cfg), "poll", "--json"]) == 0
    assert _json_lines(capsys.readouterr().out) == []


def test_poll_dry_run_stores_and_sends_nothing(
    site: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chat = Webhook()
    with running(chat):
        site.put("/feed.xml", rss([Item("DeepSeek news", site.url("/1"))]))
        cfg = _config(
            tmp_path,
            f"  - url: {site.url('/feed.xml')}\n    extract: false\n",
            RULES,
            notifiers=f"  chat: {chat.url}\n",
        )
        for _ in range(2):
            assert main(["-c", str(cfg), "poll", "--dry-run", "--json"]) == 0
            assert [r["title"] for r in _json_lines(capsys.readouterr().out)] == ["DeepSeek news"]
        assert chat.received == []
        assert main(["-c", str(cfg), "poll"]) == 0  # for real: stored and sent
        assert [m["title"] for m in chat.received] == ["[DeepSeek] DeepSeek news"]


def test_poll_feed_option_polls_only_that_feed(
    site: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site.put("/a.xml", rss([Item("DeepSeek A", site.url("/a1"))]))
    site.put("/b.xml", rss([Item("DeepSeek B", site.url("/b1"))]))
    feeds = (
        f"  - url: {site.url('/a.xml')}\n    name: A\n    extract: false\n"
        f"  - url: {site.url('/b.xml')}\n    name: B\n    extract: false\n"
    )
    cfg = _config(tmp_path, feeds, RULES)
    assert main(["-c", str(cfg), "poll", "--feed", "B", "--json"]) == 0
    assert [r["feed"] for r in _json_lines(capsys.readouterr().out)] == ["B"]
    assert "/a.xml" not in site.hits
    assert main(["-c", str(cfg), "poll", "--feed", "nope"]) == 2


def test_first_poll_alerts_recent_and_undated_entries_but_only_records_old_ones(
    site: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site.put(
        "/feed.xml",
        rss(
            [
                Item("DeepSeek old", site.url("/old"), age=timedelta(days=5)),
                Item("DeepSeek undated", site.url("/undated"), age=None),
                Item("DeepSeek fresh", site.url("/fresh"), age=timedelta(hours=1)),
            ]
        ),
    )
    cfg = _config(tmp_path, f"  - url: {site.url('/feed.xml')}\n    extract: false\n", RULES)
    assert main(["-c", str(cfg), "poll", "--json"]) == 0
    titles = [r["title"] for r in _json_lines(capsys.readouterr().out)]
    assert titles == ["DeepSeek undated", "DeepSeek fresh"]
    assert main(["-c", str(cfg), "status", "--json"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["feeds"][0]["entries"] == 3 and status["feeds"][0]["matches"] == 2


def test_republished_entry_with_new_guid_but_same_link_is_not_new(
    site: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    link = site.url("/story")
    site.put("/feed.xml", rss([Item("DeepSeek story", link, guid="guid-1")]))
    cfg = _config(tmp_path, f"  - url: {site.url('/feed.xml')}\n    extract: false\n", RULES)
    assert main(["-c", str(cfg), "poll", "--json"]) == 0
    assert len(_json_lines(capsys.readouterr().out)) == 1
    site.put("/feed.xml", rss([Item("DeepSeek story (update)", link, guid="guid-2")]))
    assert main(["-c", str(cfg), "poll", "--json"]) == 0
    assert _json_lines(capsys.readouterr().out) == []


def test_keyword_only_in_sidebar_does_not_alert_but_only_in_body_does(
    site: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site.put(
        "/body.html",
        article_page("Cloud", "Microsoft bietet DeepSeek jetzt in der Cloud an."),
        "text/html; charset=utf-8",
    )
    site.put(
        "/side.html",
        article_page("Smartphones", "Sechs Geräte im Test.", sidebar="DeepSeek überall"),
        "text/html; charset=utf-8",
    )
    site.put(
        "/feed.xml",
        rss([Item("Cloud", site.url("/body.html")), Item("Smartphones", site.url("/side.html"))]),
    )
    cfg = _config(tmp_path, f"  - url: {site.url('/feed.xml')}\n", RULES)
    assert main(["-c", str(cfg), "poll", "--json"]) == 0
    assert [r["title"] for r in _json_lines(capsys.readouterr().out)] == ["Cloud"]


def test_article_page_is_not_fetched_when_no_rule_can_depend_on_it(
    site: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site.put("/a.html", article_page("x", "y"), "text/html")
    site.put("/feed.xml", rss([Item("DeepSeek im Titel", site.url("/a.html"))]))
    rules = "  - name: DeepSeek\n    keywords: [DeepSeek]\n"
    cfg = _config(tmp_path, f"  - url: {site.url('/feed.xml')}\n", rules)
    assert main(["-c", str(cfg), "poll", "--json"]) == 0
    assert len(_json_lines(capsys.readouterr().out)) == 1
    assert "/a.html" not in site.hits  # matched on the title; nothing could exclude it


def test_gone_feed_is_asked_daily_and_moved_feed_follows_the_new_url(
    site: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site.special["/gone.xml"] = (410, None)
    site.special["/old.xml"] = (301, site.url("/new.xml"))
    site.put("/new.xml", rss([Item("DeepSeek moved", site.url("/m"))]))
    feeds = (
        f"  - url: {site.url('/gone.xml')}\n    name: Gone\n    extract: false\n"
        f"  - url: {site.url('/old.xml')}\n    name: Moved\n    extract: false\n"
    )
    cfg = _config(tmp_path, feeds, RULES)
    assert main(["-c", str(cfg), "poll", "--json"]) == 0
    assert [r["title"] for r in _json_lines(capsys.readouterr().out)] == ["DeepSeek moved"]
    assert main(["-c", str(cfg), "status", "--json"]) == 0
    feeds_status = {f["feed"]: f for f in json.loads(capsys.readouterr().out)["feeds"]}
    gone = feeds_status["Gone"]
    assert gone["gone"] is True and gone["state"] == "gone"
    next_poll = datetime.fromisoformat(gone["next_poll"]) - datetime.now(UTC)
    assert timedelta(hours=22) < next_poll < timedelta(hours=26)  # a daily probe
    assert feeds_status["Moved"]["url"] == site.url("/new.xml")
    assert feeds_status["Moved"]["configured_url"] == site.url("/old.xml")
    assert feeds_status["Moved"]["state"] == "ok"
    # the next poll asks the new URL directly
    old_hits = site.hits.get("/old.xml", 0)
    assert main(["-c", str(cfg), "poll", "--feed", "Moved"]) == 0
    assert site.hits.get("/old.xml", 0) == old_hits


@dataclass(frozen=True)
class Run:
    """A finished ``monitor`` subprocess."""

    code: int
    out: str
    err: str
    peak_rss_mb: float  # of the largest process in its tree: itself and its workers


def _monitor(config: Path, *args: str, timeout: float = 60.0, python: Sequence[str] = ()) -> Run:
    """``python [PYTHON] -m monitor -c CONFIG ARGS`` as a subprocess; fails the test past
    ``timeout``.

    os.wait4 reports the peak RSS of the process and of the workers it reaped.
    """
    out, err = config.parent / "out.txt", config.parent / "err.txt"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [sys.executable, *python, "-m", "monitor", "-c", str(config), *args],
            stdout=o,
            stderr=e,
        )
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            os.kill(proc.pid, signal.SIGKILL)
            os.wait4(proc.pid, 0)
            pytest.fail(f"monitor {' '.join(args)} still ran after {timeout} s: {err.read_text()}")
        time.sleep(0.05)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    return Run(proc.returncode, out.read_text(), err.read_text(), usage.ru_maxrss / 1024)


@pytest.mark.parametrize("dry_run", [False, True], ids=["poll", "dry_run"])
def test_poll_beside_the_5_gb_entity_bomb_prints_the_healthy_match_in_bounded_memory(
    site: FeedServer, tmp_path: Path, dry_run: bool
) -> None:
    site.put("/bomb.xml", entity_bomb("Bomb"))
    site.put("/healthy.xml", rss([Item("DeepSeek stellt R2 vor", site.url("/1"))]))
    feeds = (
        f"  - url: {site.url('/bomb.xml')}\n    name: Bomb\n    extract: false\n"
        f"  - url: {site.url('/healthy.xml')}\n    name: Healthy\n    extract: false\n"
    )
    cfg = _config(tmp_path, feeds, RULES)
    run = _monitor(cfg, "poll", "-v", "--json", *(["--dry-run"] if dry_run else []))
    assert run.code == 0, run.err
    rows = _json_lines(run.out)
    assert [(r["feed"], r["title"]) for r in rows] == [("Healthy", "DeepSeek stellt R2 vor")]
    # the bomb's DOCTYPE is neutralised: a clean parse, nothing expanded
    assert "monitor: Bomb:" not in run.err, run.err  # no error line
    assert "feed='Bomb' status=200 new=1 matched=0" in run.err
    # unexpanded, a 350 KB document; expanded, 5 GB (4.8 GB of RSS in issue 10)
    assert run.peak_rss_mb < 250, run.peak_rss_mb


@pytest.mark.parametrize("dry_run", [False, True], ids=["poll", "dry_run"])
def test_poll_a_feed_past_worker_memory_fails_as_too_large_and_the_other_feed_alerts(
    site: FeedServer, tmp_path: Path, dry_run: bool
) -> None:
    site.put("/big.xml", many_items(40_000))  # 9 MB: about 120 MB to parse
    site.put("/healthy.xml", rss([Item("DeepSeek stellt R2 vor", site.url("/1"))]))
    feeds = (
        f"  - url: {site.url('/big.xml')}\n    name: Big\n    extract: false\n"
        f"  - url: {site.url('/healthy.xml')}\n    name: Healthy\n    extract: false\n"
    )
    cfg = _config(tmp_path, feeds, RULES, extra="  worker_memory: 64MB\n  max_bytes: 20MB\n")
    run = _monitor(cfg, "poll", "--json", *(["--dry-run"] if dry_run else []))
    assert run.code == 0, run.err
    assert [r["title"] for r in _json_lines(run.out)] == ["DeepSeek stellt R2 vor"]
    assert (
        "monitor: Big: parsing failed: parse_feed: document too large to parse "
        "(over the worker memory limit of 64 MB)"
    ) in run.err


def _imported(run: Run) -> set[str]:
    """The modules a run under ``-X importtime`` imported (from its stderr)."""
    return {
        line.rsplit("|", 1)[1].strip()
        for line in run.err.splitlines()
        if line.startswith("import time:") and "|" in line
    }


def test_poll_mails_the_alert_and_loads_apprise_only_when_it_has_something_to_send(
    site: FeedServer, tmp_path: Path
) -> None:
    mail = Mailbox()
    with running(mail):
        site.put("/feed.xml", rss([Item("DeepSeek stellt R2 vor", site.url("/1"))]))
        feeds = f"  - url: {site.url('/feed.xml')}\n    name: Heise\n    extract: false\n"
        cfg = _config(tmp_path, feeds, RULES, notifiers=f'  mail: "{mail.url}"\n')

        first = _monitor(cfg, "poll", python=["-X", "importtime"])
        assert first.code == 0, first.err
        assert mail.alerts() == ["[DeepSeek] DeepSeek stellt R2 vor"]
        assert "apprise" in _imported(first)

        # nothing new, nothing waiting in the outbox: apprise is never loaded
        second = _monitor(cfg, "poll", python=["-X", "importtime"])
        assert second.code == 0, second.err
        assert "1 feeds polled, 0 new entries, 0 matched" in second.err
        assert "apprise" not in _imported(second) and "aiohttp" in _imported(second)
        assert len(mail.messages) == 1


def test_poll_refuses_a_notifier_url_apprise_refuses_when_it_would_send_and_keeps_the_alert(
    site: FeedServer, tmp_path: Path
) -> None:
    mail = Mailbox()
    with running(mail):
        site.put("/feed.xml", rss([Item("Wetter", site.url("/0"))]))
        feeds = f"  - url: {site.url('/feed.xml')}\n    name: Heise\n    extract: false\n"
        cfg = _config(tmp_path, feeds, RULES, notifiers='  mail: "nosuchservice://host/x"\n')
        check = _monitor(cfg, "check")
        assert check.code == 2
        refused = "feeds.yaml:4:9: notifier 'mail': apprise does not accept this URL"
        assert check.err.startswith(refused), check.err

        nothing = _monitor(cfg, "poll")  # nothing to send: apprise is not asked
        assert nothing.code == 0, nothing.err

        site.put("/feed.xml", rss([Item("DeepSeek stellt R2 vor", site.url("/1"))]))
        bad = _monitor(cfg, "poll")
        assert bad.code == 2
        assert refused in bad.err and "nothing was sent" in bad.err
        assert "[DeepSeek] DeepSeek stellt R2 vor" in bad.out  # matched and stored

        cfg.write_text(cfg.read_text().replace("nosuchservice://host/x", mail.url))
        fixed = _monitor(cfg, "poll")
        assert fixed.code == 0, fixed.err
        assert mail.alerts() == ["[DeepSeek] DeepSeek stellt R2 vor"]  # it waited for this


def test_test_notify_reaches_chat_and_email(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chat, mail = Webhook(), Mailbox()
    with running(chat, mail):
        cfg = _config(
            tmp_path,
            "  - url: http://127.0.0.1:9/feed.xml\n",
            RULES,
            notifiers=f'  chat: {chat.url}\n  mail: "{mail.url}"\n',
        )
        assert main(["-c", str(cfg), "test-notify"]) == 0
        out = capsys.readouterr().out
        assert "chat:" in out and "mail:" in out and "FAILED" not in out
        assert [m["title"] for m in chat.received] == ["[rss-monitor] test notification"]
        assert [str(m["subject"]) for m in mail.messages] == ["[rss-monitor] test notification"]
        assert main(["-c", str(cfg), "test-notify", "nope"]) == 2


def test_test_notify_reports_a_notifier_that_is_down(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chat = Webhook()  # never started: connection refused
    cfg = _config(
        tmp_path, "  - url: http://127.0.0.1:9/feed.xml\n", RULES, notifiers=f"  chat: {chat.url}\n"
    )
    assert main(["-c", str(cfg), "test-notify"]) == 1
    assert "FAILED" in capsys.readouterr().out


def test_check_reports_every_error_with_place_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        "settings:\n  interval: soon\nfeeds:\n  - url: ftp://x\n"
        "rules:\n  - name: R\n    colour: red\n"
    )
    assert main(["-c", str(cfg), "check"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("feeds.yaml:2:13: settings.interval")
    assert err[1].startswith("feeds.yaml:4:10: feed url must start with http")
    assert err[2] == "feeds.yaml:6:5: rule 'R': a rule needs keywords, all or query"
    assert err[3].startswith("feeds.yaml:7:5: a rule: unknown key 'colour'")
    assert len(err) == 4


def test_status_shows_refused_and_failing_feeds(
    site: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site.put("/feed.xml", rss([Item("Metadata", "http://169.254.169.254/latest/meta-data/")]))
    feeds = (
        f"  - url: {site.url('/feed.xml')}\n    name: Local\n"
        "  - url: http://127.0.0.1:9/down.xml\n    name: Down\n"
    )
    cfg = _config(tmp_path, feeds, "  - name: M\n    keywords: [secret]\n")
    assert main(["-c", str(cfg), "poll"]) == 0
    capsys.readouterr()
    assert main(["-c", str(cfg), "status"]) == 0
    out = capsys.readouterr().out
    assert "Down" in out and "ERROR (1 in a row)" in out
    assert "last article page not used: http://169.254.169.254/latest/meta-data/: refused" in out
    assert "/169.254.169.254" not in site.hits


def test_matches_explains_and_rules_test_replays_stored_articles(
    site: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site.put(
        "/feed.xml",
        rss(
            [
                Item("DeepSeek-Modelle auf Azure", site.url("/1"), description="Neu bei Microsoft"),
                Item("Kiosk-Systeme im Test", site.url("/2"), description="Kassen und Kiosk"),
                Item(
                    "KI im Einzelhandel",
                    site.url("/3"),
                    description="Größere Konkurrenz für KI-Händler",
                ),
            ]
        ),
    )
    cfg = _config(tmp_path, f"  - url: {site.url('/feed.xml')}\n    extract: false\n", RULES)
    assert main(["-c", str(cfg), "poll"]) == 0
    capsys.readouterr()

    assert main(["-c", str(cfg), "matches", "--json"]) == 0
    [row] = _json_lines(capsys.readouterr().out)
    assert row["rules"] == ["DeepSeek", "Azure"]
    explain = row["explain"]
    assert isinstance(explain, list)
    assert explain[0]["hits"][0] == {"term": "DeepSeek", "field": "title", "start": 0, "end": 8}
    assert row["snippet"] == "title: »DeepSeek«-Modelle auf Azure"

    # a rule added later is tried on history; nothing is sent or stored
    cfg.write_text(cfg.read_text() + "  - name: KI\n    keywords: [KI]\n")
    assert main(["-c", str(cfg), "rules", "test", "--since", "1d", "--json"]) == 0
    reports = {r["rule"]: r for r in _json_lines(capsys.readouterr().out)}
    assert {k: v["fired"] for k, v in reports.items()} == {"DeepSeek": 1, "Azure": 1, "KI": 1}
    assert reports["KI"]["articles"] == 3
    samples = reports["KI"]["samples"]
    assert isinstance(samples, list) and samples[0]["title"] == "KI im Einzelhandel"
    # quoted as published, not case-folded (ß stays ß)
    assert samples[0]["snippet"] == "title: »KI« im Einzelhandel"
    cfg.write_text(cfg.read_text().replace("keywords: [KI]", "keywords: [Konkurrenz]"))
    assert main(["-c", str(cfg), "rules", "test", "--since", "1d", "--json"]) == 0
    reports = {r["rule"]: r for r in _json_lines(capsys.readouterr().out)}
    assert reports["KI"]["samples"][0]["snippet"] == "summary: Größere »Konkurrenz« für KI-Händler"
    cfg.write_text(cfg.read_text().replace("keywords: [Konkurrenz]", "keywords: [KI]"))
    assert main(["-c", str(cfg), "rules", "test", "--rule", "KI"]) == 0
    out = capsys.readouterr().out
    assert "KI: would have fired on 1 of 3" in out and "Azure" not in out
    assert main(["-c", str(cfg), "matches", "--json"]) == 0
    assert len(_json_lines(capsys.readouterr().out)) == 1


# --------------------------------------------------------------------------
# which database a command uses


@pytest.mark.parametrize(
    "command", [["status"], ["status", "--json"], ["matches"], ["rules", "test"]]
)
def test_read_only_commands_never_create_a_database(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    cfg = _config(tmp_path, "  - url: http://127.0.0.1:9/feed.xml\n", RULES)
    assert main(["-c", str(cfg), *command]) == 1
    err = capsys.readouterr().err
    assert f"no database at {tmp_path}/monitor.db" in err
    assert f"the default: monitor.db next to {cfg}, which sets no settings.database" in err
    assert "--db PATH or MONITOR_DB=PATH" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feeds.yaml"]


def test_monitor_db_chooses_the_database_of_every_command_and_db_option_wins(
    site: FeedServer,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    site.put("/feed.xml", rss([Item("DeepSeek news", site.url("/1"))]))
    cfg = _config(tmp_path, f"  - url: {site.url('/feed.xml')}\n    extract: false\n", RULES)
    state = tmp_path / "state" / "service.db"
    state.parent.mkdir()
    monkeypatch.setenv("MONITOR_DB", str(state))
    assert main(["-c", str(cfg), "poll"]) == 0
    assert state.exists() and not (tmp_path / "monitor.db").exists()
    capsys.readouterr()

    assert main(["-c", str(cfg), "status", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["database"] == {"path": str(state), "source": "MONITOR_DB"}
    assert report["feeds"][0]["last_poll"] is not None
    assert main(["-c", str(cfg), "status"]) == 0
    assert capsys.readouterr().out.startswith(f"database {state} (MONITOR_DB)\n")
    assert main(["-c", str(cfg), "matches", "--json"]) == 0
    assert len(_json_lines(capsys.readouterr().out)) == 1
    assert main(["-c", str(cfg), "check"]) == 0
    assert f"database: {state} (MONITOR_DB)" in capsys.readouterr().out

    other = tmp_path / "other.db"
    assert main(["-c", str(cfg), "--db", str(other), "status"]) == 1
    assert f"no database at {other}\n  (that path is --db)" in capsys.readouterr().err
    assert not other.exists()


def test_status_of_a_broken_config_reads_the_database_it_names(
    site: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site.put("/feed.xml", rss([]))
    feeds = f"  - url: {site.url('/feed.xml')}\n    name: Kept\n"
    cfg = _config(tmp_path, feeds, RULES, extra="  database: state/m.db\n")
    (tmp_path / "state").mkdir()
    assert main(["-c", str(cfg), "poll"]) == 0
    cfg.write_text(cfg.read_text() + "  - name: Broken\n")
    capsys.readouterr()
    assert main(["-c", str(cfg), "status", "--json"]) == 0
    captured = capsys.readouterr()
    assert "the config has errors" in captured.err
    report = json.loads(captured.out)
    assert report["database"]["path"] == str(tmp_path / "state" / "m.db")
    assert [f["url"] for f in report["feeds"]] == [site.url("/feed.xml")]


def test_feeds_lists_state_and_pause_and_resume_by_name_or_url(
    site: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site.put("/a.xml", rss([Item("DeepSeek A", site.url("/a1"))], title="Feed A"))
    site.put("/b.xml", rss([Item("DeepSeek B", site.url("/b1"))]))
    site.special["/c.xml"] = (410, None)
    feeds = (
        f"  - url: {site.url('/a.xml')}\n    extract: false\n"
        f"  - url: {site.url('/b.xml')}\n    name: B\n    extract: false\n"
        f"  - url: {site.url('/c.xml')}\n    name: C\n"
    )
    cfg = _config(tmp_path, feeds, RULES)
    assert main(["-c", str(cfg), "poll"]) == 0
    capsys.readouterr()

    assert main(["-c", str(cfg), "feeds", "--json"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert [(r["name"], r["state"]) for r in rows] == [("Feed A", "ok"), ("B", "ok"), ("C", "gone")]
    assert set(rows[0]) == {
        "name",
        "name_from",
        "url",
        "configured_url",
        "state",
        "last_poll",
        "next_poll",
        "last_entry",
        "interval",
        "interval_reason",
        "configured_interval",
        "error",
    }
    assert [r["name_from"] for r in rows] == ["title", "config", "config"]
    assert [r["interval_reason"] for r in rows] == ["configured", "configured", "gone"]
    assert rows[0]["last_entry"] is not None and rows[2]["last_entry"] is None
    assert rows[2]["error"] == "HTTP 410 Gone" and rows[2]["next_poll"] is not None

    # by the name status shows (the feed's own title), and by URL
    assert main(["-c", str(cfg), "feeds", "pause", "Feed A"]) == 0
    assert main(["-c", str(cfg), "feeds", "pause", site.url("/b.xml")]) == 0
    assert "paused B" in capsys.readouterr().out
    assert main(["-c", str(cfg), "feeds"]) == 0
    out = capsys.readouterr().out
    assert "Feed A (its own title: no name: in feeds.yaml)  PAUSED" in out
    assert "B  PAUSED" in out and "C  GONE" in out
    assert "error: HTTP 410 Gone" in out

    # a paused feed is not polled, unless named
    site.put(
        "/b.xml", rss([Item("DeepSeek B", site.url("/b1")), Item("DeepSeek B2", site.url("/b2"))])
    )
    hits = dict(site.hits)
    assert main(["-c", str(cfg), "poll", "--json"]) == 1  # only C was polled, and it failed
    assert _json_lines(capsys.readouterr().out) == []
    assert site.hits["/a.xml"] == hits["/a.xml"] and site.hits["/b.xml"] == hits["/b.xml"]
    assert main(["-c", str(cfg), "poll", "--feed", "B", "--json"]) == 0
    assert [r["title"] for r in _json_lines(capsys.readouterr().out)] == ["DeepSeek B2"]

    assert main(["-c", str(cfg), "feeds", "resume", "C"]) == 0
    assert main(["-c", str(cfg), "feeds", "resume", "B"]) == 0
    capsys.readouterr()
    assert main(["-c", str(cfg), "status", "--json"]) == 0
    status = {f["feed"]: f for f in json.loads(capsys.readouterr().out)["feeds"]}
    assert {k: v["state"] for k, v in status.items()} == {
        "Feed A": "paused",
        "B": "ok",
        "C": "failing",  # resumed; its last poll failed until the next one says otherwise
    }
    assert status["Feed A"]["next_poll"] is None and status["C"]["gone"] is False

    assert main(["-c", str(cfg), "feeds", "resume", "nope"]) == 2
    assert "no feed named 'nope'" in capsys.readouterr().err
