"""The decision of a poll: (stored state, fetch result, parsed feed, now) -> intents (pure).

The poller (pipeline.py) does the I/O: it fetches, asks ``needs_parse``,
parses in a worker, reads which entries the store has seen, fetches and
extracts article pages and matches (in the workers), then calls one of
``failed``, ``unchanged`` or ``parsed`` here and applies the ``Intents`` they
return in one store call. Nothing here touches a clock, a socket or the store:
every input is an argument, as in reader's update step.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from monitor import decide
from monitor.analyze import Analysis
from monitor.config import Config, FeedSpec
from monitor.match import snippet
from monitor.storage.base import FeedState, NewEntry, Outgoing, Story
from monitor.story import canonical_url
from monitor.types import AlertItem, FeedEntry, FetchResult, Notice, ParsedFeed, RuleMatch

Notices = tuple[tuple[str, int, Notice], ...]


@dataclass(frozen=True, slots=True)
class Route:
    """Where a rule's alerts go, and whether they pass quiet hours and caps."""

    notify: tuple[str, ...]  # empty: every notifier
    priority: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    """What a poll's decisions need from the config, for one feed (built by the poller)."""

    name: str | None  # the feed's configured name
    interval: float | None  # None: ``interval: auto``
    min_interval: float
    max_interval: float
    max_age: float
    story_window: float
    routes: Mapping[str, Route]  # rule name -> route
    notifiers: Mapping[str, int]  # notifier name -> its number of URLs (the console's too)
    admin: tuple[str, int] | None = None  # operator notices: notifier and its URLs
    admin_failures: int = 5
    respect_ttl: bool = True  # the feed's ttl / Cache-Control lengthen its interval (capped)


def policy(config: Config, feed: FeedSpec) -> Policy:
    """What the decisions of a poll of ``feed`` need from the config."""
    s = config.settings
    admin = s.admin_notify
    urls = config.notifier_urls()
    return Policy(
        name=feed.name,
        interval=config.feed_interval(feed),
        min_interval=s.min_interval,
        max_interval=s.max_interval,
        max_age=s.max_age,
        story_window=s.story_window,
        routes={r.name: Route(r.notify, r.priority == "high") for r in config.rules},
        notifiers=urls,
        admin=(admin, urls[admin]) if admin else None,
        admin_failures=s.admin_failures,
        respect_ttl=s.respect_ttl,
    )


@dataclass(frozen=True, slots=True)
class Alert:
    """A matched entry, as ``monitor poll`` prints it."""

    feed: str
    title: str
    link: str | None
    published: datetime | None
    rules: tuple[str, ...]
    terms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Intents:
    """What to store after a poll, and what to say about it."""

    state: FeedState
    records: tuple[NewEntry, ...] = ()  # with records (or listed), the poll commits entries
    listed: tuple[str, ...] = ()  # known identities the document still lists
    parsed: bool = False  # the document was parsed: what it no longer lists may go
    notices: Notices = ()
    label: str = ""
    error: str | None = None  # the poll failed (or an entry failed to match)
    alerts: tuple[Alert, ...] = ()
    new: int = 0
    note: str | None = None  # for the log line
    messages: tuple[str, ...] = field(default_factory=tuple)  # log lines worth an INFO
    given_up: str | None = None  # an entry recorded without matching (log at WARNING)

    @property
    def commits_entries(self) -> bool:
        return bool(self.records or self.listed or self.parsed)


# -- the interval -----------------------------------------------------------------


def interval_in_force(policy: Policy, state: FeedState) -> tuple[float, str]:
    """The base interval of the feed's next poll and why (before ttl, backoff and jitter)."""
    if policy.interval is not None:
        return policy.interval, "configured"
    seconds = decide.auto_interval(state.rate, policy.min_interval, policy.max_interval)
    per_week = f"{state.rate:.1f}" if state.rate < 10 else f"{state.rate:.0f}"
    return seconds, f"auto: about {per_week} new entries a week"


# -- the three ends of a poll ---------------------------------------------------------


def _next_due(
    policy: Policy,
    state: FeedState,
    now: datetime,
    result: FetchResult,
    doc: ParsedFeed | None,
    rng: random.Random,
    *,
    errors: int = 0,
) -> datetime:
    """The next poll: the interval in force for this state, then the feed's hints
    (success) or the backoff (``errors`` failed polls in a row), and Retry-After."""
    interval, _why = interval_in_force(policy, state)
    return decide.next_due(
        now=now,
        interval=interval,
        error_count=errors,
        result=result,
        parsed=doc,
        rng=rng,
        respect_hints=policy.respect_ttl,
    )


def label(policy: Policy, state: FeedState, parsed: ParsedFeed | None = None) -> str:
    """The feed's name in logs and alerts: configured, else its own title, else its URL."""
    return (
        policy.name
        or (parsed.title if parsed else None)
        or state.title
        or state.configured
        or state.url
    )


def needs_parse(state: FeedState, result: FetchResult) -> tuple[str | None, str | None]:
    """After a good fetch: (body hash, None) to parse it; (None, None) when the document
    is the one stored (304, or the same bytes); (hash, error) for bytes that poisoned
    a parse before and are not parsed again."""
    if result.not_modified:
        return None, None
    body_hash = hashlib.sha256(result.body).hexdigest()
    if body_hash == state.body_hash:
        return None, None
    if body_hash == state.failed_hash and decide.poisoned(state.failed_tries):
        return body_hash, state.failed_error or "the document failed before"
    return body_hash, None


def _answered(state: FeedState, result: FetchResult) -> tuple[FeedState, list[str]]:
    """A feed whose URL answered with a feed: a permanent redirect it followed is
    adopted, and a gone feed is back."""
    said = []
    if result.permanent_redirect and result.permanent_redirect != state.url:
        said.append(
            f"moved permanently: now polling {result.permanent_redirect} instead of {state.url}"
        )
        state = replace(state, url=result.permanent_redirect)
    if state.gone:
        said.append("answers with a feed again after 410 Gone: polling resumes")
        state = replace(state, gone=False)
    return state, said


def _notices(policy: Policy, name: str, before: int, after: int, error: str | None) -> Notices:
    if policy.admin is None:
        return ()
    notice = decide.feed_notice(name, before, after, policy.admin_failures, error)
    return ((policy.admin[0], policy.admin[1], notice),) if notice else ()


def failed(
    state: FeedState,
    result: FetchResult,
    now: datetime,
    policy: Policy,
    rng: random.Random,
    *,
    parse_error: str | None = None,
    body_hash: str | None = None,
    crashed: bool = False,
    poisoned: bool = False,
) -> Intents:
    """A poll that failed: the fetch, or the document (``parse_error``). A document
    that failed is remembered by ``body_hash`` (``decide.document_failures``)."""
    name = label(policy, state)
    error = parse_error or result.error or "failed"
    if parse_error is not None and body_hash is not None and not poisoned:
        before = state.failed_tries if body_hash == state.failed_hash else 0
        tries = decide.document_failures(before, crashed=crashed)
        state = replace(state, failed_hash=body_hash, failed_error=error, failed_tries=tries)
    count = state.error_count + 1
    # A 410 makes the feed gone; it stays gone (asked daily) until it answers with a feed.
    gone = result.status == 410 or state.gone
    if gone:
        due = decide.probe_due(now, rng)
    else:
        due = _next_due(policy, state, now, result, None, rng, errors=count)
    state = replace(
        state,
        last_poll=now,
        last_status=result.status,
        last_error=error,
        error_count=count,
        next_due=due,
        gone=gone,
    )
    return Intents(
        state=state,
        notices=_notices(policy, name, count - 1, count, error),
        label=name,
        error=error,
        note=("not parsed again" if poisoned else None),
    )


def unchanged(
    state: FeedState, result: FetchResult, now: datetime, policy: Policy, rng: random.Random
) -> Intents:
    """The document is the one stored (304, or the same bytes): nothing to parse."""
    state, said = _answered(state, result)
    etag, last_modified = result.etag, result.last_modified
    if result.not_modified and not (etag or last_modified):
        etag, last_modified = state.etag, state.last_modified
    state = _with_rate(state, (), now)
    due = _next_due(policy, state, now, result, None, rng)
    name = label(policy, state)
    notices = _notices(policy, name, state.error_count, 0, None)
    state = replace(
        state,
        last_poll=now,
        last_status=result.status,
        etag=etag,
        last_modified=last_modified,
        last_error=None,
        error_count=0,
        next_due=due,
    )
    return Intents(state=state, notices=notices, label=name, note="unchanged", messages=tuple(said))


def _with_rate(state: FeedState, published: Sequence[datetime | None], now: datetime) -> FeedState:
    rate = decide.publishing_rate(state.rate, state.rate_at, published, now)
    return replace(state, rate=rate, rate_at=now)


@dataclass(frozen=True, slots=True)
class Parsed:
    """What the poller gathered for a document that parsed (the I/O done)."""

    parsed: ParsedFeed
    body_hash: str
    entries: tuple[FeedEntry, ...]  # unique entries of the document
    new: tuple[FeedEntry, ...]  # the ones the store has not seen
    analyses: Mapping[str, Analysis]  # identity -> analysis, for the fresh new entries
    errors: Mapping[str, str]  # identity -> why its matching failed (this poll)
    article_error: str | None = None
    articles_tried: bool = False  # article pages were fetched (the error is news)
    canonicals: Mapping[str, str] = field(default_factory=dict)  # identity -> rel=canonical


def parsed(
    state: FeedState,
    result: FetchResult,
    got: Parsed,
    now: datetime,
    policy: Policy,
    rng: random.Random,
) -> Intents:
    """A document that parsed: its new entries, their matches and alerts, the state."""
    doc = got.parsed
    name = policy.name or doc.title or state.configured or state.url
    polled = state
    state, said = _answered(state, result)
    errors_before = state.error_count
    etag, last_modified = result.etag, result.last_modified
    state = replace(
        state,
        last_poll=now,
        last_status=result.status,
        etag=etag,
        last_modified=last_modified,
        title=name,
        body_hash=got.body_hash,
        last_error=None,
        error_count=0,
        failed_hash=None,
        failed_error=None,
        failed_tries=0,
        last_parsed=now,
        items=doc.items,
    )
    if got.articles_tried:
        state = replace(state, article_error=got.article_error)

    failing, given_up = decide.entry_failures(dict(state.failing_entries), got.errors.keys())
    state = replace(state, failing_entries=tuple(sorted(failing.items())))
    given_up_error = None
    for identity in given_up:
        given_up_error = (
            f"{got.errors[identity]} (on {decide.ENTRY_ATTEMPTS} polls in a row;"
            " recorded without matching, it will not alert)"
        )
        state = replace(state, entry_error=given_up_error)
    match_error = None
    if failing:
        # Not recorded, and the document's validators and hash are not kept:
        # the next poll parses it again and retries just these entries.
        match_error = next(got.errors[i] for i in reversed(list(got.errors)) if i in failing)
        state = replace(
            state,
            etag=polled.etag,
            last_modified=polled.last_modified,
            body_hash=polled.body_hash,
            last_error=match_error,
            items=b"",  # these entries are in the index but not recorded: parse them again
        )

    records: list[NewEntry] = []
    alerts: list[Alert] = []
    for entry in got.new:
        if entry.identity in failing:
            continue
        analysis = got.analyses.get(entry.identity)
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
                outgoing=outgoing(policy, name, entry, analysis),
                story=(
                    Story(
                        _story_url(got.canonicals.get(entry.identity) or entry.link),
                        analysis.story,
                        policy.story_window,
                    )
                    if analysis.story is not None
                    else None
                ),
            )
        )
        if matches:
            terms = tuple(dict.fromkeys(t for m in matches for t in m.terms))
            alerts.append(
                Alert(
                    name,
                    entry.title,
                    entry.link,
                    entry.published,
                    tuple(m.rule for m in matches),
                    terms,
                )
            )

    recorded = [r.entry for r in records]
    state = _with_rate(state, [e.published or now for e in recorded], now)
    if recorded:
        state = replace(state, last_new=now)
    due = _next_due(policy, state, now, result, doc, rng)
    state = replace(state, next_due=due)
    new_ids = {e.identity for e in got.new}
    listed = tuple(e.identity for e in got.entries if e.identity not in new_ids) + doc.known
    return Intents(
        state=state,
        records=tuple(records),
        listed=listed,
        parsed=True,
        notices=_notices(policy, name, errors_before, 0, None),
        label=name,
        error=match_error,
        alerts=tuple(alerts),
        new=len(got.new),
        note=match_error or doc.warning,
        messages=tuple(said),
        given_up=given_up_error,
    )


def _story_url(link: str | None) -> str | None:
    return canonical_url(link) if link else None


def outgoing(
    policy: Policy, feed: str, entry: FeedEntry, analysis: Analysis
) -> tuple[Outgoing, ...]:
    """One outbox row per URL of each notifier a matched rule routes to; the alert
    names only the rules that route to that notifier, quoted at the first hit of
    the first of them."""
    matches = analysis.matches
    if not matches:
        return ()
    everyone = list(policy.notifiers)
    routed: dict[str, list[RuleMatch]] = {}
    for m in matches:
        route = policy.routes.get(m.rule, Route(()))
        for name in route.notify or everyone:
            routed.setdefault(name, []).append(m)
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
            priority=any(policy.routes.get(m.rule, Route(())).priority for m in rule_matches),
        )
        out.extend(Outgoing(name, position, item) for position in range(policy.notifiers[name]))
    return tuple(out)
