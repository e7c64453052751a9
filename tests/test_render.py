"""Alert messages: one format per target, groups and digests, size limits, templates, and
hostile feed text that must not inject markup, links, mentions or control characters."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from monitor.render import (
    WJ,
    Format,
    clean,
    compile_template,
    html_escape,
    md_escape,
    render_group,
    render_notice,
    text_escape,
)
from monitor.types import AlertItem, Notice, Snippet

WHEN = datetime(2025, 1, 20, 13, 30, tzinfo=UTC)


def _item(
    title: str = "DeepSeek releases R1",
    *,
    link: str | None = "https://ex.com/a",
    feed: str = "Example",
    rules: tuple[str, ...] = ("DeepSeek",),
    terms: tuple[str, ...] = ("DeepSeek",),
    snippet: Snippet | None = None,
    entry: int = 0,
    published: datetime | None = WHEN,
) -> AlertItem:
    return AlertItem(feed, title, link, published, rules, terms, snippet, entry=entry)


def _one(item: AlertItem, fmt: Format, **kw: object) -> tuple[str, str]:
    (message,) = render_group([item], fmt, **kw)  # type: ignore[arg-type]
    assert message.count == 1 and message.format is fmt
    return message.title, message.body


def _visible_markdown_links(md: str) -> list[str]:
    """Targets of Markdown links or images that a renderer would honour (unescaped '[')."""
    return re.findall(r"(?<!\\)\[(?:\\.|[^\]\\])*\]\(((?:\\.|[^)\\])*)\)", md)


# --------------------------------------------------------------------------
# the title


@pytest.mark.parametrize(
    ("rules", "title", "expected"),
    [
        (("DeepSeek",), "DeepSeek releases R1", "[DeepSeek] DeepSeek releases R1"),
        (("DeepSeek", "Azure AI"), "Both at once", "[DeepSeek, Azure AI] Both at once"),
        (("R",), "  spaced\n\tout  title ", "[R] spaced out title"),
        (("R",), "@everyone look", f"[R] @{WJ}everyone look"),
        (("R",), "Header\r\nBcc: victim@example.com", f"[R] Header Bcc: victim@{WJ}example.com"),
        (("R",), "", "[R] https://ex.com/a"),  # untitled: the link stands in
    ],
)
def test_title_names_the_rules_routed_to_the_notifier(
    rules: tuple[str, ...], title: str, expected: str
) -> None:
    got, _ = _one(_item(title, rules=rules), Format.HTML)
    assert got == expected.replace("https://ex.com/a", f"https:{WJ}//ex.com/a")


def test_untitled_entry_without_link_is_marked() -> None:
    assert _one(_item("", link=None), Format.TEXT)[0] == "[DeepSeek] (untitled)"


def test_markdown_title_is_escaped_too() -> None:
    title, _ = _one(_item("*bold* [x](https://evil.example)"), Format.MARKDOWN)
    assert _visible_markdown_links(title) == []
    assert "\\*bold\\*" in title


# --------------------------------------------------------------------------
# escaping

HOSTILE = [
    "@everyone",
    "@here and @channel",
    "<@123456789>",
    "<@&987>",
    "<!channel> <!here>",
    "[click](javascript:alert(1))",
    "<script>alert(1)</script>",
    "<img src=x onerror=alert(1)>",
    "**bold** _it_ `code` ~~strike~~ # heading | table > quote",
    "![img](https://evil.example/track.png)",
    "visit https://evil.example/login now",
    "\x1b[31mred\x1b[0m \x1b]8;;https://evil.example\x07link\x1b]8;;\x07",
    "invoice\u202egnp.exe and \u2066isolate\u2069 \u200fmark",
    "line one\r\nline two\x00\x07\x7f",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_escaping_leaves_no_markup_mentions_or_controls(text: str) -> None:
    out = md_escape(text)
    assert "@" not in out.replace("@" + WJ, "")  # every @ is defused
    assert _visible_markdown_links(out) == []
    for ch in "*_`[]()<>#|!~":
        assert re.search(r"(?<!\\)" + re.escape(ch), out) is None, (ch, out)
    _no_controls(out)


@pytest.mark.parametrize("text", HOSTILE)
def test_html_escaping_leaves_no_tags_mentions_or_controls(text: str) -> None:
    out = html_escape(text)
    assert "<" not in out and ">" not in out and '"' not in out
    assert "@" not in out.replace("@" + WJ, "")
    _no_controls(out)


@pytest.mark.parametrize("text", HOSTILE)
def test_plain_text_has_no_mentions_links_or_controls_and_no_markdown_escapes(text: str) -> None:
    out = text_escape(text)
    assert "@" not in out.replace("@" + WJ, "")
    assert "://" not in out  # no chat client makes a link of it
    assert "\\" not in out
    _no_controls(out)


def _no_controls(out: str) -> None:
    assert not re.search(
        r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200e\u200f]", out
    )
    assert "\n" not in out


def test_generic_webhooks_get_plain_text_without_markdown_escapes() -> None:
    item = _item(
        "Neue DeepSeek-Artikel: jetzt kaufen.",
        snippet=Snippet("title", "Neue ", "DeepSeek", "-Artikel: jetzt kaufen."),
    )
    _, body = _one(item, Format.TEXT)
    assert "DeepSeek-Artikel: jetzt kaufen." in body and "\\" not in body
    assert "  Neue »DeepSeek«-Artikel: jetzt kaufen." in body


def test_a_whole_message_with_hostile_feed_text_in_every_format() -> None:
    item = _item(
        "@everyone <@123> [x](javascript:alert(1)) <b>hi</b>",
        feed="Feed *name* @here",
        snippet=Snippet("title", "see https://evil.example and ", "DeepSeek", " <b>x</b>"),
    )
    title, md = _one(item, Format.MARKDOWN)
    assert _visible_markdown_links(md) == ["https://ex.com/a"]  # only the entry's own link
    assert md.splitlines()[0] == f"**Feed \\*name\\* @{WJ}here** · 2025-01-20 13:30 UTC"
    _, html = _one(item, Format.HTML)
    assert re.findall(r'href="([^"]*)"', html) == ["https://ex.com/a"]
    assert "<b>hi</b>" not in html and "&lt;b&gt;hi&lt;/b&gt;" in html
    _, text = _one(item, Format.TEXT)
    for body in (title, md, html, text):
        assert "@everyone" not in body and "<@123>" not in body and "@here" not in body
        assert "https://evil.example" not in body


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
    _, md = _one(_item(link=link), Format.MARKDOWN)
    assert f"]({markdown_target})" in md
    assert _visible_markdown_links(md) == [markdown_target]


def test_html_link_attribute_is_quoted_and_the_link_is_written_out_for_the_text_part() -> None:
    _, html = _one(_item(link='https://ex.com/"><script>x</script>'), Format.HTML)
    quoted = "https://ex.com/&quot;&gt;&lt;script&gt;x&lt;/script&gt;"
    assert f'<a href="{quoted}">' in html
    assert f"<small>{quoted}</small>" in html  # visible: email's text part keeps it


def test_no_link_means_no_link_line() -> None:
    _, md = _one(_item(link=None), Format.MARKDOWN)
    _, html = _one(_item(link=None), Format.HTML)
    _, text = _one(_item(link=None), Format.TEXT)
    assert "](" not in md and "<a " not in html
    assert text.splitlines()[2].startswith("Matched:")


# --------------------------------------------------------------------------
# snippet, terms, times


def test_snippet_emphasises_the_hit_and_keeps_word_spacing() -> None:
    item = _item(snippet=Snippet("summary", "…die Firma ", "DeepSeek", " hat ein <neues> Modell…"))
    assert "> …die Firma **DeepSeek** hat ein \\<neues\\> Modell…" in _one(item, Format.MARKDOWN)[1]
    assert (
        "<blockquote>…die Firma <mark><b>DeepSeek</b></mark> hat ein &lt;neues&gt; "
        "Modell…</blockquote>" in _one(item, Format.HTML)[1]
    )
    assert "  …die Firma »DeepSeek« hat ein <neues> Modell…" in _one(item, Format.TEXT)[1]


def test_hostile_hit_text_cannot_break_out_of_the_emphasis() -> None:
    item = _item(snippet=Snippet("title", "a ", "**@everyone**", " b"))
    assert f"a **\\*\\*@{WJ}everyone\\*\\*** b" in _one(item, Format.MARKDOWN)[1]


def test_matched_rules_and_terms_are_listed() -> None:
    item = _item(rules=("AI", "Azure"), terms=("KI", "AI", "Azure"))
    assert _one(item, Format.MARKDOWN)[1].endswith("Matched: AI, Azure (KI, AI, Azure)")
    assert _one(item, Format.HTML)[1].endswith("<p>Matched: <b>AI, Azure</b> (KI, AI, Azure)</p>")
    assert _one(item, Format.TEXT)[1].endswith("Matched: AI, Azure (KI, AI, Azure)")


def test_published_time_in_utc_or_the_notifiers_timezone_or_unknown() -> None:
    assert "2025-01-20 13:30 UTC" in _one(_item(), Format.TEXT)[1]
    berlin = _one(_item(), Format.TEXT, tz=ZoneInfo("Europe/Berlin"))[1]
    assert "2025-01-20T14:30+01:00" in berlin
    assert "date unknown" in _one(_item(published=None), Format.TEXT)[1]


def test_also_reported_by_lists_the_other_outlets() -> None:
    item = _item(entry=7)
    _, body = _one(item, Format.TEXT, also={7: ["golem.de", "t3n @here"]})
    assert body.endswith(f"Also reported by: golem.de, t3n @{WJ}here")


# --------------------------------------------------------------------------
# groups, digests and size limits


def test_a_burst_for_one_rule_is_one_message_in_order() -> None:
    items = [_item(f"DeepSeek Meldung {i}", link=f"https://ex.com/{i}") for i in range(40)]
    (message,) = render_group(items, Format.HTML)
    assert message.count == 40
    assert message.title == "[DeepSeek] 40 new articles: DeepSeek Meldung 0 (+39)"
    positions = [message.body.index(f'https://ex.com/{i}"') for i in range(40)]
    assert positions == sorted(positions)


def test_a_group_of_several_rule_sets_has_a_heading_per_rule_set() -> None:
    items = [_item("a", rules=("DeepSeek",)), _item("b", rules=("Azure",)), _item("c")]
    (message,) = render_group(items, Format.TEXT)
    assert message.title == "[DeepSeek, Azure] 3 new articles: a (+2)"
    assert "== DeepSeek (2) ==" in message.body and "== Azure (1) ==" in message.body


def test_a_size_limit_splits_a_group_and_every_item_is_in_exactly_one_message() -> None:
    items = [_item(f"Meldung {i:02}", link=f"https://ex.com/{i}") for i in range(30)]
    messages = render_group(items, Format.MARKDOWN, max_body=1000)
    assert len(messages) > 1
    assert sum(m.count for m in messages) == 30
    assert all(len(m.body) <= 1000 for m in messages)
    found = [n for m in messages for n in re.findall(r"Meldung (\d\d)", m.body)]
    assert found == [f"{i:02}" for i in range(30)]


def test_a_digest_is_grouped_by_rules_with_a_count_per_rule() -> None:
    items = sorted(
        [
            _item("a"),
            _item("b", rules=("Azure",)),
            _item("c"),
            _item("d", rules=("DeepSeek", "Azure")),
        ],
        key=lambda it: it.rules,
    )
    (message,) = render_group(items, Format.TEXT, digest="Daily digest")
    assert message.title.startswith("[Azure, DeepSeek] Daily digest: 4 articles (")
    assert "Azure 2" in message.title and "DeepSeek 3" in message.title
    assert "== DeepSeek (2) ==" in message.body
    assert "== Azure (1) ==" in message.body
    assert "== DeepSeek, Azure (1) ==" in message.body


# --------------------------------------------------------------------------
# templates


def test_a_template_gets_the_items_escaped_for_the_format() -> None:
    source = "{% for it in items %}* {{ it.title }} <{{ it.link }}>\n{% endfor %}{{ count }} new"
    item = _item("<b>@everyone</b> [x](https://evil.example)")
    html = render_group([item], Format.HTML, template=compile_template(source, Format.HTML))
    assert "&lt;b&gt;" in html[0].body and "<b>" not in html[0].body
    md = render_group([item], Format.MARKDOWN, template=compile_template(source, Format.MARKDOWN))
    assert "<https://ex.com/a>" in md[0].body  # the entry's own link, usable as a link
    assert _visible_markdown_links(md[0].body) == []
    assert md[0].body.endswith("1 new")
    for m in (html[0], md[0]):
        assert "@everyone" not in m.body


def test_a_template_runs_in_a_sandbox() -> None:
    from jinja2.exceptions import SecurityError

    bad = compile_template("{{ items.__class__.__mro__ }}", Format.TEXT)
    with pytest.raises(SecurityError):
        render_group([_item()], Format.TEXT, template=bad)


def test_a_broken_template_is_an_error_with_its_line() -> None:
    from jinja2 import TemplateSyntaxError

    with pytest.raises(TemplateSyntaxError) as info:
        compile_template("line one\nline two\n{{ x ) }}", Format.TEXT)
    assert info.value.lineno == 3


# --------------------------------------------------------------------------
# notices


def test_operator_notice_is_escaped_like_feed_text() -> None:
    notice = Notice("feed_failing", "feed <x> failing", "The feed 'x' failed: @here\r\nboom")
    for fmt in Format:
        message = render_notice(notice, fmt)
        assert message.title == "[rss-monitor] feed <x> failing"
        assert "@here" not in message.body and "\r" not in message.body


def test_clean_removes_controls_and_keeps_text() -> None:
    assert clean("  a\x1b[1mb\x1b[0m\u202ec\n d ") == "abc d"
    assert clean("x\ny", one_line=False) == "x\ny"
