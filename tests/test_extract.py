"""Tests for monitor.extract: fixture pages, encodings, metadata, hostile inputs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from monitor.extract import decode_html, extract, extract_text
from monitor.types import Article

DATA = Path(__file__).parent / "data" / "extract"


@dataclass(frozen=True)
class PageCase:
    file: str
    must_contain: tuple[str, ...]
    must_not_contain: tuple[str, ...]
    title: str
    language: str
    published: datetime


PAGES = [
    PageCase(
        file="heise_like_de.html",
        must_contain=(
            "Ein Großinvestor hat sich mit knapp zehn Prozent",
            "Neue Fabrik in Sachsen",  # subheading kept
            "Investitionsvolumen: rund 2 Milliarden Euro\nNeue Arbeitsplätze: etwa 1200",
            "Q1 | 410 Millionen Euro",  # table row as a line
            "über die Bund und Land noch verhandeln.",  # text after the teaser box
        ),
        must_not_contain=(
            "DeepSeek",  # only in the "Meistgelesen" sidebar and a script
            "Azure",
            "Meistgelesen",
            "Lesen Sie auch",
            "Quantencomputer",
            "Das könnte Sie auch interessieren",
            "Cookies",
            "Newsletter",
            "Weiterlesen mit unserem Abo",
            "Kommentare",
            "viel zu spät",  # comment text
            "Bild: Pressestelle",  # image credit
            "Alle Rechte vorbehalten",
            "Erika Mustermann",  # byline
            "Start",  # navigation
        ),
        title="Großinvestor steigt bei Chiphersteller ein",
        language="de",
        published=datetime(2024, 3, 5, 8, 30, tzinfo=UTC),
    ),
    PageCase(
        file="golem_like_en.html",
        must_contain=(
            "A configuration change took down storage services",
            "What customers should do",
            "caf\u00e9 payment terminals",  # iso-8859-1 byte decoded via <meta>
        ),
        must_not_contain=(
            "Quantum",  # only in "Most read" and "Related"
            "Most read",
            "Read more",
            "Share on",
            "First! This always happens",
            "All rights reserved",
            "Log in",
            "World",
            "Cloud outage hits European customers",  # the headline is the title, not text
        ),
        title="Cloud outage hits European customers",
        language="en",
        published=datetime(2024, 6, 1, 14, 0, tzinfo=UTC),
    ),
]


@pytest.mark.parametrize("case", PAGES, ids=lambda c: c.file)
def test_fixture_page_keeps_article_and_drops_boilerplate(case: PageCase) -> None:
    article = extract((DATA / case.file).read_bytes(), "https://example.com/" + case.file)
    for wanted in case.must_contain:
        assert wanted in article.text
    for unwanted in case.must_not_contain:
        assert unwanted not in article.text


@pytest.mark.parametrize("case", PAGES, ids=lambda c: c.file)
def test_fixture_page_metadata_comes_from_structured_data(case: PageCase) -> None:
    article = extract((DATA / case.file).read_bytes(), "https://example.com/" + case.file)
    assert (article.title, article.language, article.published) == (
        case.title,
        case.language,
        case.published,
    )


def test_paragraphs_are_separated_by_blank_lines() -> None:
    article = extract((DATA / "heise_like_de.html").read_bytes(), "https://example.com/a")
    assert "im frühen Handel deutlich zu.\n\nDer Einstieg war" in article.text


def test_jsonld_article_body_stands_in_when_the_page_body_is_empty() -> None:
    body = (
        '<html><head><script type="application/ld+json">{"@type": "NewsArticle", '
        '"articleBody": "' + "Der Text steht nur in den strukturierten Daten. " * 10 + '"}'
        "</script></head><body><div id='app'></div></body></html>"
    ).encode()
    assert "nur in den strukturierten Daten" in extract(body, "https://example.com/a").text


ENCODINGS = [
    # (body, headers, expected substring)
    ("<p>Größe</p>".encode("cp1252"), {"Content-Type": "text/html; charset=windows-1252"}, "Größe"),
    ("<p>Größe</p>".encode(), {"Content-Type": "text/html; charset=ISO-8859-1"}, "Größe"),
    (
        b"\xef\xbb\xbf<p>Gr\xc3\xb6\xc3\x9fe</p>",
        {"content-type": "text/html; charset=cp1252"},
        "Größe",
    ),
    ('<meta charset="iso-8859-1"><p>Größe</p>'.encode("latin-1"), None, "Größe"),
    (
        '<meta http-equiv="Content-Type" content="text/html; charset=koi8-r"><p>Привет</p>'.encode(
            "koi8-r"
        ),
        None,
        "Привет",
    ),
    ("<p>GroÃŸinvestor</p>".encode(), None, "Großinvestor"),
    ("<p>Größe</p>".encode("utf-16"), None, "Größe"),
]


@pytest.mark.parametrize(("body", "headers", "expected"), ENCODINGS)
def test_decode_html_picks_the_right_encoding(
    body: bytes, headers: dict[str, str] | None, expected: str
) -> None:
    assert expected in decode_html(body, headers)


def test_decode_html_leaves_clean_text_alone() -> None:
    assert decode_html("<p>Ã la carte</p>".encode()) != ""
    assert decode_html("<p>naïve café</p>".encode()) == "<p>naïve café</p>"


def test_extract_text_accepts_decoded_html() -> None:
    html = "<html><body><p>" + "Ein Satz über Großinvestoren, der lang genug ist. " * 5
    assert "Großinvestoren" in extract_text(html + "</p></body></html>")


HOSTILE_INPUTS = {
    "empty": b"",
    "binary": bytes(range(256)) * 400,
    "truncated": b"<html><body><article><p>Cut off in the middle of a sentence that goes on",
    "deep_nesting": b"<html><body>" + b"<div>" * 100_000 + b"deep text" + b"</div>" * 100_000,
    "huge_text": b"<html><body><p>" + b"word, " * 3_500_000 + b"</p></body></html>",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_INPUTS))
def test_hostile_page_gives_an_article_without_raising(name: str) -> None:
    # extract() also catches internally; calling the pieces proves no path raises.
    article = extract(HOSTILE_INPUTS[name], "https://example.com/a")
    assert isinstance(article, Article)
    assert extract_text(decode_html(HOSTILE_INPUTS[name])) == article.text


def test_truncated_page_gives_the_partial_text() -> None:
    assert "Cut off in the middle" in extract(HOSTILE_INPUTS["truncated"], "https://e.com").text


def test_huge_page_gives_bounded_partial_text() -> None:
    text = extract(HOSTILE_INPUTS["huge_text"], "https://example.com/a").text
    assert text.startswith("word, word")
    assert len(text) < len(HOSTILE_INPUTS["huge_text"])


def test_empty_and_binary_pages_give_empty_text() -> None:
    assert extract(b"", "https://example.com/a") == Article(title=None, text="")
    assert extract(HOSTILE_INPUTS["binary"], "https://example.com/a").text.strip() == ""
