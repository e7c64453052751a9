"""Command line (SPEC section 3). Exit codes: 0 ok, 1 runtime failure, 2 bad usage/config.

Secrets never reach the terminal: every config loaded adds its secrets to one
``Redactor``, which redacts all that is printed to stdout and stderr
(tracebacks included) and every log record.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import traceback
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from monitor import __version__, decide, logs, notify, update
from monitor.config import (
    Config,
    ConfigError,
    DatabaseChoice,
    FeedSpec,
    Settings,
    choose_database,
    format_duration,
    load_config,
    parse_duration,
    summary,
)
from monitor.redact import Redactor, redacted_stdio
from monitor.render import test_message
from monitor.storage import Storage, StorageError, open_storage, shown_location
from monitor.storage.base import FeedState, FeedStats
from monitor.types import RuleMatch, Snippet

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """The command can't run as given; the message says what to give it (exit 2)."""


# The secrets of every config this process loaded; only ever grows (see redact.Redactor).
_REDACTOR = Redactor()


def _common(suppress: bool) -> argparse.ArgumentParser:
    """Options every command takes, before or after the command name.

    After the command their defaults are suppressed, so they don't overwrite
    a value given before it (`monitor -c x.yaml poll`).
    """

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        default=default(os.environ.get("MONITOR_CONFIG", "feeds.yaml")),
        help="path of feeds.yaml (default: ./feeds.yaml or $MONITOR_CONFIG)",
    )
    common.add_argument(
        "--db",
        default=default(None),
        help="database path or URL (default: $MONITOR_DB, else settings.database, "
        "else monitor.db next to feeds.yaml)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default(False),
        help="debug logging, apprise's and APScheduler's included",
    )
    return common


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="monitor",
        description="Watch news feeds and alert when an article matches your rules.",
        parents=[_common(suppress=False)],
    )
    common = _common(suppress=True)
    p.add_argument("--version", action="version", version=f"rss-monitor {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    sub.add_parser("check", parents=[common], help="validate the config")
    sub.add_parser(
        "schema", parents=[common], help="print the JSON Schema of feeds.yaml (for editors)"
    )
    poll = sub.add_parser("poll", parents=[common], help="one poll round now, print matches")
    poll.add_argument("--feed", action="append", help="only this feed (name or URL); repeatable")
    poll.add_argument("--dry-run", action="store_true", help="store and send nothing")
    poll.add_argument("--json", action="store_true", help="one JSON object per matched entry")
    tn = sub.add_parser("test-notify", parents=[common], help="send a test message")
    tn.add_argument("notifier", nargs="?", help="notifier name (default: all)")
    st = sub.add_parser("status", parents=[common], help="feeds and outbox")
    st.add_argument("--json", action="store_true")
    ma = sub.add_parser("matches", parents=[common], help="recent matches")
    ma.add_argument("--since", default="7d", help="how far back (default 7d)")
    ma.add_argument("--rule", help="only this rule")
    ma.add_argument("--json", action="store_true")
    fd = sub.add_parser(
        "feeds", parents=[common], help="list feeds and their state; pause or resume one"
    )
    fd.add_argument("--json", action="store_true", help="one JSON object per feed")
    fd_sub = fd.add_subparsers(dest="feeds_command", metavar="SUBCOMMAND")
    for action, text in (
        ("pause", "stop polling a feed until it is resumed"),
        ("resume", "poll a paused, gone (410) or failing feed again now"),
    ):
        one = fd_sub.add_parser(action, parents=[common], help=text)
        one.add_argument(
            "name", metavar="NAME", help="the feed's name as status shows it, or its URL"
        )
    ob = sub.add_parser("outbox", parents=[common], help="alerts not sent yet, or given up")
    ob.add_argument("--failed", action="store_true", help="only the rows given up")
    ob.add_argument("--json", action="store_true", help="one JSON object per row")
    ob_sub = ob.add_subparsers(dest="outbox_command", metavar="SUBCOMMAND")
    retry = ob_sub.add_parser(
        "retry", parents=[common], help="send a row (or every failed one) again"
    )
    retry.add_argument("id", nargs="?", type=int, help="the row's id (see `monitor outbox`)")
    retry.add_argument("--failed", action="store_true", help="every row given up")
    drop = ob_sub.add_parser("drop", parents=[common], help="never send a row")
    drop.add_argument("id", type=int, help="the row's id (see `monitor outbox`)")
    db = sub.add_parser("db", parents=[common], help="the database's schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="SUBCOMMAND")
    db_sub.add_parser(
        "migrate",
        parents=[common],
        help="create or upgrade the schema (PostgreSQL; SQLite does it on every start)",
    )
    im = sub.add_parser("import-opml", parents=[common], help="add the feeds of an OPML file")
    im.add_argument("file", help="OPML file (e.g. exported from another feed reader)")
    sub.add_parser("export-opml", parents=[common], help="print the feeds as OPML")
    rules = sub.add_parser("rules", parents=[common], help="work with rules")
    rules_sub = rules.add_subparsers(dest="rules_command", required=True, metavar="SUBCOMMAND")
    rt = rules_sub.add_parser(
        "test", parents=[common], help="replay the rules over stored articles; sends nothing"
    )
    rt.add_argument("--since", default="30d", help="how far back (default 30d)")
    rt.add_argument("--rule", help="only this rule")
    rt.add_argument("--samples", type=int, default=5, help="articles shown per rule (default 5)")
    rt.add_argument("--json", action="store_true")
    return p


def _load(path: str, *, check_notifiers: bool = True) -> Config:
    try:
        config = load_config(Path(path), os.environ, check_notifiers=check_notifiers)
    except ConfigError as exc:
        _REDACTOR.add(exc.secrets)
        raise
    _REDACTOR.add(config.secrets)
    logs.apply(config.settings)
    return config


def _database(args: argparse.Namespace, setting: str | None) -> DatabaseChoice:
    """The database of this command (``config.choose_database`` decides, for every command)."""
    return choose_database(Path(args.config), setting, option=args.db, env=os.environ)


def _read_store(args: argparse.Namespace, setting: str | None) -> tuple[Storage, DatabaseChoice]:
    """The database for a command that only reads it: opened read-only, never created."""
    choice = _database(args, setting)
    try:
        return open_storage(choice.location, readonly=True), choice
    except StorageError as exc:
        raise StorageError(
            f"{exc}\n  (that path is {choice.source})\n"
            f"  `monitor {args.command}` reads the database the daemon writes and never creates "
            "one: give it the config the service runs with (-c), or the database's path "
            "(--db PATH or MONITOR_DB=PATH)"
        ) from None


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="seconds") if dt else None


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    database = _database(args, config.settings.database)
    database = replace(database, location=shown_location(database.location))
    print(summary(config, lambda url: notify.mask(url, config.secrets), database))
    for warning in config.warnings:  # valid, so exit 0, but likely not what was meant
        print(warning, file=sys.stderr)
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    from monitor.schema import render

    sys.stdout.write(render())
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.daemon import run_daemon
    from monitor.health import MetricsError

    config = _load(args.config)
    database = _database(args, config.settings.database)
    try:
        return asyncio.run(run_daemon(config, os.environ, database.location, redactor=_REDACTOR))
    except StorageError as exc:  # e.g. a database left next to a config in read-only /etc
        raise StorageError(f"{exc}\n  (that path is {database.source})") from None
    except MetricsError as exc:  # settings.metrics: the port is taken, no such address
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_FAIL


async def _poll(args: argparse.Namespace, config: Config) -> int:
    from monitor.app import App, process_pool

    feeds = list(config.feeds)
    database = _database(args, config.settings.database).location
    if args.feed:
        # the names status shows: a feed without name: goes by its own (stored) title
        titles = _stored_titles(database)
        wanted = set(args.feed)
        known = {f.url: {f.url, f.name or titles.get(f.url) or f.url} for f in feeds}
        feeds = [f for f in feeds if known[f.url] & wanted]
        missing = wanted - {n for f in feeds for n in known[f.url]}
        if missing:
            print(
                f"monitor: no feed named {', '.join(sorted(missing))} (see `monitor feeds`)",
                file=sys.stderr,
            )
            return EXIT_USAGE
    # Parsing, extraction and matching run in workers under the memory ceiling, as
    # in the daemon: a document that blows up a parser costs its feed, not this process.
    pool = process_pool(config)
    app = App(config, db=database, console=sys.stderr, executor=pool)  # stdout: the matches
    daemon = None
    unsent: ConfigError | None = None
    try:
        daemon = app.storage.daemon_pid()
        stored = app.storage.feed_states()
        states = {s.configured or s.key: s for s in stored}
        if not args.feed:  # a paused feed is polled only when named
            feeds = [f for f in feeds if not (f.url in states and states[f.url].paused)]
        if args.feed and daemon is not None and not args.dry_run:
            # The running daemon polls them now (and delivers): not a second poller beside it.
            outcomes = await _ask_daemon(app, feeds, states)
        else:
            delivers = not args.dry_run and daemon is None

            def matched(outcome: Any) -> None:
                if outcome.alerts and delivers:
                    # Something will be sent: apprise loads in a thread meanwhile (the loop
                    # mostly waits for the workers then).
                    app.start_checking_notifiers()

            outcomes = await app.poll_round(
                feeds,
                dry_run=args.dry_run,
                force=bool(args.feed),
                states={s.configured: s for s in stored if s.configured},  # read once
                on_outcome=matched,
            )
        if not args.dry_run and daemon is None and _has_sends(app):
            try:
                await app.check_notifiers()  # apprise is loaded by now, or now
            except ConfigError as exc:
                _REDACTOR.add(exc.secrets)
                unsent = exc
            else:
                _REDACTOR.add(app.config.secrets)
                await app.deliverer.run_once()
    finally:
        await app.close()  # kills a call still running (after Ctrl-C)
        pool.shutdown(wait=True)  # the idle workers exit as their pipes close; reap them
    failed = 0
    for o in outcomes:
        if o.error:
            failed += 1
            print(f"monitor: {o.feed}: {o.error}", file=sys.stderr)
        for a in o.alerts:
            if args.json:
                print(_alert_json(a))
            else:
                print(f"[{', '.join(a.rules)}] {a.title}\n    {a.feed} · {a.link or ''}")
    if not args.json:
        n = sum(len(o.alerts) for o in outcomes)
        print(
            f"{len(outcomes)} feeds polled, {sum(o.new for o in outcomes)} new entries, "
            f"{n} matched{', nothing stored or sent (dry run)' if args.dry_run else ''}",
            file=sys.stderr,
        )
    if daemon is not None and not args.dry_run:
        who = f" (pid {daemon})" if daemon else ""
        print(f"the running daemon{who} delivers the alerts", file=sys.stderr)
    if unsent is not None:
        print(unsent, file=sys.stderr)
        print(
            "monitor: nothing was sent; the alerts wait in the outbox until the notifier is"
            " fixed (`monitor check` checks the config)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return EXIT_FAIL if outcomes and failed == len(outcomes) else EXIT_OK


def _has_sends(app: Any) -> bool:
    """Whether delivery has anything to do now: an outbox row due, or a digest (it records
    when it fell due even with nothing to send). Without, apprise is never loaded."""
    if any(n.digest for n in app.config.notifiers):
        return True
    return bool(app.storage.due_deliveries(app.clock(), 1))


ASK_TIMEOUT = 120.0  # seconds `monitor poll --feed` waits for the daemon's poll


async def _ask_daemon(app: Any, feeds: list[FeedSpec], states: dict[str, FeedState]) -> list[Any]:
    """Have the running daemon poll ``feeds`` now; wait for it and report what it found."""
    from monitor.pipeline import PollOutcome
    from monitor.update import Alert

    store = app.storage
    asked = app.clock()
    named = {f.url: f for f in feeds}
    keys = {states[u].key: u for u in named if u in states and not states[u].paused}
    before = store.feed_stats()
    if keys:
        store.request_poll(list(keys), asked)
    outcomes = []
    deadline = asyncio.get_running_loop().time() + ASK_TIMEOUT
    while keys:
        now_states = {s.key: s for s in store.feed_states() if s.key in keys}
        if all((st.last_poll or asked) > asked for st in now_states.values()):
            break
        if asyncio.get_running_loop().time() > deadline:
            print("monitor: the daemon did not poll in time; see `monitor status`", file=sys.stderr)
            break
        await asyncio.sleep(0.2)
    after = store.feed_stats()
    records = store.matches_since(asked)
    for key, url in keys.items():
        st = store.feed_state(url)
        feed = named[url]
        alerts = tuple(
            Alert(r.feed, r.title, r.link, r.published, r.rules, r.terms)
            for r in records
            if r.key == key
        )
        new = after.get(key, FeedStats()).entries - before.get(key, FeedStats()).entries
        label = feed.name or st.title or url
        outcomes.append(PollOutcome(label, st.last_status, st.last_error, new, alerts, st.next_due))
    paused = [f for u, f in named.items() if u not in keys.values()]
    if paused:  # the daemon doesn't poll a paused feed; named here, it is polled here
        outcomes += await app.poll_round(paused, force=True)
    return outcomes


def _alert_json(a: Any) -> str:
    """One matched entry as ``monitor poll --json`` prints it."""
    return json.dumps(
        {
            "feed": a.feed,
            "title": a.title,
            "link": a.link,
            "published": a.published.isoformat() if a.published else None,
            "rules": list(a.rules),
            "terms": list(a.terms),
        },
        ensure_ascii=False,
    )


def _stored_titles(database: str) -> dict[str, str]:
    """Configured URL -> the feed's own title, from the database if there is one yet."""
    try:
        store = open_storage(database, readonly=True)
    except StorageError:
        return {}
    try:
        return {s.configured or s.key: s.title for s in store.feed_states() if s.title}
    finally:
        store.close()


def cmd_poll(args: argparse.Namespace) -> int:
    # Notifier URLs are checked for their shape here, by apprise only when something is
    # to be sent: loading apprise costs about 0.3 s, more than a round of 1,000 unchanged
    # feeds. `monitor check` (and the daemon) check them fully.
    config = _load(args.config, check_notifiers=False)
    # The modules and the config live as long as the process: the cyclic collector's
    # passes during the round need not walk them again and again.
    gc.freeze()
    return asyncio.run(_poll(args, config))


def cmd_test_notify(args: argparse.Namespace) -> int:
    from monitor.app import build_targets

    config = _load(args.config)
    targets = build_targets(config)
    if args.notifier and args.notifier not in {n for n, _ in targets}:
        print(f"monitor: no notifier named {args.notifier!r}", file=sys.stderr)
        return EXIT_USAGE
    failures = 0
    for (name, _key), target in targets.items():
        if args.notifier and name != args.notifier:
            continue
        error = target.sender.send(test_message(name, datetime.now(UTC), target.sender.format))
        if error:
            failures += 1
            print(f"{name}: {target.masked}: FAILED: {error}")
        else:
            print(f"{name}: {target.masked}: sent")
    return EXIT_FAIL if failures else EXIT_OK


def _load_for_store(args: argparse.Namespace) -> tuple[Config | None, str | None, str | None]:
    """The config (None when it has errors: the store is still shown), its problem, and its
    ``settings.database`` (read even from a broken config).

    A config that isn't there at all is an error, unless the database is named
    (``--db``, ``MONITOR_DB``): without either, which database would it be?
    """
    if not Path(args.config).exists():
        if args.db or os.environ.get("MONITOR_DB"):
            print(f"monitor: no config at {args.config}: the database alone", file=sys.stderr)
            return None, None, None
        raise UsageError(
            f"no config at {os.path.abspath(args.config)}: give the config with -c PATH "
            "(or MONITOR_CONFIG), or the database with --db PATH (or MONITOR_DB)"
        )
    try:
        config = _load(args.config)
    except ConfigError as exc:
        print(f"monitor: the config has errors (showing the store anyway):\n{exc}", file=sys.stderr)
        return None, str(exc), exc.database
    return config, None, config.settings.database


def _feeds_of(
    config: Config | None, states: Sequence[FeedState]
) -> list[tuple[str, FeedSpec, FeedState]]:
    """(name as status shows it, configured feed, its stored state) for every feed.

    Without a config, every stored feed; a configured feed the store doesn't
    know yet (the daemon has not loaded it) shows as never polled.
    """
    by_url = {s.configured or s.key: s for s in states}
    specs = list(config.feeds) if config else [FeedSpec(url=url) for url in by_url]
    out = []
    for spec in specs:
        state = by_url.get(spec.url) or FeedState(key=spec.url, url=spec.url, configured=spec.url)
        out.append((spec.name or state.title or spec.url, spec, state))
    return out


def cmd_status(args: argparse.Namespace) -> int:
    config, config_problem, setting = _load_for_store(args)
    store, database = _read_store(args, setting)
    try:
        states = store.feed_states()
        stats = store.feed_stats()
        outbox = store.outbox_stats()
        meta = store.meta()
        pid = store.daemon_pid()  # None: no `monitor run` holds this database now
        instances = store.instances()  # PostgreSQL: every live `monitor run`
    finally:
        store.close()
    configured = set(config.notifier_urls()) if config else set(outbox.notifiers)
    feeds: list[dict[str, object]] = []
    for name, spec, s in _feeds_of(config, states):
        interval, why = (
            update.interval_in_force(update.policy(config, spec), s) if config else (None, None)
        )
        feeds.append(
            {
                "feed": name,
                "url": s.url,
                "configured_url": spec.url if s.url != spec.url else None,
                "state": s.condition,
                "last_poll": _iso(s.last_poll),
                "status": s.last_status,
                "error": s.last_error,
                "errors_in_a_row": s.error_count,
                "next_poll": None if s.paused else _iso(s.next_due),
                "gone": s.gone,
                "paused": s.paused,
                "earlier_urls": list(s.earlier_urls),
                "article_error": s.article_error,
                "entry_error": s.entry_error,
                "entries": stats.get(s.key, FeedStats()).entries,
                "matches": stats.get(s.key, FeedStats()).matches,
                "interval": interval,
                "interval_why": why,
            }
        )
    if args.json:
        report = {
            "database": {"path": shown_location(database.location), "source": database.source},
            "feeds": feeds,
            "outbox": {
                "pending": outbox.pending,
                "failed": outbox.failed,
                "sent": outbox.sent,
                "last_error": outbox.last_error,
                "notifiers": {
                    name: {
                        "pending": n.pending,
                        "failed": n.failed,
                        "sent": n.sent,
                        "last_error": n.last_error,
                        "configured": name in configured,
                    }
                    for name, n in outbox.notifiers.items()
                },
            },
            "config_error": meta.get("config_error") or config_problem,
            "running": pid is not None,
            "pid": pid or None,
            "started": meta.get("started"),  # of the last daemon, running or not
            "instances": [
                {
                    "owner": i.owner,
                    "host": i.host,
                    "pid": i.pid,
                    "started": _iso(i.started),
                    "seen": _iso(i.seen),
                }
                for i in instances
            ],
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return EXIT_OK
    print(f"database {shown_location(database.location)} ({database.source})")
    started = meta.get("started")
    if instances:
        print(f"{len(instances)} instance{'s' if len(instances) > 1 else ''} running:")
        for i in instances:
            print(f"    {i.host} pid {i.pid}, started {_iso(i.started)}, seen {_iso(i.seen)}")
    elif pid is not None:
        print(f"daemon running{f' (pid {pid})' if pid else ''}, started {started or '?'}")
    else:
        last = f"; the last one started {started}" if started else ""
        print(f"no daemon running on this database{last}")
    for row in feeds:
        when = f"next {row['next_poll'] or 'soon'}"
        if row["paused"]:
            when = "PAUSED, not polled (monitor feeds resume NAME)"
        elif row["gone"]:
            when = f"GONE (410), asked again daily: {when}"
        print(
            f"{row['feed']}\n    last poll {row['last_poll'] or 'never'}, "
            f"HTTP {row['status'] or '-'}, {when}, {row['entries']} entries, "
            f"{row['matches']} matches"
        )
        if row["configured_url"]:
            print(f"    moved permanently: now polling {row['url']}")
        if row["earlier_urls"]:
            print(f"    earlier URLs: {', '.join(row['earlier_urls'])}")  # type: ignore[arg-type]
        if row["error"]:
            print(f"    ERROR ({row['errors_in_a_row']} in a row): {row['error']}")
        if row["article_error"]:
            print(f"    last article page not used: {row['article_error']}")
        if row["entry_error"]:
            print(f"    last entry given up: {row['entry_error']}")
    print(f"outbox: {outbox.pending} pending, {outbox.failed} failed, {outbox.sent} sent")
    for name, n in outbox.notifiers.items():
        gone = "" if name in configured else " (no longer in the config: nothing more is sent)"
        print(f"    {name}: {n.pending} pending, {n.failed} failed, {n.sent} sent{gone}")
        if n.last_error and (n.pending or n.failed):
            print(f"        last error: {n.last_error}")
    if meta.get("config_error"):
        print(f"config reload FAILED, running the last good config:\n{meta['config_error']}")
    elif config_problem:
        print(f"config has errors: a reload or restart would fail:\n{config_problem}")
    return EXIT_OK


def _interval_of(config: Config | None, spec: FeedSpec, state: FeedState) -> float:
    """The base interval in force: the configured one, or what ``auto`` makes of the
    feed's publishing rate."""
    if config is not None:
        return update.interval_in_force(update.policy(config, spec), state)[0]
    default = Settings()
    interval = spec.interval if spec.interval is not None else default.interval
    if isinstance(interval, str):  # auto
        return decide.auto_interval(state.rate, default.min_interval, default.max_interval)
    return float(interval)


_WHY = {
    "configured": "the configured interval",
    "feed_hints": "the feed's ttl, Cache-Control max-age or skipHours",
    "backoff": "backoff after failed polls",
    "retry_after": "the server's Retry-After",
    "gone": "gone (410): asked again once a day",
    "due": "due now",
    "paused": "paused: not polled until resumed",
    "not_polled": "not polled yet",
}


def _interval_text(explained: decide.IntervalInForce, configured: float, errors: int) -> str:
    """``every 1h: the feed's ttl, ... (configured 15m, ...)`` for ``monitor feeds``."""
    reason = explained.reason
    why = _WHY[reason]
    if explained.seconds is None or reason == "due":
        return f"{why} (configured every {format_duration(configured)})"
    if reason == "configured":
        return f"every {format_duration(configured)}: {why}"
    seconds = explained.seconds
    # jitter (5 %, at most a minute) makes 4m into 3m59s: shown to the minute
    shown = format_duration(round(seconds / 60) * 60 if seconds >= 120 else seconds)
    if reason == "feed_hints":
        cap = format_duration(decide.hint_cap(configured))
        detail = f"configured {format_duration(configured)}; hints lengthen it to {cap} at most"
    elif reason == "backoff":
        cap = format_duration(max(decide.MAX_BACKOFF, configured))
        detail = (
            f"{errors} in a row; configured {format_duration(configured)}, doubling with each "
            f"failure, {cap} at most"
        )
    else:
        detail = f"configured {format_duration(configured)}"
    return f"every {shown}: {why} ({detail})"


def cmd_db(args: argparse.Namespace) -> int:
    """``monitor db migrate``: bring the database to this rss-monitor's schema.

    PostgreSQL is never migrated by an instance starting (instances on several hosts
    would race, and an operator decides when); SQLite migrates on every open, so
    here it only says where it stands.
    """
    from monitor.storage import is_postgres, migrate, shown_location

    _config, _problem, setting = _load_for_store(args)
    database = _database(args, setting)
    before, after = migrate(database.location)
    shown = shown_location(database.location)
    if not is_postgres(database.location):
        print(
            f"database {shown} ({database.source}) is at schema version {after}; "
            "SQLite databases are migrated automatically when opened"
        )
    elif before == after:
        print(f"database {shown} ({database.source}) is up to date (schema version {after})")
    else:
        what = "created" if before == 0 else f"upgraded from version {before}"
        print(f"database {shown} ({database.source}): schema {what} to version {after}")
    return EXIT_OK


def cmd_feeds(args: argparse.Namespace) -> int:
    config, _problem, setting = _load_for_store(args)
    store, database = _read_store(args, setting)  # exists: checked, never created here
    if args.feeds_command:  # pause/resume write: the same database, opened for writing
        store.close()
        store = open_storage(database.location)
    try:
        states = store.feed_states()
        rows = _feeds_of(config, states)
        if args.feeds_command:
            stored = {s.configured for s in states}
            return _pause_or_resume(store, rows, stored, args.feeds_command, args.name)
    finally:
        store.close()
    now = datetime.now(UTC)
    for name, spec, s in rows:
        configured = _interval_of(config, spec, s)
        explained = decide.explain_interval(
            interval=configured,
            last_poll=s.last_poll,
            next_due=s.next_due,
            error_count=s.error_count,
            gone=s.gone,
            paused=s.paused,
            now=now,
        )
        row = {
            "name": name,
            "name_from": "config" if spec.name else "title" if s.title else "url",
            "url": s.url,
            "configured_url": spec.url,
            "state": s.condition,
            "last_poll": _iso(s.last_poll),
            "next_poll": None if s.paused else _iso(s.next_due),
            "last_entry": _iso(s.last_new),
            "interval": explained.seconds,
            "interval_reason": explained.reason,
            "configured_interval": configured,
            "error": s.last_error,
        }
        if args.json:
            print(json.dumps(row, ensure_ascii=False))
            continue
        when = "not polled" if s.paused else f"next poll {row['next_poll'] or 'soon'}"
        title = " (its own title: no name: in feeds.yaml)" if row["name_from"] == "title" else ""
        print(
            f"{name}{title}  {s.condition.upper()}  last poll {row['last_poll'] or 'never'}, {when}"
        )
        print(f"    {s.url}" + (f" (configured: {spec.url})" if s.url != spec.url else ""))
        print(f"    last new entry {row['last_entry'] or 'none yet'}")
        print(f"    {_interval_text(explained, configured, s.error_count)}")
        if s.last_error:
            print(f"    error: {s.last_error}")
    return EXIT_OK


def _pause_or_resume(
    store: Storage,
    rows: list[tuple[str, FeedSpec, FeedState]],
    stored: set[str | None],
    action: str,
    wanted: str,
) -> int:
    found = [r for r in rows if wanted in (r[0], r[1].name, r[1].url, r[2].url)]
    if not found:
        print(f"monitor: no feed named {wanted!r} (see `monitor feeds`)", file=sys.stderr)
        return EXIT_USAGE
    if len(found) > 1:
        urls = ", ".join(spec.url for _n, spec, _s in found)
        print(f"monitor: {wanted!r} names several feeds ({urls}); give its URL", file=sys.stderr)
        return EXIT_USAGE
    ((name, spec, state),) = found
    if spec.url not in stored:
        print(
            f"monitor: {name} is not in the database yet: the daemon adds it when it loads"
            " the config",
            file=sys.stderr,
        )
        return EXIT_FAIL
    if action == "pause":
        store.pause_feed(state.key)
        print(f"paused {name}: a running daemon stops polling it within seconds")
    else:
        store.resume_feed(state.key, datetime.now(UTC))
        print(f"resumed {name}: a running daemon polls it within seconds")
    return EXIT_OK


def cmd_outbox(args: argparse.Namespace) -> int:
    config, _problem, setting = _load_for_store(args)
    store, database = _read_store(args, setting)  # exists: checked, never created here
    command = getattr(args, "outbox_command", None)
    if command:  # retry/drop write: the same database, opened for writing
        store.close()
        store = open_storage(database.location)
    try:
        if command == "retry":
            if (args.id is None) == (not args.failed):
                print("monitor: outbox retry takes an ID or --failed", file=sys.stderr)
                return EXIT_USAGE
            done = store.retry_deliveries(None if args.failed else [args.id], datetime.now(UTC))
            if not done:
                print(f"monitor: no row {args.id} waiting or given up", file=sys.stderr)
                return EXIT_USAGE if args.id is not None else EXIT_OK
            print(f"{done} rows queued again: a running daemon sends them within seconds")
            return EXIT_OK
        if command == "drop":
            if not store.drop_delivery(args.id):
                print(f"monitor: no row {args.id} waiting or given up", file=sys.stderr)
                return EXIT_USAGE
            print(f"row {args.id} dropped: it is never sent")
            return EXIT_OK
        rows = store.outbox_rows(failed_only=args.failed)
    finally:
        store.close()
    masked = _masked_targets(config)
    for r in rows:
        target = masked.get((r.notifier, r.target), f"{r.notifier} URL #{r.target + 1}")
        record = {
            "id": r.id,
            "notifier": r.notifier,
            "target": target,
            "status": r.status,
            "title": r.title,
            "link": r.link,
            "attempts": r.attempts,
            "last_error": r.last_error,
            "created": _iso(r.created),
            "next_attempt": _iso(r.next_attempt),
        }
        if args.json:
            print(json.dumps(record, ensure_ascii=False))
            continue
        when = f"next try {record['next_attempt']}" if r.status == "pending" else "GIVEN UP"
        print(f"#{r.id} {r.notifier} → {target}  {when}, {r.attempts} attempts")
        print(f"    {r.title}" + (f"\n    {r.link}" if r.link else ""))
        if r.last_error:
            print(f"    last error: {r.last_error}")
    if not args.json:
        print(f"{len(rows)} rows {'given up' if args.failed else 'not sent'}")
    return EXIT_OK


def _masked_targets(config: Config | None) -> dict[tuple[str, int], str]:
    """(notifier, URL position) -> the URL as shown (masked), for the config in force."""
    if config is None:
        return {}
    return {
        (n.name, i): notify.mask(url, config.secrets)
        for n in config.notifiers
        for i, url in enumerate(n.urls)
    }


def _quote(s: Snippet | None) -> str:
    return f"{s.field}: {s.before}»{s.hit}«{s.after}" if s else ""


def _explain(matches: Sequence[RuleMatch]) -> list[dict[str, object]]:
    return [
        {
            "rule": m.rule,
            "hits": [
                {"term": h.term, "field": h.field, "start": h.start, "end": h.end} for h in m.hits
            ],
        }
        for m in matches
    ]


def cmd_matches(args: argparse.Namespace) -> int:
    config = _load(args.config)
    since = datetime.now(UTC) - timedelta(seconds=parse_duration(args.since))
    store, _ = _read_store(args, config.settings.database)
    try:
        records = store.matches_since(since, args.rule)
    finally:
        store.close()
    for r in records:
        if args.json:
            print(
                json.dumps(
                    {
                        "feed": r.feed,
                        "title": r.title,
                        "link": r.link,
                        "published": _iso(r.published),
                        "seen": _iso(r.seen),
                        "rules": list(r.rules),
                        "terms": list(r.terms),
                        "explain": _explain(r.matches),
                        "snippet": _quote(r.snippet) or None,
                        "also_reported_by": list(r.also),
                        "copy_of": r.copy_of,
                    },
                    ensure_ascii=False,
                )
            )
            continue
        print(f"{_iso(r.seen)} [{', '.join(r.rules)}] {r.title}\n    {r.feed} · {r.link}")
        if r.also:
            print(f"    also reported by: {', '.join(r.also)}")
        if r.copy_of:
            print(f"    a copy of a story {r.copy_of} reported first (not alerted again)")
        for m in r.matches:
            where = ", ".join(f"{h.term!r} in {h.field} at {h.start}" for h in m.hits)
            print(f"    {m.rule}: {where}")
        if r.snippet:
            print(f"    {_quote(r.snippet)}")
    if not args.json:
        print(f"{len(records)} matches in the last {format_duration(parse_duration(args.since))}")
    return EXIT_OK


def cmd_rules(args: argparse.Namespace) -> int:
    from monitor.backtest import backtest
    from monitor.match import compile_rules

    config = _load(args.config)
    if args.rule and args.rule not in {r.name for r in config.rules}:
        print(f"monitor: no rule named {args.rule!r}", file=sys.stderr)
        return EXIT_USAGE
    seconds = parse_duration(args.since)
    since = datetime.now(UTC) - timedelta(seconds=seconds)
    store, _ = _read_store(args, config.settings.database)
    try:
        articles = store.articles_since(since)
    finally:
        store.close()
    tags = {f.key: f.tags for f in config.feeds}
    reports, seen = backtest(
        compile_rules(config.rules), articles, tags, only=args.rule, samples=args.samples
    )
    if args.json:
        for report in reports:
            print(
                json.dumps(
                    {
                        "rule": report.rule,
                        "fired": report.fired,
                        "articles": seen,
                        "samples": [
                            {
                                "feed": smp.article.feed,
                                "title": smp.article.title,
                                "link": smp.article.link,
                                "seen": _iso(smp.article.seen),
                                "explain": _explain([smp.match]),
                                "snippet": _quote(smp.snippet) or None,
                            }
                            for smp in report.samples
                        ],
                    },
                    ensure_ascii=False,
                )
            )
        return EXIT_OK
    print(f"{seen} stored articles from the last {format_duration(seconds)}; nothing is sent")
    for report in reports:
        print(f"\n{report.rule}: would have fired on {report.fired} of {seen}")
        for smp in report.samples:
            print(f"  - {smp.article.title}\n    {smp.article.feed} · {smp.article.link}")
            if smp.snippet:
                print(f"    {_quote(smp.snippet)}")
    return EXIT_OK


def cmd_import_opml(args: argparse.Namespace) -> int:
    from monitor.config import parse_config
    from monitor.opml import OpmlError, merge_into_yaml, read_opml

    path = Path(args.config)
    try:
        found = read_opml(Path(args.file).read_bytes())
    except (OSError, OpmlError) as exc:
        print(f"monitor: {args.file}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    before = _load(args.config)  # never write into a config that is already broken
    known = {f.url for f in before.feeds}
    added = [f for f in found.feeds if f.url not in known]
    if added:
        text = merge_into_yaml(path.read_text(encoding="utf-8"), found.feeds)
        # Check the result before writing it: a running daemon reloads the file at once.
        parse_config(text, Path(os.path.abspath(path)), os.environ)
        path.write_text(text, encoding="utf-8")
    there = len(found.feeds) - len(added)
    print(f"{len(added)} feeds added to {path}, {there} already there")
    for written, url in found.converted:
        print(f"  converted {written} -> {url}")
    if found.skipped:
        print(f"{len(found.skipped)} outlines skipped:")
        for written, why in found.skipped:
            print(f"  {written}: {why}")
    if not found.feeds and found.skipped:
        print(f"monitor: {args.file}: no feed in it could be imported", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def cmd_export_opml(args: argparse.Namespace) -> int:
    from monitor.opml import export_opml

    config = _load(args.config)
    # a feed without name: is titled as the feed calls itself (known once it was polled)
    titles = _stored_titles(_database(args, config.settings.database).location)
    print(export_opml(config.feeds, "rss-monitor", titles))
    return EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "check": cmd_check,
    "schema": cmd_schema,
    "poll": cmd_poll,
    "test-notify": cmd_test_notify,
    "status": cmd_status,
    "matches": cmd_matches,
    "feeds": cmd_feeds,
    "outbox": cmd_outbox,
    "rules": cmd_rules,
    "db": cmd_db,
    "import-opml": cmd_import_opml,
    "export-opml": cmd_export_opml,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``monitor`` console script."""
    args = _parser().parse_args(argv)
    logs.setup(_REDACTOR, verbose=args.verbose, env=os.environ)
    with redacted_stdio(_REDACTOR):
        try:
            code = COMMANDS[args.command](args)
            sys.stdout.flush()  # here, where a reader that left (| head) is caught
            return code
        except BrokenPipeError:
            # `monitor matches | head -1`: the reader has what it wanted. Quietly, like
            # grep; stdout goes to /dev/null so the flush at exit can't fail again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return EXIT_OK
        except ConfigError as exc:
            print(exc, file=sys.stderr)
            return EXIT_USAGE
        except UsageError as exc:
            print(f"monitor: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except ValueError as exc:  # e.g. a bad --since
            print(f"monitor: {exc}", file=sys.stderr)
            return EXIT_USAGE
        except StorageError as exc:
            print(f"monitor: {exc}", file=sys.stderr)
            return EXIT_FAIL
        except KeyboardInterrupt:
            return EXIT_FAIL
        except Exception:
            # A bug: print its traceback here, while stderr still redacts (an exception
            # leaving main would be printed after the streams are restored).
            traceback.print_exc()
            return EXIT_FAIL
