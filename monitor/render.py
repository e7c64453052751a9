"""Alerts as messages, in the format each target reads (pure).

A target gets one message per send: the alerts waiting for it, grouped by
the rules that routed them there (one alert is a message of one), or a
digest with a count per rule. The format is the target's own (see
``notify.format_for``): Markdown for chat services that render it, HTML for
email (its plain-text part is made from it, so every link is also written
out), plain text for generic webhooks (json, xml, form).

Text from feeds is untrusted. Before it is escaped for the format it lands
in, control characters (CR/LF in a title, ANSI escapes, bidirectional
overrides) are removed, mentions (``@everyone``, ``@channel``, ``<@id>``,
``<!here>``) are defused with a word joiner, and ``://`` gets one too so a
chat client does not make a link of an address in a title. Our own links
(the entry's) are the only links in a message.
"""

from __future__ import annotations

import functools
import html
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, tzinfo
from enum import StrEnum
from typing import Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

from monitor.types import AlertItem, Message, Notice, Snippet

WJ = "\u2060"  # word joiner: invisible, breaks a mention or an autolink
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<])")
_SPACE = re.compile(r"\s+")
# C0/C1 controls but tab and newline; ANSI CSI/OSC sequences; bidi overrides,
# isolates and marks (they can reorder what a reader sees: "Trojan Source").
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_MENTION = re.compile(r"([@＠])")
_SCHEME = re.compile(r"(?i)\b([a-z][a-z0-9+.-]{1,15}):(//)")
SEPARATOR = "\n\n"
UTC = ZoneInfo("UTC")


class Format(StrEnum):
    """What a target renders."""

    TEXT = "text"
    MARKDOWN = "markdown"
    HTML = "html"


@dataclass(frozen=True, slots=True)
class Rendered:
    """A message ready for one target: ``count`` of the items given are in it."""

    title: str
    body: str
    format: Format
    count: int = 1


# -- cleaning and escaping ------------------------------------------------------


def clean(text: str, *, one_line: bool = True) -> str:
    """Feed text without control characters; one line (white space collapsed) by default."""
    text = _CONTROL.sub("", _ANSI.sub("", text))
    if one_line:
        return _SPACE.sub(" ", text).strip()
    return text


def defuse(text: str) -> str:
    """Mentions and addresses that can't ping anyone or become links."""
    return _SCHEME.sub(rf"\1:{WJ}\2", _MENTION.sub(rf"\1{WJ}", text))


def _clean_defused(text: str, strip: bool) -> str:
    text = defuse(_SPACE.sub(" ", clean(text, one_line=False)))
    return text.strip() if strip else text


def md_escape(text: str, strip: bool = True) -> str:
    """Feed text for a Markdown target."""
    return _MD_SPECIAL.sub(r"\\\1", _clean_defused(text, strip))


def html_escape(text: str, strip: bool = True) -> str:
    """Feed text for an HTML target."""
    return html.escape(_clean_defused(text, strip), quote=True)


def text_escape(text: str, strip: bool = True) -> str:
    """Feed text for a plain-text target."""
    return _clean_defused(text, strip)


_ESCAPE: dict[Format, Callable[..., str]] = {
    Format.TEXT: text_escape,
    Format.MARKDOWN: md_escape,
    Format.HTML: html_escape,
}


def _url(link: str) -> str:
    # Parentheses and spaces would end a Markdown link early.
    return quote(clean(link), safe=":/?#@!$&'*+,;=%~[]")


def _when(published: datetime | None, tz: tzinfo) -> str:
    if published is None:
        return "date unknown"
    local = published.astimezone(tz)
    return local.strftime("%Y-%m-%d %H:%M %Z") if tz is UTC else local.isoformat("T", "minutes")


# -- one item -------------------------------------------------------------------


def _item_title(item: AlertItem) -> str:
    return clean(item.title) or clean(item.link or "") or "(untitled)"


def _terms_line(item: AlertItem, esc: Callable[..., str]) -> str:
    return ", ".join(esc(t) for t in item.terms)


def _also(item: AlertItem, also: Mapping[int, Sequence[str]]) -> list[str]:
    return list(also.get(item.entry, ())) if item.entry else []


def _item_markdown(item: AlertItem, tz: tzinfo, also: Mapping[int, Sequence[str]]) -> str:
    title = _item_title(item)
    lines = [f"**{md_escape(item.feed)}** · {_when(item.published, tz)}"]
    lines.append(f"[{md_escape(title)}]({_url(item.link)})" if item.link else md_escape(title))
    if item.snippet:
        lines.append("> " + _quote(item.snippet, md_escape, "**", "**"))
    lines.append(f"Matched: {md_escape(', '.join(item.rules))} ({_terms_line(item, md_escape)})")
    others = _also(item, also)
    if others:
        lines.append("Also reported by: " + ", ".join(md_escape(o) for o in others))
    return "\n".join(lines)


def _item_html(item: AlertItem, tz: tzinfo, also: Mapping[int, Sequence[str]]) -> str:
    title = _item_title(item)
    parts = [f"<p><b>{html_escape(item.feed)}</b> · {_when(item.published, tz)}<br>"]
    if item.link:
        href = html.escape(clean(item.link), quote=True)
        # The link is written out too: the plain-text part of an email is made
        # from this HTML, and it keeps the text of a link, not its address.
        parts.append(
            f'<a href="{href}"><b>{html_escape(title)}</b></a><br><small>{href}</small></p>'
        )
    else:
        parts.append(f"<b>{html_escape(title)}</b></p>")
    if item.snippet:
        parts.append(
            "<blockquote>"
            + _quote(item.snippet, html_escape, "<mark><b>", "</b></mark>")
            + "</blockquote>"
        )
    parts.append(
        f"<p>Matched: <b>{html_escape(', '.join(item.rules))}</b>"
        f" ({_terms_line(item, html_escape)})</p>"
    )
    others = _also(item, also)
    if others:
        parts.append("<p>Also reported by: " + ", ".join(html_escape(o) for o in others) + "</p>")
    return "\n".join(parts)


def _item_text(item: AlertItem, tz: tzinfo, also: Mapping[int, Sequence[str]]) -> str:
    lines = [
        f"{text_escape(item.feed)} · {_when(item.published, tz)}",
        text_escape(_item_title(item)),
    ]
    if item.link:
        lines.append(clean(item.link))
    if item.snippet:
        lines.append("  " + _quote(item.snippet, text_escape, "»", "«"))
    lines.append(
        f"Matched: {text_escape(', '.join(item.rules))} ({_terms_line(item, text_escape)})"
    )
    others = _also(item, also)
    if others:
        lines.append("Also reported by: " + ", ".join(text_escape(o) for o in others))
    return "\n".join(lines)


def _quote(s: Snippet, esc: Callable[..., str], mark: str, unmark: str) -> str:
    # The snippet's parts keep the spaces at their edges, or the words around
    # the hit would be glued to it.
    return (
        esc(s.before.lstrip(), strip=False)
        + mark
        + esc(s.hit)
        + unmark
        + esc(s.after.rstrip(), strip=False)
    )


_ITEM: dict[Format, Callable[[AlertItem, tzinfo, Mapping[int, Sequence[str]]], str]] = {
    Format.TEXT: _item_text,
    Format.MARKDOWN: _item_markdown,
    Format.HTML: _item_html,
}


# -- groups ---------------------------------------------------------------------


def _rules_of(items: Sequence[AlertItem]) -> list[str]:
    return list(dict.fromkeys(r for it in items for r in it.rules))


def _title(items: Sequence[AlertItem], digest: str | None) -> str:
    rules = ", ".join(clean(r) for r in _rules_of(items))
    if digest:
        counts = ", ".join(f"{clean(r)} {n}" for r, n in _counts(items).items())
        return f"[{defuse(rules)}] {digest}: {len(items)} articles ({defuse(counts)})"
    if len(items) == 1:
        return f"[{defuse(rules)}] {defuse(_item_title(items[0]))}"
    first = _item_title(items[0])
    return f"[{defuse(rules)}] {len(items)} new articles: {defuse(first)} (+{len(items) - 1})"


def _counts(items: Sequence[AlertItem]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for it in items:
        for r in it.rules:
            counts[r] = counts.get(r, 0) + 1
    return counts


def _heading(rules: str, n: int, fmt: Format) -> str:
    label = f"{rules} ({n})"
    if fmt is Format.MARKDOWN:
        return f"**{md_escape(label)}**"
    if fmt is Format.HTML:
        return f"<h3>{html_escape(label)}</h3>"
    return f"== {text_escape(label)} =="


def _blocks(
    items: Sequence[AlertItem],
    fmt: Format,
    tz: tzinfo,
    also: Mapping[int, Sequence[str]],
    grouped: bool,
) -> list[tuple[str, int]]:
    """(text, items it holds) in order; a rule heading counts as part of its first item."""
    render_item = _ITEM[fmt]
    if not grouped:
        return [(render_item(it, tz, also), 1) for it in items]
    by_rules: dict[tuple[str, ...], list[AlertItem]] = {}
    for it in items:
        by_rules.setdefault(it.rules, []).append(it)
    out = []
    for rules, group in by_rules.items():
        heading = _heading(", ".join(rules), len(group), fmt)
        for i, it in enumerate(group):
            text = render_item(it, tz, also)
            out.append((f"{heading}\n{text}" if i == 0 else text, 1))
    return out


def render_group(
    items: Sequence[AlertItem],
    fmt: Format,
    *,
    digest: str | None = None,
    also: Mapping[int, Sequence[str]] | None = None,
    max_body: int | None = None,
    tz: tzinfo = UTC,
    template: Any = None,
) -> list[Rendered]:
    """The messages that carry ``items`` to one target, in order.

    One message unless the target's size limit (``max_body`` characters)
    demands more; each item is in exactly one of them. ``digest`` (e.g.
    "Daily digest") groups the items by their rules under a heading with the
    count. ``also`` maps an item's entry to the outlets that reported the
    same story. ``template`` (a compiled per-notifier template) renders the
    body instead of ours.
    """
    also = also or {}
    items = sorted(items, key=lambda it: it.rules) if digest else list(items)
    blocks = _blocks(items, fmt, tz, also, grouped=bool(digest) or len(set(map(_rk, items))) > 1)
    sep = "\n<hr>\n" if fmt is Format.HTML else SEPARATOR
    messages: list[Rendered] = []
    start = 0
    while start < len(items):
        size, end = 0, start
        while end < len(blocks):
            add = len(blocks[end][0]) + (len(sep) if end > start else 0)
            if max_body and end > start and size + add > max_body:
                break
            size += add
            end += 1
        chunk = items[start:end]
        if template is not None:
            body = render_template(template, chunk, fmt, tz=tz, also=also, digest=digest)
        else:
            body = sep.join(b for b, _n in blocks[start:end])
        title = _title(chunk, digest)
        if fmt is Format.MARKDOWN:  # chat services may render the title as Markdown too
            title = _MD_SPECIAL.sub(r"\\\1", title)
        messages.append(Rendered(title, body, fmt, len(chunk)))
        start = end
    return messages


def _rk(item: AlertItem) -> tuple[str, ...]:
    return item.rules


# -- templates --------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def compile_template(source: str, fmt: Format) -> Any:
    """A per-notifier template in a sandboxed Jinja2 environment.

    Values are escaped for the format on their way out (HTML autoescaping
    for HTML targets, our Markdown or text escaping otherwise), so a title
    can't inject markup whatever the template does with it. Raises
    ``jinja2.TemplateSyntaxError`` (with ``lineno``) for a bad template.
    """
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment
    from markupsafe import Markup

    def finalize(value: object) -> object:
        if isinstance(value, Markup) or not isinstance(value, str):
            return value  # ours, escaped already (links)
        if fmt is Format.HTML:  # autoescaping does the HTML; defuse what it leaves
            return defuse(clean(value))
        return _ESCAPE[fmt](value)

    env = SandboxedEnvironment(
        autoescape=fmt is Format.HTML,
        finalize=finalize,
        undefined=StrictUndefined,
        keep_trailing_newline=False,
    )
    return env.from_string(source)


def _link(link: str | None, fmt: Format) -> object:
    """An entry's own link (http or https only, see parse.safe_link), escaped for the
    format and marked safe, so a template can make a link of it."""
    if link is None:
        return None
    from markupsafe import Markup

    if fmt is Format.HTML:
        return Markup(html.escape(clean(link), quote=True))
    return Markup(_url(link) if fmt is Format.MARKDOWN else clean(link))


def template_context(
    items: Sequence[AlertItem],
    fmt: Format = Format.TEXT,
    *,
    tz: tzinfo = UTC,
    also: Mapping[int, Sequence[str]] | None = None,
    digest: str | None = None,
) -> dict[str, object]:
    """What a template sees (documented in the README)."""
    also = also or {}
    return {
        "digest": digest,
        "count": len(items),
        "rules": _rules_of(items),
        "counts": _counts(items),
        "items": [
            {
                "feed": clean(it.feed),
                "title": _item_title(it),
                "link": _link(it.link, fmt),
                "published": _when(it.published, tz),
                "rules": list(it.rules),
                "terms": list(it.terms),
                "snippet": (
                    {
                        "before": clean(it.snippet.before.lstrip()),
                        "hit": clean(it.snippet.hit),
                        "after": clean(it.snippet.after.rstrip()),
                    }
                    if it.snippet
                    else None
                ),
                "also": _also(it, also),
            }
            for it in items
        ],
    }


def render_template(
    template: Any,
    items: Sequence[AlertItem],
    fmt: Format,
    *,
    tz: tzinfo = UTC,
    also: Mapping[int, Sequence[str]] | None = None,
    digest: str | None = None,
) -> str:
    """The body a per-notifier template makes of ``items``."""
    return str(template.render(template_context(items, fmt, tz=tz, also=also, digest=digest)))


# -- operator notices, old rows, tests ----------------------------------------------


def render_notice(notice: Notice, fmt: Format) -> Rendered:
    """A message for the operator."""
    title = f"[rss-monitor] {clean(notice.subject)}"
    body = _ESCAPE[fmt](notice.text, strip=True)
    if fmt is Format.HTML:
        body = f"<p>{body}</p>"
    return Rendered(defuse(title), body, fmt)


def render_legacy(message: Message, fmt: Format) -> Rendered:
    """A row an earlier version rendered already (all three formats)."""
    body = {Format.TEXT: message.text, Format.MARKDOWN: message.markdown, Format.HTML: message.html}
    return Rendered(message.title, body[fmt], fmt)


def test_message(notifier: str, now: datetime, fmt: Format = Format.TEXT) -> Rendered:
    """The message ``monitor test-notify`` sends."""
    text = f"Test message from rss-monitor to notifier {notifier!r} at {_when(now, UTC)}."
    body = _ESCAPE[fmt](text)
    return Rendered(
        "[rss-monitor] test notification", f"<p>{body}</p>" if fmt is Format.HTML else body, fmt
    )


test_message.__test__ = False  # type: ignore[attr-defined]  # not a pytest test
