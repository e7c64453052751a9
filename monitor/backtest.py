"""``monitor rules test``: replay rules over stored articles (pure; nothing is sent)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from monitor.match import Matcher, snippet
from monitor.storage.base import StoredArticle
from monitor.types import Document, RuleMatch, Snippet


@dataclass(frozen=True, slots=True)
class Sample:
    """One stored article a rule would have fired on."""

    article: StoredArticle
    match: RuleMatch
    snippet: Snippet | None


@dataclass(slots=True)
class RuleReport:
    """How often one rule would have fired, with the first few articles."""

    rule: str
    fired: int = 0
    samples: list[Sample] = field(default_factory=list)


def backtest(
    matcher: Matcher,
    articles: Iterable[StoredArticle],
    tags: Mapping[str, Sequence[str]],
    *,
    only: str | None = None,
    samples: int = 5,
) -> tuple[list[RuleReport], int]:
    """Per rule (config order): how many articles would fire; returns (reports, articles seen).

    ``tags`` maps a feed key to its configured tags, so rules limited to
    feeds or tags are replayed on the same feeds as live.
    """
    reports = {name: RuleReport(name) for name in matcher.rule_names() if only in (None, name)}
    seen = 0
    for article in articles:
        seen += 1
        # Stored as written (older rows: folded); folding it again gives what matched live.
        doc = Document(
            fields={k: v.casefold() for k, v in article.fields.items()}, display=article.fields
        )
        for m in matcher.match(doc, feed=article.feed, tags=tags.get(article.feed_key, ())):
            report = reports.get(m.rule)
            if report is None:
                continue
            report.fired += 1
            if len(report.samples) < samples:
                quote = snippet(doc, m.hits[0]) if m.hits else None
                report.samples.append(Sample(article, m, quote))
    return list(reports.values()), seen
