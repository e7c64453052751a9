"""What operators and new users meet: `monitor feeds` (interval in force and why),
names and titles, OPML in and out, warnings, pipes, `status` without a config or
daemon, the daemon's log (JSON, UTC, a summary, when the next polls are due) and
a failed send told in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.query import lowercase_operators
from tests.feeds import Item, rss
from tests.servers import FeedServer, Webhook, free_port, running, wait_for
from tests.test_daemon import Daemon

# apprise's email plugin imports the deprecated imghdr module when it first loads.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

RULES = "rules:\n  - name: DeepSeek\n    keywords: [DeepSeek]\n"


@pytest.fixture
def site() -> Iterator[FeedServer]:
    server = FeedServer()
    with running(server):
        yield server


def _lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def _monitor(config: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "monitor", "-c", str(config), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=config.parent,
    )


# --------------------------------------------------------------------------
# monitor feeds: the interval in force, and why


def test_feeds_shows_the_interval_in_force_its_reason_and_the_last_new_entry(
    site: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # a ttl of two hours on a feed configured for a minute: lengthened, but 4x at most
    site.put("/ttl.xml", rss([Item("DeepSeek", site.url("/1"))], extra="<ttl>120</ttl>"))
    site.put("/plain.xml", rss([Item("Nichts", site.url("/2"))]))
    dead = f"http://127.0.0.1:{free_port()}/feed.xml"
    cfg = tmp_path / "feeds.yaml"
    feeds = (
        f"feeds:\n  - url: {site.url('/ttl.xml')}\n    name: TTL\n    extract: false\n"
        f"  - url: {site.url('/plain.xml')}\n    name: Plain\n    extract: false\n"
        f"  - url: {dead}\n    name: Dead\n"
    )
    cfg.write_text("settings:\n  interval: 1m\n" + feeds + RULES)
    main(["-c", str(cfg), "poll"])
    main(["-c", str(cfg), "poll", "--feed", "Dead"])  # two failures in a row
    capsys.readouterr()

    assert main(["-c", str(cfg), "feeds", "--json"]) == 0
    rows = {r["name"]: r for r in _lines(capsys.readouterr().out)}
    assert {n: r["interval_reason"] for n, r in rows.items()} == {
        "TTL": "feed_hints",
        "Plain": "configured",
        "Dead": "backoff",
    }
    assert 228 <= rows["TTL"]["interval"] <= 252  # type: ignore[operator]
    assert 57 <= rows["Plain"]["interval"] <= 63  # type: ignore[operator]
    assert 114 <= rows["Dead"]["interval"] <= 126  # type: ignore[operator]
    assert rows["TTL"]["configured_interval"] == 60.0
    assert rows["TTL"]["last_entry"] is not None and rows["Dead"]["last_entry"] is None

    assert main(["-c", str(cfg), "feeds"]) == 0
    out = capsys.readouterr().out
    assert (
        "every 4m: the feed's ttl, Cache-Control max-age or skipHours "
        "(configured 1m; hints lengthen it to 4m at most)" in out
    )
    assert "every 1m: the configured interval" in out
    assert "backoff after failed polls (2 in a row; configured 1m, doubling" in out
    assert "last new entry 20" in out and "last new entry none yet" in out

    # respect_ttl: false polls at the configured interval whatever the feed says
    cfg.write_text("settings:\n  interval: 1m\n  respect_ttl: false\n" + feeds + RULES)
    main(["-c", str(cfg), "poll", "--feed", "TTL"])
    capsys.readouterr()
    assert main(["-c", str(cfg), "feeds", "--json"]) == 0
    rows = {r["name"]: r for r in _lines(capsys.readouterr().out)}
    assert rows["TTL"]["interval_reason"] == "configured"


# --------------------------------------------------------------------------
# a feed without name: is known by its title; OPML


def test_the_title_status_shows_works_for_poll_and_a_rule_names_why_it_cant(
    site: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site.put("/a.xml", rss([Item("DeepSeek A", site.url("/a1"))], title="Heise Newsticker"))
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(f"feeds:\n  - url: {site.url('/a.xml')}\n    extract: false\n" + RULES)
    assert main(["-c", str(cfg), "poll"]) == 0
    capsys.readouterr()
    assert main(["-c", str(cfg), "poll", "--feed", "Heise Newsticker", "--json"]) == 0
    assert main(["-c", str(cfg), "poll", "--feed", "Heise"]) == 2
    assert "no feed named Heise (see `monitor feeds`)" in capsys.readouterr().err

    assert main(["-c", str(cfg), "export-opml"]) == 0
    exported = capsys.readouterr().out
    assert 'text="Heise Newsticker"' in exported and f'xmlUrl="{site.url("/a.xml")}"' in exported

    cfg.write_text(cfg.read_text() + "    feeds: [Heise Newsticker]\n")
    assert main(["-c", str(cfg), "check"]) == 2
    assert (
        "rule 'DeepSeek': no feed or tag named 'Heise Newsticker' (1 feeds have no name: and "
        "are shown under their own title, which a rule can't name: give the feed a name:)"
    ) in capsys.readouterr().err


OPML = """<?xml version="1.0"?>
<opml version="2.0"><head><title>subs</title></head><body>
  <outline text="Tech">
    <outline text="Old Safari link" type="rss" xmlUrl="feed://a.example/rss"/>
    <outline text="Wrapped" type="rss" xmlUrl="feed:https://b.example/atom"/>
    <outline text="No scheme" type="rss" xmlUrl="c.example/feed.xml"/>
    <outline text="Protocol-relative" type="rss" xmlUrl="//d.example/rss"/>
    <outline text="Again" type="rss" xmlUrl="https://a.example/rss"/>
    <outline text="FTP" type="rss" xmlUrl="ftp://e.example/feed"/>
    <outline text="Spaces" type="rss" xmlUrl="https://f.example/my feed"/>
    <outline text="Word" type="rss" xmlUrl="notaurl"/>
  </outline>
</body></opml>
"""


def test_import_opml_converts_what_it_can_and_lists_what_it_skips_and_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text("feeds:\n  - url: https://b.example/atom\n" + RULES)
    opml = tmp_path / "subs.opml"
    opml.write_text(OPML)
    assert main(["-c", str(cfg), "import-opml", str(opml)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines() == [
        f"3 feeds added to {cfg}, 1 already there",
        "  converted feed://a.example/rss -> https://a.example/rss",
        "  converted feed:https://b.example/atom -> https://b.example/atom",
        "  converted c.example/feed.xml -> https://c.example/feed.xml",
        "  converted //d.example/rss -> https://d.example/rss",
        "4 outlines skipped:",
        "  https://a.example/rss: a second outline of the same feed",
        "  ftp://e.example/feed: not http or https (ftp:)",
        "  https://f.example/my feed: the URL contains white space",
        "  notaurl: not a URL (no scheme, no host name)",
    ]
    assert 'url: "https://c.example/feed.xml"' in cfg.read_text()

    # an OPML of nothing usable is an error, not "0 feeds added"
    opml.write_text(
        '<opml version="2.0"><body><outline text="x" xmlUrl="ftp://e.example/feed"/></body></opml>'
    )
    before = cfg.read_text()
    assert main(["-c", str(cfg), "import-opml", str(opml)]) == 2
    captured = capsys.readouterr()
    assert "ftp://e.example/feed: not http or https (ftp:)" in captured.out
    assert "no feed in it could be imported" in captured.err
    assert cfg.read_text() == before


# --------------------------------------------------------------------------
# warnings, YAML hints, pipes


@pytest.mark.parametrize(
    ("query", "words"),
    [
        ("raspberry and pi or arduino", [(10, "and"), (17, "or")]),
        ("DeepSeek Not Azure", [(9, "Not")]),
        ('DeepSeek AND "and"', []),
        ("DeepSeek AND (Azure OR AI)", []),
        ("android OR orange", []),
        ("a AND (b", []),  # a syntax error is reported, not this
    ],
)
def test_lowercase_operators_are_found_with_their_offsets(
    query: str, words: list[tuple[int, str]]
) -> None:
    assert lowercase_operators(query) == words


def test_check_warns_about_lowercase_operators_and_still_passes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text("rules:\n  - name: Pi\n    query: 'raspberry and pi or arduino'\n")
    assert main(["-c", str(cfg), "check"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "feeds.yaml:3:23: warning: rule 'Pi': 'and' in the query is a word to look for, not an "
        "operator (operators are upper case: AND)",
        "feeds.yaml:3:30: warning: rule 'Pi': 'or' in the query is a word to look for, not an "
        "operator (operators are upper case: OR)",
    ]


def test_a_regex_in_double_quotes_gets_a_hint_about_single_quotes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text('rules:\n  - name: R\n    keywords: ["/R(\\d+/"]\n')
    assert main(["-c", str(cfg), "check"]) == 2
    assert capsys.readouterr().err.strip() == (
        "feeds.yaml:3:21: YAML: found unknown escape character 'd' (inside double quotes a "
        "backslash starts an escape: write a regular expression in single quotes, '/R\\d+/')"
    )


@pytest.mark.parametrize("command", [["schema"], ["check"], ["feeds"]])
def test_output_into_a_closed_pipe_ends_quietly(
    site: FeedServer, tmp_path: Path, command: list[str]
) -> None:
    """`monitor matches | head -1`: the reader leaves; no BrokenPipeError traceback."""
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(f"feeds:\n  - url: {site.url('/x.xml')}\n" + RULES)
    subprocess.run(
        [sys.executable, "-m", "monitor", "-c", str(cfg), "poll"], capture_output=True, check=False
    )
    proc = _monitor(cfg, *command)
    assert proc.stdout is not None
    proc.stdout.close()  # the reader is gone before the first line
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and err == "", err


# --------------------------------------------------------------------------
# status without a config, and whether a daemon runs


def test_status_without_a_config_says_what_to_give_and_creates_nothing(tmp_path: Path) -> None:
    proc = _monitor(tmp_path / "feeds.yaml", "status")
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert err.strip() == (
        f"monitor: no config at {tmp_path}/feeds.yaml: give the config with -c PATH "
        "(or MONITOR_CONFIG), or the database with --db PATH (or MONITOR_DB)"
    )
    assert list(tmp_path.iterdir()) == []


def test_status_says_whether_a_daemon_runs_and_the_log_is_json_in_utc_with_a_summary(
    site: FeedServer, tmp_path: Path
) -> None:
    site.put("/feed.xml", rss([Item("DeepSeek R2", site.url("/1"))]))
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        "settings:\n  interval: 1s\n  extract: false\n"
        f"feeds:\n  - url: {site.url('/feed.xml')}\n    name: News\n" + RULES
    )
    daemon = Daemon(cfg, {"MONITOR_LOG_LEVEL": "info"})  # per-poll lines are DEBUG
    daemon.start()
    try:
        assert wait_for(lambda: "monitor running" in daemon.text()), daemon.text()
        assert wait_for(lambda: site.hits.get("/feed.xml", 0) >= 3), daemon.text()
        status = daemon.status()
        assert status["running"] is True and status["pid"] == daemon.proc.pid  # type: ignore[union-attr]
        assert "daemon running (pid" in daemon.cli("status")
    finally:
        code, _ = daemon.stop()
    assert code == 0
    status = daemon.status()
    assert status["running"] is False and status["pid"] is None and status["started"]
    assert "no daemon running on this database; the last one started 20" in daemon.cli("status")

    # not a terminal: one JSON object per line (the console's alerts go to stdout, the same file)
    lines = [line for line in daemon.text().splitlines() if line.startswith("{")]
    records = _lines("\n".join(lines))
    assert all(str(r["time"]).endswith("+00:00") for r in records)
    assert all(str(r["logger"]).startswith("monitor.") for r in records)
    messages = [str(r["message"]) for r in records]
    assert not any("status=200" in m for m in messages)  # per-poll lines: DEBUG
    (next_poll,) = [r for r in records if str(r["message"]).startswith("next poll: News at ")]
    assert next_poll["due_within_a_minute"] == 1
    (summary,) = [r for r in records if str(r["message"]).startswith("in the last ")]
    assert summary["polls"] >= 3 and summary["new_entries"] == 1 and summary["matched"] == 1  # type: ignore[operator]
    assert summary["messages_sent"] == 1  # the console


# --------------------------------------------------------------------------
# a failed send, in one line, with the URL as written


def test_a_failed_send_is_one_line_with_its_cause_and_apprise_stays_quiet(
    site: FeedServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    chat = Webhook()  # never started: connection refused
    url = f"json://bot:hk-3f9a7c1e5d2b8a40@127.0.0.1:{free_port()}/hook?format=text"
    site.put("/feed.xml", rss([Item("DeepSeek R2", site.url("/1"))]))
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        f'notifiers:\n  chat: "{url}"\n'
        f"feeds:\n  - url: {site.url('/feed.xml')}\n    extract: false\n" + RULES
    )
    del chat
    proc = _monitor(cfg, "test-notify")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    masked = url.replace("hk-3f9a7c1e5d2b8a40", "****")
    assert out.strip() == (
        f"chat: {masked}: FAILED: A Connection error occurred sending JSON notification "
        "to 127.0.0.1: Connection refused"
    )
    assert err == ""  # apprise's own warning is not printed again

    assert main(["-c", str(cfg), "poll"]) == 0
    capsys.readouterr()
    assert main(["-c", str(cfg), "status"]) == 0
    assert (
        "last error: A Connection error occurred sending JSON notification to 127.0.0.1: "
        "Connection refused\n"
    ) in capsys.readouterr().out
