"""Items a feed's last document had byte for byte are not parsed again.

A changed feed is mostly the same items as before with one new one and a new
date, and feedparser's time is per item: so each parse indexes its items (a
keyed hash of each item's bytes -> identity, ``ParsedFeed.items``), and the next
parse of that feed hands feedparser only the items not in that index. Those it
skips come back as identities (``known``): seen, and still listed. Wherever the
items can't be told apart with certainty the document is parsed whole.
"""

from __future__ import annotations

import asyncio
import io
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.app import App
from monitor.config import parse_config
from monitor.parse import decode_items, encode_items, parse_feed
from monitor.storage import open_storage
from monitor.types import ParsedFeed
from tests.servers import FeedServer
from tests.test_parse import CASES, FEEDS

URL = "https://news.example/feed"
XML = {"Content-Type": "application/rss+xml; charset=utf-8"}


def _item(n: int, title: str | None = None, extra: str = "") -> str:
    return (
        f"<item><title>{title or f'Story {n}'}</title>"
        f"<link>https://news.example/{n}</link>"
        f'<guid isPermaLink="false">story-{n}</guid>'
        f"<description>Text of story {n}.</description>{extra}</item>"
    )


def _rss(items: list[str], built: str = "Mon, 01 Dec 2026 10:00:00 GMT", head: str = "") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        f"<title>News</title><link>https://news.example/</link>{head}"
        f"<lastBuildDate>{built}</lastBuildDate>\n" + "\n".join(items) + "\n</channel></rss>"
    ).encode()


def _ids(doc: ParsedFeed) -> list[str]:
    return [e.identity for e in doc.entries]


def _parse(body: bytes, known: bytes = b"", headers: dict[str, str] | None = None) -> ParsedFeed:
    return parse_feed(body, URL, XML if headers is None else headers, known)


def test_a_changed_document_parses_only_its_new_items() -> None:
    first = _parse(_rss([_item(n) for n in (3, 2, 1)]))
    assert _ids(first) == ["story-3", "story-2", "story-1"] and first.known == ()
    assert sorted(decode_items(first.items).values()) == ["story-1", "story-2", "story-3"]

    body = _rss([_item(n) for n in (4, 3, 2, 1)], built="Mon, 01 Dec 2026 11:00:00 GMT")
    second = _parse(body, first.items)
    assert _ids(second) == ["story-4"]  # the only item feedparser saw
    assert second.known == ("story-3", "story-2", "story-1")  # in document order
    assert second.title == "News" and second.link == "https://news.example/"
    whole = _parse(body)
    assert second.entries == whole.entries[:1]
    assert sorted(decode_items(second.items).values()) == sorted(_ids(whole))
    # and the index of the second document serves the third
    third = _parse(_rss([_item(n) for n in (5, 4, 3)]), second.items)
    assert _ids(third) == ["story-5"] and third.known == ("story-4", "story-3")


def test_an_item_changed_in_any_byte_is_parsed_again() -> None:
    first = _parse(_rss([_item(1), _item(2)]))
    second = _parse(_rss([_item(1, title="Story 1, updated"), _item(2)]), first.items)
    assert [e.title for e in second.entries] == ["Story 1, updated"]
    assert second.known == ("story-2",)


@pytest.mark.parametrize(
    ("head", "headers"),
    [
        ("", {"Content-Type": "application/rss+xml; charset=windows-1252"}),  # another charset
        ("", {}),
    ],
)
def test_the_same_item_bytes_in_another_context_are_parsed_again(
    head: str, headers: dict[str, str]
) -> None:
    first = _parse(_rss([_item(1), _item(2)]))
    again = _parse(_rss([_item(1), _item(2)], head=head), first.items, headers)
    assert _ids(again) == ["story-1", "story-2"] and again.known == ()


def test_another_root_start_tag_means_another_context() -> None:
    first = _parse(_rss([_item(1)]))
    other = _rss([_item(1)]).replace(b"xmlns:dc=", b"xmlns:media=")
    assert _ids(_parse(other, first.items)) == ["story-1"]


@pytest.mark.parametrize(
    "body",
    [
        # an item inside an item
        _rss([_item(1, extra="<item><title>inner</title></item>"), _item(2)]),
        # an empty element with the item's name
        _rss([_item(1), "<item/>", _item(2)]),
        # an item's closing tag inside a CDATA section
        _rss([_item(1, extra="<content><![CDATA[a </item> b]]></content>"), _item(2)]),
        # an item's opening tag inside a comment before the items
        _rss([_item(1), _item(2)], head="<!-- <item> -->"),
        # xml:base between the root and the items: the items' links depend on it
        _rss([_item(1), _item(2)]).replace(
            b"<channel>", b'<channel xml:base="https://other.example/">'
        ),
        # a document that does not parse cleanly (feedparser's loose parser reads it)
        _rss([_item(1), _item(2, title="Broken &nbsp entity <b>")]),
        # Atom with a prefix on every element: its entries are not found by name
        b'<?xml version="1.0"?><a:feed xmlns:a="http://www.w3.org/2005/Atom"><a:title>T</a:title>'
        b"<a:entry><a:id>urn:1</a:id><a:title>One</a:title></a:entry></a:feed>",
    ],
)
def test_a_document_whose_items_are_not_certain_is_parsed_whole_every_time(body: bytes) -> None:
    whole = _parse(body)
    assert whole.entries and whole.items == b""
    assert _parse(body, whole.items) == whole


def test_a_damaged_index_means_a_whole_parse() -> None:
    body = _rss([_item(1), _item(2)])
    whole = _parse(body)
    for damaged in (b"not zlib", whole.items[:-3], encode_items([(b"12345678", "x")])[:5]):
        assert _parse(body, damaged).entries == whole.entries
    assert decode_items(b"garbage") == {}


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_golden_document_reads_the_same_from_its_own_index(name: str) -> None:
    case = CASES[name]
    body = (FEEDS / name).read_bytes()
    whole = parse_feed(body, case.url, case.headers)
    again = parse_feed(body, case.url, case.headers, whole.items)
    if not whole.items:  # not indexed: parsed whole again
        assert again == whole
        return
    assert again.entries == ()
    assert again.known == tuple(e.identity for e in whole.entries)
    assert (again.title, again.link, again.ttl_seconds, again.error) == (
        whole.title,
        whole.link,
        whole.ttl_seconds,
        whole.error,
    )
    assert decode_items(again.items) == decode_items(whole.items)


def test_rss_atom_and_rdf_documents_are_indexed() -> None:
    for name in ("rss20.xml", "heise_atom.xml", "rdf.xml"):
        case = CASES[name]
        assert parse_feed((FEEDS / name).read_bytes(), case.url, case.headers).items, name


_EXTRAS = [
    "",
    "<dc:creator>Jörg Müller</dc:creator>",
    "<description><![CDATA[<p>KI-Modelle & DeepSeek</p>]]></description>",
    "<!-- a comment -->",
    "<category>Azure</category><category>KI</category>",
    "<description>&lt;item&gt; &amp; &#228;</description>",
]


def test_any_sequence_of_documents_reads_as_the_whole_parse_does() -> None:
    """A seeded random walk of documents (items come, go, move and change): at every
    step, the entries parsed plus the known identities are what a whole parse lists."""
    rng = random.Random(12)
    pool = {n: _item(n, extra=rng.choice(_EXTRAS)) for n in range(40)}
    index = b""
    skipped = 0
    chosen: list[int] = []
    for step in range(60):
        chosen = [n for n in chosen if rng.random() > 0.15]  # some go
        chosen[:0] = rng.sample(sorted(set(pool) - set(chosen)), rng.randint(0, 3))  # some come
        if rng.random() < 0.1:
            rng.shuffle(chosen)
        if rng.random() < 0.2:  # an item changes in place
            n = rng.choice(sorted(pool))
            pool[n] = _item(n, title=f"Story {n} v{step}", extra=rng.choice(_EXTRAS))
        body = _rss([pool[n] for n in chosen], built=f"step {step}")
        whole = _parse(body)
        part = _parse(body, index)
        assert set(_ids(part)) | set(part.known) == set(_ids(whole))
        assert not set(_ids(part)) & set(part.known)
        by_id = {e.identity: e for e in whole.entries}
        assert all(by_id[e.identity] == e for e in part.entries)
        assert decode_items(part.items) == decode_items(whole.items)
        skipped += len(part.known)
        index = part.items
    assert skipped > 100  # the walk did skip items, so it tested something


def test_through_the_daemons_path_known_items_stay_listed_and_new_ones_alert(
    tmp_path: Path, server: FeedServer
) -> None:
    """The real pipeline: the stored index comes back to the next parse; the new item
    alerts once, the known ones stay listed (kept by pruning), a dropped one goes."""
    server.put("/feed.xml", _rss([_item(n) for n in (3, 2, 1)]).decode())
    url = server.url("/feed.xml")
    config = parse_config(
        "settings: {extract: false, host_spacing: 0}\n"
        f"feeds: [{url}]\nrules: [{{name: ds, keywords: [DeepSeek]}}]\n",
        tmp_path / "feeds.yaml",
        {},
    )

    async def polls() -> list[tuple[int, list[str]]]:
        app = App(config, db=str(tmp_path / "monitor.db"), console=io.StringIO())

        async def one() -> tuple[int, list[str]]:
            outcomes = await app.poll_round(app.config.feeds)
            return sum(o.new for o in outcomes), [a.title for o in outcomes for a in o.alerts]

        try:
            news = [await one()]
            server.put(
                "/feed.xml",
                _rss([_item(4, title="DeepSeek on Azure"), *(_item(n) for n in (3, 2))]).decode(),
            )
            news.append(await one())
            return news
        finally:
            await app.close()

    assert asyncio.run(polls()) == [(3, []), (1, ["DeepSeek on Azure"])]
    store = open_storage(str(tmp_path / "monitor.db"))
    try:
        (state,) = store.feed_states()
        assert sorted(decode_items(state.items).values()) == ["story-2", "story-3", "story-4"]
        assert store.prune_history(datetime.now(UTC) + timedelta(days=1)) == 1  # story-1
        assert store.seen(state.key, ["story-1", "story-2", "story-3", "story-4"], []) == {
            "story-2",
            "story-3",
            "story-4",
        }
    finally:
        store.close()
