"""Placeholder until the extract branch lands: drop obvious boilerplate, keep the text."""

from __future__ import annotations

from collections.abc import Mapping

from bs4 import BeautifulSoup

from monitor.types import Article

_BOILERPLATE = ["script", "style", "nav", "header", "footer", "aside", "form", "iframe", "noscript"]


def extract(body: bytes, url: str, headers: Mapping[str, str] | None = None) -> Article:
    """HTML bytes to the article text."""
    try:
        soup = BeautifulSoup(body, "lxml")
        for tag in soup(_BOILERPLATE):
            tag.decompose()
        root = soup.find("article") or soup.find("main") or soup.body or soup
        title = soup.title.get_text(strip=True) if soup.title else None
        return Article(title=title, text=root.get_text("\n", strip=True))
    except Exception:
        return Article(title=None, text="")
