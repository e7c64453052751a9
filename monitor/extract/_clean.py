"""Clean the chosen article container with BeautifulSoup and render its text.

The container is small next to the whole page, so bs4's convenient tree is
affordable here. Cleaning drops what survives inside an article container:
headlines (the title is a separate field), "related"/"read also" boxes with
their links, link lists, share and subscription calls. Rendering keeps the
structure a reader sees: paragraphs apart by a blank line, list items and
table rows on their own lines.
"""

from __future__ import annotations

import re

from bs4 import BeautifulSoup, Comment, Tag
from bs4.element import NavigableString

from monitor.extract._phrases import (
    BOX_HEADING,
    BYLINE,
    COMMENTS_HEADING,
    CREDIT_LINE,
    UI_LINE,
    is_consent,
    is_date_line,
    is_notice,
)

# Lead-ins of a single-line cross-reference inside the article ("Read more: <link>").
_CROSS_REF = re.compile(
    r"^\W*(?:read (?:more|also|next)|related|see also|also read|recommended|watch|"
    r"lesen sie (?:auch|mehr)|mehr zum thema|siehe auch|auch interessant|zum thema|"
    r"schon gelesen|passend (?:dazu|zum thema)|dazu passend|auch lesenswert)\b",
    re.IGNORECASE,
)
# Lines at most this long can be a label, a date line or a credit; longer ones are text.
_MAX_LINE_CHARS = 150
_MAX_NOTICE_CHARS = 160
_MAX_CONSENT_CHARS = 2000
# Lines above the headline are dropped when they are at most this share of the text.
_MAX_ABOVE_HEADLINE_SHARE = 0.2
# A comments heading ends the article only after this much text.
_MIN_TEXT_BEFORE_COMMENTS = 500
# A box with its heading is shorter than this; a longer wrapper is not the box.
_MAX_BOX_CHARS = 1500
# A wrapper with two paragraphs this long is text, not a box with a heading.
_BOX_PROSE_CHARS = 150

BLOCK_TAGS = frozenset(
    {
        "p", "div", "section", "article", "main", "blockquote", "pre", "ul", "ol", "dl",
        "table", "thead", "tbody", "tfoot", "figure", "h1", "h2", "h3", "h4", "h5", "h6",
        "address", "hr", "form", "fieldset", "details", "summary", "center",
    }
)  # fmt: skip
LINE_TAGS = frozenset({"li", "tr", "dt", "dd", "caption"})
# A repeated opening block this long is the lead printed twice.
_MIN_REPEAT_CHARS = 40
_HEADINGS = ("h2", "h3", "h4", "h5", "h6")


def _decomposed(tag: Tag) -> bool:
    """Whether a tag was removed together with an ancestor.

    bs4's ``Tag.decomposed`` asks ``getattr(tag, "_decomposed")``, which on a
    live tag falls through to ``Tag.__getattr__``, a search of the whole
    subtree for a ``<_decomposed>`` child; reading the instance dict is free.
    """
    return bool(vars(tag).get("_decomposed", False))


def _text(tag: Tag) -> str:
    return " ".join(tag.get_text(" ").split())


def _link_density(tag: Tag, text_len: int) -> float:
    if text_len == 0:
        return 0.0
    links = sum(len(" ".join(a.get_text(" ").split())) for a in tag.find_all("a"))
    return links / text_len


def clean(soup: BeautifulSoup | Tag) -> None:
    """Remove boilerplate that sits inside the article container, in place."""
    for comment in soup.find_all(string=lambda s: isinstance(s, Comment)):
        comment.extract()
    _drop_before_headline(soup)
    for h1 in soup.find_all("h1"):
        h1.decompose()

    for heading in soup.find_all([*_HEADINGS, "strong", "b", "p", "span", "div"]):
        if _decomposed(heading):
            continue
        text = _text(heading)
        if not text or len(text) > 60 or not BOX_HEADING.match(text):
            continue
        if heading.name in ("div", "p", "span") and heading.find(["p", "div", "ul"]):
            continue
        if COMMENTS_HEADING.match(text) and _drop_comments(heading):
            continue
        _drop_box(heading)

    for block in soup.find_all(["p", "ul", "ol", "div", "li", "table", "dl", "span", "time", "a"]):
        if _decomposed(block):
            continue
        if block.name in ("span", "time", "a") and _in_running_text(block):
            continue
        text = _text(block)
        if not text:
            if (
                block.name in ("span", "time")
                or block.name != "div"
                or not block.find(["img", "br"])
            ):
                block.decompose()
            continue
        length = len(text)
        density = _link_density(block, length)
        if _is_junk_block(block.name, text, density):
            block.decompose()


def _in_running_text(tag: Tag) -> bool:
    """An inline element with words of its sentence next to it."""
    return any(
        isinstance(sibling, NavigableString)
        and not isinstance(sibling, Comment)
        and bool(str(sibling).strip())
        for sibling in (tag.previous_sibling, tag.next_sibling)
    )


def _is_junk_block(name: str, text: str, density: float) -> bool:
    """Link lists, link-only lines, cross references, labels, date lines, credits, notices."""
    length = len(text)
    if name == "a":  # a button ("Jetzt kaufen", "Share") on its own
        return bool(UI_LINE.match(text))
    if name in ("p", "div", "span") and length < _MAX_CONSENT_CHARS and is_consent(text):
        return True
    if (
        name in ("p", "div", "li", "span", "time")
        and length <= _MAX_LINE_CHARS
        and (UI_LINE.match(text) or (name != "li" and (is_date_line(text) or _is_credit(text))))
    ):
        return True
    if name in ("span", "time"):
        return False
    if name in ("ul", "ol", "dl"):
        return density > 0.6
    if name in ("p", "li") and density > 0.8 and length < 300:
        return True
    if name == "div" and density > 0.6 and length < 1000:
        return True
    if name in ("p", "li", "div") and length < 200 and density > 0.2 and _CROSS_REF.match(text):
        return True
    return name in ("p", "div") and length < _MAX_NOTICE_CHARS and is_notice(text)


def _is_credit(text: str) -> bool:
    return bool(CREDIT_LINE.match(text) or (len(text) <= 80 and BYLINE.match(text)))


def _holds_prose(parent: Tag, heading: Tag) -> bool:
    """Whether a wrapper holds paragraphs of its own besides the heading (a teaser
    card's one summary does not count)."""
    paragraphs = 0
    for child in parent.find_all(["p", "blockquote"]):
        if heading in child.parents:
            continue
        text = _text(child)
        if len(text) >= _BOX_PROSE_CHARS and _link_density(child, len(text)) < 0.2:
            paragraphs += 1
            if paragraphs >= 2:
                return True
    return False


def _drop_before_headline(soup: BeautifulSoup | Tag) -> None:
    """Drop the lines above the headline (site name, breadcrumb, rubric) when the
    container starts before it; the article starts with its headline."""
    h1 = soup.find("h1")
    if not isinstance(h1, Tag):
        return
    ancestors = set(h1.parents)
    above = [
        el
        for el in h1.find_all_previous(["p", "div", "ul", "ol", "span", "a", "nav", "section"])
        if el not in ancestors
    ]
    above_chars = sum(len(_text(el)) for el in above if el.parent not in above)
    if above and above_chars <= _MAX_ABOVE_HEADLINE_SHARE * len(_text(soup)):
        for el in above:
            if not _decomposed(el):
                el.decompose()


def _drop_comments(heading: Tag) -> bool:
    """Drop a comments heading and everything after it in its container, when the
    article came before it."""
    block = heading
    while (
        isinstance(block.parent, Tag)
        and block.parent.name not in ("body", "[document]", "html")
        and len([c for c in block.parent.children if isinstance(c, Tag)]) == 1
    ):
        block = block.parent
    before = sum(len(_text(s)) for s in block.find_previous_siblings() if isinstance(s, Tag))
    if before < _MIN_TEXT_BEFORE_COMMENTS:
        return False
    for sibling in list(block.find_next_siblings()):
        sibling.decompose()
    block.decompose()
    return True


def _shorter_than(tag: Tag, limit: int) -> bool:
    """Whether a tag's text is shorter than the limit, reading no more of it than that
    (a page of many box headings in one big container stays linear)."""
    total = 0
    for chunk in tag.strings:
        total += len(chunk.strip())
        if total >= limit:
            return False
    return True


def _drop_box(heading: Tag) -> None:
    """Drop a boilerplate heading and the box (or link list) it introduces."""
    parent = heading.parent
    # A small wrapper around heading + links is the box itself; never the
    # article container, nor a wrapper that holds paragraphs of prose.
    if (
        isinstance(parent, Tag)
        and parent.name not in ("body", "[document]", "html")
        and not (isinstance(parent.parent, Tag) and parent.parent.name == "body")
        and _shorter_than(parent, _MAX_BOX_CHARS)
    ):
        siblings = [c for c in parent.children if isinstance(c, Tag)]
        if (len(siblings) <= 4 and not _holds_prose(parent, heading)) or _link_density(
            parent, len(_text(parent))
        ) > 0.4:
            parent.decompose()
            return
    nxt = heading.find_next_sibling()
    heading.decompose()
    while isinstance(nxt, Tag):
        following = nxt.find_next_sibling()
        text = _text(nxt)
        if nxt.name in _HEADINGS:
            break
        if nxt.name in ("ul", "ol") or _link_density(nxt, len(text)) > 0.4 or not text:
            nxt.decompose()
            nxt = following
            continue
        break


def render(root: Tag) -> str:
    """Text of a cleaned tree: blocks apart by blank lines, items and rows as lines."""
    blocks: list[str] = []
    line: list[str] = []
    lines: list[str] = []

    def end_line() -> None:
        text = " ".join("".join(line).split())
        line.clear()
        if text:
            lines.append(text)

    def end_block() -> None:
        end_line()
        if lines:
            blocks.append("\n".join(lines))
            lines.clear()

    # Iterative walk with exit markers: deep trees must not hit the recursion limit.
    stack: list[tuple[Tag | NavigableString, bool]] = [(root, False)]
    while stack:
        node, leaving = stack.pop()
        if isinstance(node, NavigableString):
            if not isinstance(node, Comment):
                line.append(str(node))
            continue
        name = node.name
        if leaving:
            if name in BLOCK_TAGS:
                end_block()
            elif name in LINE_TAGS:
                end_line()
            continue
        if name == "br":
            end_line()
            continue
        if name in ("td", "th"):
            line.append(" | " if line and "".join(line).strip() else " ")
        if name in BLOCK_TAGS:
            end_block()
        elif name in LINE_TAGS:
            end_line()
        stack.append((node, True))
        children = [c for c in node.children if isinstance(c, (Tag, NavigableString))]
        stack.extend((c, False) for c in reversed(children))
    end_block()
    return "\n\n".join(blocks)


def clean_and_render(html_fragment: str) -> str:
    """Parse an article container's HTML with bs4 (lxml parser), clean it, render it.

    A lead that the page prints twice (as a standfirst and again as the first
    paragraph of the body) is given once; other repeats (a recipe's refrain,
    an interview's question put to several people) stay.
    """
    soup = BeautifulSoup(html_fragment, "lxml")
    clean(soup)
    blocks = render(soup).split("\n\n")
    opening = {b for b in blocks[:1] if len(b) >= _MIN_REPEAT_CHARS}
    if opening and len(blocks) > 1 and blocks[1] in opening:
        del blocks[1]
    return "\n\n".join(blocks)
