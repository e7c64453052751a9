"""How records are kept in a store's text columns (JSON), shared by the backends.

Alerts, notices, hits and snippets are stored as JSON text in every backend,
so the SQLite and PostgreSQL stores read and write the same shapes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from monitor.storage.base import Outgoing
from monitor.story import Fingerprint
from monitor.story import similar as _similar
from monitor.types import AlertItem, Hit, Message, Notice, RuleMatch, Snippet


def ts(dt: datetime | None) -> float | None:
    return dt.timestamp() if dt is not None else None


def dt(ts: float | None) -> datetime | None:
    return datetime.fromtimestamp(ts, UTC) if ts is not None else None


def item_json(item: AlertItem) -> str:
    return json.dumps(
        {
            "item": {
                "feed": item.feed,
                "title": item.title,
                "link": item.link,
                "published": ts(item.published),
                "rules": list(item.rules),
                "terms": list(item.terms),
                "snippet": json.loads(snippet_json(item.snippet) or "null"),
                "priority": item.priority,
            }
        },
        ensure_ascii=False,
    )


def notice_json(n: Notice) -> str:
    return json.dumps({"notice": [n.kind, n.subject, n.text]}, ensure_ascii=False)


def similar_stored(fp: Fingerprint, blob: bytes) -> bool:
    """Whether a stored fingerprint (bytes) is of the same story as ``fp``."""
    try:
        return _similar(fp, Fingerprint.from_bytes(blob))
    except ValueError:  # a sketch of another version: not comparable, not the same story
        return False


def without_rules(outgoing: Sequence[Outgoing], rules: set[str]) -> list[Outgoing]:
    """The rows left when ``rules`` may not alert (a story already alerted for them)."""
    if not rules:
        return list(outgoing)
    out = []
    for o in outgoing:
        left = tuple(r for r in o.item.rules if r not in rules)
        if left:
            out.append(o if left == o.item.rules else replace(o, item=replace(o.item, rules=left)))
    return out


def payload(raw: str, entry: int | None) -> AlertItem | Notice | Message:
    d = json.loads(raw)
    if "item" in d:
        i = d["item"]
        snip = i.get("snippet")
        return AlertItem(
            feed=i["feed"],
            title=i["title"],
            link=i["link"],
            published=dt(i["published"]),
            rules=tuple(i["rules"]),
            terms=tuple(i["terms"]),
            snippet=Snippet(*snip) if snip else None,
            priority=bool(i.get("priority")),
            entry=entry or 0,
        )
    if "notice" in d:
        return Notice(*d["notice"])
    return Message(d["title"], d["markdown"], d["html"], d["text"])  # schema 3 and before


def terms(matches: Sequence[RuleMatch]) -> list[str]:
    return list(dict.fromkeys(t for m in matches for t in m.terms))


def hits_json(matches: Sequence[RuleMatch]) -> str:
    return json.dumps(
        [
            {"rule": m.rule, "hits": [[h.term, h.field, h.start, h.end] for h in m.hits]}
            for m in matches
        ],
        ensure_ascii=False,
    )


def matches(raw: str) -> tuple[RuleMatch, ...]:
    return tuple(
        RuleMatch(m["rule"], tuple(Hit(t, f, a, b) for t, f, a, b in m["hits"]))
        for m in json.loads(raw)
    )


def snippet_json(s: Snippet | None) -> str | None:
    if s is None:
        return None
    return json.dumps([s.field, s.before, s.hit, s.after], ensure_ascii=False)


def snippet(raw: str | None) -> Snippet | None:
    return Snippet(*json.loads(raw)) if raw else None
