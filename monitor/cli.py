"""Command line (SPEC section 3). Exit codes: 0 ok, 1 runtime failure, 2 bad usage/config."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor import __version__, notify
from monitor.config import (
    Config,
    ConfigError,
    FeedSpec,
    format_duration,
    load_config,
    parse_duration,
    summary,
)
from monitor.render import test_message
from monitor.storage import StorageError, open_storage
from monitor.types import RuleMatch, Snippet

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


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
        "--db", default=default(None), help="database path or URL (overrides settings.database)"
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", default=default(False), help="debug logging"
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


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S",
        stream=sys.stderr,
    )
    # apprise and APScheduler are chatty at INFO; their warnings still show.
    for name in ("apprise", "apscheduler"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)


def _load(path: str) -> Config:
    return load_config(Path(path), os.environ)


def _iso(dt: datetime | None) -> str | None:
    return dt.isoformat(timespec="seconds") if dt else None


def cmd_check(args: argparse.Namespace) -> int:
    config = _load(args.config)
    print(summary(config, notify.mask))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from monitor.daemon import run_daemon

    config = _load(args.config)
    return asyncio.run(run_daemon(config, os.environ, args.db))


async def _poll(args: argparse.Namespace, config: Config) -> int:
    from monitor.app import App, process_pool

    feeds = list(config.feeds)
    if args.feed:
        wanted = set(args.feed)
        feeds = [f for f in feeds if f.name in wanted or f.url in wanted]
        missing = wanted - {f.name for f in feeds} - {f.url for f in feeds}
        if missing:
            print(f"monitor: no feed named {', '.join(sorted(missing))}", file=sys.stderr)
            return EXIT_USAGE
    # Parsing, extraction and matching run in workers under the memory ceiling, as
    # in the daemon: a document that blows up a parser costs its feed, not this process.
    pool = process_pool(config)
    app = App(config, db=args.db, console=sys.stderr, executor=pool)  # stdout: the matches
    try:
        outcomes = await app.poll_round(feeds, dry_run=args.dry_run)
        if not args.dry_run:
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
                print(a.as_json())
            else:
                print(f"[{', '.join(a.rules)}] {a.title}\n    {a.feed} · {a.link or ''}")
    if not args.json:
        n = sum(len(o.alerts) for o in outcomes)
        print(
            f"{len(outcomes)} feeds polled, {sum(o.new for o in outcomes)} new entries, "
            f"{n} matched{', nothing stored or sent (dry run)' if args.dry_run else ''}",
            file=sys.stderr,
        )
    return EXIT_FAIL if outcomes and failed == len(outcomes) else EXIT_OK


def cmd_poll(args: argparse.Namespace) -> int:
    return asyncio.run(_poll(args, _load(args.config)))


def cmd_test_notify(args: argparse.Namespace) -> int:
    from monitor.app import build_targets

    config = _load(args.config)
    targets = build_targets(config)
    if args.notifier and args.notifier not in {n for n, _ in targets}:
        print(f"monitor: no notifier named {args.notifier!r}", file=sys.stderr)
        return EXIT_USAGE
    failures = 0
    for (name, _key), (masked, sender) in targets.items():
        if args.notifier and name != args.notifier:
            continue
        error = sender.send(test_message(name, datetime.now(UTC)))
        if error:
            failures += 1
            print(f"{name}: {masked}: FAILED: {error}")
        else:
            print(f"{name}: {masked}: sent")
    return EXIT_FAIL if failures else EXIT_OK


def _lenient_database(path: str) -> str:
    """The database of a config too broken to load, so `status` still shows the store."""
    import yaml

    folder = Path(path).resolve().parent
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        db = raw["settings"]["database"]
    except Exception:
        db = "monitor.db"
    if not isinstance(db, str):
        db = "monitor.db"
    return db if "://" in db or Path(db).is_absolute() else str(folder / db)


def cmd_status(args: argparse.Namespace) -> int:
    config: Config | None
    try:
        config = _load(args.config)
        config_problem = None
    except ConfigError as exc:
        config, config_problem = None, str(exc)
        print(f"monitor: the config has errors (showing the store anyway):\n{exc}", file=sys.stderr)
    store = open_storage(
        args.db or (config.database_path() if config else _lenient_database(args.config))
    )
    try:
        if config:
            store.ensure_feeds(f.key for f in config.feeds)
        states = {s.key: s for s in store.feed_states()}
        outbox = store.outbox_stats()
        meta = store.meta()
    finally:
        store.close()
    specs = list(config.feeds) if config else [FeedSpec(url=k) for k in states]
    feeds: list[dict[str, object]] = []
    for spec in specs:
        s = states[spec.key]
        feeds.append(
            {
                "feed": spec.name or s.title or spec.url,
                "url": s.url,
                "configured_url": spec.url if s.url != spec.url else None,
                "last_poll": _iso(s.last_poll),
                "status": s.last_status,
                "error": s.last_error,
                "errors_in_a_row": s.error_count,
                "next_poll": None if s.gone else _iso(s.next_due),
                "gone": s.gone,
                "article_error": s.article_error,
                "entries": s.entries,
                "matches": s.matches,
            }
        )
    if args.json:
        report = {
            "feeds": feeds,
            "outbox": {
                "pending": outbox.pending,
                "failed": outbox.failed,
                "sent": outbox.sent,
                "last_error": outbox.last_error,
            },
            "config_error": meta.get("config_error") or config_problem,
            "started": meta.get("started"),
        }
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return EXIT_OK
    for row in feeds:
        when = "GONE (410), not polled" if row["gone"] else f"next {row['next_poll'] or 'soon'}"
        print(
            f"{row['feed']}\n    last poll {row['last_poll'] or 'never'}, "
            f"HTTP {row['status'] or '-'}, {when}, {row['entries']} entries, "
            f"{row['matches']} matches"
        )
        if row["configured_url"]:
            print(f"    moved permanently: now polling {row['url']}")
        if row["error"]:
            print(f"    ERROR ({row['errors_in_a_row']} in a row): {row['error']}")
        if row["article_error"]:
            print(f"    last article page not used: {row['article_error']}")
    print(f"outbox: {outbox.pending} pending, {outbox.failed} failed, {outbox.sent} sent")
    if outbox.last_error:
        print(f"    last delivery error: {outbox.last_error}")
    if meta.get("config_error"):
        print(f"config reload FAILED, running the last good config:\n{meta['config_error']}")
    elif config_problem:
        print(f"config has errors: a reload or restart would fail:\n{config_problem}")
    return EXIT_OK


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
    store = open_storage(args.db or config.database_path())
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
                    },
                    ensure_ascii=False,
                )
            )
            continue
        print(f"{_iso(r.seen)} [{', '.join(r.rules)}] {r.title}\n    {r.feed} · {r.link}")
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
    store = open_storage(args.db or config.database_path())
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
    from monitor.opml import OpmlError, merge_into_yaml, parse_opml

    path = Path(args.config)
    try:
        feeds = parse_opml(Path(args.file).read_bytes())
    except (OSError, OpmlError) as exc:
        print(f"monitor: {args.file}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    before = _load(args.config)  # never write into a config that is already broken
    known = {f.url for f in before.feeds}
    text = merge_into_yaml(path.read_text(encoding="utf-8"), feeds)
    # Check the result before writing it: a running daemon reloads the file at once.
    from monitor.config import parse_config

    parse_config(text, path.resolve(), os.environ)
    path.write_text(text, encoding="utf-8")
    added = [f for f in feeds if f.url not in known]
    print(f"{len(added)} feeds added to {path}, {len(feeds) - len(added)} already there")
    return EXIT_OK


def cmd_export_opml(args: argparse.Namespace) -> int:
    from monitor.opml import export_opml

    print(export_opml(_load(args.config).feeds, "rss-monitor"))
    return EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "check": cmd_check,
    "poll": cmd_poll,
    "test-notify": cmd_test_notify,
    "status": cmd_status,
    "matches": cmd_matches,
    "rules": cmd_rules,
    "import-opml": cmd_import_opml,
    "export-opml": cmd_export_opml,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``monitor`` console script."""
    args = _parser().parse_args(argv)
    _setup_logging(args.verbose)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_USAGE
    except ValueError as exc:  # e.g. a bad --since
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StorageError as exc:
        print(f"monitor: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_FAIL
