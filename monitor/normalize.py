"""Placeholder until the matcher branch lands: minimal normalization."""

from __future__ import annotations

import re
import unicodedata

from bs4 import BeautifulSoup

from monitor.types import Document


def normalize(text: str, *, html: bool = False) -> str:
    """Normalize text for matching."""
    if html and ("<" in text or "&" in text):
        soup = BeautifulSoup(text, "lxml")
        for tag in soup(["script", "style"]):
            tag.decompose()
        text = soup.get_text(" ")
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"\s+", " ", text).strip()


def prepare(
    *,
    title: str,
    summary: str,
    content: str,
    author: str = "",
    categories: tuple[str, ...] = (),
    link: str = "",
    html_fields: frozenset[str] = frozenset({"title", "summary", "content"}),
) -> Document:
    """Build the normalized document of an entry."""
    raw = {
        "title": title,
        "summary": summary,
        "content": content,
        "author": author,
        "categories": " ; ".join(categories),
        "link": link,
    }
    return Document({k: normalize(v, html=k in html_fields) for k, v in raw.items()})
