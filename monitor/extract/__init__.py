"""Article extraction: page HTML in, :class:`monitor.types.Article` out.

Pure: no I/O, no logging, no clock. lxml finds the article container on the
whole page (fast), BeautifulSoup cleans the container and renders its text.
JSON-LD ``articleBody`` stands in when the page body yields much less text.
"""

from __future__ import annotations

from collections.abc import Mapping

from lxml import etree  # type: ignore[import-untyped]

from monitor.extract._clean import clean_and_render
from monitor.extract._content import find_article, prune
from monitor.extract._decode import decode_html
from monitor.extract._meta import PageMeta, read_meta
from monitor.mojibake import repair as repair_mojibake
from monitor.types import Article

__all__ = ["decode_html", "extract", "extract_text"]

# Bounds that keep hostile pages cheap: text beyond this is not an article.
_MAX_HTML_CHARS = 5_000_000
_MAX_TEXT_CHARS = 500_000
# JSON-LD articleBody replaces the DOM text only when the DOM yields far less.
_JSONLD_MIN_CHARS = 200
_JSONLD_RATIO = 0.5


def _parse(html: str) -> etree._Element | None:
    parser = etree.HTMLParser(
        remove_comments=True, remove_pis=True, encoding="utf-8", no_network=True
    )
    data = html[:_MAX_HTML_CHARS].encode("utf-8", "replace")
    try:
        root = etree.fromstring(data, parser)
    except (etree.LxmlError, ValueError):
        return None
    return root


def _body_text(root: etree._Element) -> str:
    prune(root)
    parts = find_article(root)
    if not parts:
        return ""
    fragment = "".join(etree.tostring(part, encoding="unicode", method="html") for part in parts)
    return clean_and_render(fragment)


def _jsonld_text(meta: PageMeta) -> str:
    if not meta.article_body or len(meta.article_body) < _JSONLD_MIN_CHARS:
        return ""
    body = meta.article_body
    if "<" in body:
        return clean_and_render(body)
    paragraphs = [" ".join(p.split()) for p in body.replace("\r", "").split("\n")]
    return "\n\n".join(p for p in paragraphs if p)


def _extract(html: str, headers: Mapping[str, str] | None) -> Article:
    root = _parse(html)
    if root is None:
        return Article(title=None, text="")
    meta = read_meta(root, headers)
    text = _body_text(root)
    structured = _jsonld_text(meta)
    if structured and len(text) < _JSONLD_RATIO * len(structured):
        text = structured
    text = repair_mojibake(text[:_MAX_TEXT_CHARS])
    title = repair_mojibake(meta.title) if meta.title else None
    return Article(title=title, text=text, language=meta.language, published=meta.published)


def extract(body: bytes, url: str, headers: Mapping[str, str] | None = None) -> Article:
    """Extract the article of a fetched page; never raises.

    ``body`` is the raw HTTP body, ``headers`` the response headers (their
    charset and Content-Language are used). Returns title, text (paragraphs
    separated by blank lines; list items and table rows as lines), language
    and the published time (aware UTC) when the page states them. Bad pages
    give an empty or partial Article.
    """
    try:
        return _extract(decode_html(body, headers), headers)
    except Exception:
        return Article(title=None, text="")


def extract_text(html: str, url: str | None = None) -> str:
    """The article text of an already decoded page (the evaluator's callable form)."""
    try:
        return _extract(repair_mojibake(html), None).text
    except Exception:
        return ""
