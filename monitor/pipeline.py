"""One poll of one feed: fetch -> parse -> dedup -> extract -> match -> store + outbox.

This is the one step that touches several I/O collaborators (HTTP, the
worker pool, the store); every decision in it is made by the pure modules
(parse, decide, extract, normalize/match, render).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from monitor import decide, update
from monitor.analyze import Analysis, analyze, needs_article
from monitor.config import Config, FeedSpec
from monitor.fetch import HTML_ACCEPT, Fetcher
from monitor.pool import WorkerError
from monitor.stages import extract, parse_feed
from monitor.storage.base import FeedState, Storage
from monitor.types import (
    Article,
    FeedEntry,
    FetchResult,
    ParsedFeed,
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
class PollOutcome:
    """What one poll did."""

    feed: str
    status: int | None
    error: str | None
    new: int
    alerts: tuple[update.Alert, ...]
    next_due: datetime | None
    # for the metrics: ok, not_modified (304), unchanged (the same bytes), error
    outcome: str = "ok"
    error_kind: str = ""  # of an error: a fetch error kind (see fetch.py), or parse
    seconds: float = 0.0  # how long the poll took


# At most this many polls' states in one transaction (its write lock held some 20 ms).
_STATE_BATCH = 500


class _Turn:
    """A poll's slot: a poll slot while it fetches, then (``to_parse``) a parse slot."""

    def __init__(self, poll: asyncio.Semaphore, parse: asyncio.Semaphore) -> None:
        self._poll, self._parse = poll, parse
        self._held: asyncio.Semaphore | None = None

    async def __aenter__(self) -> _Turn:
        await self._poll.acquire()
        self._held = self._poll
        return self

    async def to_parse(self) -> None:
        if self._held is self._poll:
            await self._parse.acquire()  # cancelled here: the poll slot is still held
            self._poll.release()
            self._held = self._parse

    async def __aexit__(self, *exc: object) -> None:
        if self._held is not None:
            self._held.release()
            self._held = None


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
        # A poll holds a poll slot while it fetches, and trades it for a parse slot
        # once its document is to be parsed: the feeds that answer 304 go on being
        # polled while the changed ones wait for the workers (a burst of changed feeds
        # held every slot for the length of their parsing). At most ``poll_limit`` of
        # each: that many bodies fetched and that many waiting for the workers.
        self._poll_slots = asyncio.Semaphore(poll_limit)
        self._parse_slots = asyncio.Semaphore(poll_limit)
        self._stopped = False
        # Group commit of the polls that brought nothing new (see _save_state).
        self._states: list[tuple[FeedState, list[Any], asyncio.Future[None]]] = []
        self._writing: asyncio.Task[None] | None = None

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
        self,
        feed: FeedSpec,
        *,
        dry_run: bool = False,
        force: bool = False,
        state: FeedState | None = None,
    ) -> PollOutcome:
        """Poll one feed now; failures are stored on the feed, never raised.

        ``state`` is the feed's stored state when the caller has it (the
        scheduler claims due feeds with their state); else it is read. A
        paused feed is not fetched (its outcome has no next due time) unless
        ``force``. At most ``poll_limit`` polls fetch at once, and as many
        more wait for (or run in) the workers; the rest wait their turn, so a
        round of thousands of due feeds holds only that many bodies in
        memory. Raises ``Stopped`` when ``stop`` was called before its turn
        came.
        """
        async with _Turn(self._poll_slots, self._parse_slots) as turn:
            if self._stopped:
                raise Stopped(feed.url)
            return await self._poll(feed, state, turn, dry_run=dry_run, force=force)

    async def _poll(
        self,
        feed: FeedSpec,
        state: FeedState | None,
        turn: _Turn,
        *,
        dry_run: bool,
        force: bool,
    ) -> PollOutcome:
        ctx = self._context()
        config = ctx.config
        policy = update.policy(config, feed)
        started = time.monotonic()
        if state is None:
            state = await self._store(self._storage.feed_state, feed.url)
        if state.paused and not force:
            log.debug("feed=%r paused; not polled", feed.label())
            return PollOutcome(update.label(policy, state), None, None, 0, (), None)
        result = await ctx.fetcher.fetch(
            state.url, etag=state.etag, last_modified=state.last_modified
        )
        now = self._clock()
        outcome, error_kind = "ok", ""
        if not result.ok:
            intents = update.failed(state, result, now, policy, self._rng)
            outcome, error_kind = "error", result.error_kind or "other"
        else:
            body_hash, poisoned = update.needs_parse(state, result)
            if body_hash is None:
                intents = update.unchanged(state, result, now, policy, self._rng)
                outcome = "not_modified" if result.not_modified else "unchanged"
            elif poisoned is not None:
                # The very bytes that failed before (or kept killing workers): not parsed
                # again. The poll fails as it did, counted and backed off, until they change.
                intents = update.failed(
                    state,
                    result,
                    now,
                    policy,
                    self._rng,
                    parse_error=poisoned,
                    body_hash=body_hash,
                    poisoned=True,
                )
            else:
                await turn.to_parse()
                intents = await self._parsed(ctx, feed, policy, state, result, body_hash, now)
            if intents.error and not intents.commits_entries:  # the document failed
                outcome, error_kind = "error", "parse"
        if not dry_run:
            await self._apply(intents)
        self._log(feed, intents, result, started)
        s = intents.state
        return PollOutcome(
            intents.label,
            result.status,
            intents.error,
            intents.new,
            intents.alerts,
            s.next_due,
            outcome,
            error_kind,
            time.monotonic() - started,
        )

    async def _parsed(
        self,
        ctx: Context,
        feed: FeedSpec,
        policy: update.Policy,
        state: FeedState,
        result: FetchResult,
        body_hash: str,
        now: datetime,
    ) -> update.Intents:
        """Parse the document (in a worker), then gather what the decision needs: the
        entries the store has not seen, their article pages and their matches."""
        crashed = False
        try:
            doc = await self._offload(
                parse_feed, result.body, result.final_url, result.headers, state.items
            )
        except WorkerError as exc:
            doc = _unusable(f"parsing failed: {exc}")
            crashed = exc.crashed
        if doc.error:
            return update.failed(
                state,
                result,
                now,
                policy,
                self._rng,
                parse_error=doc.error,
                body_hash=body_hash,
                crashed=crashed,
            )
        config = ctx.config
        name = policy.name or doc.title or feed.url
        entries = decide.unique_entries(doc.entries)
        seen = (
            await self._store(
                self._storage.seen,
                state.key,
                [e.identity for e in entries],
                [e.link for e in entries if e.link],
            )
            if entries
            else set()
        )
        new = [e for e in entries if e.identity not in seen and (e.link or "") not in seen]
        fresh = [e for e in new if decide.is_fresh(e, now, policy.max_age)]
        extract_on = config.feed_extract(feed)
        articles, article_error, canonicals = await self._articles(
            ctx, name, feed.tags, fresh, extract_on
        )
        analyses, errors = await self._analyze(config, name, feed.tags, fresh, articles)
        got = update.Parsed(
            parsed=doc,
            body_hash=body_hash,
            entries=tuple(entries),
            new=tuple(new),
            analyses={e.identity: a for e, a in zip(fresh, analyses, strict=True) if a},
            errors=errors,
            article_error=article_error,
            articles_tried=bool(articles or article_error),
            canonicals=canonicals,
        )
        return update.parsed(state, result, got, now, policy, self._rng)

    async def _apply(self, intents: update.Intents) -> None:
        """Store what the poll decided, in one transaction."""
        if intents.commits_entries:
            await self._store(
                self._storage.commit_poll,
                intents.state,
                list(intents.records),
                list(intents.notices),
                list(intents.listed),
            )
        else:
            await self._save_state(intents.state, list(intents.notices))

    async def _save_state(self, state: FeedState, notices: list[Any]) -> None:
        """Store the state of a poll that brought no entries (304, unchanged, an error),
        committed together with the others that came in while the last write ran: a
        round of 1,000 unchanged feeds is a few transactions instead of 1,000, each of
        which cost a thread hop and a commit. Returns once this state is stored."""
        if self._db is None:  # no store threads: at once, inline
            self._storage.save_feed_state(state, notices)
            return
        done = asyncio.get_running_loop().create_future()
        self._states.append((state, notices, done))
        if self._writing is None:
            self._writing = asyncio.create_task(self._write_states())
        await done

    async def _write_states(self) -> None:
        batch: list[tuple[FeedState, list[Any], asyncio.Future[None]]] = []
        try:
            while self._states:
                batch, self._states = self._states[:_STATE_BATCH], self._states[_STATE_BATCH:]
                await self._write_batch(batch)
        except BaseException:  # cancelled (the loop shuts down): nobody waits for ever
            for _s, _n, done in batch + self._states:
                done.cancel()
            self._states = []
            raise
        finally:
            self._writing = None

    async def _write_batch(
        self, batch: list[tuple[FeedState, list[Any], asyncio.Future[None]]]
    ) -> None:
        failed: dict[int, Exception] = {}
        try:
            await self._store(self._storage.save_feed_states, [(s, n) for s, n, _ in batch])
        except Exception:
            # One state that can't be written must not fail the others': each alone.
            for i, (state, notices, _done) in enumerate(batch):
                try:
                    await self._store(self._storage.save_feed_state, state, notices)
                except Exception as exc:
                    failed[i] = exc
        for i, (_s, _n, done) in enumerate(batch):
            if done.done():  # its poll was cancelled meanwhile
                continue
            if i in failed:
                done.set_exception(failed[i])
            else:
                done.set_result(None)

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
    ) -> tuple[dict[str, str], str | None, dict[str, str]]:
        """The extracted article text of the entries whose rules can still depend on it.

        Also the last article fetch that failed (URL and reason), for ``status``;
        such an entry is matched on its feed text; and the URL each page names as
        its own (``rel=canonical``: an AMP or mobile copy names the article).

        An article page is fetched only when some rule's decision can still
        depend on it: not when every rule that looks at `content` has matched
        on the other fields already and has nothing that could exclude it.
        """
        linked = [e for e in entries if e.link]
        if not extract_on or not linked:
            return {}, None, {}
        rules = ctx.config.rules
        try:
            needed = await self._offload(needs_article, rules, linked, label, tags)
        except WorkerError as exc:  # then every page may matter
            log.warning("feed=%r article triage failed (%s); fetching every page", label, exc)
            needed = [True] * len(linked)
        wanted = [e for e, need in zip(linked, needed, strict=True) if need]
        results = await asyncio.gather(*(self._article(ctx.fetcher, e.link or "") for e in wanted))
        texts: dict[str, str] = {}
        canonicals: dict[str, str] = {}
        error = None
        for e, (article, problem) in zip(wanted, results, strict=True):
            if article is not None and article.canonical:
                canonicals[e.identity] = article.canonical
            if article is not None and article.text.strip():
                texts[e.identity] = article.text
            elif problem:
                error = f"{e.link}: {problem}"
        return texts, error, canonicals

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

    def _log(
        self, feed: FeedSpec, intents: update.Intents, result: FetchResult, started: float
    ) -> None:
        name, state = intents.label, intents.state
        for message in intents.messages:
            log.info("feed=%r %s", name, message)
        if intents.given_up:
            log.warning("feed=%r entry given up: %s", name, intents.given_up)
        if intents.error and not intents.commits_entries:  # the poll failed
            log.warning(
                "feed=%r status=%s error=%r errors=%d next=%s%s%s",
                name,
                result.status,
                intents.error,
                state.error_count,
                state.next_due.isoformat(timespec="seconds") if state.next_due else "-",
                " (gone: asked again daily)" if state.gone else "",
                f" note={intents.note!r}" if intents.note else "",
            )
            return
        # DEBUG: at scale these are thousands a minute; the daemon logs a summary a minute
        log.debug(
            "feed=%r status=%s new=%d matched=%d elapsed=%.3fs%s",
            name,
            result.status,
            intents.new,
            len(intents.alerts),
            time.monotonic() - started,
            f" note={intents.note!r}" if intents.note else "",
        )
