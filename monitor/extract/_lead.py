"""The article's lead (standfirst, "Vorspann", teaser) when it sits outside the body.

News pages, German ones above all, put the lead above the body container: in
the article's <header> under the headline, in ``<p class="lead|intro|teaser">``,
in a ``<div class="...summary...">``, in NITF's <abstract>. The body container
found by density leaves it out, and pruning removes headers and teaser-named
blocks. So candidates are collected on the whole page before pruning, with
their position in the document, and one is chosen once the body is known: it
must sit after the headline and before the body's first paragraph, read like
prose (sentences, few links), and not be in the body text already.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree  # type: ignore[import-untyped]

from monitor.extract._phrases import BYLINE, CREDIT_LINE, is_date_line

# Class/id words that name a lead (split like the other name vocabularies).
_LEAD_WORDS = frozenset(
    {
        "lead", "leadtext", "lede", "intro", "introtext", "introduction", "teaser",
        "teasertext", "standfirst", "summary", "abstract", "excerpt", "vorspann", "anriss",
        "anreisser", "einleitung", "kurztext", "description",
    }
)  # fmt: skip
# A lead-named element that is also named like one of these is something else:
# a second headline, a teaser card of another article, a link list.
_NOT_LEAD_WORDS = frozenset(
    {
        "dek", "deck", "subtitle", "subheadline", "subline", "strapline", "tagline", "kicker",
        "topline", "headline", "title", "label", "list", "item", "items", "card", "cards",
        "related", "more", "link", "links", "image", "img", "media", "video", "audio",
        "author", "byline", "date", "meta", "button", "btn", "icon",
    }
)  # fmt: skip
# A candidate inside one of these is another article's teaser, a caption or furniture.
_ELSEWHERE_TAGS = frozenset({"figure", "figcaption", "aside", "nav", "footer", "form", "a", "li"})
_ELSEWHERE_WORDS = frozenset(
    {
        "related", "recommended", "recommendations", "more", "see", "also", "sidebar", "rail",
        "widget", "promo", "popular", "trending", "newsletter", "comment", "comments", "footer",
        "nav", "navigation", "card", "cards", "list", "teasers", "caption", "gallery",
        "empfehlungen", "weitere", "mehr", "meistgelesen",
    }
)  # fmt: skip
# Substrings of the lead words: a cheap first look before names are split.
_LEAD_STEMS = (
    "lead", "lede", "intro", "teaser", "standfirst", "summary", "abstract", "excerpt",
    "vorspann", "anriss", "anreisser", "einleitung", "kurztext", "description",
)  # fmt: skip
_LEAD_TAGS = frozenset({"p", "div", "section", "span", "strong", "b", "abstract", "h2", "h3"})
_SPLIT_NAMES = re.compile(r"[\s_\-.]+|(?<=[a-z])(?=[A-Z])")
_SENTENCE_END = re.compile(r"[.!?:;…][\"'“”»«)]*(?:\s|$)")
_MIN_CHARS = 50
_MAX_CHARS = 1500
# A headline tag holds a lead only when it reads like one: long, several sentences.
_MIN_HEADING_LEAD_CHARS = 120
_MAX_LINK_SHARE = 0.25


@dataclass(frozen=True, slots=True)
class Lead:
    """What the page says about its lead, once the body is known."""

    text: str | None  # a lead found outside the body's text
    in_body: bool  # a lead-named element sits inside the body: the text has it
    empty_slot: bool  # a lead-named element without text (filled by script)


@dataclass(slots=True)
class LeadCandidates:
    """Lead candidates and headlines of a page, with their document positions."""

    order: dict[etree._Element, int] = field(default_factory=dict)
    candidates: list[etree._Element] = field(default_factory=list)
    # Ancestors before pruning (pruning detaches headers with their leads).
    ancestors: dict[etree._Element, tuple[etree._Element, ...]] = field(default_factory=dict)
    headlines: list[int] = field(default_factory=list)
    empty_slot: bool = False  # a lead-named element without text (filled by script)


def _words(names: str) -> set[str]:
    return {w.lower() for w in _SPLIT_NAMES.split(names) if w}


def _text(el: etree._Element) -> str:
    return " ".join("".join(el.itertext()).split())


def collect(root: etree._Element) -> LeadCandidates:
    """Lead candidates on the unpruned page, in document order (outermost only)."""
    found = LeadCandidates()
    body = next(root.iter("body"), None)
    if body is None:
        body = root
    order = found.order
    taken: set[etree._Element] = set()
    for index, el in enumerate(body.iter(etree.Element)):
        order[el] = index
        tag = el.tag
        if tag not in _LEAD_TAGS:
            if tag == "h1":
                found.headlines.append(index)
            elif tag == "header":
                _header_paragraph(el, found, taken)
            continue
        if not _named_lead(el, tag) or any(a in taken for a in el.iterancestors()):
            continue
        if not "".join(el.itertext()).strip():
            found.empty_slot = True
            continue
        _add(el, found, taken)
    return found


def _add(el: etree._Element, found: LeadCandidates, taken: set[etree._Element]) -> None:
    ancestors = tuple(el.iterancestors())
    for ancestor in ancestors:
        if (
            ancestor.tag in _ELSEWHERE_TAGS
            or _words(f"{ancestor.get('class') or ''} {ancestor.get('id') or ''}")
            & _ELSEWHERE_WORDS
        ):
            return
    taken.add(el)
    found.candidates.append(el)
    found.ancestors[el] = ancestors


def _named_lead(el: etree._Element, tag: str) -> bool:
    itemprop = el.get("itemprop")
    if tag == "abstract" or (itemprop and itemprop.lower() in ("description", "abstract")):
        return True
    names = el.get("class")
    ident = el.get("id")
    if ident:
        names = f"{names} {ident}" if names else ident
    if not names:
        return False
    if not _has_stem(names.lower()):  # most elements: no need to split their names
        return False
    words = _words(names)
    return bool(words & _LEAD_WORDS) and not words & _NOT_LEAD_WORDS


def _has_stem(lowered: str) -> bool:
    # A plain loop: twice as fast as any() over a generator, or a regex, on every element.
    for stem in _LEAD_STEMS:  # noqa: SIM110
        if stem in lowered:
            return True
    return False


def _header_paragraph(
    header: etree._Element, found: LeadCandidates, taken: set[etree._Element]
) -> None:
    """The first prose paragraph after the headline in an article <header>."""
    if next(header.iter("h1"), None) is None:
        return
    seen_headline = False
    for el in header.iter():
        if el.tag == "h1":
            seen_headline = True
        elif seen_headline and el.tag == "p" and _reads_like_lead(_text(el), el):
            _add(el, found, taken)
            return


def _reads_like_lead(text: str, el: etree._Element) -> bool:
    if not _MIN_CHARS <= len(text) <= _MAX_CHARS:
        return False
    if BYLINE.match(text) or CREDIT_LINE.match(text) or is_date_line(text):
        return False
    if text.endswith(("...", "…", "[…]")):  # an excerpt cut off: a teaser of something else
        return False
    if not _SENTENCE_END.search(text):
        return False
    links = sum(len(_text(a)) for a in el.iter("a"))
    return links <= _MAX_LINK_SHARE * len(text)


def choose(found: LeadCandidates, parts: list[etree._Element], body_start: etree._Element) -> Lead:
    """The lead: the first candidate between the headline and the body's text.

    ``parts`` are the body's containers after pruning, ``body_start`` the
    element their text starts with. A candidate counts when it precedes that
    start in the document and follows the last headline before it (when the
    page has a headline at all).
    """
    in_body = any(_inside(el, parts) for el in found.candidates)
    return Lead(text=_choose(found, body_start), in_body=in_body, empty_slot=found.empty_slot)


def _inside(el: etree._Element, parts: list[etree._Element]) -> bool:
    return any(part is el or part in el.iterancestors() for part in parts)


def _choose(found: LeadCandidates, body_start: etree._Element) -> str | None:
    start = found.order.get(body_start)
    if start is None:
        return None
    headline = max((h for h in found.headlines if h < start), default=None)
    for el in found.candidates:
        position = found.order[el]
        if position >= start:
            break
        if headline is not None and position < headline:
            continue
        if headline is None and not _near(found.ancestors[el], body_start):
            continue
        text = _text(el)
        if el.tag in ("h2", "h3") and (
            len(text) < _MIN_HEADING_LEAD_CHARS or len(_SENTENCE_END.findall(text)) < 2
        ):
            continue
        if _reads_like_lead(text, el):
            return text
    return None


def _near(ancestors: tuple[etree._Element, ...], body_start: etree._Element) -> bool:
    """Without a headline: the candidate shares a container below <body> with the body."""
    body_ancestors = set(body_start.iterancestors())
    for ancestor in ancestors:
        if ancestor in body_ancestors:
            return ancestor.tag not in ("body", "html")
    return False
