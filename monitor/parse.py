"""Feed documents to typed records: the only module that imports feedparser.

feedparser is handed bytes we fetched ourselves, never a URL or a path
(FACTS: it opens files and follows redirects when given a string). Its
untyped result becomes ``ParsedFeed`` / ``FeedEntry`` here and nowhere else.
"""

from __future__ import annotations

import calendar
import codecs
import functools
import hashlib
import itertools
import re
import time
import warnings
import xml.sax
import zlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser
from feedparser.encodings import convert_to_utf8

from monitor.types import FeedEntry, ParsedFeed

_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
# XML-illegal control bytes, deleted with bytes.translate (7x faster than a regex).
_CONTROL_BYTES = bytes(range(0x09)) + b"\x0b\x0c" + bytes(range(0x0E, 0x20)) + b"\x7f"
_SAFE_SCHEMES = ("http", "https")
_DAYS = {d: i for i, d in enumerate(("monday", "tuesday", "wednesday", "thursday", "friday"))}
_DAYS.update({"saturday": 5, "sunday": 6})
_SKIP_LIMIT = 262144  # skipHours and skipDays sit in the channel, before the items
MAX_ENTRIES = 1000  # entries read from one document; feeds list newest first

# -- the prolog ---------------------------------------------------------------
#
# Entity declarations are where billion laughs and quadratic blowup live, and
# feedparser's own DOCTYPE handling keeps entities with plain-text values for
# its loose parser, which expands them (issue 10: one 100,000-character
# entity referenced 50,000 times is a 5 GB string). So every declaration before the
# first element goes, found with the grammar of XML rather than a guess: an
# entity value may hold "]>" or ">", a comment may hold quotes, and a prolog may
# be megabytes long. The patterns are possessive (Python 3.11), so each is one
# linear pass that never backtracks, also on a document that never closes them.
_LITERAL = rb'"[^"]*+"|\'[^\']*+\''
_COMMENT = rb"<!--(?:[^-]++|-(?!->))*+-->"
_PI = rb"<\?(?:[^?]++|\?(?!>))*+\?>"
_MARKUP_DECL = rb"<(?:[^>\"']++|" + _LITERAL + rb")*+>"  # <!ENTITY ...>, <!ATTLIST ...>, ...
# The XML declaration: kept, as it names the encoding.
_XML_DECL_BYTES = re.compile(rb"<\?xml\s(?:[^?<>]++|\?(?!>))*+\?>")
# White space, comments, processing instructions and stray text: what may stand
# before and after a DOCTYPE.
_MISC = re.compile(rb"(?:[^<]++|" + _COMMENT + rb"|" + _PI + rb")*+")
_DOCTYPE_START = re.compile(rb"<!DOCTYPE", re.IGNORECASE)
_DOCTYPE = re.compile(
    rb"<!DOCTYPE(?:[^\[\"'>]++|" + _LITERAL + rb")*+"  # name and external ID
    rb"(?P<subset>\[(?:[^\]\"'<]++|" + _LITERAL + rb"|" + _COMMENT + rb"|" + _PI + rb"|"
    rb"" + _MARKUP_DECL + rb")*+\]\s*+)?>",
    re.IGNORECASE,
)
_DECL = rb"<!(?!--|DOCTYPE)(?:[^>\"']++|" + _LITERAL + rb")*+>"
# Everything up to the first element, once it holds more than a first DOCTYPE:
# any number of DOCTYPEs and stray declarations, one pass.
_DEBRIS = re.compile(
    rb"(?:[^<]++|" + _COMMENT + rb"|" + _PI + rb"|" + _DOCTYPE.pattern + rb"|" + _DECL + rb")*+",
    re.IGNORECASE,
)
# feedparser takes its entities from the text before the first "<" + word
# character (sanitizer.replace_doctype); nothing there may declare one.
_FIRST_ELEMENT = re.compile(rb"<\w")
_ENTITY_DECL = re.compile(rb"<!ENTITY", re.IGNORECASE)

# -- encodings ----------------------------------------------------------------
#
# The prolog is read as bytes, which is right only when feedparser decodes
# them with an encoding in which markup is plain ASCII. A document declared as
# UTF-7, ISO-2022, Johab or unicode_escape hides its DOCTYPE from a byte scan
# (in UTF-7, "<" is "+ADw-"), so such a document is decoded here first, the way
# feedparser decodes it; UTF-16/32 (by BOM or by how "<?" looks) and EBCDIC are
# re-encoded as UTF-8 by their own encoding, as the XML specification says.
_UNICODE_STARTS = (  # (how the document starts, its encoding, bytes of BOM to drop)
    (codecs.BOM_UTF32_LE, "utf-32-le", 4),  # before UTF-16 LE: its BOM starts the same
    (codecs.BOM_UTF32_BE, "utf-32-be", 4),
    (codecs.BOM_UTF16_LE, "utf-16-le", 2),
    (codecs.BOM_UTF16_BE, "utf-16-be", 2),
    (b"<\x00\x00\x00", "utf-32-le", 0),
    (b"\x00\x00\x00<", "utf-32-be", 0),
    (b"<\x00?\x00", "utf-16-le", 0),
    (b"\x00<\x00?", "utf-16-be", 0),
    (b"Lo\xa7\x94", "cp037", 0),  # "<?xm" in EBCDIC
)
_ENCODING_ATTR = re.compile(rb"encoding=[\"']([^\"']*)")
_PROBE = bytes(range(0x80)) + b"\\x3c\\u003c+ADw-~{<}~\x1b$B<!\x1b(B.xn--ls8h."
_STRUCTURE = b"<>!?-\"'"
# feedparser sniffs the encoding with ^<\?.*encoding=['"](.*?)['"].*\?> on the
# first line: on a long one with many "encoding=" and no "?>" after them that
# runs for minutes (130 KB: over 100 s), so no first line is longer than this.
_FIRST_LINE_LIMIT = 1024
# feedparser also tries ^\s*<!ENTITY and ^\s*<!DOCTYPE at every line start
# before the first element: blank lines there cost quadratic time (40,000 took
# 12 s), so in a head longer than this (1,000 took 10 ms) runs of them shrink to
# one newline.
_BLANK_HEAD_LIMIT = 1024
_BLANK_LINES = re.compile(rb"\n[ \t\r\f\v]*+\n")
_NEWLINE_AND_SPACE = re.compile(rb"\n\s++")


class UnsafeDocument(ValueError):
    """A document that cannot be made safe to parse; the message says why."""


@functools.lru_cache(maxsize=64)
def _ascii_markup(encoding: str) -> bool:
    """Whether markup reads in ``encoding`` as it does in ASCII, byte for byte.

    ASCII must decode unchanged (UTF-7, unicode_escape, EBCDIC and ISO-2022 fail
    here), and no multi-byte character may end in a byte that is markup (Johab's
    can end in "<"). An encoding Python does not know counts: feedparser skips
    it too.
    """
    try:
        with warnings.catch_warnings():  # unicode_escape warns about the probe
            warnings.simplefilter("ignore")
            if _PROBE.decode(encoding) != _PROBE.decode("latin-1"):
                return False
            tail = _STRUCTURE.decode("ascii")
            return all(
                (bytes([lead]) + _STRUCTURE).decode(encoding, "replace").endswith(tail)
                for lead in range(0x80, 0x100)
            )
    except LookupError:
        return True
    except Exception:  # e.g. UnicodeDecodeError: not an encoding to read as bytes
        return False


def _named_encodings(body: bytes, headers: Mapping[str, str]) -> Iterator[str]:
    """Every encoding feedparser may try before UTF-8 and windows-1252: the
    Content-Type charset, and any ``encoding=`` on a first line that starts
    with ``<?`` (feedparser takes the last one there)."""
    for param in headers.get("content-type", "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            yield value.strip().strip("\"'")
    start = len(codecs.BOM_UTF8) if body.startswith(codecs.BOM_UTF8) else 0
    if not body.startswith(b"<?", start):
        return
    end = body.find(b"\n", start)
    end = len(body) if end < 0 else end
    at = body.find(b"encoding=", start, end)
    while at >= 0:
        attr = _ENCODING_ATTR.match(body, at, end)
        if attr:
            yield attr.group(1).decode("latin-1")
        at = body.find(b"encoding=", at + 1, end)


def _short_first_line(body: bytes) -> bytes:
    """``body`` with a first line of at most _FIRST_LINE_LIMIT bytes when it starts
    with ``<?``: cut after the XML declaration, or before it when the declaration
    is longer than that (no real one is)."""
    start = len(codecs.BOM_UTF8) if body.startswith(codecs.BOM_UTF8) else 0
    if not body.startswith(b"<?", start):
        return body
    end = body.find(b"\n", start, start + _FIRST_LINE_LIMIT + 1)
    if end >= 0 or len(body) - start <= _FIRST_LINE_LIMIT:
        return body
    decl = _XML_DECL_BYTES.match(body, start, start + _FIRST_LINE_LIMIT)
    cut = decl.end() if decl else start
    return body[:cut] + b"\n" + body[cut:]


def _decode_like_feedparser(body: bytes, headers: Mapping[str, str]) -> bytes:
    """The document as UTF-8, decoded the way feedparser decodes it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        data: bytes = convert_to_utf8(dict(headers), _short_first_line(body), {})
    return data


def _neutralise_prolog(body: bytes) -> bytes:
    """``body`` without a declaration before its first element; raises UnsafeDocument.

    Kept: the XML declaration, white space, comments, processing instructions
    and a first DOCTYPE without an internal subset (RSS 0.91's names Netscape's
    DTD), unless a comment or instruction holds a declaration. A DOCTYPE with an
    internal subset goes whole, and so does everything from a second DOCTYPE or
    a stray declaration to the first element. An ordinary feed comes back as it
    is, or with a newline after its XML declaration when it is all on one line.
    """
    pos = len(codecs.BOM_UTF8) if body.startswith(codecs.BOM_UTF8) else 0
    pieces = [body[:pos]]
    changed = False

    def misc() -> None:
        nonlocal pos, changed
        run = _MISC.match(body, pos)
        assert run is not None  # it matches the empty string
        text = run.group()
        if text.count(b"<!") == text.count(b"<!--"):
            pieces.append(text)
        else:  # a comment or instruction that holds a declaration
            pieces.append(b"\n")
            changed = True
        pos = run.end()

    decl = _XML_DECL_BYTES.match(body, pos)
    if decl:
        pieces.append(decl.group())
        pos = decl.end()
    misc()
    if _DOCTYPE_START.match(body, pos):
        doctype = _DOCTYPE.match(body, pos)
        if doctype is None:
            raise UnsafeDocument(_unclosed(body, pos))
        if doctype.group("subset") is None and b"<" not in doctype.group()[1:]:
            pieces.append(doctype.group())
        else:
            changed = True
        pos = doctype.end()
        misc()
    if body.startswith(b"<!", pos) and not body.startswith(b"<!--", pos):
        debris = _DEBRIS.match(body, pos)
        assert debris is not None
        pieces.append(b"\n")
        changed = True
        pos = debris.end()
    if body.startswith((b"<!", b"<?"), pos):
        raise UnsafeDocument(_unclosed(body, pos))
    out = b"".join(pieces) + body[pos:] if changed else body
    first = _FIRST_ELEMENT.search(out)
    head = first.start() if first else 0  # feedparser reads entities from out[:head]
    if _ENTITY_DECL.search(out, 0, head):
        raise UnsafeDocument(
            "refused: an entity declaration before the first element could not be removed"
        )
    if head > _BLANK_HEAD_LIMIT and _BLANK_LINES.search(out, 0, head):
        out = _NEWLINE_AND_SPACE.sub(b"\n", out[:head]) + out[head:]
    return _short_first_line(out)


def _unclosed(body: bytes, pos: int) -> str:
    """Why the markup at ``pos`` (before the first element) is refused: it never ends."""
    if _DOCTYPE_START.match(body, pos):
        return (
            "refused: its DOCTYPE never ends (an internal subset, comment or quoted value "
            "left open), so its entity declarations cannot be removed"
        )
    if body.startswith((b"<!--", b"<?"), pos):
        return "refused: a comment or processing instruction before the first element never ends"
    return "refused: a declaration before the first element never ends"


def sanitize_xml(body: bytes, headers: Mapping[str, str] | None = None) -> tuple[bytes, str | None]:
    """Make a document safe to hand to feedparser; returns (bytes, charset override).

    ``headers`` are the response headers as feedparser gets them (lower-case
    names): their charset takes part in decoding. UTF-16/32 and EBCDIC, and a
    document in an encoding where markup is not ASCII, are re-encoded as UTF-8
    (so the markup can be seen); XML-illegal control characters are dropped;
    every declaration before the first element goes (``_neutralise_prolog``).
    Raises UnsafeDocument for a document whose declarations cannot be removed:
    it is never parsed.
    """
    headers = headers or {}
    charset: str | None = None
    for start, codec, bom in _UNICODE_STARTS:
        if body.startswith(start):
            text = body[bom:].decode(codec, errors="replace")
            body = _XML_DECL.sub("", text, count=1).encode("utf-8")  # it named codec
            charset = "utf-8"
            break
    else:
        body = _short_first_line(body)
        if not all(_ascii_markup(e) for e in _named_encodings(body, headers)):
            body = _decode_like_feedparser(body, headers)
            charset = "utf-8"
    # Control bytes go first: "<!DOC\x01TYPE" must not become a DOCTYPE after the scan.
    stripped = body.translate(None, _CONTROL_BYTES)
    if len(stripped) != len(body):
        body = stripped
    return _neutralise_prolog(body), charset


def safe_link(link: object, base: str) -> str | None:
    """An http(s) URL, made absolute against the feed URL; anything else is dropped."""
    if not isinstance(link, str):
        return None
    link = link.strip()
    if not link or _CONTROL.search(link) or any(c in link for c in "\r\n\t"):
        return None
    try:
        absolute = urljoin(base, link)
        parts = urlsplit(absolute)
    except ValueError:
        return None
    if parts.scheme.lower() not in _SAFE_SCHEMES or not parts.hostname:
        return None
    return absolute


def _time(value: Any) -> datetime | None:
    if isinstance(value, time.struct_time):
        try:
            return datetime.fromtimestamp(calendar.timegm(value), UTC)
        except (OverflowError, ValueError, OSError):
            return None
    return None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def content_hash(*parts: str) -> str:
    """The identity of an entry that has neither guid nor link."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "replace")).hexdigest()
    return "sha256:" + digest[:32]


def _entry(raw: Any, base: str) -> FeedEntry:
    title = _text(raw.get("title"))
    summary = _text(raw.get("summary"))
    contents = raw.get("content") or []
    content = "\n".join(_text(c.get("value")) for c in contents if isinstance(c, dict))
    link = safe_link(raw.get("link"), base)
    guid = _text(raw.get("id")).strip() or None
    if guid is not None and _CONTROL.search(guid):
        guid = _CONTROL.sub("", guid)
    identity = guid or link or content_hash(title, summary)
    tags = tuple(t for t in (_text(tag.get("term")).strip() for tag in raw.get("tags") or []) if t)
    # dict.get: FeedParserDict maps a missing updated_parsed to published_parsed
    # with a DeprecationWarning (an exception where warnings are errors).
    published = _time(raw.get("published_parsed")) or _time(dict.get(raw, "updated_parsed"))
    return FeedEntry(
        identity=identity,
        guid=guid,
        link=link,
        title=title.strip(),
        summary=summary,
        content=content,
        author=_text(raw.get("author")),
        categories=tags,
        published=published,
    )


def _skip(body: bytes) -> tuple[frozenset[int], frozenset[int]]:
    hours: set[int] = set()
    days: set[int] = set()
    if b"<skip" not in body:
        return frozenset(), frozenset()
    text = body.decode("utf-8", "replace")
    for block in re.findall(r"<skipHours>(.*?)</skipHours>", text, re.S | re.I):
        for h in re.findall(r"<hour>\s*(\d+)\s*</hour>", block, re.I):
            if 0 <= int(h) <= 24:
                hours.add(int(h) % 24)
    for block in re.findall(r"<skipDays>(.*?)</skipDays>", text, re.S | re.I):
        for d in re.findall(r"<day>\s*(\w+)\s*</day>", block, re.I):
            if d.lower() in _DAYS:
                days.add(_DAYS[d.lower()])
    return frozenset(hours), frozenset(days)


# -- known items ----------------------------------------------------------------
#
# A feed that changed usually differs from its last document by an item or two
# and a date, and feedparser's time is per item. So each document's items are
# indexed (a keyed hash of each item's bytes -> the identity it parsed to), and
# the next document is parsed without the items that are byte for byte in that
# index: they were seen, and all a poll needs of them is their identity (they
# are still listed). The key is the document's prolog and root start tag (its
# encoding, DOCTYPE, namespaces and xml:base) and its Content-Type: the same
# bytes mean the same item only in the same context. Wherever the items can't
# be told apart with certainty (nested or self-closing item tags, an item tag
# inside a comment or CDATA section, xml:base between the root and the items,
# a document that does not parse cleanly, fewer or more entries than items),
# the document is parsed whole and not indexed, so the next poll parses whole.
_ROOT_START = re.compile(
    rb"<(?P<name>[A-Za-z_][\w:.-]*+)(?:\s++[^\s=<>/\"']++\s*+=\s*+(?:\"[^\"<]*+\"|'[^'<]*+'))*+\s*+>"
)
_ITEM_OF_ROOT = {b"rss": b"item", b"RDF": b"item", b"feed": b"entry"}
_AFTER_NAME = (b" ", b"\t", b"\r", b"\n", b">")
_MAX_IDENTITY = 2048  # bytes: an entry with a longer identity is not indexed


def _item_spans(doc: bytes, content_type: str) -> tuple[bytes, list[tuple[int, int]]] | None:
    """The key of ``doc``'s context and the (start, end) of each of its items, or None."""
    first = _FIRST_ELEMENT.search(doc)
    root = _ROOT_START.match(doc, first.start()) if first else None
    if root is None:
        return None
    name = _ITEM_OF_ROOT.get(root.group("name").rpartition(b":")[2])
    if name is None:
        return None
    opening, closing = b"<" + name, b"</" + name
    spans: list[tuple[int, int]] = []
    pos = root.end()
    while (start := doc.find(opening, pos)) >= 0:
        after = doc[start + len(opening) : start + len(opening) + 1]
        if after not in _AFTER_NAME:
            if after in (b"/", b""):
                return None  # <item/>: not sure what it is
            pos = start + 1  # <items> (RSS 1.0's list) or another element
            continue
        close = doc.find(closing, start)
        end = doc.find(b">", close) + 1 if close >= 0 else 0
        if end <= 0 or doc[close + len(closing) : end - 1].strip():
            return None
        if doc.find(opening, start + 1, close) >= 0 or len(spans) >= MAX_ENTRIES:
            return None  # nested, or more than are read
        spans.append((start, end))
        pos = end
    if not spans or b"xml:base" in doc[root.end() : spans[0][0]]:
        return None
    # An item tag inside a comment or a CDATA section (or one cut in two by an item
    # boundary) shows as a piece of the document where they don't balance.
    cuts = [0, *(i for span in spans for i in span), len(doc)]
    for a, b in itertools.pairwise(cuts):
        if doc.count(b"<![CDATA[", a, b) != doc.count(b"]]>", a, b):
            return None
        if doc.count(b"<!--", a, b) != doc.count(b"-->", a, b):
            return None
    context = content_type.encode("utf-8", "replace") + b"\0" + doc[: root.end()]
    return hashlib.blake2b(context, digest_size=32).digest(), spans


def _item_digest(key: bytes, item: bytes) -> bytes:
    return hashlib.blake2b(item, digest_size=8, key=key).digest()


def encode_items(pairs: Iterable[tuple[bytes, str]]) -> bytes:
    """The index of a document's items (digest -> identity), compact, for the store."""
    out = bytearray()
    for digest, identity in pairs:
        raw = identity.encode("utf-8", "surrogatepass")
        if len(raw) > _MAX_IDENTITY:
            return b""
        out += digest + len(raw).to_bytes(2, "big") + raw
    return zlib.compress(bytes(out), 1) if out else b""


def decode_items(blob: bytes) -> dict[bytes, str]:
    """``encode_items`` read back; {} for anything it did not write."""
    try:
        raw = zlib.decompress(blob) if blob else b""
        out: dict[bytes, str] = {}
        pos = 0
        while pos < len(raw):
            size = int.from_bytes(raw[pos + 8 : pos + 10], "big")
            if pos + 10 + size > len(raw):
                return {}
            out[raw[pos : pos + 8]] = raw[pos + 10 : pos + 10 + size].decode(
                "utf-8", "surrogatepass"
            )
            pos += 10 + size
        return out
    except (zlib.error, UnicodeDecodeError):
        return {}


def _feedparser(doc: bytes, response_headers: dict[str, str]) -> Any:
    return feedparser.parse(
        doc,
        response_headers=response_headers,
        sanitize_html=False,
        resolve_relative_uris=False,
    )


def _parse_known(
    doc: bytes,
    response_headers: dict[str, str],
    known: bytes,
) -> tuple[Any, list[tuple[bytes, str]], list[bytes] | None]:
    """feedparser's result for ``doc`` without its items in the ``known`` index, those
    items (digest, identity), and the digests of the items it parsed (None: the
    document is not indexed)."""
    split = _item_spans(doc, response_headers.get("content-type", ""))
    if split is None:
        return _feedparser(doc, response_headers), [], None
    key, spans = split
    digests = [_item_digest(key, doc[a:b]) for a, b in spans]
    index = decode_items(known)
    skipped = [i for i, d in enumerate(digests) if d in index]
    if skipped:
        kept = [d for d in digests if d not in index]
        pieces, pos = [], 0
        for i in skipped:
            a, b = spans[i]
            pieces.append(doc[pos:a])
            pos = b
        pieces.append(doc[pos:])
        parsed = _feedparser(b"".join(pieces), response_headers)
        if not parsed.get("bozo") and len(parsed.get("entries", ())) == len(kept):
            return parsed, [(digests[i], index[digests[i]]) for i in skipped], kept
    parsed = _feedparser(doc, response_headers)  # whole: nothing known, or unsure
    if parsed.get("bozo") or len(parsed.get("entries", ())) != len(digests):
        return parsed, [], None
    return parsed, [], digests


def parse_feed(
    body: bytes, url: str, headers: Mapping[str, str] | None = None, known: bytes = b""
) -> ParsedFeed:
    """Parse a fetched feed document; problems come back in ``error``.

    ``known`` is the index of the feed's last document (``ParsedFeed.items``):
    its items that are here byte for byte are not parsed again, their identities
    come back in ``known``. Raises only MemoryError, or SystemError from C code
    out of memory (see the worker pool's memory ceiling).
    """
    if not body.strip():
        return ParsedFeed(title=None, link=None, entries=(), error="empty response body")
    # No content-location: given a base, feedparser resolves guids against it
    # (identities would change with the URL the feed was fetched from) and
    # urljoin silently deletes CR/LF from links; safe_link resolves links itself.
    response_headers = {
        k.lower(): v for k, v in (headers or {}).items() if k.lower() != "content-location"
    }
    try:
        clean, charset = sanitize_xml(body, response_headers)
        if charset:
            response_headers["content-type"] = f"application/xml; charset={charset}"
        parsed, skipped, digests = _parse_known(clean, response_headers, known)
    except UnsafeDocument as exc:
        return ParsedFeed(title=None, link=None, entries=(), error=str(exc))
    except (MemoryError, SystemError):
        # Over the worker's memory ceiling (C code may say so with SystemError):
        # the pool answers "document too large to parse" and replaces the worker.
        raise
    except Exception as exc:  # feedparser's loose parser can raise anything
        return ParsedFeed(title=None, link=None, entries=(), error=f"unparseable feed: {exc!r}")
    feed = parsed.get("feed", {})
    raw_entries = parsed.get("entries", [])
    warning = None
    if parsed.get("bozo"):
        warning = str(parsed.get("bozo_exception", "malformed feed"))[:300]
    version = parsed.get("version") or ""
    # A document broken before its title and first entry recovered nothing: that
    # is a failed poll (shown in status, backed off), not an empty feed.
    broken = isinstance(parsed.get("bozo_exception"), xml.sax.SAXException) and not feed.get(
        "title"
    )
    if not raw_entries and (not version or broken):
        looks_html = b"<html" in body[:4096].lower()
        reason = "an HTML page, not a feed" if looks_html else "not a feed"
        if version and not looks_html:
            reason = "a broken feed with nothing readable"
        return ParsedFeed(
            title=None, link=None, entries=(), error=f"{reason} ({warning or 'no entries'})"
        )
    if len(raw_entries) > MAX_ENTRIES:
        note = f"the feed has {len(raw_entries)} entries; only the first {MAX_ENTRIES} are read"
        warning = f"{note}; {warning}" if warning else note
    entries = tuple(_entry(e, url) for e in raw_entries[:MAX_ENTRIES])
    items = b""
    if digests is not None:
        items = encode_items([*zip(digests, (e.identity for e in entries), strict=True), *skipped])
    ttl: int | None = None
    raw_ttl = _text(feed.get("ttl")).strip()
    if raw_ttl.isdigit():
        ttl = int(raw_ttl) * 60
    hours, days = _skip(body[:_SKIP_LIMIT])
    return ParsedFeed(
        title=_text(feed.get("title")).strip() or None,
        link=safe_link(feed.get("link"), url),
        entries=entries,
        ttl_seconds=ttl,
        skip_hours=hours,
        skip_days=days,
        warning=warning,
        known=tuple(identity for _digest, identity in skipped),
        items=items,
    )
