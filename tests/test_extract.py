"""Tests for monitor.extract: fixture pages, encodings, hostile inputs."""

from __future__ import annotations

import time

import pytest

from monitor.extract import decode_html, extract, extract_text
from monitor.types import Article

HOSTILE_INPUTS = {
    "empty": b"",
    "binary": bytes(range(256)) * 400,
    "truncated": b"<html><body><article><p>Cut off in the mid",
    "deep_nesting": b"<html><body>" + b"<div>" * 100_000 + b"deep text" + b"</div>" * 100_000,
    "huge_text": b"<html><body><p>" + b"word " * 4_000_000 + b"</p></body></html>",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_INPUTS))
def test_hostile_page_gives_article_without_raising(name: str) -> None:
    article = extract(HOSTILE_INPUTS[name], "https://example.com/a")
    assert isinstance(article, Article)
    assert isinstance(article.text, str)


def test_mojibake_in_page_is_repaired() -> None:
    assert decode_html("<p>GroÃŸinvestor</p>".encode()) == "<p>Großinvestor</p>"


def test_extract_text_of_plain_paragraphs() -> None:
    html = "<html><body><p>" + "Ein Satz über Großinvestoren, der lang genug ist. " * 5 + "</p>"
    assert "Großinvestoren" in extract_text(html + "</body></html>")


def test_hostile_pages_finish_quickly() -> None:
    # Not a timing assertion on speed, a guard against pathological blow-ups.
    start = time.monotonic()
    for body in HOSTILE_INPUTS.values():
        extract(body, "https://example.com/a")
    assert time.monotonic() - start < 60
