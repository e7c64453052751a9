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

# Headings that introduce boilerplate boxes rather than article sections.
BOILERPLATE_HEADING = re.compile(
    r"^\W*(?:related\b|read (?:more|also|next)|more (?:from|on|about|stories|news)|"
    r"most (?:read|popular|viewed|shared)|recommended|you (?:may|might) (?:also )?like|"
    r"trending|popular|top stories|latest (?:news|stories)|comments?\b|leave a (?:reply|comment)|"
    r"share (?:this|the)|follow us|sign up|subscribe|newsletter|advertisement|"
    r"meistgelesen|meist gelesen|lesen sie (?:auch|mehr)|mehr zum thema|auch interessant|"
    r"das k[öo]nnte sie auch interessieren|weitere artikel|weitere themen|empfehlungen|"
    r"kommentare|anzeige|werbung|newsletter|zum thema|siehe auch|top-?themen|beliebt)",
    re.IGNORECASE,
)
# Lead-ins of a single-line cross-reference inside the article ("Read more: <link>").
_CROSS_REF = re.compile(
    r"^\W*(?:read (?:more|also|next)|related|see also|also read|recommended|watch|"
    r"lesen sie (?:auch|mehr)|mehr zum thema|siehe auch|auch interessant|zum thema)\b",
    re.IGNORECASE,
)
_NOTICE = re.compile(
    r"(?:subscribe|subscription|sign up|newsletter|cookies?|all rights reserved|"
    r"abonn|jetzt anmelden|registrieren|alle rechte vorbehalten|bild:|foto:|image:|photo:|"
    r"©|\(c\)|getty images|reuters/|dpa/|afp/)",
    re.IGNORECASE,
)

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
    for h1 in soup.find_all("h1"):
        h1.decompose()

    for heading in soup.find_all([*_HEADINGS, "strong", "b", "p", "span", "div"]):
        if heading.decomposed:
            continue
        text = _text(heading)
        if not text or len(text) > 60 or not BOILERPLATE_HEADING.match(text):
            continue
        if heading.name in ("div", "p", "span") and heading.find(["p", "div", "ul"]):
            continue
        _drop_box(heading)

    for block in soup.find_all(["p", "ul", "ol", "div", "li", "table", "dl"]):
        if block.decomposed:
            continue
        text = _text(block)
        if not text:
            if block.name != "div" or not block.find(["img", "br"]):
                block.decompose()
            continue
        length = len(text)
        density = _link_density(block, length)
        if _is_junk_block(block.name, text, density):
            block.decompose()


def _is_junk_block(name: str, text: str, density: float) -> bool:
    """Link lists, link-only lines, cross references and notices."""
    length = len(text)
    if name in ("ul", "ol", "dl"):
        return density > 0.6
    if name in ("p", "li") and density > 0.8 and length < 300:
        return True
    if name == "div" and density > 0.6 and length < 1000:
        return True
    if name in ("p", "li", "div") and length < 200 and density > 0.2 and _CROSS_REF.match(text):
        return True
    return name in ("p", "div") and length < 160 and bool(_NOTICE.search(text))


def _drop_box(heading: Tag) -> None:
    """Drop a boilerplate heading and the box (or link list) it introduces."""
    parent = heading.parent
    # A small wrapper around heading + links is the box itself.
    if isinstance(parent, Tag) and parent.name not in ("body", "[document]", "html"):
        siblings = [c for c in parent.children if isinstance(c, Tag)]
        if len(_text(parent)) < 1500 and (
            len(siblings) <= 4 or _link_density(parent, len(_text(parent))) > 0.4
        ):
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
