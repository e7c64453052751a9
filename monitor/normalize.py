"""Text normalization shared by rule terms and entry text (SPEC section 5).

Terms and text go through the same :func:`normalize`, so matching can compare
them literally. Offsets of hits are offsets into the normalized text, which is
what :func:`prepare` stores in a :class:`~monitor.types.Document`.

Order matters: HTML is reduced first (entities may decode to mojibake or to
invisible characters), mojibake is repaired before case folding (folding would
turn ``Ã`` into ``ã`` and hide the pattern).
"""

from __future__ import annotations

import functools
import html as html_lib
import unicodedata
from typing import TYPE_CHECKING, Any

from monitor import mojibake
from monitor.types import Document

if TYPE_CHECKING:
    from lxml import etree  # type: ignore[import-untyped]  # no stubs in our deps

__all__ = ["normalize", "prepare"]

# Removed outright: soft hyphen, zero-width space/non-joiner/joiner, word
# joiner, BOM / zero-width no-break space, invisible separators.
_INVISIBLE = (
    "\u00ad",
    "\u200b",
    "\u200c",
    "\u200d",
    "\u2060",
    "\u2061",
    "\u2062",
    "\u2063",
    "\u2064",
    "\ufeff",
)
# Unified to ASCII: typographic apostrophes / single quotes that sit inside
# words (’ in DeepSeek’s) and the dash family (‐ ‑ ‒ – — ― − ﹘ ﹣ －).
_APOSTROPHES = ("\u2019", "\u2018", "\u02bc", "\u2032", "\u00b4", "\u0060")
_DASHES = (
    "\u2010",
    "\u2011",
    "\u2012",
    "\u2013",
    "\u2014",
    "\u2015",
    "\u2212",
    "\ufe58",
    "\ufe63",
    "\uff0d",
)
_REPLACEMENTS: tuple[tuple[str, str], ...] = (
    tuple((c, "") for c in _INVISIBLE)
    + tuple((c, "'") for c in _APOSTROPHES)
    + tuple((c, "-") for c in _DASHES)
)

# Elements whose content is never visible text.
_SKIP = frozenset({"script", "style", "template", "noscript", "head", "title", "iframe", "object"})
# Elements that separate words (block and line-breaking elements). Anything
# else is inline and joins its neighbours: <b>Deep</b>Seek is one word, and
# <wbr> (an empty inline element) joins the word it breaks.
_BLOCK = frozenset(
    {
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "br",
        "caption",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "footer",
        "form",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "header",
        "hr",
        "html",
        "img",
        "input",
        "li",
        "main",
        "nav",
        "ol",
        "option",
        "p",
        "pre",
        "section",
        "select",
        "summary",
        "table",
        "tbody",
        "td",
        "textarea",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    }
)


@functools.cache
def _lxml() -> tuple[Any, Any]:
    """lxml's etree and our HTML parser, imported when the first HTML arrives.

    Rule terms are never HTML: the daemon process, which validates rules but
    leaves entry text to the pool workers, never loads lxml (3 MB, measured).
    """
    from lxml import etree

    # remove_comments: comment text never reaches the tree; no_network and
    # the HTML parser's lack of entity expansion keep untrusted input inert.
    parser = etree.HTMLParser(
        encoding="utf-8", remove_comments=True, remove_pis=True, no_network=True
    )
    return etree, parser


def _visible_text(markup: str) -> str:
    """The text a browser shows for ``markup``, blocks separated by spaces."""
    etree, parser = _lxml()
    data = markup.encode("utf-8", "replace")
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError:
        return ""
    if root is None:
        return ""
    parts: list[str] = []
    _collect(root, parts)
    return "".join(parts)


def _collect(element: etree._Element, parts: list[str]) -> None:
    tag = element.tag
    if not isinstance(tag, str):  # entity references and the like
        if element.tail:
            parts.append(element.tail)
        return
    tag = tag.lower()
    if tag in _SKIP:
        parts.append(" ")
    else:
        block = tag in _BLOCK
        if block:
            parts.append(" ")
        if element.text:
            parts.append(element.text)
        for child in element:
            _collect(child, parts)
        if block:
            parts.append(" ")
    if element.tail:
        parts.append(element.tail)


def _replace(text: str) -> str:
    for old, new in _REPLACEMENTS:
        if old in text:
            text = text.replace(old, new)
    return text


def normalize(text: str, *, html: bool = False) -> str:
    """Normalize ``text`` for matching (SPEC section 5).

    NFKC, case folding (``ß`` -> ``ss``), soft hyphens / zero-width characters
    / BOMs removed, mojibake repaired (``GroÃŸinvestor`` -> ``großinvestor``),
    typographic apostrophes -> ``'`` and dashes -> ``-``, runs of white space
    collapsed to one space, no leading or trailing space.

    With ``html=True`` the input is HTML and is first reduced to its visible
    text: no ``<script>``/``<style>`` content, no attribute values, no
    comments; ``<wbr>`` and inline elements join, block elements separate
    words. A string without ``<`` or ``&`` skips the HTML parser.
    """
    return _display(text, html=html).casefold()


def _display(text: str, *, html: bool) -> str:
    """Everything ``normalize`` does except case folding.

    Folding never adds or removes white space, so folding this gives the
    normalized text; where folding keeps the length (almost always), offsets
    into one are offsets into the other.
    """
    if html and ("<" in text or "&" in text):
        text = _visible_text(text) if "<" in text else html_lib.unescape(text)
    if text.isascii():
        # Plain ASCII is already NFKC and has no mojibake or typographic
        # punctuation: only the backtick needs unifying.
        if "`" in text:
            text = text.replace("`", "'")
        return " ".join(text.split())
    text = mojibake.repair(text)
    text = _replace(text)
    if not unicodedata.is_normalized("NFKC", text):
        # before and after NFKC: it would turn ´ into space + combining accent,
        # and it maps full-width and small-form dashes onto the dash family
        text = _replace(unicodedata.normalize("NFKC", text))
    # Folding can produce text that is not NFKC again (rare, e.g. some Greek);
    # terms and text are folded the same way, so they stay comparable.
    return " ".join(text.split())


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
    """Build the normalized :class:`Document` of an entry.

    ``html_fields`` names the fields whose text is HTML. ``categories`` are
    joined by ``" ; "`` so a term never spans two categories.
    """
    raw = {
        "title": title,
        "summary": summary,
        "content": content,
        "author": author,
        "categories": " ; ".join(categories),
        "link": link,
    }
    fields: dict[str, str] = {}
    display: dict[str, str] = {}
    for name, value in raw.items():
        shown = _display(value, html=name in html_fields)
        folded = shown.casefold()
        fields[name] = folded
        if folded != shown:  # the text as written; match.snippet maps offsets into it
            display[name] = shown
    return Document(fields=fields, display=display)
