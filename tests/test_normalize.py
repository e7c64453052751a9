"""normalize() and prepare(): the text every match sees."""

from __future__ import annotations

import pytest

from monitor.normalize import normalize, prepare

PLAIN = [
    # (input, expected)
    ("DeepSeek", "deepseek"),
    ("  Viele   Leerzeichen\n\tund\r\nZeilen  ", "viele leerzeichen und zeilen"),
    ("Straße", "strasse"),
    ("GROSSE", "grosse"),
    ("ＤｅｅｐＳｅｅｋ", "deepseek"),  # NFKC: full width
    ("ﬁnance", "finance"),  # NFKC: ligature
    ("Cafe\u0301", "café"),  # NFKC: composed
    ("R²", "r2"),
    ("Deep\u00adSeek", "deepseek"),  # soft hyphen
    ("Deep\u200bSe\u200cek\u200d", "deepseek"),  # zero-width
    ("\ufeffBOM", "bom"),
    ("DeepSeek’s", "deepseek's"),
    ("DeepSeek‘s ʼn `x´", "deepseek's 'n 'x'"),
    ("KI–Modelle — neu ‑ jetzt − 2", "ki-modelle - neu - jetzt - 2"),
    ("GroÃŸinvestor", "grossinvestor"),  # mojibake
    ("MÃ¼nchen und KÃ¶ln", "münchen und köln"),
    ("Ã„rger", "ärger"),
    ("München, Köln, Gruß“", "münchen, köln, gruss“"),  # precheck hit, ftfy leaves it
    ("a\u00a0b", "a b"),  # NBSP is white space
    ("", ""),
]


@pytest.mark.parametrize(("raw", "expected"), PLAIN)
def test_normalize_plain_text(raw: str, expected: str) -> None:
    assert normalize(raw) == expected


HTML = [
    ("<p>Über <b>DeepSeek</b></p>", "über deepseek"),
    ("Deep<wbr>Seek", "deepseek"),
    ("<p>eins</p><p>zwei</p>", "eins zwei"),
    ("eins<br/>zwei", "eins zwei"),
    ("<ul><li>a</li><li>b</li></ul>", "a b"),
    ("<b>Deep</b>Seek", "deepseek"),
    ("<script>var x = 'DeepSeek';</script>Text", "text"),
    ("<style>p { color: red }</style>Text", "text"),
    ("<!-- geheim -->sichtbar", "sichtbar"),
    ('<a href="https://x.example/DeepSeek" title="T">Link</a>', "link"),
    ('<img alt="Bild" src="a.png">Text', "text"),
    ("AT&amp;T &amp; Co", "at&t & co"),  # entities without '<'
    ("Deep&shy;Seek", "deepseek"),
    ("&lt;b&gt;nicht fett&lt;/b&gt;", "<b>nicht fett</b>"),
    ("a < b", "a < b"),
    ('<?xml version="1.0" encoding="utf-8"?><p>x</p>', "x"),
    ("<p></p>", ""),
    ("<", "<"),
]


@pytest.mark.parametrize(("raw", "expected"), HTML)
def test_normalize_html_keeps_only_visible_text(raw: str, expected: str) -> None:
    assert normalize(raw, html=True) == expected


def test_html_flag_off_keeps_markup_as_text() -> None:
    assert normalize("<b>x</b>") == "<b>x</b>"


def test_normalize_is_idempotent() -> None:
    for raw, _ in PLAIN + HTML:
        once = normalize(raw)
        assert normalize(once) == once


def test_prepare_normalizes_every_field_and_joins_categories() -> None:
    doc = prepare(
        title="<b>DeepSeek</b> R1",
        summary="Zusammen&shy;fassung",
        content="<p>Inhalt</p>",
        author="Anna <b>Müller</b>",
        categories=("KI", "Cloud Computing"),
        link="https://Example.com/A",
    )
    assert dict(doc.fields) == {
        "title": "deepseek r1",
        "summary": "zusammenfassung",
        "content": "inhalt",
        "author": "anna <b>müller</b>",  # not an HTML field by default
        "categories": "ki ; cloud computing",
        "link": "https://example.com/a",
    }


def test_prepare_html_fields_choose_which_fields_are_html() -> None:
    doc = prepare(title="<b>x</b>", summary="<b>y</b>", content="", html_fields=frozenset())
    assert doc.fields["title"] == "<b>x</b>"
    assert doc.fields["summary"] == "<b>y</b>"


def test_a_worker_keeps_nothing_of_the_entries_it_has_matched() -> None:
    """A pool worker analyzes thousands of entries an hour, each once. Their normalized
    documents were kept in a cache without bound (an article's text, twice, per entry):
    the workers of a 100,000-feed soak grew by 30 MB a minute until recycled."""
    import gc
    import tracemalloc

    from monitor.analyze import analyze
    from monitor.types import FeedEntry, RuleSpec

    rules = (RuleSpec(name="ds", keywords=("DeepSeek",)),)
    article = "Die KI-Modelle von DeepSeek laufen jetzt auf Azure. " * 80  # 4 KB

    def entries(start: int) -> list[FeedEntry]:
        return [
            FeedEntry(
                identity=f"e{n}",
                guid=f"e{n}",
                link=f"https://news.example/{n}",
                title=f"Meldung {n}",
                summary=f"<p>Zusammenfassung {n}</p>",
                content="",
                published=None,
            )
            for n in range(start, start + 20)
        ]

    analyze(rules, entries(0), {}, "Feed", ())  # compiles the rules once, imports lxml
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for call in range(1, 11):  # 200 entries, each with its own article text
            batch = entries(call * 20)
            texts = {e.identity: f"{e.identity}: {article}" for e in batch}
            assert all(a.matches for a in analyze(rules, batch, texts, "Feed", ()))
            del batch, texts
        gc.collect()
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert kept < 300_000, f"{kept:,} bytes kept after 200 entries"
