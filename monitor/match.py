"""Placeholder until the matcher branch lands: whole-word matching only."""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from monitor.normalize import normalize
from monitor.types import Document, Hit, RuleMatch, RuleSpec, Snippet


@dataclass(frozen=True)
class RuleProblem:
    key: str
    index: int | None
    offset: int | None
    message: str


def validate_rule(rule: RuleSpec) -> list[RuleProblem]:
    """Problems of a rule's terms."""
    return []


def _pattern(term: str) -> re.Pattern[str]:
    return re.compile(r"(?<!\w)" + re.escape(normalize(term)) + r"(?:'?s)?(?!\w)")


class Matcher:
    """All rules."""

    def __init__(self, rules: Sequence[RuleSpec]) -> None:
        self._rules = tuple(rules)

    def rule_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self._rules)

    def _hits(self, terms: Sequence[str], doc: Document, fields: Sequence[str]) -> list[Hit]:
        hits = []
        for term in terms:
            for f in fields:
                m = _pattern(term).search(doc.fields.get(f, ""))
                if m:
                    hits.append(Hit(term, f, m.start(), m.end()))
                    break
        return hits

    def match(
        self, doc: Document, *, feed: str, tags: Collection[str] = ()
    ) -> tuple[RuleMatch, ...]:
        out = []
        for r in self._rules:
            if r.feeds and feed not in r.feeds and not set(tags) & set(r.feeds):
                continue
            any_hits = self._hits(r.keywords, doc, r.fields)
            all_hits = self._hits(r.all, doc, r.fields)
            if r.keywords and not any_hits:
                continue
            if len(all_hits) != len(r.all):
                continue
            if self._hits(r.exclude, doc, r.fields):
                continue
            out.append(RuleMatch(r.name, tuple(any_hits + all_hits)))
        return tuple(out)


def compile_rules(rules: Sequence[RuleSpec]) -> Matcher:
    """Compile every rule into one matcher."""
    return Matcher(rules)


def snippet(doc: Document, hit: Hit, *, width: int = 160) -> Snippet:
    """Excerpt around a hit."""
    text = doc.fields.get(hit.field, "")
    half = max(0, (width - (hit.end - hit.start)) // 2)
    start = max(0, hit.start - half)
    end = min(len(text), hit.end + half)
    return Snippet(
        hit.field,
        ("…" if start else "") + text[start : hit.start],
        text[hit.start : hit.end],
        text[hit.end : end] + ("…" if end < len(text) else ""),
    )
