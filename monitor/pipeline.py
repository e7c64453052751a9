"""One poll of one feed: fetch -> parse -> dedup -> extract -> match -> store + outbox.

This is the one step that touches several I/O collaborators (HTTP, the
worker pool, the store); every decision in it is made by the pure modules
(parse, decide, extract, normalize/match, render).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from monitor import decide, notify
from monitor.analyze import Analysis, analyze, needs_article
from monitor.config import Config, FeedSpec
from monitor.fetch import HTML_ACCEPT, Fetcher
from monitor.match import snippet
from monitor.pool import WorkerError
from monitor.redact import Redactor
from monitor.stages import extract, parse_feed
from monitor.storage.base import FeedState, NewEntry, Outgoing, Storage, Story
from monitor.story import canonical_url
from monitor.types import (
    AlertItem,
    Article,
    FeedEntry,
    FetchResult,
    Notice,
    ParsedFeed,
    RuleMatch,
)

log = logging.getLogger("monitor.poll")
T = TypeVar("T")


def _unusable(error: str) -> ParsedFeed:
    return ParsedFeed(title=None, link=None, entries=(), error=error)


def _name(entry: FeedEntry) -> str:
    return entry.link or repr(entry.title)


def _only(articles: dict[str, str], entry: FeedEntry) -> dict[str, str]:
    text = articles.get(entry.identity)
    return {} if text is None else {entry.identity: text}


@dataclass(frozen=True, slots=True)
class Alert:
    """A matched entry, as ``monitor poll`` prints it."""

    feed: str
    title: str
    link: str | None
    published: datetime | None
    rules: tuple[str, ...]
    terms: tuple[str, ...]

    def as_json(self) -> str:
        return json.dumps(
            {
                "feed": self.feed,
                "title": self.title,
                "link": self.link,
                "published": self.published.isoformat() if self.published else None,
                "rules": list(self.rules),
                "terms": list(self.terms),
            },
            ensure_ascii=False,
        )


@dataclass(frozen=True, slots=True)
class PollOutcome:
    """What one poll did."""

    feed: str
    status: int | None
    error: str | None
    new: int
    alerts: tuple[Alert, ...]
    next_due: datetime | None


class Stopped(Exception):
    """The poller was stopped (shutdown) before this poll could start."""


@dataclass
class Context:
    """What a poll reads from the running app; replaced whole on a config reload."""

    config: Config
    fetcher: Fetcher


class Poller:
    """Polls feeds with the collaborators it is given (see app.py)."""

    def __init__(
        self,
        *,
        context: Callable[[], Context],
        storage: Storage,
        executor: Executor | None,
        clock: Callable[[], datetime],
        rng: random.Random | None = None,
        offload_limit: int = 4,
        poll_limit: int = 50,
        db: Executor | None = None,
    ) -> None:
        self._context = context
        self._storage = storage
        self._executor = executor
        self._db = db
        self._clock = clock
        self._rng = rng or random.Random()
        # Bounds the work queued for the pool, and with it the fetched bodies
        # held in memory while they wait: a cold round fetches far faster
        # than the workers parse.
        self._offload_slots = asyncio.Semaphore(offload_limit)
        self._poll_slots = asyncio.Semaphore(poll_limit)
        self._stopped = False

    def stop(self) -> None:
        """Start no more polls: a poll still waiting for its turn raises ``Stopped``.

        Polls already running go on (the daemon gives them a grace period).
        """
        self._stopped = True

    def set_offload_limit(self, limit: int) -> None:
        """Bound the work queued for the pool anew (calls waiting now keep the old bound)."""
        self._offload_slots = asyncio.Semaphore(limit)

    async def _store(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a store call in the store's threads (a write waiting for SQLite's lock
        must not stall the event loop); inline when there are none."""
        if self._db is None:
            return fn(*args)
        return await asyncio.get_running_loop().run_in_executor(self._db, fn, *args)

    async def _offload(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            return fn(*args)
        async with self._offload_slots:
            try:
                return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
            except WorkerError as exc:
                if getattr(exc, "__notes__", None):  # it raised there: a bug, not a bad feed
                    log.error("%s\n%s", exc, "\n".join(exc.__notes__))
                raise

    async def poll(
        self, feed: FeedSpec, *, dry_run: bool = False, force: bool = False
    ) -> PollOutcome:
        """Poll one feed now; failures are stored on the feed, never raised.

        A paused feed is not fetched (its outcome has no next due time)
        unless ``force``. At most ``poll_limit`` polls run at once; the rest
        wait their turn, so a round of thousands of due feeds holds only that
        many bodies in memory. Raises ``Stopped`` when ``stop`` was called
        before its turn came.
        """
        async with self._poll_slots:
            if self._stopped:
                raise Stopped(feed.url)
            return await self._poll(feed, dry_run=dry_run, force=force)

    async def _poll(self, feed: FeedSpec, *, dry_run: bool, force: bool) -> PollOutcome:
        ctx = self._context()
        config = ctx.config
        interval = config.feed_interval(feed)
        started = time.monotonic()
        state = await self._store(self._storage.feed_state, feed.url)
        if state.paused and not force:
            log.debug("feed=%r paused; not polled", feed.label())
            return PollOutcome(feed.name or state.title or feed.url, None, None, 0, (), None)
        now = self._clock()
        result = await ctx.fetcher.fetch(
            state.url, etag=state.etag, last_modified=state.last_modified
        )
        now = self._clock()
        state = replace(state, last_poll=now, last_status=result.status)
        label = feed.name or state.title or feed.url

        if not result.ok:
            return await self._failed(label, state, result, None, interval, now, dry_run, started)
        etag, last_modified = result.etag, result.last_modified
        if result.not_modified and not (etag or last_modified):
            etag, last_modified = state.etag, state.last_modified

        body_hash = hashlib.sha256(result.body).hexdigest() if not result.not_modified else None
        if result.not_modified or body_hash == state.body_hash:
            # The answer is the feed we know: a permanent redirect to it is adopted.
            state = self._answered(label, state, result)
            state = replace(state, etag=etag, last_modified=last_modified)
            due = decide.next_due(
                now=now, interval=interval, error_count=0, result=result, parsed=None, rng=self._rng
            )
            notices = self._notices(config, label, state.error_count, 0, None)
            state = replace(state, last_error=None, error_count=0, next_due=due)
            if not dry_run:
                await self._store(self._storage.save_feed_state, state, notices)
            self._log(label, result, 0, 0, started, "unchanged")
            return PollOutcome(label, result.status, None, 0, (), due)

        if body_hash == state.failed_hash and decide.poisoned(state.failed_tries):
            # The very bytes that failed before (or kept killing workers): not parsed
            # again. The poll fails as it did, counted and backed off, until they change.
            again = _unusable(state.failed_error or "the document failed before")
            return await self._failed(
                label, state, result, again, interval, now, dry_run, started, "not parsed again"
            )
        crashed = False
        try:
            parsed = await self._offload(parse_feed, result.body, result.final_url, result.headers)
        except WorkerError as exc:
            parsed = _unusable(f"parsing failed: {exc}")
            crashed = exc.crashed
        if parsed.error:
            tries = decide.document_failures(
                state.failed_tries if body_hash == state.failed_hash else 0, crashed=crashed
            )
            state = replace(
                state, failed_hash=body_hash, failed_error=parsed.error, failed_tries=tries
            )
            return await self._failed(label, state, result, parsed, interval, now, dry_run, started)
        # Validators and hash are kept only for a document that parsed; one that
        # failed is remembered by its hash instead (above).
        label = feed.name or parsed.title or feed.url
        state = self._answered(label, state, result)
        polled = state
        errors_before = state.error_count
        state = replace(
            state,
            etag=etag,
            last_modified=last_modified,
            title=label,
            body_hash=body_hash,
            last_error=None,
            error_count=0,
            failed_hash=None,
            failed_error=None,
            failed_tries=0,
        )

        entries = decide.unique_entries(parsed.entries)
        seen = await self._store(
            self._storage.seen,
            state.key,
            [e.identity for e in entries],
            [e.link for e in entries if e.link],
        )
        new = [e for e in entries if e.identity not in seen and (e.link or "") not in seen]
        fresh = [e for e in new if decide.is_fresh(e, now, config.settings.max_age)]
        articles, article_error = await self._articles(
            ctx, label, feed.tags, fresh, config.feed_extract(feed)
        )
        if articles or article_error:
            state = replace(state, article_error=article_error)
        analyses, errors = await self._analyze(config, label, feed.tags, fresh, articles)
        by_identity = {e.identity: a for e, a in zip(fresh, analyses, strict=True) if a is not None}
        failing, given_up = decide.entry_failures(dict(state.failing_entries), errors.keys())
        state = replace(state, failing_entries=tuple(sorted(failing.items())))
        match_error = None
        for identity in given_up:
            state = replace(
                state,
                entry_error=f"{errors[identity]} (on {decide.ENTRY_ATTEMPTS} polls in a row;"
                " recorded without matching, it will not alert)",
            )
            log.warning("feed=%r entry given up: %s", label, state.entry_error)
        if failing:
            # Not recorded, and the document's validators and hash are not kept:
            # the next poll parses it again and retries just these entries.
            match_error = next(errors[i] for i in reversed(errors) if i in failing)
            state = replace(
                state,
                etag=polled.etag,
                last_modified=polled.last_modified,
                body_hash=polled.body_hash,
                last_error=match_error,
            )

        records: list[NewEntry] = []
        alerts: list[Alert] = []
        for entry in new:
            if entry.identity in failing:
                continue
            analysis = by_identity.get(entry.identity)
            if analysis is None:  # too old to alert, or given up: only recorded, never alerts
                records.append(NewEntry(entry=entry, first_seen=now))
                continue
            matches = analysis.matches
            records.append(
                NewEntry(
                    entry=entry,
                    first_seen=now,
                    matches=matches,
                    snippet=analysis.snippet,
                    # as written: `rules test` folds it again, and quotes it as published
                    document={**analysis.document.fields, **analysis.document.display},
                    outgoing=self._outgoing(config, label, entry, analysis),
                    story=(
                        Story(
                            canonical_url(entry.link) if entry.link else None,
                            analysis.story,
                            config.settings.story_window,
                        )
                        if analysis.story is not None
                        else None
                    ),
                )
            )
            if matches:
                terms = tuple(dict.fromkeys(t for m in matches for t in m.terms))
                rule_names = tuple(m.rule for m in matches)
                alerts.append(
                    Alert(label, entry.title, entry.link, entry.published, rule_names, terms)
                )

        due = decide.next_due(
            now=now, interval=interval, error_count=0, result=result, parsed=parsed, rng=self._rng
        )
        state = replace(state, next_due=due)
        if not dry_run:
            notices = self._notices(config, label, errors_before, 0, None)
            await self._store(self._storage.commit_poll, state, records, notices)
        self._log(label, result, len(new), len(alerts), started, match_error or parsed.warning)
        return PollOutcome(label, result.status, match_error, len(new), tuple(alerts), due)

    def _answered(self, label: str, state: FeedState, result: FetchResult) -> FeedState:
        """The state of a feed whose URL answered with a feed: a permanent redirect
        it followed is adopted, and a gone feed is back."""
        if result.permanent_redirect and result.permanent_redirect != state.url:
            log.info(
                "feed=%r moved permanently: now polling %s instead of %s",
                label,
                result.permanent_redirect,
                state.url,
            )
            state = replace(state, url=result.permanent_redirect)
        if state.gone:
            log.info("feed=%r answers with a feed again after 410 Gone: polling resumes", label)
            state = replace(state, gone=False)
        return state

    async def _analyze(
        self,
        config: Config,
        label: str,
        tags: tuple[str, ...],
        fresh: Sequence[FeedEntry],
        articles: dict[str, str],
    ) -> tuple[list[Analysis | None], dict[str, str]]:
        """Normalize and match ``fresh`` (CPU work: one worker call per feed keeps the loop free).

        When that call fails (its worker died or overran), one call per entry,
        so an entry that kills its worker costs only itself: its analysis is
        None, and its failure is in the returned map (identity -> message).
        """
        if not fresh:
            return [], {}
        rules = config.rules
        try:
            return list(await self._offload(analyze, rules, fresh, articles, label, tags)), {}
        except WorkerError as exc:
            if len(fresh) == 1:
                return [None], {fresh[0].identity: f"{_name(fresh[0])}: matching failed: {exc}"}
            log.warning("feed=%r matching failed (%s); now one entry at a time", label, exc)
        results = await asyncio.gather(
            *(self._offload(analyze, rules, [e], _only(articles, e), label, tags) for e in fresh),
            return_exceptions=True,
        )
        out: list[Analysis | None] = []
        errors: dict[str, str] = {}
        for entry, one in zip(fresh, results, strict=True):
            if isinstance(one, WorkerError):
                errors[entry.identity] = f"{_name(entry)}: matching failed: {one}"
                log.warning("feed=%r entry=%s", label, errors[entry.identity])
                out.append(None)
            elif isinstance(one, BaseException):
                raise one
            else:
                out.append(one[0])
        return out, errors

    async def _articles(
        self,
        ctx: Context,
        label: str,
        tags: tuple[str, ...],
        entries: Sequence[FeedEntry],
        extract_on: bool,
    ) -> tuple[dict[str, str], str | None]:
        """The extracted article text of the entries whose rules can still depend on it.

        Also the last article fetch that failed (URL and reason), for ``status``;
        such an entry is matched on its feed text.

        An article page is fetched only when some rule's decision can still
        depend on it: not when every rule that looks at `content` has matched
        on the other fields already and has nothing that could exclude it.
        """
        linked = [e for e in entries if e.link]
        if not extract_on or not linked:
            return {}, None
        rules = ctx.config.rules
        try:
            needed = await self._offload(needs_article, rules, linked, label, tags)
        except WorkerError as exc:  # then every page may matter
            log.warning("feed=%r article triage failed (%s); fetching every page", label, exc)
            needed = [True] * len(linked)
        wanted = [e for e, need in zip(linked, needed, strict=True) if need]
        results = await asyncio.gather(*(self._article(ctx.fetcher, e.link or "") for e in wanted))
        texts: dict[str, str] = {}
        error = None
        for e, (article, problem) in zip(wanted, results, strict=True):
            if article is not None and article.text.strip():
                texts[e.identity] = article.text
            elif problem:
                error = f"{e.link}: {problem}"
        return texts, error

    async def _article(self, fetcher: Fetcher, link: str) -> tuple[Article | None, str | None]:
        """The article at ``link``, or None and why not."""
        result = await fetcher.fetch(link, accept=HTML_ACCEPT)
        if not result.ok or not result.body:
            problem = result.error or "empty body"
        else:
            try:
                article = await self._offload(
                    extract, result.body, result.final_url, result.headers
                )
                return article, None if article.text.strip() else "no article text found"
            except WorkerError as exc:
                problem = f"extraction failed: {exc}"
        log.warning("article=%s error=%r (matched on the feed text)", link, problem)
        return None, problem

    def _outgoing(
        self, config: Config, feed: str, entry: FeedEntry, analysis: Analysis
    ) -> tuple[Outgoing, ...]:
        """One outbox row per URL of each notifier a matched rule routes to; the
        alert names only the rules that route to that notifier, quoted at the
        first hit of the first of them."""
        matches = analysis.matches
        if not matches:
            return ()
        by_rule = {r.name: r for r in config.rules}
        everyone = [n.name for n in config.notifiers] or [notify.CONSOLE]
        routed: dict[str, list[RuleMatch]] = {}
        for m in matches:
            for name in by_rule[m.rule].notify or everyone:
                routed.setdefault(name, []).append(m)
        urls = config.notifier_urls()
        out: list[Outgoing] = []
        for name, rule_matches in routed.items():
            first = rule_matches[0]
            item = AlertItem(
                feed=feed,
                title=entry.title,
                link=entry.link,
                published=entry.published,
                rules=tuple(m.rule for m in rule_matches),
                terms=tuple(dict.fromkeys(t for m in rule_matches for t in m.terms)),
                snippet=snippet(analysis.document, first.hits[0]) if first.hits else None,
                priority=any(by_rule[m.rule].priority == "high" for m in rule_matches),
            )
            out.extend(Outgoing(name, position, item) for position in range(urls[name]))
        return tuple(out)

    def _notices(
        self, config: Config, label: str, before: int, after: int, error: str | None
    ) -> list[tuple[str, int, Notice]]:
        """The operator's notice when a feed starts failing or recovers (once each)."""
        admin = config.settings.admin_notify
        if admin is None:
            return []
        if error is not None:  # an error may quote a URL with a token
            error = Redactor(config.secrets).redact(error)
        notice = decide.feed_notice(label, before, after, config.settings.admin_failures, error)
        return [(admin, config.notifier_urls()[admin], notice)] if notice else []

    async def _failed(
        self,
        label: str,
        state: FeedState,
        result: FetchResult,
        parsed: ParsedFeed | None,
        interval: float,
        now: datetime,
        dry_run: bool,
        started: float,
        note: str | None = None,
    ) -> PollOutcome:
        error = (parsed.error if parsed and parsed.error else result.error) or "failed"
        count = state.error_count + 1
        # A 410 makes the feed gone; it stays gone (asked daily) until it answers with a feed.
        gone = result.status == 410 or state.gone
        if gone:
            due = decide.probe_due(now, self._rng)
        else:
            due = decide.next_due(
                now=now,
                interval=interval,
                error_count=count,
                result=result,
                parsed=None,
                rng=self._rng,
            )
        state = replace(state, last_error=error, error_count=count, next_due=due, gone=gone)
        if not dry_run:
            notices = self._notices(self._context().config, label, count - 1, count, error)
            await self._store(self._storage.save_feed_state, state, notices)
        log.warning(
            "feed=%r status=%s error=%r errors=%d next=%s%s%s",
            label,
            result.status,
            error,
            count,
            due.isoformat(timespec="seconds"),
            " (gone: asked again daily)" if gone else "",
            f" note={note!r}" if note else "",
        )
        return PollOutcome(label, result.status, error, 0, (), due)

    def _log(
        self,
        label: str,
        result: FetchResult,
        new: int,
        matched: int,
        started: float,
        note: str | None,
    ) -> None:
        log.info(
            "feed=%r status=%s new=%d matched=%d elapsed=%.3fs%s",
            label,
            result.status,
            new,
            matched,
            time.monotonic() - started,
            f" note={note!r}" if note else "",
        )
