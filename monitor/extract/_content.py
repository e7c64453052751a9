"""Find the article body in a page tree (lxml, for speed on whole pages).

1. Drop what never counts: scripts, styles, forms' widgets, navigation,
   sidebars, footers, hidden elements and blocks whose class/id names say
   boilerplate (comments, related, newsletter, cookie, ...).
2. Score text blocks: paragraph-like elements with enough text, sentence
   punctuation and few links. Sum scores bottom-up.
3. Descend from <body> while one child holds nearly all of the score; a
   semantic hint (<article>, <main>, itemprop=articleBody) that holds most of
   it is taken directly. The node reached is the article container.
"""

from __future__ import annotations

import re

from lxml import etree  # type: ignore[import-untyped]

# Never text of an article, whatever their attributes say.
DROP_TAGS = frozenset(
    {
        "script", "style", "noscript", "template", "iframe", "svg", "math", "canvas",
        "object", "embed", "button", "select", "input", "textarea", "option", "label",
        "nav", "footer", "aside", "dialog", "video", "audio", "picture", "img", "source",
        "figcaption", "link", "meta", "head", "title", "menu",
    }
)  # fmt: skip

# Class/id tokens that mark boilerplate wherever they appear, even on <article>.
_STRONG_NEGATIVE = re.compile(
    r"comment|disqus|related|newsletter|cookie|consent|gdpr|share|sharing|social|"
    r"most-?read|most-?popular|meistgelesen|popular|trending|recommend|outbrain|taboola|"
    r"paywall|subscri|signup|sign-up|promo|advert|sponsor|breadcrumb|"
    r"caption|credit|copyright|byline|author-?(?:bio|info|box)|tags?-?list|^tags$|"
    r"modal|popup|overlay|banner|toolbar|skip-?link|screen-?reader|sr-only|visually-?hidden|"
    r"read-?more|readmore|more-?stories|also-?read|teaser|newsticker|ticker",
    re.IGNORECASE,
)
# Weaker signals that an element is page furniture, unless it also looks like content.
_WEAK_NEGATIVE = re.compile(
    r"sidebar|side-?bar|widget|menu|navigation|\bnav\b|navbar|footer|header|masthead|"
    r"\bad\b|\bads\b|ad-|-ad\b|dfp|rail|aside|hidden|print-?only|pagination|pager",
    re.IGNORECASE,
)
_POSITIVE = re.compile(
    r"article|body|content|entry|main|post|story|text|blog|prose|rich-?text", re.IGNORECASE
)
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?。！？:;,»“”\"')]")

PARAGRAPH_TAGS = frozenset({"p", "pre", "blockquote", "li", "dd", "td", "h2", "h3", "h4"})
_CONTAINER_TAGS = frozenset({"div", "section", "article", "main", "span", "font", "center"})
_MIN_BLOCK_CHARS = 25
_DESCEND_SHARE = 0.85
_HINT_SHARE = 0.6


def _attrs(el: etree._Element) -> str:
    return f"{el.get('class') or ''} {el.get('id') or ''}".strip()


def is_boilerplate_name(names: str, tag: str) -> bool:
    """Do an element's class/id names mark it as page furniture?"""
    if not names:
        return False
    if _STRONG_NEGATIVE.search(names):
        return True
    if tag in ("article", "main", "body", "html"):
        return False
    return bool(_WEAK_NEGATIVE.search(names)) and not _POSITIVE.search(names)


def prune(root: etree._Element) -> None:
    """Remove everything that can never be article text, in place."""
    doomed: list[etree._Element] = []
    for el in root.iter():
        tag = el.tag
        if not isinstance(tag, str):  # comments, processing instructions
            doomed.append(el)
            continue
        if tag in DROP_TAGS:
            doomed.append(el)
            continue
        if tag == "header" and el.getparent() is not None:
            doomed.append(el)
            continue
        if el.get("hidden") is not None or el.get("aria-hidden") == "true":
            doomed.append(el)
            continue
        style = el.get("style")
        if style and _HIDDEN_STYLE.search(style):
            doomed.append(el)
            continue
        if tag in ("body", "html"):
            continue
        names = _attrs(el)
        if names and is_boilerplate_name(names, tag):
            doomed.append(el)
    for el in doomed:
        parent = el.getparent()
        if parent is None:
            continue
        # Keep the tail: it is text of the parent, not of the removed element.
        tail = el.tail
        if tail and tail.strip():
            prev = el.getprevious()
            if prev is not None:
                prev.tail = (prev.tail or "") + tail
            else:
                parent.text = (parent.text or "") + tail
        parent.remove(el)


def _text_len(el: etree._Element) -> int:
    return len(" ".join("".join(el.itertext()).split()))


def _link_len(el: etree._Element) -> int:
    return sum(_text_len(a) for a in el.iter("a"))


def _block_score(el: etree._Element) -> float:
    """How much a paragraph-like element looks like article prose."""
    text = " ".join("".join(el.itertext()).split())
    length = len(text)
    if length < _MIN_BLOCK_CHARS:
        return 0.0
    links = _link_len(el)
    density = links / length
    if density > 0.5:
        return 0.0
    score = length * (1.0 - density)
    if not _SENTENCE_END.search(text):
        score *= 0.3
    return score


def _direct_text_len(el: etree._Element) -> int:
    total = len((el.text or "").strip())
    for child in el:
        total += len((child.tail or "").strip())
    return total


def score_tree(body: etree._Element) -> dict[etree._Element, float]:
    """Bottom-up sum of block scores: every element's score includes its descendants'.

    One pass in reverse document order (children before parents), so deep or
    huge trees cost linear time.
    """
    elements = [el for el in body.iter() if isinstance(el.tag, str)]
    scores: dict[etree._Element, float] = {}
    has_block: set[etree._Element] = set()
    for el in reversed(elements):
        tag = el.tag
        own = 0.0
        inner_block = el in has_block
        if tag in PARAGRAPH_TAGS:
            # An outer block whose inner blocks are scored would count twice.
            if not inner_block:
                own = _block_score(el)
        elif tag in _CONTAINER_TAGS and _direct_text_len(el) >= _MIN_BLOCK_CHARS * 2:
            # Text written straight into a <div>, lines split by <br>.
            direct = (el.text or "") + "".join((c.tail or "") for c in el)
            direct = " ".join(direct.split())
            own = float(len(direct)) * (1.0 if _SENTENCE_END.search(direct) else 0.3)
        total = scores.get(el, 0.0) + own
        if total:
            scores[el] = total
        parent = el.getparent()
        if parent is not None:
            if total:
                scores[parent] = scores.get(parent, 0.0) + total
            if inner_block or tag in PARAGRAPH_TAGS:
                has_block.add(parent)
    return scores


def _is_hint(el: etree._Element) -> bool:
    if el.tag in ("article", "main"):
        return True
    prop = (el.get("itemprop") or "").lower()
    return prop in ("articlebody", "text", "articletext")


def find_main(root: etree._Element) -> etree._Element | None:
    """The element that holds the article body, or None when nothing scores."""
    body = next(root.iter("body"), None)
    if body is None:
        body = root
    scores = score_tree(body)
    total = scores.get(body, 0.0)
    if total <= 0:
        return None
    node = body
    while True:
        children = [c for c in node if scores.get(c, 0.0) > 0]
        if not children:
            break
        best = max(children, key=lambda c: scores.get(c, 0.0))
        share = scores[best] / scores[node]
        if share >= _DESCEND_SHARE:
            node = best
            continue
        break
    return node
