"""Records that cross a stage boundary.

Every stage of the pipeline (config -> fetch -> parse -> dedup -> extract ->
match -> store/outbox -> notify) hands the next one frozen dataclasses from
this module, never dicts from a library. They are plain data and pickle, so
parsing and extraction can run in worker processes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

# --------------------------------------------------------------------------
# fetch


@dataclass(frozen=True, slots=True)
class FetchResult:
    """The outcome of one HTTP fetch; failures are values, never exceptions.

    ``error`` is ``None`` on success (2xx or 304). ``error_kind`` is a short
    machine-readable reason ("refused", "timeout", "too_large", "http",
    "redirects", "connection", "invalid_url", ...), ``error`` a human one.
    """

    url: str  # the URL asked for
    final_url: str  # after redirects
    status: int | None  # HTTP status, None when no response arrived
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    not_modified: bool = False
    etag: str | None = None
    last_modified: str | None = None
    # the last URL of a chain of permanent (301/308) redirects, if any
    permanent_redirect: str | None = None
    retry_after: float | None = None  # seconds, from Retry-After on 429/503
    error_kind: str | None = None
    error: str | None = None
    elapsed: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


# --------------------------------------------------------------------------
# parse


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One entry of a feed, as the feed states it (text fields may hold HTML)."""

    identity: str  # guid, else link, else hash of title+summary
    guid: str | None
    link: str | None
    title: str
    summary: str  # the feed's description (may be HTML)
    content: str  # the feed's full content (may be HTML), "" when absent
    author: str = ""
    categories: tuple[str, ...] = ()
    published: datetime | None = None  # aware, UTC


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A parsed feed document."""

    title: str | None
    link: str | None
    entries: tuple[FeedEntry, ...]
    ttl_seconds: int | None = None  # RSS <ttl>
    skip_hours: frozenset[int] = frozenset()  # UTC hours, RSS <skipHours>
    skip_days: frozenset[int] = frozenset()  # 0=Monday, RSS <skipDays>
    error: str | None = None  # set when the document was not a usable feed
    warning: str | None = None  # recoverable problems (feedparser's bozo)
    # Items byte for byte as in the last document (not parsed again): their identities,
    # in document order, and the index of this document's items for the next poll
    # (parse.encode_items; b"" when the document could not be indexed).
    known: tuple[str, ...] = ()
    items: bytes = b""


# --------------------------------------------------------------------------
# extract


@dataclass(frozen=True, slots=True)
class Article:
    """The article text of a page, reduced from its HTML."""

    title: str | None
    text: str
    language: str | None = None
    published: datetime | None = None
    canonical: str | None = None  # the URL the page names as its own (rel=canonical)


# --------------------------------------------------------------------------
# match


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A rule as the config states it (see SPEC section 4 and 5)."""

    name: str
    keywords: tuple[str, ...] = ()
    all: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    query: str | None = None  # search-engine syntax, instead of the three lists
    fields: tuple[str, ...] = ("title", "summary", "content")
    feeds: tuple[str, ...] = ()  # feed names or tags; empty means every feed
    notify: tuple[str, ...] = ()  # notifier names; empty means every notifier
    priority: str = "normal"  # "high": past quiet hours, caps and digests


@dataclass(frozen=True, slots=True)
class Document:
    """The normalized text of an entry, field name -> text, ready to match.

    Field names: title, summary, content, author, categories, link.
    ``display`` holds, where it differs, the same text before case folding
    (``Größere``, where ``fields`` has ``grössere``), so alerts quote the
    article as written; ``fields[f] == display[f].casefold()``.
    """

    fields: Mapping[str, str]
    display: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Hit:
    """One occurrence of a term: offsets are into the *normalized* field text."""

    term: str
    field: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """A rule that matched an entry, with the hits that made it match."""

    rule: str
    hits: tuple[Hit, ...]

    @property
    def terms(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for hit in self.hits:
            seen.setdefault(hit.term, None)
        return tuple(seen)


@dataclass(frozen=True, slots=True)
class Snippet:
    """A short excerpt around the first hit: ``before`` + ``hit`` + ``after``."""

    field: str
    before: str
    hit: str
    after: str


# --------------------------------------------------------------------------
# render / notify


@dataclass(frozen=True, slots=True)
class AlertItem:
    """One matched entry as one notifier gets it, before rendering.

    ``rules`` are the rules that matched AND route to that notifier; the
    outbox keeps this record, and the sender renders it (grouped with the
    other items waiting for the same target) in the format the target reads.
    ``entry`` is the entry's id in the store (0 until it is stored).
    """

    feed: str
    title: str
    link: str | None
    published: datetime | None
    rules: tuple[str, ...]
    terms: tuple[str, ...]
    snippet: Snippet | None = None
    priority: bool = False  # a rule with ``priority: high`` routed it here
    entry: int = 0


@dataclass(frozen=True, slots=True)
class Notice:
    """A message for the operator (``settings.admin_notify``): a feed failing or
    recovering, a delivery given up, a config reload that failed."""

    kind: str  # feed_failing, feed_recovered, delivery_given_up, reload_failed
    subject: str
    text: str


@dataclass(frozen=True, slots=True)
class Message:
    """An alert rendered by an earlier version (all three formats); still sent as is."""

    title: str
    markdown: str
    html: str
    text: str
