"""Alerts as messages: Markdown for chat, HTML and text for email (pure).

Text from feeds is untrusted: it is escaped for the markup it lands in, and
``@`` is defused so an entry titled ``@everyone`` can't ping a whole channel.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import quote

from monitor.types import FeedEntry, Message, RuleMatch, Snippet

_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<])")
_WORD_JOINER = "\u2060"
_SPACE = re.compile(r"\s+")


def _defuse(text: str, strip: bool = True) -> str:
    """Stop mentions (@channel, @here, <@id>) from pinging anyone."""
    text = _SPACE.sub(" ", text)
    return (text.strip() if strip else text).replace("@", "@" + _WORD_JOINER)


def md_escape(text: str, strip: bool = True) -> str:
    """Escape feed text for Markdown chat targets."""
    return _MD_SPECIAL.sub(r"\\\1", _defuse(text, strip))


def html_escape(text: str, strip: bool = True) -> str:
    """Escape feed text for the HTML email body."""
    return html.escape(_defuse(text, strip), quote=True)


def _url(link: str) -> str:
    # Parentheses and spaces would end a Markdown link early.
    return quote(link, safe=":/?#@!$&'*+,;=%~[]")


def _when(published: datetime | None) -> str:
    return published.strftime("%Y-%m-%d %H:%M UTC") if published else "date unknown"


def _terms(matches: Sequence[RuleMatch]) -> list[tuple[str, tuple[str, ...]]]:
    return [(m.rule, m.terms) for m in matches]


def render(
    *,
    feed: str,
    entry: FeedEntry,
    matches: Sequence[RuleMatch],
    snippet: Snippet | None,
) -> Message:
    """The alert for one entry, naming every rule that matched (SPEC section 6)."""
    rules = ", ".join(m.rule for m in matches)
    title_text = entry.title or entry.link or "(untitled)"
    title = f"[{_defuse(rules)}] {_defuse(title_text)}"
    when = _when(entry.published)
    terms = _terms(matches)

    # The snippet's parts keep the spaces at their edges, or the words around
    # the hit would be glued to it.
    before, after = (snippet.before.lstrip(), snippet.after.rstrip()) if snippet else ("", "")
    md = [f"**{md_escape(feed)}** · {when}"]
    if entry.link:
        md.append(f"[{md_escape(title_text)}]({_url(entry.link)})")
    if snippet:
        md.append(
            "> "
            + md_escape(before, strip=False)
            + f"**{md_escape(snippet.hit)}**"
            + md_escape(after, strip=False)
        )
    md.append(
        "Matched: "
        + "; ".join(f"{md_escape(r)} ({', '.join(md_escape(t) for t in ts)})" for r, ts in terms)
    )

    ht = [f"<p><b>{html_escape(feed)}</b> · {when}</p>"]
    if entry.link:
        ht.append(
            f'<p><a href="{html.escape(entry.link, quote=True)}">{html_escape(title_text)}</a></p>'
        )
    if snippet:
        ht.append(
            "<blockquote>"
            + html_escape(before, strip=False)
            + f"<mark><b>{html_escape(snippet.hit)}</b></mark>"
            + html_escape(after, strip=False)
            + "</blockquote>"
        )
    ht.append(
        "<p>Matched: "
        + "; ".join(
            f"<b>{html_escape(r)}</b> ({', '.join(html_escape(t) for t in ts)})" for r, ts in terms
        )
        + "</p>"
    )

    tx = [f"{_defuse(feed)} · {when}"]
    if entry.link:
        tx.append(entry.link)
    if snippet:
        tx.append(f"  {_defuse(before, False)}»{_defuse(snippet.hit)}«{_defuse(after, False)}")
    tx.append("Matched: " + "; ".join(f"{r} ({', '.join(ts)})" for r, ts in terms))

    return Message(
        title=title,
        markdown="\n\n".join(md),
        html="\n".join(ht),
        text="\n".join(tx),
    )


def test_message(notifier: str, now: datetime) -> Message:
    """The message ``monitor test-notify`` sends."""
    text = f"Test message from rss-monitor to notifier {notifier!r} at {_when(now)}."
    return Message(
        title="[rss-monitor] test notification",
        markdown=md_escape(text),
        html=f"<p>{html_escape(text)}</p>",
        text=text,
    )
