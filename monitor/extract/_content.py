"""Find the article body in a page tree (lxml, for speed on whole pages).

1. Drop what never counts: scripts, styles, forms' widgets, navigation,
   sidebars, footers, hidden elements and blocks whose class/id names say
   boilerplate (comments, related, newsletter, cookie, dates, rubric labels,
   author boxes, ...; in English and German). An <aside> in the flow of the
   text (an info box between paragraphs) stays.
2. Score text blocks: paragraph-like elements with enough text, sentence
   punctuation and few links. Sum scores bottom-up.
3. Descend from <body> while one child holds nearly all of the score; a
   semantic hint (<article>, <main>, itemprop=articleBody) that holds most of
   it is taken directly. The node reached is the article container.
4. Join the parts of an article split over sibling containers (text, an ad,
   more text): siblings of the container's kind (its tag and a class).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from lxml import etree  # type: ignore[import-untyped]

# Never text of an article, whatever their attributes say.
DROP_TAGS = frozenset(
    {
        "script", "style", "noscript", "template", "iframe", "svg", "math", "canvas",
        "object", "embed", "button", "select", "input", "textarea", "option", "label",
        "nav", "footer", "dialog", "video", "audio", "picture", "img", "source",
        "figcaption", "link", "meta", "head", "title", "menu",
    }
)  # fmt: skip

# Class/id words (split at spaces, dashes, underscores and camelCase) that mark
# comment threads: removed wherever they are, even when they hold much text.
_COMMENT_WORDS = frozenset({"comment", "comments", "commentlist", "disqus", "respond", "replies"})
# Words that mark page furniture; such an element is removed unless it holds a
# large share of the page's prose (wrappers are often named "has-sidebar" or
# "modal-enabled").
_NEGATIVE_WORDS = frozenset(
    {
        "related", "newsletter", "cookie", "cookies", "consent", "gdpr", "share", "sharing",
        "social", "popular", "trending", "recommended", "recommendations", "recirc",
        "outbrain", "taboola", "paywall", "subscribe", "subscription", "signup", "promo",
        "advert", "advertisement", "ad", "ads", "sponsor", "sponsored", "breadcrumb",
        "breadcrumbs", "caption", "credit", "credits", "copyright", "byline", "modal",
        "popup", "overlay", "banner", "toolbar", "sr", "screenreader", "hidden", "teaser",
        "teasers", "ticker", "newsticker", "sidebar", "widget", "menu", "nav", "navigation",
        "navbar", "footer", "header", "masthead", "rail", "aside", "pagination", "pager",
        "tags", "meistgelesen", "mostread", "readmore", "author", "bio", "print", "skip",
        # page furniture that sits next to or inside the article
        "date", "datum", "dateline", "time", "timestamp", "pubdate", "submitted", "meta",
        "metadata", "metainfo", "kicker", "topline", "overline", "eyebrow", "rubric", "rubrik",
        "dachzeile", "spitzmarke", "categories", "tag", "tagline", "label", "badge", "autor",
        "autorin", "autoren", "autorenbox", "authorbox", "vcard", "contact", "kontakt",
        "ansprechpartner", "pressekontakt", "disclaimer", "feedback", "voting", "like", "likes",
        "teilen", "sharedaddy", "schlagworte", "schlagwoerter", "stichworte", "keywords",
        "gallery", "galerie", "slideshow", "carousel", "audio", "podcast", "cta", "rating",
        "empfehlung", "empfehlungen", "reco", "weitere", "verwandt", "verwandte", "aehnliche",
        "backlink", "paging",
    }
)  # fmt: skip
# Consent and cookie layers: removed unless they hold nearly all the prose, since
# their long legal text can outweigh a short article.
_CONSENT_WORDS = frozenset(
    {
        "cookie", "cookies", "consent", "gdpr", "cmp", "cmpbox", "usercentrics", "didomi",
        "onetrust", "cookiebot", "borlabs", "privacy", "datenschutz",
    }
)  # fmt: skip
# Consent layers of common platforms (Sourcepoint, Usercentrics) by their names.
_CONSENT_PHRASES = ("sp-message", "uc-banner")
# Furniture words that win over a content word: "article-sidebar", "post-meta",
# "article__author", "story-contact" are furniture of an article, not its text.
_STRONG_WORDS = frozenset(
    {
        "related", "newsletter", "cookie", "paywall", "share", "social", "teaser", "caption",
        "credit", "credits", "byline", "sidebar", "promo", "author", "autor", "meta", "date",
        "datum", "time", "timestamp", "kicker", "topline", "overline", "rubric", "rubrik",
        "dachzeile", "tags", "label", "feedback", "voting", "rating", "footer", "header",
        "contact", "kontakt", "disclaimer", "gallery", "galerie", "pagination", "breadcrumb",
        "breadcrumbs", "toolbar", "audio", "print",
    }
)  # fmt: skip
_NEGATIVE_PHRASES = re.compile(
    r"most-(?:read|popular|viewed|shared)|read-(?:more|also|next)|also-read|more-(?:stories|news)|"
    r"you-may-like|visually-hidden|sign-up|lesen-sie|mehr-zum-thema|zum-thema|reading-time"
)
_POSITIVE_WORDS = frozenset(
    {"article", "body", "content", "entry", "main", "post", "story", "text", "prose"}
)
_SPLIT_NAMES = re.compile(r"[\s_\-.]+|(?<=[a-z])(?=[A-Z])")
_GUARD_SHARE = 0.3
# A "comment" wrapper holding nearly all prose is the page itself, mis-named.
_COMMENT_GUARD_SHARE = 0.75
# Tag names that HTML knows; any other tag (amp-ad, NITF's dateline, custom
# elements) is judged by its name like a class.
_HTML_TAGS = frozenset(
    {
        "a", "abbr", "address", "article", "aside", "b", "bdi", "bdo", "big", "blockquote",
        "body", "br", "caption", "center", "cite", "code", "col", "colgroup", "data", "dd",
        "del", "details", "dfn", "div", "dl", "dt", "em", "figure", "font", "h1", "h2", "h3",
        "h4", "h5", "h6", "header", "hgroup", "hr", "html", "i", "ins", "kbd", "li", "main",
        "mark", "ol", "p", "pre", "q", "s", "samp", "section", "small", "span", "strike",
        "strong", "sub", "summary", "sup", "table", "tbody", "td", "tfoot", "th", "thead",
        "time", "tr", "tt", "u", "ul", "var", "wbr", "form", "fieldset", "legend", "map",
        "area", "track", "ruby", "rt", "rp", "output", "progress", "meter",
    }
)  # fmt: skip
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)
_SENTENCE_END = re.compile(r"[.!?。！？:;,»“”\"')]")

PARAGRAPH_TAGS = frozenset({"p", "pre", "blockquote", "li", "dd", "td", "h2", "h3", "h4"})
_CONTAINER_TAGS = frozenset({"div", "section", "article", "main", "span", "font", "center"})
_MIN_BLOCK_CHARS = 25
# A link around this much text at most is a teaser card, not an unclosed <a>.
_MAX_CARD_LINK_CHARS = 600
# A block that starts the text: a sentence or two, not a breadcrumb or a date line.
_FIRST_BLOCK_SCORE = 40.0
_DESCEND_SHARE = 0.85
# Stray links per 100 prose characters: up to OK it is prose, from BAD a teaser list.
_STRAY_OK = 0.5
_STRAY_BAD = 1.5
_TEASER_MAX_SHARE = 0.5
# A semantic container is trusted when it holds at least this share of the prose.
_HINT_MIN_SHARE = 0.2
# A child that wins on teaser-penalized prose but holds less than this share of
# its parent's prose is suspect (a footer line next to a layout row that also
# holds the navigation).
_WEAK_SHARE = 0.25
# Grid and layout classes (Bootstrap, Foundation, "l-" layouts): two columns
# sharing "col-xs-12" are not two parts of one text.
_GRID_CLASS = re.compile(
    r"^(?:col|row|columns?|span\d*|container|clearfix|cf|grid|wrapper|inner|"
    r"(?:col|span|small|medium|large|xlarge|pull|push|offset|grid|l|u|is|has|js)[-_][\w-]*)$",
    re.IGNORECASE,
)
_INLINE_TAGS = frozenset(
    {"a", "span", "em", "strong", "b", "i", "u", "small", "abbr", "cite", "mark", "font", "q"}
)
# An <aside> counts as in the text flow next to this many characters of paragraphs.
_FLOW_MIN_CHARS = 80
# A sibling joins the article container when it holds this much prose.
_JOIN_MIN_SCORE = 60.0


def _attrs(el: etree._Element) -> str:
    names = f"{el.get('class') or ''} {el.get('id') or ''}"
    tag = el.tag
    if isinstance(tag, str) and tag not in _HTML_TAGS:
        names += " " + tag
    return names.strip()


def _words(names: str) -> list[str]:
    return [w.lower() for w in _SPLIT_NAMES.split(names) if w]


def name_verdict(names: str, tag: str) -> str | None:
    """ "comment", "negative" or None: what an element's class/id names say it is."""
    if not names:
        return None
    words = _words(names)
    if not words:
        return None
    if any(w in _COMMENT_WORDS for w in words):
        # "comment" inside an article body's own class ("article-comment-count"
        # buttons are small anyway); real threads are named plainly.
        return "comment"
    joined = "-".join(words)
    if tag not in ("article", "main") and (
        any(w in _CONSENT_WORDS for w in words) or any(p in joined for p in _CONSENT_PHRASES)
    ):
        return "consent"
    if any(w in _NEGATIVE_WORDS for w in words) or _NEGATIVE_PHRASES.search(joined):
        if tag in ("article", "main") or any(w in _POSITIVE_WORDS for w in words):
            # "article-sidebar" is furniture, "article-body" is not: only
            # phrases and unambiguous words win over a content word.
            strong = _NEGATIVE_PHRASES.search(joined) or any(w in _STRONG_WORDS for w in words)
            return "negative" if strong and tag not in ("article", "main") else None
        return "negative"
    return None


def _remove(el: etree._Element) -> None:
    parent = el.getparent()
    if parent is None:
        return
    # Keep the tail: it is text of the parent, not of the removed element.
    tail = el.tail
    if tail and tail.strip():
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + tail
        else:
            parent.text = (parent.text or "") + tail
    parent.remove(el)


def prune(root: etree._Element) -> None:
    """Remove everything that can never be article text, in place.

    Tags and hidden elements go first; then elements whose names say
    boilerplate, except a furniture-named element that holds a large share of
    the page's prose (it is a wrapper, not a sidebar).
    """
    doomed: list[etree._Element] = []
    flow: dict[etree._Element, bool] = {}
    for el in root.iter():
        tag = el.tag
        if (
            not isinstance(tag, str)
            or tag in DROP_TAGS
            or (tag == "header" and el.getparent() is not None)
            or (tag == "aside" and not _in_text_flow(el, flow))
            or el.get("hidden") is not None
            or el.get("aria-hidden") == "true"
        ):  # comments, processing instructions
            doomed.append(el)
        else:
            style = el.get("style")
            if style and _HIDDEN_STYLE.search(style):
                doomed.append(el)
    for el in doomed:
        _remove(el)

    body = next(root.iter("body"), None)
    if body is None:
        body = root
    scores = score_tree(body)
    total = scores.score(body)
    named: list[etree._Element] = []
    for el in body.iter():
        if el.tag in ("body", "html") or not isinstance(el.tag, str) or _in_running_text(el):
            continue
        names = _attrs(el)
        if el.get("role") in ("dialog", "alertdialog") or el.get("aria-modal") == "true":
            names += " consent"  # an overlay: a consent, login or newsletter layer
        if not names:
            continue
        verdict = name_verdict(names, el.tag)
        share = scores.score(el) / total if total else 0.0
        if (verdict in ("comment", "consent") and share < _COMMENT_GUARD_SHARE) or (
            verdict == "negative" and share < _GUARD_SHARE
        ):
            named.append(el)
    for el in named:
        _remove(el)


def _in_running_text(el: etree._Element) -> bool:
    """A link or inline element inside a sentence: its name never removes words from it."""
    if el.tag not in _INLINE_TAGS:
        return False
    if el.tag == "a" or (el.tail and el.tail.strip()):
        return True
    parent = el.getparent()
    if parent is None:
        return False
    previous = el.getprevious()
    before = previous.tail if previous is not None else parent.text
    return bool(before and before.strip())


def _in_text_flow(aside: etree._Element, flow: dict[etree._Element, bool]) -> bool:
    """An <aside> between paragraphs of prose (an info box), not a sidebar.

    Sidebars sit next to the article container; info boxes, fact boxes and
    "background" boxes sit among the article's own paragraphs. The box itself
    must read as prose, not as a list of links. ``flow`` remembers per parent
    whether it holds such paragraphs (many asides in one parent stay linear).
    """
    parent = aside.getparent()
    if parent is None:
        return False
    if parent not in flow:
        paragraphs = 0
        for sibling in parent:
            if sibling.tag == "p" and _text_len(sibling) >= _FLOW_MIN_CHARS:
                paragraphs += 1
                if paragraphs >= 2:
                    break
        flow[parent] = paragraphs >= 2
    if not flow[parent]:
        return False
    length = _text_len(aside)
    return length >= _FLOW_MIN_CHARS and _link_len(aside) <= 0.3 * length


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
    if _inside_small_link(el):
        return 0.0
    links = _link_len(el)
    density = links / length
    if density > 0.5:
        return 0.0
    score = length * (1.0 - density)
    if not _SENTENCE_END.search(text):
        score *= 0.3
    return score


def _inside_small_link(el: etree._Element) -> bool:
    """A block inside a link: a teaser card whose title and summary are one link.

    A large link is an unclosed <a> that swallowed the rest of the page, not a
    card; its paragraphs still count. Its text is counted only up to the limit,
    so a page of paragraphs inside one <a> stays linear.
    """
    for ancestor in el.iterancestors():
        if ancestor.tag == "a":
            total = 0
            for chunk in ancestor.itertext():
                total += len(chunk.strip())
                if total > _MAX_CARD_LINK_CHARS:
                    return False
            return True
    return False


def first_block(part: etree._Element) -> etree._Element:
    """The first element of a container that reads as prose (the start of the text)."""
    for el in part.iter():
        if not isinstance(el.tag, str):
            continue
        if (
            el.tag in PARAGRAPH_TAGS
            and _block_score(el) >= _FIRST_BLOCK_SCORE
            and not any(d.tag in PARAGRAPH_TAGS for d in el.iterdescendants())
        ):
            return el
        if el.tag in _CONTAINER_TAGS and _direct_text_len(el) >= _MIN_BLOCK_CHARS * 2:
            return el
    return part


def _direct_text_len(el: etree._Element) -> int:
    total = len((el.text or "").strip())
    for child in el:
        total += len((child.tail or "").strip())
    return total


@dataclass(slots=True)
class Scores:
    """Per-element sums over the subtree: prose score, prose blocks, stray links.

    A "stray" link sits outside every prose block: headline links of teaser
    lists, navigation, tag clouds. Article bodies have few of them per block.
    """

    prose: dict[etree._Element, float] = field(default_factory=dict)
    blocks: dict[etree._Element, int] = field(default_factory=dict)
    stray_links: dict[etree._Element, int] = field(default_factory=dict)
    best: dict[etree._Element, float] | None = None  # filled by best_inside() when needed

    def score(self, el: etree._Element) -> float:
        return self.prose.get(el, 0.0)

    def teaser_penalty(self, el: etree._Element) -> float:
        """1.0 for prose, falling to 0 as stray links per 100 prose characters rise."""
        score = self.prose.get(el, 0.0)
        if score <= 0:
            return 0.0
        density = 100.0 * self.stray_links.get(el, 0) / score
        if density <= _STRAY_OK:
            return 1.0
        return max(0.0, 1.0 - (density - _STRAY_OK) / (_STRAY_BAD - _STRAY_OK))

    def effective(self, el: etree._Element) -> float:
        return self.score(el) * self.teaser_penalty(el)

    def best_inside(self, el: etree._Element) -> float:
        """The best teaser-penalized score of the element or any descendant."""
        if self.best is None:
            self.best = {}
            for node in reversed(list(el.getroottree().getroot().iter())):
                if not isinstance(node.tag, str):
                    continue
                best = max(self.effective(node), self.best.get(node, 0.0))
                self.best[node] = best
                parent = node.getparent()
                if parent is not None and best > self.best.get(parent, 0.0):
                    self.best[parent] = best
        return self.best.get(el, 0.0)


def score_tree(body: etree._Element) -> Scores:
    """Bottom-up sums of block scores, block counts and stray links.

    One pass in reverse document order (children before parents), so deep or
    huge trees cost linear time.
    """
    elements = [el for el in body.iter() if isinstance(el.tag, str)]
    result = Scores()
    scores = result.prose
    blocks = result.blocks
    links = result.stray_links
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
        if tag == "a":
            links[el] = links.get(el, 0) + 1
        if own:
            links.pop(el, None)  # links inside prose are not stray
            blocks[el] = blocks.get(el, 0) + 1
        total = scores.get(el, 0.0) + own
        if total:
            scores[el] = total
        parent = el.getparent()
        if parent is not None:
            if total:
                scores[parent] = scores.get(parent, 0.0) + total
            if el in blocks:
                blocks[parent] = blocks.get(parent, 0) + blocks[el]
            if el in links:
                links[parent] = links.get(parent, 0) + links[el]
            if own or inner_block or tag in PARAGRAPH_TAGS:
                has_block.add(parent)
    return result


def _hinted_start(body: etree._Element, scores: Scores) -> etree._Element:
    """Where to start descending: a unique semantic article container, if it holds
    a fair share of the prose, else <body>.

    Pages mark their article with itemprop=articleBody, a single <main> or a
    single dominant <article>; teaser cards use <article> too, hence "dominant".
    """
    total = scores.score(body)
    for el in body.iter():
        if (
            isinstance(el.tag, str)
            and (el.get("itemprop") or "").lower() == "articlebody"
            and scores.score(el) >= _HINT_MIN_SHARE * total
        ):
            return el
    for tag in ("article", "main"):
        found = [el for el in body.iter(tag) if scores.score(el) > 0]
        if not found:
            continue
        best = max(found, key=scores.effective)
        rest = sum(
            scores.effective(el)
            for el in found
            if el is not best and best not in el.iterancestors()
        )
        if scores.score(best) >= _HINT_MIN_SHARE * total and scores.effective(best) >= 2 * rest:
            return best
    return body


def find_article(root: etree._Element) -> list[etree._Element]:
    """The elements that hold the article body, in document order; [] when nothing scores.

    Descends from <body> while one child holds nearly all of the (teaser-
    penalized) prose, joins the parts of a body split over sibling containers,
    then drops teaser lists left inside the parts.
    """
    body = next(root.iter("body"), None)
    if body is None:
        body = root
    scores = score_tree(body)
    if scores.score(body) <= 0:
        return []
    node = _descend(_hinted_start(body, scores), scores)
    parts = _with_continuations(node, scores)
    for part in parts:
        _drop_teasers(part, scores)
    return parts


def _descend(node: etree._Element, scores: Scores) -> etree._Element:
    while True:
        children = [c for c in node if scores.score(c) > 0]
        if not children:
            return node
        effective = {c: scores.effective(c) for c in children}
        best = max(children, key=lambda c: effective[c])
        if sum(effective.values()) <= 0:
            # Every child link-heavy: compare plain prose instead.
            effective = {c: scores.score(c) for c in children}
        elif scores.score(best) < _WEAK_SHARE * scores.score(node):
            # The winner holds little of the text: a layout row that puts the
            # navigation column next to the article loses its whole score to
            # the navigation's links. Compare the best part inside each child.
            effective = {c: scores.best_inside(c) for c in children}
        best = max(children, key=lambda c: effective[c])
        if effective[best] / sum(effective.values()) < _DESCEND_SHARE:
            return node
        node = best


def _class_tokens(el: etree._Element) -> frozenset[str]:
    """Class names that say what an element is; layout-grid classes say nothing."""
    return frozenset(t for t in (el.get("class") or "").split() if not _GRID_CLASS.match(t))


def _with_continuations(node: etree._Element, scores: Scores) -> list[etree._Element]:
    """The node plus the siblings that continue the same article, in document order.

    CMSs split a body around ads, images and "read also" boxes into several
    containers of the same kind (``div.text``, an ad, ``div.text``); the
    descent picks the biggest. Its siblings join when they hold prose and are
    of the same kind: the same tag and a shared class (or both unnamed).
    """
    anchor = node
    while True:  # up to where the node's prose stops being all of it
        parent = anchor.getparent()
        if parent is None or parent.tag in ("body", "html"):
            break
        if scores.score(parent) > scores.score(anchor):
            break
        anchor = parent
    parent = anchor.getparent()
    if parent is None or parent.tag == "html":
        return [node]
    tokens = _class_tokens(anchor)
    parts = []
    for sibling in parent:
        if sibling is anchor:
            parts.append(node)
        elif _continues(sibling, anchor, tokens, scores):
            parts.append(sibling)
    return parts


def _continues(
    sibling: etree._Element, anchor: etree._Element, tokens: frozenset[str], scores: Scores
) -> bool:
    if (
        not isinstance(sibling.tag, str)
        or scores.score(sibling) < _JOIN_MIN_SCORE
        or scores.teaser_penalty(sibling) < 1.0
    ):
        return False
    if sibling.tag != anchor.tag:
        return False
    theirs = _class_tokens(sibling)
    if tokens or theirs:
        return bool(tokens & theirs)
    return not sibling.get("id") and not anchor.get("id")


def _drop_teasers(node: etree._Element, scores: Scores) -> None:
    """Remove teaser lists (a stray link per prose block) inside the article node."""
    doomed = []
    for el in node.iterdescendants():
        if not isinstance(el.tag, str) or el.tag in PARAGRAPH_TAGS:
            continue
        if (
            scores.blocks.get(el, 0) >= 2
            and scores.teaser_penalty(el) == 0.0
            and scores.score(el) < _TEASER_MAX_SHARE * scores.score(node)
        ):
            doomed.append(el)
    for el in doomed:
        _remove(el)
