"""Feed documents to typed records: the only module that imports feedparser.

feedparser is handed bytes we fetched ourselves, never a URL or a path
(FACTS: it opens files and follows redirects when given a string). Its
untyped result becomes ``ParsedFeed`` / ``FeedEntry`` here and nowhere else.
"""

from __future__ import annotations

import calendar
import codecs
import hashlib
import re
import time
import xml.sax
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser

from monitor.types import FeedEntry, ParsedFeed

# Entity declarations are where billion-laughs and quadratic blowup live;
# feedparser's loose parser expands them itself (FACTS), so they never reach it.
_DOCTYPE = re.compile(rb"<!DOCTYPE(?:[^\[>]|\[.*?\])*>", re.IGNORECASE | re.DOTALL)
_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SAFE_SCHEMES = ("http", "https")
_DAYS = {d: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday"))}
_DAYS.update({"saturday": 5, "sunday": 6})
_PROLOG_LIMIT = 65536
MAX_ENTRIES = 1000  # entries read from one document; feeds list newest first


def sanitize_xml(body: bytes) -> tuple[bytes, str | None]:
    """Make a document safe to hand to feedparser; returns (bytes, charset override).

    UTF-16/32 with a BOM is re-encoded as UTF-8 (so the next step can see the
    markup); a DOCTYPE is removed from the prolog when it declares entities;
    XML-illegal control characters are dropped.
    """
    charset: str | None = None
    for bom, codec in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if body.startswith(bom):
            text = body[len(bom) :].decode(codec, errors="replace")
            text = _XML_DECL.sub("", text, count=1)
            body = text.encode("utf-8")
            charset = "utf-8"
            break
    head = body[:_PROLOG_LIMIT]
    if b"<!" in head and _ENTITY_DECL.search(head):
        body = _DOCTYPE.sub(b"", head, count=1) + body[_PROLOG_LIMIT:]
    if _CONTROL_BYTES.search(body):
        body = _CONTROL_BYTES.sub(b"", body)
    return body, charset


def safe_link(link: object, base: str) -> str | None:
    """An http(s) URL, made absolute against the feed URL; anything else is dropped."""
    if not isinstance(link, str):
        return None
    link = link.strip()
    if not link or _CONTROL.search(link) or any(c in link for c in "\r\n\t"):
        return None
    try:
        absolute = urljoin(base, link)
        parts = urlsplit(absolute)
    except ValueError:
        return None
    if parts.scheme.lower() not in _SAFE_SCHEMES or not parts.hostname:
        return None
    return absolute


def _time(value: Any) -> datetime | None:
    if isinstance(value, time.struct_time):
        try:
            return datetime.fromtimestamp(calendar.timegm(value), UTC)
        except (OverflowError, ValueError, OSError):
            return None
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def content_hash(*parts: str) -> str:
    """The identity of an entry that has neither guid nor link."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()
    return "sha256:" + digest[:32]


def _entry(raw: Any, base: str) -> FeedEntry:
    title = _text(raw.get("title"))
    summary = _text(raw.get("summary"))
    contents = raw.get("content") or []
    content = "\n".join(_text(c.get("value")) for c in contents if isinstance(c, dict))
    link = safe_link(raw.get("link"), base)
    guid = _text(raw.get("id")).strip() or None
    if guid is not None and _CONTROL.search(guid):
        guid = _CONTROL.sub("", guid)
    identity = guid or link or content_hash(title, summary)
    tags = tuple(t for t in (_text(tag.get("term")).strip() for tag in raw.get("tags") or []) if t)
    # dict.get: FeedParserDict maps a missing updated_parsed to published_parsed
    # with a DeprecationWarning (an exception where warnings are errors).
    published = _time(raw.get("published_parsed")) or _time(dict.get(raw, "updated_parsed"))
    return FeedEntry(
        identity=identity,
        guid=guid,
        link=link,
        title=title.strip(),
        summary=summary,
        content=content,
        author=_text(raw.get("author")),
        categories=tags,
        published=published,
    )


def _skip(body: bytes) -> tuple[frozenset[int], frozenset[int]]:
    hours: set[int] = set()
    days: set[int] = set()
    if b"<skip" not in body:
        return frozenset(), frozenset()
    text = body.decode("utf-8", "replace")
    for block in re.findall(r"<skipHours>(.*?)</skipHours>", text, re.S | re.I):
        for h in re.findall(r"<hour>\s*(\d+)\s*</hour>", block, re.I):
            if 0 <= int(h) <= 24:
                hours.add(int(h) % 24)
    for block in re.findall(r"<skipDays>(.*?)</skipDays>", text, re.S | re.I):
        for d in re.findall(r"<day>\s*(\w+)\s*</day>", block, re.I):
            if d.lower() in _DAYS:
                days.add(_DAYS[d.lower()])
    return frozenset(hours), frozenset(days)


def parse_feed(body: bytes, url: str, headers: Mapping[str, str] | None = None) -> ParsedFeed:
    """Parse a fetched feed document. Never raises: problems come back in ``error``."""
    if not body.strip():
        return ParsedFeed(title=None, link=None, entries=(), error="empty response body")
    try:
        clean, charset = sanitize_xml(body)
        # No content-location: given a base, feedparser resolves guids against it
        # (identities would change with the URL the feed was fetched from) and
        # urljoin silently deletes CR/LF from links; safe_link resolves links itself.
        response_headers = {
            k.lower(): v for k, v in (headers or {}).items() if k.lower() != "content-location"
        }
        if charset:
            response_headers["content-type"] = f"application/xml; charset={charset}"
        parsed = feedparser.parse(
            clean,
            response_headers=response_headers,
            sanitize_html=False,
            resolve_relative_uris=False,
        )
    except Exception as exc:  # feedparser's loose parser can raise anything, e.g. MemoryError
        return ParsedFeed(title=None, link=None, entries=(), error=f"unparseable feed: {exc!r}")
    feed = parsed.get("feed", {})
    raw_entries = parsed.get("entries", [])
    warning = None
    if parsed.get("bozo"):
        warning = str(parsed.get("bozo_exception", "malformed feed"))[:300]
    version = parsed.get("version") or ""
    # A document broken before its title and first entry recovered nothing: that
    # is a failed poll (shown in status, backed off), not an empty feed.
    broken = isinstance(parsed.get("bozo_exception"), xml.sax.SAXException) and not feed.get(
        "title"
    )
    if not raw_entries and (not version or broken):
        looks_html = b"<html" in body[:4096].lower()
        reason = "an HTML page, not a feed" if looks_html else "not a feed"
        if version and not looks_html:
            reason = "a broken feed with nothing readable"
        return ParsedFeed(
            title=None, link=None, entries=(), error=f"{reason} ({warning or 'no entries'})"
        )
    if len(raw_entries) > MAX_ENTRIES:
        note = f"the feed has {len(raw_entries)} entries; only the first {MAX_ENTRIES} are read"
        warning = f"{note}; {warning}" if warning else note
    entries = tuple(_entry(e, url) for e in raw_entries[:MAX_ENTRIES])
    ttl: int | None = None
    raw_ttl = _text(feed.get("ttl")).strip()
    if raw_ttl.isdigit():
        ttl = int(raw_ttl) * 60
    hours, days = _skip(body[: _PROLOG_LIMIT * 4])
    return ParsedFeed(
        title=_text(feed.get("title")).strip() or None,
        link=safe_link(feed.get("link"), url),
        entries=entries,
        ttl_seconds=ttl,
        skip_hours=hours,
        skip_days=days,
        warning=warning,
    )
