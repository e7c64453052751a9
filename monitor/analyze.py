"""Normalize and match the new entries of one poll (pure; runs in a pool worker).

This is the CPU-heavy half of a poll besides parsing, so the pipeline sends a
whole feed's entries here in one call and the event loop stays free. Rules
travel as plain ``RuleSpec`` records; each worker compiles them once and keeps
the matcher until the rules change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from monitor.match import Matcher, compile_rules, snippet
from monitor.normalize import prepare
from monitor.story import Fingerprint, fingerprint, story_text
from monitor.types import Document, FeedEntry, RuleMatch, RuleSpec, Snippet

_compiled: tuple[tuple[RuleSpec, ...], Matcher] | None = None


def matcher_for(rules: tuple[RuleSpec, ...]) -> Matcher:
    """The compiled matcher of ``rules``, compiled once per process and rule set."""
    global _compiled
    if _compiled is None or _compiled[0] != rules:
        _compiled = (rules, compile_rules(rules))
    return _compiled[1]


@dataclass(frozen=True, slots=True)
class Analysis:
    """An entry's normalized text, the rules it matched, the quote for the alert, and
    (when it matched) the fingerprint of its story for folding copies from other outlets."""

    document: Document
    matches: tuple[RuleMatch, ...]
    snippet: Snippet | None
    story: Fingerprint | None = None


def document(entry: FeedEntry, article_text: str | None) -> Document:
    """The entry's normalized fields; ``content`` is the article text when there is one."""
    if article_text is None:
        content, html_fields = entry.content, frozenset({"title", "summary", "content"})
    else:
        content, html_fields = article_text, frozenset({"title", "summary"})
    return prepare(
        title=entry.title,
        summary=entry.summary,
        content=content,
        author=entry.author,
        categories=entry.categories,
        link=entry.link or "",
        html_fields=html_fields,
    )


def needs_article(
    rules: tuple[RuleSpec, ...], entries: Sequence[FeedEntry], feed: str, tags: tuple[str, ...]
) -> list[bool]:
    """Per entry: can the article page still change which rules match it?

    Not when every rule that looks at ``content`` has matched on the other
    fields already and has nothing (exclude terms, a query) that the article
    text could turn against it.
    """
    matcher = matcher_for(rules)
    applicable = matcher.rules_for(feed, tags)
    content_rules = [r for r in rules if r.name in applicable and "content" in r.fields]
    if not content_rules:
        return [False] * len(entries)
    if any(r.exclude or r.query for r in content_rules):
        return [True] * len(entries)
    out = []
    for entry in entries:
        matched = {m.rule for m in matcher.match(document(entry, ""), feed=feed, tags=tags)}
        out.append(any(r.name not in matched for r in content_rules))
    return out


def analyze(
    rules: tuple[RuleSpec, ...],
    entries: Sequence[FeedEntry],
    articles: Mapping[str, str],
    feed: str,
    tags: tuple[str, ...],
) -> list[Analysis]:
    """Normalize and match each entry (``articles``: identity -> extracted text)."""
    matcher = matcher_for(rules)
    out = []
    for entry in entries:
        doc = document(entry, articles.get(entry.identity))
        matches = matcher.match(doc, feed=feed, tags=tags)
        hit = matches[0].hits[0] if matches and matches[0].hits else None
        story = None
        if matches:  # only a match can alert twice; sketching costs about 1 ms an entry
            f = doc.fields
            story = fingerprint(
                story_text(title=f["title"], summary=f["summary"], content=f["content"])
            )
        out.append(Analysis(doc, matches, snippet(doc, hit) if hit else None, story))
    return out
