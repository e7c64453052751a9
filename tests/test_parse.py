"""Feed parsing against golden files: tests/data/feeds/NAME next to NAME.json.

Each JSON file is what ``parse_feed`` must return for the document beside it.
After a deliberate change of the parser, regenerate them and review the diff:

    .venv/bin/python -m tests.test_parse            # rewrite every NAME.json
    .venv/bin/python -m tests.test_parse rss20.xml  # just one
"""

from __future__ import annotations

import codecs
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from feedparser.encodings import convert_to_utf8
from feedparser.sanitizer import replace_doctype

from monitor.parse import UnsafeDocument, content_hash, parse_feed, safe_link, sanitize_xml
from monitor.types import FeedEntry, ParsedFeed
from tests.feeds import entity_bomb

FEEDS = Path(__file__).parent / "data" / "feeds"


@dataclass(frozen=True)
class Case:
    """How a golden document is served: the URL it came from and the response headers."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)


XML = {"Content-Type": "application/rss+xml"}

CASES: dict[str, Case] = {
    "rss20.xml": Case("https://news.example.com/feed.xml", XML),
    "heise_atom.xml": Case(
        "https://www.heise.example/rss/heise-atom.xml", {"Content-Type": "application/atom+xml"}
    ),
    "rdf.xml": Case("https://rdf.example.org/index.rdf", {"Content-Type": "application/rdf+xml"}),
    "identity.xml": Case("https://id.example.org/feeds/all.xml", XML),
    "links.xml": Case("https://links.example.com/feeds/main.xml", XML),
    "billion_laughs.xml": Case("https://bomb.example/feed", XML),
    "quadratic_blowup.xml": Case("https://blowup.example/feed", XML),
    "utf16_bom.xml": Case("https://utf16.example.de/feed", {}),
    "charset_conflict.xml": Case("https://cp1252.example.de/feed", XML),
    "header_charset_conflict.xml": Case(
        "https://latin1.example.de/feed", {"Content-Type": "application/xml; charset=utf-8"}
    ),
    "control_chars.xml": Case("https://ctrl.example.org/feed", XML),
    "truncated.xml": Case("https://cut.example.org/feed", XML),
    "truncated_prolog.xml": Case("https://cut.example.org/feed2", XML),
    "html_page.html": Case("https://www.example.com/feed", {"Content-Type": "text/html"}),
    "empty.xml": Case("https://empty.example.org/feed", XML),
}


def _entry_json(e: FeedEntry) -> dict[str, Any]:
    return {
        "identity": e.identity,
        "guid": e.guid,
        "link": e.link,
        "title": e.title,
        "summary": e.summary,
        "content": e.content,
        "author": e.author,
        "categories": list(e.categories),
        "published": e.published.isoformat() if e.published else None,
    }


def to_json(feed: ParsedFeed) -> dict[str, Any]:
    """A ParsedFeed as plain JSON data (sets sorted, datetimes in ISO 8601)."""
    return {
        "title": feed.title,
        "link": feed.link,
        "ttl_seconds": feed.ttl_seconds,
        "skip_hours": sorted(feed.skip_hours),
        "skip_days": sorted(feed.skip_days),
        "error": feed.error,
        "warning": feed.warning,
        "entries": [_entry_json(e) for e in feed.entries],
    }


def _parse(name: str) -> ParsedFeed:
    case = CASES[name]
    return parse_feed((FEEDS / name).read_bytes(), case.url, case.headers)


def _golden(name: str) -> Path:
    return FEEDS / (name + ".json")


def regenerate(names: list[str]) -> None:
    """Rewrite the expected outputs from the current parser (review the diff!)."""
    for name in names or sorted(CASES):
        text = json.dumps(to_json(_parse(name)), indent=2, ensure_ascii=False) + "\n"
        _golden(name).write_text(text, encoding="utf-8")
        print(f"wrote {_golden(name).relative_to(Path.cwd())}")


def test_every_feed_file_has_a_case_and_a_golden_output() -> None:
    documents = {p.name for p in FEEDS.iterdir() if p.suffix != ".json"}
    assert documents == set(CASES)
    assert {p.name for p in FEEDS.glob("*.json")} == {n + ".json" for n in CASES}


@pytest.mark.parametrize("name", sorted(CASES))
def test_feed_parses_to_its_golden_output(name: str) -> None:
    expected = json.loads(_golden(name).read_text(encoding="utf-8"))
    assert to_json(_parse(name)) == expected


# --------------------------------------------------------------------------
# properties the golden files must keep (so a careless regenerate can't hide a regression)


def _strings(feed: ParsedFeed) -> list[str]:
    out = [feed.title or "", feed.link or "", feed.error or "", feed.warning or ""]
    for e in feed.entries:
        out += [e.identity, e.guid or "", e.link or "", e.title, e.summary, e.content, e.author]
        out += list(e.categories)
    return out


@pytest.mark.parametrize("name", ["billion_laughs.xml", "quadratic_blowup.xml"])
def test_entity_bombs_are_not_expanded(name: str) -> None:
    feed = _parse(name)
    size = (FEEDS / name).stat().st_size
    # nothing grew beyond the document itself: references stay unexpanded text
    assert sum(len(s) for s in _strings(feed)) < size
    assert not any("lollol" in s or "AAAA" in s for s in _strings(feed))
    # the document is still read: its innocent entries survive
    assert feed.error is None
    assert [e.title for e in feed.entries][-1] in ("Innocent item", "After the bomb")


def test_sanitize_xml_drops_a_doctype_with_entities_but_keeps_the_rest() -> None:
    body = (FEEDS / "quadratic_blowup.xml").read_bytes()
    clean, charset = sanitize_xml(body)
    assert b"<!ENTITY" not in clean and b"<!DOCTYPE" not in clean
    assert clean.endswith(b"</channel></rss>\n")
    assert charset is None


def test_sanitize_xml_keeps_a_harmless_doctype() -> None:
    body = b'<?xml version="1.0"?>\n<!DOCTYPE rss SYSTEM "rss.dtd">\n<rss version="2.0"/>'
    assert sanitize_xml(body) == (body, None)


def test_sanitize_xml_re_encodes_utf16_with_bom_as_utf8() -> None:
    clean, charset = sanitize_xml((FEEDS / "utf16_bom.xml").read_bytes())
    assert charset == "utf-8"
    assert clean.startswith(b"\n<rss") or clean.startswith(b"<rss")
    assert "Übergrößenträger".encode() in clean


# --------------------------------------------------------------------------
# entity declarations wherever the DOCTYPE ends (issue 10)

# Parses the document on stdin under a 256 MB ceiling and prints what came out.
_CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_DATA, (256 << 20, 256 << 20))
from monitor.parse import parse_feed
feed = parse_feed(sys.stdin.buffer.read(), "https://hostile.example/feed")
print(json.dumps({
    "error": feed.error,
    "titles": [e.title for e in feed.entries],
    "summary": feed.entries[0].summary if feed.entries else "",
}))
"""


def _parse_isolated(body: bytes) -> dict[str, Any]:
    """parse_feed in a child process under a 256 MB memory ceiling and a 60 s deadline."""
    child = subprocess.run(
        [sys.executable, "-c", _CHILD], input=body, capture_output=True, timeout=60
    )
    assert child.returncode == 0, child.stderr.decode()[-2000:]
    result: dict[str, Any] = json.loads(child.stdout)
    return result


def test_the_5_gb_bomb_behind_a_64_kb_doctype_parses_unexpanded_under_a_256_mb_ceiling() -> None:
    body = entity_bomb().encode()
    assert len(body) > 300_000 and body.index(b"]>") > 100_000
    out = _parse_isolated(body)
    assert out["error"] is None  # not a MemoryError: nothing was expanded
    assert out["titles"] == ["Harmless news"]
    assert out["summary"].count("&big;") == 50_000 and "xxxx" not in out["summary"]


FEED = (
    b'<rss version="2.0"><channel><title>T</title><item><title>News</title></item></channel></rss>'
)


@pytest.mark.parametrize(
    "body",
    [
        # feedparser tries ^\s*<!ENTITY at every line start before the first element
        b"<?xml version='1.0'?>\n" + b"\n" * 200_000 + FEED,
        b"<?xml version='1.0'?>\n<!--" + b" \n" * 100_000 + b"-->" + FEED,
        # and ^<\?.*encoding=['"](.*?)['"].*\?> on the first line
        b"<?xml version='1.0'?><!-- " + b"encoding='a' " * 20_000 + b"-->" + FEED,
        b"<?pi " + b"encoding='a' " * 20_000 + b"\n?>" + FEED,
    ],
    ids=["blank_lines", "blank_lines_in_a_comment", "long_first_line", "long_first_line_in_a_pi"],
)
def test_a_prolog_that_takes_feedparser_minutes_parses_at_once(body: bytes) -> None:
    out = _parse_isolated(body)
    assert out["error"] is None and out["titles"] == ["News"]


BIG = "x" * 1000  # expanded twice, a title would be 2,000 characters
ITEM = (
    '<rss version="2.0"><channel><title>T</title>'
    "<item><title>News &big;&big;</title></item></channel></rss>"
)


def _doc(prolog: str, root: str = ITEM) -> bytes:
    return f'<?xml version="1.0"?>\n{prolog}\n{root}'.encode()


SUBSET = f'<!DOCTYPE rss [\n<!ENTITY big "{BIG}">\n]>'
XML = {"content-type": "application/rss+xml"}
UTF7 = (SUBSET + "\n" + ITEM).encode("utf-7").replace(b"<", b"+ADw-")  # "<" is "+ADw-"

HOSTILE_PROLOGS: list[tuple[str, bytes, dict[str, str]]] = [
    ("doctype_after_a_comment_past_64_kb", _doc("<!--" + "c" * 70_000 + "-->\n" + SUBSET), XML),
    ("doctype_after_80_kb_of_white_space", _doc(" \t" * 40_000 + "\n" + SUBSET), XML),
    (
        "entity_values_holding_brackets",
        _doc(f'<!DOCTYPE rss [\n<!ENTITY a "]>x>">\n<!ENTITY b \']>\'>\n<!ENTITY big "{BIG}">\n]>'),
        XML,
    ),
    (
        "comment_and_pi_in_the_subset_holding_brackets",
        _doc(f'<!DOCTYPE rss [\n<!-- don\'t ]> -->\n<?pi ]> ?>\n<!ENTITY big "{BIG}">\n]>'),
        XML,
    ),
    ("lower_case", _doc(f'<!doctype rss [\n<!entity big "{BIG}">\n<!ENTITY big "{BIG}">\n]>'), XML),
    (
        "parameter_entity",
        _doc(f"<!DOCTYPE rss [\n<!ENTITY % pe \"<!ENTITY big '{BIG}'>\">\n%pe;\n]>"),
        XML,
    ),
    ("second_doctype", _doc(f"<!DOCTYPE a>\n{SUBSET}"), XML),
    (
        "entity_outside_a_doctype",
        _doc(f'<!ENTITY big "{BIG}">\n<!DOCTYPE rss SYSTEM "r.dtd">'),
        XML,
    ),
    (
        "entity_in_a_comment",
        _doc(f'<!--\n<!ENTITY big "{BIG}">\n-->\n<!DOCTYPE rss SYSTEM "x">'),
        XML,
    ),
    (
        "entity_in_a_system_literal",
        _doc(f"<!DOCTYPE rss SYSTEM '\n<!ENTITY big \"{BIG}\">\n'>"),
        XML,
    ),
    ("control_character_inside_the_keyword", _doc(SUBSET.replace("DOC", "DOC\x01")), XML),
    ("text_before_the_doctype", _doc(f"Warning: PHP notice\n{SUBSET}"), XML),
    (
        "utf16_with_bom",
        codecs.BOM_UTF16_LE + f'<?xml version="1.0"?>\n{SUBSET}\n{ITEM}'.encode("utf-16-le"),
        XML,
    ),
    ("utf7_declared", b'<?xml version="1.0" encoding="utf-7"?>\n' + UTF7, XML),
    ("utf7_in_the_header", UTF7, {"content-type": "application/xml; charset=utf-7"}),
    (
        "unicode_escape_in_the_header",
        f"{SUBSET}\n{ITEM}".encode().replace(b"<", b"\\x3c"),
        {"content-type": "application/xml; charset=unicode_escape"},
    ),
]


def _entities_feedparser_would_expand(body: bytes, headers: dict[str, str]) -> dict[str, str]:
    """What feedparser's loose parser would expand after our sanitiser: its own steps."""
    clean, charset = sanitize_xml(body, headers)
    if charset:
        headers = {**headers, "content-type": f"application/xml; charset={charset}"}
    _version, _data, entities = replace_doctype(convert_to_utf8(dict(headers), clean, {}))
    return dict(entities)


@pytest.mark.parametrize(
    ("body", "headers"), [c[1:] for c in HOSTILE_PROLOGS], ids=[c[0] for c in HOSTILE_PROLOGS]
)
def test_entity_declarations_are_neutralised_wherever_the_doctype_ends(
    body: bytes, headers: dict[str, str]
) -> None:
    assert _entities_feedparser_would_expand(body, headers) == {}
    feed = parse_feed(body, "https://hostile.example/feed", headers)
    assert feed.error is None
    assert [e.title for e in feed.entries] == ["News &big;&big;"]  # left as text


REFUSED = [
    (
        "unterminated_doctype",
        _doc(f'<!DOCTYPE rss [\n<!ENTITY big "{BIG}">\n', root=""),
        "refused: its DOCTYPE never ends",
    ),
    (
        "unterminated_entity_value",
        _doc(f'<!DOCTYPE rss [\n<!ENTITY big "{BIG}>\n]>'),
        "refused: its DOCTYPE never ends",
    ),
    (
        "unterminated_comment",
        _doc("<!-- and then nothing"),
        "refused: a comment or processing instruction before the first element never ends",
    ),
    (
        # feedparser reads entities up to the first "<" + ASCII letter: here past <ä/>
        "entity_after_an_element_feedparser_does_not_count",
        _doc(f'<ä/>\n<!DOCTYPE rss SYSTEM "x">\n<!ENTITY big "{BIG}">'),
        "refused: an entity declaration before the first element could not be removed",
    ),
]


@pytest.mark.parametrize(("body", "message"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_a_document_whose_declarations_cannot_be_removed_is_refused(
    body: bytes, message: str
) -> None:
    with pytest.raises(UnsafeDocument, match=message):
        sanitize_xml(body, XML)
    feed = parse_feed(body, "https://hostile.example/feed", XML)
    assert feed.entries == ()
    assert feed.error is not None and feed.error.startswith(message)


NETSCAPE = b"""<?xml version="1.0" encoding="ISO-8859-1"?>
<!DOCTYPE rss PUBLIC "-//Netscape Communications//DTD RSS 0.91//EN"
  "http://my.netscape.com/publish/formats/rss-0.91.dtd">
<rss version="0.91"><channel><title>Old News</title><link>https://old.example/</link>
<description>d</description><language>en</language>
<item><title>DeepSeek &amp; friends</title><link>https://old.example/1</link></item>
</channel></rss>
"""


def test_a_feed_with_a_harmless_doctype_is_left_as_it_is_and_parses() -> None:
    assert sanitize_xml(NETSCAPE, XML) == (NETSCAPE, None)
    feed = parse_feed(NETSCAPE, "https://old.example/rss", XML)
    assert feed.error is None
    assert [(e.title, e.link) for e in feed.entries] == [
        ("DeepSeek & friends", "https://old.example/1")
    ]


def test_identity_is_guid_else_link_else_content_hash() -> None:
    e = _parse("identity.xml").entries
    assert e[0].identity == "tag:id.example.org,2025:1"
    assert e[1].identity == "https://id.example.org/2" and e[1].guid is None
    assert e[2].identity == "https://id.example.org/feeds/3?ref=rss"
    assert e[3].identity == content_hash("Neither guid nor link", e[3].summary)
    assert e[3].identity != e[4].identity
    assert e[5].identity == "https://id.example.org/6"


def test_content_hash_identity_is_stable_across_parses() -> None:
    first = [e.identity for e in _parse("identity.xml").entries]
    second = [e.identity for e in _parse("identity.xml").entries]
    assert first == second
    assert content_hash("a", "b") == content_hash("a", "b") != content_hash("a\x1fb", "")


SAFE_LINKS = [
    ("../x.html", "https://h.example/a/b/", "https://h.example/a/x.html"),
    ("/x", "https://h.example/a/b", "https://h.example/x"),
    ("//cdn.example/x", "https://h.example/", "https://cdn.example/x"),
    ("HTTPS://H.example/X", "https://h.example/", "https://H.example/X"),
    ("  https://h.example/pad  ", "https://h.example/", "https://h.example/pad"),
    ("javascript:alert(1)", "https://h.example/", None),
    (" JavaScript:alert(1)", "https://h.example/", None),
    ("data:text/html,<b>x</b>", "https://h.example/", None),
    ("file:///etc/passwd", "https://h.example/", None),
    ("ftp://h.example/f", "https://h.example/", None),
    ("mailto:a@h.example", "https://h.example/", None),
    ("https://h.example/a\r\nSet-Cookie: x", "https://h.example/", None),
    ("https://h.example/a\tb", "https://h.example/", None),
    ("https://h.example/a\x00b", "https://h.example/", None),
    ("http:///nohost", "https://h.example/", None),
    ("http://[::1", "https://h.example/", None),  # unparseable
    ("", "https://h.example/", None),
    (None, "https://h.example/", None),
]


@pytest.mark.parametrize(("link", "base", "expected"), SAFE_LINKS)
def test_safe_link(link: object, base: str, expected: str | None) -> None:
    assert safe_link(link, base) == expected


def test_hostile_links_in_a_feed_are_dropped_and_relative_ones_resolved() -> None:
    feed = _parse("links.xml")
    links = {e.guid: e.link for e in feed.entries}
    assert links["l1"] == "https://links.example.com/archive/2025/one.html"
    assert links["l2"] == "https://links.example.com/two.html"
    assert links["l3"] == "https://cdn.example.net/three"
    for guid in ("l4", "l5", "l6", "l7", "l8", "l9", "l10"):
        assert links[guid] is None, guid
    assert feed.link is None  # the channel's javascript: link too


def test_html_page_is_reported_as_not_a_feed() -> None:
    feed = _parse("html_page.html")
    assert feed.entries == ()
    assert feed.error is not None and feed.error.startswith("an HTML page, not a feed")


@pytest.mark.parametrize("body", [b"", b"   \n", b"\r\n\t"])
def test_empty_body_is_an_error(body: bytes) -> None:
    assert parse_feed(body, "https://x.example/feed").error == "empty response body"


def test_truncated_document_keeps_the_complete_entries() -> None:
    feed = _parse("truncated.xml")
    assert feed.error is None
    assert feed.entries[0].identity == "cut-1"
    assert feed.warning  # the damage is reported, not hidden


def test_document_truncated_before_any_entry_is_a_clear_error() -> None:
    feed = _parse("truncated_prolog.xml")
    assert feed.entries == ()
    assert feed.error is not None
    assert feed.error.startswith("a broken feed with nothing readable (")


def test_ttl_skip_hours_and_skip_days_are_extracted() -> None:
    feed = _parse("rss20.xml")
    assert feed.ttl_seconds == 30 * 60
    assert feed.skip_hours == {0, 1}  # 24 means midnight too; 99 is nonsense
    assert feed.skip_days == {5, 6}


def test_control_characters_never_reach_the_records() -> None:
    feed = _parse("control_chars.xml")
    assert feed.entries
    for s in _strings(feed):
        assert not any(ord(c) < 32 and c not in "\t\n\r" for c in s), s
        assert "\x7f" not in s


def test_umlauts_survive_every_encoding() -> None:
    assert _parse("heise_atom.xml").entries[0].title.startswith("Künstliche Intelligenz: Groß")
    assert _parse("utf16_bom.xml").entries[0].title == "Übergrößenträger äöü ß €"
    assert "Grüße" in (_parse("header_charset_conflict.xml").entries[0].title)


if __name__ == "__main__":
    regenerate(sys.argv[1:])
