"""Alert messages: title format, snippet emphasis, and escaping of hostile feed text."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from monitor.render import html_escape, md_escape, render
from monitor.types import FeedEntry, Hit, Message, RuleMatch, Snippet

WJ = "\u2060"  # the word joiner that breaks mentions
WHEN = datetime(2025, 1, 20, 13, 30, tzinfo=UTC)


def _entry(title: str = "DeepSeek releases R1", link: str | None = "https://ex.com/a") -> FeedEntry:
    return FeedEntry(
        identity="id", guid=None, link=link, title=title, summary="", content="", published=WHEN
    )


def _match(rule: str, *terms: str) -> RuleMatch:
    return RuleMatch(rule, tuple(Hit(t, "title", 0, len(t)) for t in terms))


def _render(
    title: str = "DeepSeek releases R1",
    *,
    link: str | None = "https://ex.com/a",
    feed: str = "Example",
    snippet: Snippet | None = None,
    matches: tuple[RuleMatch, ...] = (),
) -> Message:
    return render(
        feed=feed,
        entry=_entry(title, link),
        matches=matches or (_match("DeepSeek", "DeepSeek"),),
        snippet=snippet,
    )


# --------------------------------------------------------------------------
# the title


@pytest.mark.parametrize(
    ("rules", "title", "expected"),
    [
        (("DeepSeek",), "DeepSeek releases R1", "[DeepSeek] DeepSeek releases R1"),
        (("DeepSeek", "Azure AI"), "Both at once", "[DeepSeek, Azure AI] Both at once"),
        (("R",), "  spaced\n\tout  title ", "[R] spaced out title"),
        (("R",), "@everyone look", f"[R] @{WJ}everyone look"),
        (("R",), "", "[R] https://ex.com/a"),  # untitled: the link stands in
    ],
)
def test_title_names_every_matched_rule(rules: tuple[str, ...], title: str, expected: str) -> None:
    msg = _render(title, matches=tuple(_match(r, "x") for r in rules))
    assert msg.title == expected


def test_untitled_entry_without_link_is_marked() -> None:
    assert _render("", link=None).title == "[DeepSeek] (untitled)"


# --------------------------------------------------------------------------
# escaping

HOSTILE = [
    "@everyone",
    "@here and @channel",
    "<@123456789>",
    "<@&987>",
    "[click](javascript:alert(1))",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "**bold** _it_ `code` ~~strike~~ # heading | table > quote",
    "![img](https://evil.example/track.png)",
]


def _visible_markdown_links(md: str) -> list[str]:
    """Targets of Markdown links or images that a renderer would honour (unescaped '[')."""
    return re.findall(r"(?<!\\)\[(?:\\.|[^\]\\])*\]\(((?:\\.|[^)\\])*)\)", md)


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_escaping_leaves_no_markup_and_no_mentions(text: str) -> None:
    out = md_escape(text)
    assert "@" not in out.replace("@" + WJ, "")  # every @ is defused
    assert _visible_markdown_links(out) == []
    for ch in "*_`[]()<>#|!~":
        assert re.search(r"(?<!\\)" + re.escape(ch), out) is None, (ch, out)


@pytest.mark.parametrize("text", HOSTILE)
def test_html_escaping_leaves_no_tags_and_no_mentions(text: str) -> None:
    out = html_escape(text)
    assert "<" not in out and ">" not in out and '"' not in out
    assert "@" not in out.replace("@" + WJ, "")


def test_hostile_title_in_a_whole_message() -> None:
    title = "@everyone <@123> [x](javascript:alert(1)) <b>hi</b>"
    msg = _render(title, feed="Feed *name* @here")
    md_lines = msg.markdown.split("\n\n")
    # the only link in the Markdown body is the entry's own
    assert _visible_markdown_links(msg.markdown) == ["https://ex.com/a"]
    assert md_lines[0] == f"**Feed \\*name\\* @{WJ}here** · 2025-01-20 13:30 UTC"
    assert "javascript" not in msg.html.split('href="')[1].split('"')[0]
    assert "<b>hi</b>" not in msg.html and "&lt;b&gt;hi&lt;/b&gt;" in msg.html
    assert f"@{WJ}everyone" in msg.title and f"<@{WJ}123>" in msg.title
    for body in (msg.title, msg.markdown, msg.html, msg.text):
        assert "@everyone" not in body and "<@123>" not in body and "@here" not in body


# --------------------------------------------------------------------------
# links


@pytest.mark.parametrize(
    ("link", "markdown_target"),
    [
        ("https://ex.com/a", "https://ex.com/a"),
        ("https://en.wikipedia.org/wiki/Foo_(bar)", "https://en.wikipedia.org/wiki/Foo_%28bar%29"),
        ("https://ex.com/a b", "https://ex.com/a%20b"),
        ("https://ex.com/?q=1&r=2#frag", "https://ex.com/?q=1&r=2#frag"),
        ('https://ex.com/<x>"', "https://ex.com/%3Cx%3E%22"),
        ("https://ex.com/caf%C3%A9", "https://ex.com/caf%C3%A9"),  # not escaped twice
        ("https://ex.com/café", "https://ex.com/caf%C3%A9"),
    ],
)
def test_markdown_link_target_is_percent_escaped(link: str, markdown_target: str) -> None:
    msg = _render(link=link)
    assert f"]({markdown_target})" in msg.markdown
    assert _visible_markdown_links(msg.markdown) == [markdown_target]


def test_html_link_attribute_is_quoted() -> None:
    msg = _render(link='https://ex.com/"><script>x</script>')
    assert '<a href="https://ex.com/&quot;&gt;&lt;script&gt;x&lt;/script&gt;">' in msg.html


def test_no_link_means_no_link_line() -> None:
    msg = _render(link=None)
    assert "](" not in msg.markdown and "<a " not in msg.html
    assert msg.text.splitlines()[1].startswith("Matched:")


# --------------------------------------------------------------------------
# snippet and terms


def test_snippet_emphasises_the_hit_and_keeps_word_spacing() -> None:
    snip = Snippet("summary", "…die Firma ", "DeepSeek", " hat ein <neues> Modell…")
    msg = _render(snippet=snip)
    assert "> …die Firma **DeepSeek** hat ein \\<neues\\> Modell…" in msg.markdown
    assert (
        "<blockquote>…die Firma <mark><b>DeepSeek</b></mark> hat ein &lt;neues&gt; "
        "Modell…</blockquote>" in msg.html
    )
    assert "  …die Firma »DeepSeek« hat ein <neues> Modell…" in msg.text


def test_hostile_hit_text_cannot_break_out_of_the_emphasis() -> None:
    snip = Snippet("title", "a ", "**@everyone**", " b")
    msg = _render(snippet=snip)
    assert f"a **\\*\\*@{WJ}everyone\\*\\*** b" in msg.markdown


def test_matched_terms_are_listed_per_rule() -> None:
    msg = _render(matches=(_match("AI", "KI", "AI", "KI"), _match("Azure", "Azure")))
    assert msg.markdown.endswith("Matched: AI (KI, AI); Azure (Azure)")
    assert msg.html.endswith("<p>Matched: <b>AI</b> (KI, AI); <b>Azure</b> (Azure)</p>")
    assert msg.text.endswith("Matched: AI (KI, AI); Azure (Azure)")


def test_published_time_or_unknown() -> None:
    assert "2025-01-20 13:30 UTC" in _render().markdown
    undated = render(
        feed="F",
        entry=FeedEntry("i", None, None, "t", "", ""),
        matches=(_match("R", "t"),),
        snippet=None,
    )
    assert "date unknown" in undated.markdown
