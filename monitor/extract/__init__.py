"""Article extraction: page HTML in, :class:`monitor.types.Article` out.

Pure: no I/O, no logging, no clock. lxml finds the article container on the
whole page (fast), BeautifulSoup cleans the container and renders its text.
JSON-LD ``articleBody`` stands in when the page body yields much less text.
The lead (standfirst, "Vorspann") comes first: found in the page around the
body, else, on German pages or where the page holds an empty lead slot, the
page's description; never twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import replace
from urllib.parse import urljoin, urlsplit

from lxml import etree  # type: ignore[import-untyped]

from monitor.extract import _lead
from monitor.extract._clean import clean_and_render
from monitor.extract._content import find_article, first_block, prune
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
# A lead is left out when this share of its word 4-grams is in the text already.
_LEAD_COVERED = 0.5
_WORD = re.compile(r"\w+")
# A description that is a call to click, or cut off, is no lead.
_DESCRIPTION_MIN_CHARS = 50
_TEASER_CALL = re.compile(
    r"lesen sie|jetzt lesen|mehr erfahren|mehr dazu|alle infos|hier (?:lesen|erfahren|finden)|"
    r"klicken|read more|click|find out|learn more|…|\.\.\.|\[\.\.\.\]",
    re.IGNORECASE,
)


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


def _body_text(root: etree._Element) -> tuple[str, _lead.Lead]:
    """The body's text and what the page says about its lead."""
    leads = _lead.collect(root)
    prune(root)
    parts = find_article(root)
    if not parts:
        return "", _lead.Lead(text=None, in_body=False, empty_slot=leads.empty_slot)
    fragment = "".join(etree.tostring(part, encoding="unicode", method="html") for part in parts)
    return clean_and_render(fragment), _lead.choose(leads, parts, first_block(parts[0]))


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = _WORD.findall(text.lower())
    return {tuple(words[i : i + 4]) for i in range(max(1, len(words) - 3))}


def _covered(lead: str, text: str) -> bool:
    """Whether the text holds the lead already (or most of it)."""
    wanted = _shingles(lead)
    return len(wanted & _shingles(text)) >= _LEAD_COVERED * len(wanted)


def _one_line(text: str | None) -> str | None:
    """A description as one line of plain text (JSON-LD ones may hold HTML)."""
    if not text:
        return None
    if "<" in text:
        text = re.sub(r"<[^>]*>", " ", text)
    return " ".join(text.split()) or None


def _description_lead(meta: PageMeta, empty_slot: bool) -> str | None:
    """The page's description as the lead, when the page has no lead in its DOM.

    German CMSs keep the "Vorspann" in the description field and often render
    it by script; an empty lead-named element says the same on any page.
    Elsewhere a description the page doesn't show is mostly a summary written
    for search engines (on the shared English benchmark 72 of 172 descriptions
    are not on their page, and 6 of those are in the gold text), so it is used
    there only under an empty lead slot.
    """
    description = _one_line(meta.description)
    if not description or not (empty_slot or (meta.language or "").startswith("de")):
        return None
    title = (meta.title or "").lower()
    if (
        len(description) < _DESCRIPTION_MIN_CHARS
        or description[-1] not in '.!?"“”»)'
        or _TEASER_CALL.search(description)
        or (title and description.lower().startswith(title))
    ):
        return None
    return description


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
    text, found = _body_text(root)
    structured = _jsonld_text(meta)
    if structured and len(text) < _JSONLD_RATIO * len(structured):
        text = structured
    lead = found.text
    if not text:
        # No article text at all: the description is better than nothing.
        lead = lead or _one_line(meta.description)
    elif lead is None and not found.in_body:
        lead = _description_lead(meta, found.empty_slot)
    if lead and not _covered(lead, text):
        text = f"{lead}\n\n{text}" if text else lead
    text = repair_mojibake(text[:_MAX_TEXT_CHARS])
    title = repair_mojibake(meta.title) if meta.title else None
    return Article(
        title=title,
        text=text,
        language=meta.language,
        published=meta.published,
        canonical=meta.canonical,
    )


def extract(body: bytes, url: str, headers: Mapping[str, str] | None = None) -> Article:
    """Extract the article of a fetched page.

    ``body`` is the raw HTTP body, ``headers`` the response headers (their
    charset and Content-Language are used). Returns title, text (paragraphs
    separated by blank lines; list items and table rows as lines), language
    and the published time (aware UTC) when the page states them. Bad pages
    give an empty or partial Article. Raises only MemoryError (or SystemError
    from C code out of memory): the worker pool answers "document too large to
    parse" and replaces the worker.
    """
    try:
        article = _extract(decode_html(body, headers), headers)
    except (MemoryError, SystemError):
        raise
    except Exception:
        return Article(title=None, text="")
    return replace(article, canonical=_absolute(article.canonical, url))


def _absolute(link: str | None, base: str) -> str | None:
    """A page's canonical URL made absolute; only http(s) (it names a story, never fetched)."""
    if not link:
        return None
    try:
        absolute = urljoin(base, link.strip())
        scheme = urlsplit(absolute).scheme.lower()
    except ValueError:
        return None
    return absolute if scheme in ("http", "https") else None


def extract_text(html: str, url: str | None = None) -> str:
    """The article text of an already decoded page (the evaluator's callable form)."""
    try:
        return _extract(repair_mojibake(html), None).text
    except Exception:
        return ""
