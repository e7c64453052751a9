"""Page metadata: structured data (JSON-LD), <meta> tags, <html lang>."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from lxml import etree  # type: ignore[import-untyped]

_ARTICLE_TYPES = re.compile(r"article|posting|report|blog|story", re.IGNORECASE)
_LANG_RE = re.compile(r"^[A-Za-z]{2,3}(?=$|[-_])")
_DATE_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,]\d+)?)?\s*"
    r"(Z|[+-]\d{2}:?\d{2}|[+-]\d{2})?)?"
)
_MAX_JSONLD_CHARS = 2_000_000


@dataclass(frozen=True, slots=True)
class PageMeta:
    """What the page states about itself, before looking at its body text."""

    title: str | None
    language: str | None
    published: datetime | None
    article_body: str | None  # JSON-LD articleBody, as published (may hold HTML)
    description: str | None = None  # JSON-LD description, else og:/twitter:/meta description
    canonical: str | None = None  # <link rel=canonical> (else og:url): the article's own URL


def parse_date(value: str) -> datetime | None:
    """An ISO-8601-like date as an aware UTC datetime (naive values count as UTC)."""
    match = _DATE_RE.search(value)
    if not match:
        return None
    year, month, day, hour, minute, second, zone = match.groups()
    try:
        parsed = datetime(
            int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0)
        )
        if zone and zone != "Z":
            zone = zone.replace(":", "")
            sign = -1 if zone[0] == "-" else 1
            hours, minutes = int(zone[1:3]), int(zone[3:5] or 0)
            offset = sign * (hours * 60 + minutes)
            parsed = parsed.replace(tzinfo=UTC) - timedelta(minutes=offset)
        return parsed.replace(tzinfo=UTC)
    except (ValueError, OverflowError):
        return None


def _language(value: str | None) -> str | None:
    if not value:
        return None
    match = _LANG_RE.match(value.strip())
    return match.group(0).lower() if match else None


def _walk_jsonld(node: Any, depth: int = 0) -> Iterator[Mapping[str, Any]]:
    """Every JSON-LD object in a document, including @graph members."""
    if depth > 8:
        return
    if isinstance(node, list):
        for item in node:
            yield from _walk_jsonld(item, depth + 1)
    elif isinstance(node, dict):
        yield node
        for key in ("@graph", "mainEntity", "mainEntityOfPage"):
            if key in node:
                yield from _walk_jsonld(node[key], depth + 1)


def _jsonld_articles(root: etree._Element) -> list[Mapping[str, Any]]:
    found: list[Mapping[str, Any]] = []
    for script in root.iter("script"):
        if (script.get("type") or "").strip().lower() != "application/ld+json":
            continue
        raw = script.text or ""
        if not raw or len(raw) > _MAX_JSONLD_CHARS:
            continue
        try:
            data = json.loads(raw, strict=False)
        except (ValueError, RecursionError):
            continue
        for obj in _walk_jsonld(data):
            kind = obj.get("@type")
            kinds = kind if isinstance(kind, list) else [kind]
            if any(isinstance(k, str) and _ARTICLE_TYPES.search(k) for k in kinds):
                found.append(obj)
    return found


def _first_str(objs: list[Mapping[str, Any]], key: str) -> str | None:
    for obj in objs:
        value = obj.get(key)
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _meta_tags(root: etree._Element) -> dict[str, str]:
    tags: dict[str, str] = {}
    for meta in root.iter("meta"):
        key = (meta.get("property") or meta.get("name") or meta.get("itemprop") or "").lower()
        equiv = (meta.get("http-equiv") or "").lower()
        content = meta.get("content")
        if content is None:
            continue
        if key and key not in tags:
            tags[key] = content.strip()
        if equiv and ("http-equiv:" + equiv) not in tags:
            tags["http-equiv:" + equiv] = content.strip()
    return tags


def _one_line(value: str | None) -> str | None:
    if not value:
        return None
    title = " ".join(value.split())
    return title or None


def read_meta(root: etree._Element, headers: Mapping[str, str] | None) -> PageMeta:
    """Collect title, language, publication time, JSON-LD articleBody and the description."""
    articles = _jsonld_articles(root)
    tags = _meta_tags(root)

    title = _one_line(_first_str(articles, "headline")) or _one_line(tags.get("og:title"))
    if title is None:
        for tag in ("h1", "title"):
            node = next(root.iter(tag), None)
            if node is not None:
                title = _one_line("".join(node.itertext()))
                if title:
                    break

    header_lang = None
    for key, value in (headers or {}).items():
        if key.lower() == "content-language":
            header_lang = value.split(",")[0]
    language = (
        _language(root.get("lang") or root.get("{http://www.w3.org/XML/1998/namespace}lang"))
        or _language(_first_str(articles, "inLanguage"))
        or _language(tags.get("http-equiv:content-language"))
        or _language(header_lang)
        or _language(tags.get("og:locale"))
    )

    published: datetime | None = None
    candidates: list[str | None] = [
        _first_str(articles, "datePublished"),
        tags.get("article:published_time"),
        tags.get("og:published_time"),
        tags.get("datepublished"),
        tags.get("date"),
        tags.get("pubdate"),
        tags.get("dc.date.issued"),
        tags.get("dc.date"),
        tags.get("dcterms.date"),
    ]
    for node in root.iter("time"):
        candidates.append(node.get("datetime"))
        break
    for candidate in candidates:
        if candidate:
            published = parse_date(candidate)
            if published:
                break

    body = _first_str(articles, "articleBody")
    description = (
        _first_str(articles, "description")
        or tags.get("og:description")
        or tags.get("description")
        or tags.get("twitter:description")
    )
    return PageMeta(
        title=title,
        language=language,
        published=published,
        article_body=body,
        description=_one_line(description),
        canonical=_canonical(root, tags),
    )


def _canonical(root: etree._Element, tags: Mapping[str, str]) -> str | None:
    """The URL the page names as its own: an AMP or mobile copy names the article."""
    for link in root.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        href = (link.get("href") or "").strip()
        if "canonical" in rel and href:
            return href
    return tags.get("og:url") or None
