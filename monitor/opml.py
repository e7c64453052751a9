"""Feed lists in OPML: read a subscription export, write one, merge it into feeds.yaml (pure).

OPML files come from other programs and from strangers, so they are parsed
like feeds: no DTD loading, no network, and a document that declares entities
is refused outright (billion laughs / quadratic blowup live there).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import yaml
from lxml import etree  # type: ignore[import-untyped]

from monitor.config import FeedSpec

_FEED_URL = re.compile(r"https?://[^/\s]+", re.IGNORECASE)
_TOP_KEY = re.compile(r"^[^\s#-][^:]*:")
_FEEDS_KEY = re.compile(r"^feeds\s*:\s*(?P<rest>.*)$")


class OpmlError(ValueError):
    """The OPML document can't be used; the message says why."""


@dataclass(frozen=True, slots=True)
class OpmlFeed:
    """One subscription of an OPML file.

    ``tags`` are the texts of the folders (outer outlines) it sits in, outermost first.
    """

    url: str
    title: str | None = None
    tags: tuple[str, ...] = ()


# --------------------------------------------------------------------------
# import


def _parser() -> etree.XMLParser:
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _attr(el: Any, name: str) -> str:
    """An attribute by name, case-insensitively (exports spell xmlUrl many ways)."""
    wanted = name.lower()
    for key, value in el.attrib.items():
        if isinstance(key, str) and key.lower() == wanted:
            return str(value).strip()
    return ""


def _walk(el: Any, folders: tuple[str, ...]) -> Iterator[OpmlFeed]:
    """Every outline with an ``xmlUrl``, as written (checked later), with its folders."""
    for child in el:
        if not isinstance(child.tag, str) or etree.QName(child).localname != "outline":
            continue
        url = _attr(child, "xmlUrl")
        label = _attr(child, "title") or _attr(child, "text")
        if url:
            yield OpmlFeed(url=url, title=label if label and label != url else None, tags=folders)
            # a feed outline's children are not feeds in any exporter we know
            continue
        yield from _walk(child, (*folders, label) if label else folders)


@dataclass(frozen=True, slots=True)
class OpmlImport:
    """What an OPML document holds: the feeds to add, the URLs rewritten to be
    usable (``feed://``, no scheme) as (written, used), and the outlines skipped as
    (URL as written, why)."""

    feeds: list[OpmlFeed]
    converted: list[tuple[str, str]]
    skipped: list[tuple[str, str]]


_FEED_SCHEME = re.compile(r"^feed:(//)?", re.IGNORECASE)
_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*):", re.IGNORECASE)
_HOST_FIRST = re.compile(r"^[^/\s:@]+\.[^/\s:@]+(:\d+)?(/|$)")


def usable_url(written: str) -> tuple[str | None, str]:
    """(the http(s) URL to poll for an outline's ``xmlUrl``, or None) and why not.

    ``feed://host/path`` and ``feed:https://...`` (the old "subscribe" links),
    ``//host/path`` and ``host.tld/path`` become https URLs; other schemes and
    URLs with white space are refused.
    """
    url = written.strip()
    if any(c.isspace() for c in url):
        return None, "the URL contains white space"
    url = _FEED_SCHEME.sub(lambda m: "https://" if m.group(1) else "", url, count=1)
    if url.startswith("//"):
        url = "https:" + url
    scheme = _SCHEME.match(url)
    if scheme is None and _HOST_FIRST.match(url):
        url = "https://" + url
        scheme = _SCHEME.match(url)
    if scheme is None:
        return None, "not a URL (no scheme, no host name)"
    if scheme.group(1).lower() not in ("http", "https"):
        return None, f"not http or https ({scheme.group(1)}:)"
    if not _FEED_URL.match(url):
        return None, "no host name"
    return url, ""


def read_opml(data: bytes) -> OpmlImport:
    """The subscriptions of an OPML document, in document order, each URL once, with
    what was rewritten and what was skipped, and why.

    Folders (outlines without ``xmlUrl``) become tags of the feeds inside them.
    Raises OpmlError for a document that is not OPML, is not well-formed XML,
    or declares entities.
    """
    if not data.strip():
        raise OpmlError("the OPML file is empty")
    try:
        root = etree.fromstring(data, _parser())
    except etree.XMLSyntaxError as exc:
        raise OpmlError(f"not well-formed XML: {exc}") from None
    dtd = root.getroottree().docinfo.internalDTD
    if dtd is not None and any(True for _ in dtd.iterentities()):
        raise OpmlError("the OPML file declares XML entities; refused for safety")
    if etree.QName(root).localname.lower() != "opml":
        raise OpmlError(f"not an OPML document (root element <{etree.QName(root).localname}>)")
    body = next((c for c in root if isinstance(c.tag, str) and c.tag == "body"), None)
    if body is None:
        raise OpmlError("the OPML document has no <body>")
    out: list[OpmlFeed] = []
    converted: list[tuple[str, str]] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[str, str] = {}  # URL -> as first written
    for feed in _walk(body, ()):
        url, why = usable_url(feed.url)
        if url is None:
            skipped.append((feed.url, why))
            continue
        if url in seen:
            skipped.append((feed.url, "a second outline of the same feed"))
            continue
        seen[url] = feed.url
        if url != feed.url:
            converted.append((feed.url, url))
        tags = tuple(dict.fromkeys(feed.tags))
        out.append(OpmlFeed(url, feed.title, tags))
    return OpmlImport(out, converted, skipped)


def parse_opml(data: bytes) -> list[OpmlFeed]:
    """The usable subscriptions of an OPML document (``read_opml`` says what else)."""
    return read_opml(data).feeds


# --------------------------------------------------------------------------
# export


def export_opml(
    feeds: Sequence[FeedSpec], title: str, titles: Mapping[str, str] | None = None
) -> str:
    """An OPML 2.0 document of ``feeds``; tags become nested folders (first tag outermost).

    A feed is titled by its ``name:``, else its own title from ``titles`` (URL -> title,
    as the store knows it), else its URL (all there is to call it).
    """
    root = etree.Element("opml", version="2.0")
    head = etree.SubElement(root, "head")
    etree.SubElement(head, "title").text = title
    body = etree.SubElement(root, "body")
    folders: dict[tuple[str, ...], Any] = {(): body}
    for feed in feeds:
        parent = body
        for depth in range(1, len(feed.tags) + 1):
            path = feed.tags[:depth]
            if path not in folders:
                folders[path] = etree.SubElement(
                    folders[path[:-1]], "outline", text=path[-1], title=path[-1]
                )
            parent = folders[path]
        label = feed.name or (titles or {}).get(feed.url) or feed.url
        etree.SubElement(parent, "outline", type="rss", text=label, title=label, xmlUrl=feed.url)
    etree.indent(root, space="  ")
    xml = str(etree.tostring(root, encoding="unicode"))
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + xml + "\n"


# --------------------------------------------------------------------------
# merge into feeds.yaml


def _yaml_string(value: str) -> str:
    # A JSON string is a valid YAML double-quoted scalar; "$" is doubled because
    # the config substitutes ${NAME} in every string.
    return json.dumps(value, ensure_ascii=False).replace("$", "$$")


def _existing(text: str) -> tuple[set[str], set[str]]:
    """URLs and names of the feeds already in the config."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"feeds.yaml is not valid YAML: {exc}") from None
    urls: set[str] = set()
    names: set[str] = set()
    feeds = data.get("feeds") if isinstance(data, dict) else None
    for item in feeds if isinstance(feeds, list) else []:
        if isinstance(item, str):
            urls.add(item)
        elif isinstance(item, dict):
            if isinstance(item.get("url"), str):
                urls.add(item["url"])
            if isinstance(item.get("name"), str):
                names.add(item["name"])
    return urls, names


def merge_into_yaml(text: str, feeds: Sequence[OpmlFeed]) -> str:
    """``text`` (a feeds.yaml) with ``feeds`` appended to its ``feeds:`` list.

    Feeds whose URL the file already lists are skipped; a title that another feed
    already uses as its name is left out (the feed's own title is used then).
    Everything else in the file, comments included, is kept as it is: the new
    entries are inserted as text after the last line of the ``feeds:`` block.
    Raises ValueError when the file isn't valid YAML or its feeds list is written
    in flow style (``feeds: [...]``) other than an empty ``[]``.
    """
    urls, names = _existing(text)
    new: list[OpmlFeed] = []
    for f in feeds:
        if f.url in urls:
            continue
        urls.add(f.url)
        title = f.title if f.title and f.title not in names else None
        if title:
            names.add(title)
        new.append(OpmlFeed(f.url, title, f.tags))
    if not new:
        return text

    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    start = next((i for i, line in enumerate(lines) if _FEEDS_KEY.match(line)), None)
    indent = "  "
    if start is None:
        lines.append("feeds:\n")
        insert_at = len(lines)
    else:
        m = _FEEDS_KEY.match(lines[start].rstrip("\r\n"))
        rest = m.group("rest").split("#", 1)[0].strip() if m else ""
        if rest in ("[]", "~", "null"):
            lines[start] = "feeds:\n"
        elif rest:
            raise ValueError("the feeds: list is written in flow style; add the feeds by hand")
        # The block ends before the next top-level key; comments and blank lines
        # just before that key belong to it, so the insertion goes above them.
        end = len(lines)
        for i in range(start + 1, len(lines)):
            if _TOP_KEY.match(lines[i]):
                end = i
                break
        insert_at = end
        while insert_at > start + 1 and (
            not lines[insert_at - 1].strip() or lines[insert_at - 1].lstrip().startswith("#")
        ):
            insert_at -= 1
        for line in lines[start + 1 : end]:
            item = re.match(r"^(\s*)-\s", line)
            if item:
                indent = item.group(1)
                break
    out: list[str] = []
    for f in new:
        out.append(f"{indent}- url: {_yaml_string(f.url)}\n")
        if f.title:
            out.append(f"{indent}  name: {_yaml_string(f.title)}\n")
        if f.tags:
            out.append(f"{indent}  tags: [{', '.join(_yaml_string(t) for t in f.tags)}]\n")
    lines[insert_at:insert_at] = out
    return "".join(lines)
