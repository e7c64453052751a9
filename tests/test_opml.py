"""OPML import/export and merging subscriptions into an existing feeds.yaml."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from monitor.config import FeedSpec, parse_config
from monitor.opml import OpmlError, OpmlFeed, export_opml, merge_into_yaml, parse_opml

OPML = Path(__file__).parent / "data" / "opml"


def _read(name: str) -> bytes:
    return (OPML / name).read_bytes()


# --------------------------------------------------------------------------
# parse_opml


def test_nested_outlines_become_tags_and_bad_urls_are_skipped() -> None:
    assert parse_opml(_read("nested.opml")) == [
        OpmlFeed("https://www.heise.de/rss/heise-atom.xml", "heise online", ()),
        OpmlFeed("https://rss.golem.de/rss.php?feed=ATOM1.0", "Golem.de", ("Tech", "Deutsch")),
        OpmlFeed("https://t3n.de/rss.xml", "t3n – Größere News", ("Tech", "Deutsch")),
        OpmlFeed("https://feeds.arstechnica.com/arstechnica/index", "Ars", ("Tech",)),
        OpmlFeed("https://www.schneier.com/feed/atom/", None, ("Security",)),
    ]


def test_declared_encoding_and_bom_are_honoured() -> None:
    (latin1,) = parse_opml(_read("opml1.opml"))
    assert latin1 == OpmlFeed("https://www.tagesschau.de/xml/rss2/", "Tagesschau - Ä", ("News",))
    (bom,) = parse_opml(_read("bom.opml"))
    assert bom.url == "https://www.tagesschau.de/xml/rss2/"


def test_utf16_opml_is_read() -> None:
    doc = _read("bom.opml")[3:].decode("utf-8").replace("UTF-8", "UTF-16")
    (feed,) = parse_opml(b"\xff\xfe" + doc.encode("utf-16-le"))
    assert feed.tags == ("News",)


@pytest.mark.parametrize("name", ["entities.opml", "external_entity.opml"])
def test_entity_declarations_are_refused(name: str) -> None:
    with pytest.raises(OpmlError, match="declares XML entities"):
        parse_opml(_read(name))


def test_entity_declarations_are_refused_in_utf16_too() -> None:
    doc = _read("entities.opml").decode().replace('<?xml version="1.0"?>', "")
    with pytest.raises(OpmlError, match="declares XML entities"):
        parse_opml(b"\xff\xfe" + doc.encode("utf-16-le"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b"<opml><body><outline", "not well-formed XML"),
        (b"<rss version='2.0'><channel/></rss>", "not an OPML document (root element <rss>)"),
        (b"<opml version='2.0'><head/></opml>", "has no <body>"),
        (b"<html><body>hello</body></html>", "not an OPML document"),
    ],
)
def test_unusable_documents_raise_a_clear_error(data: bytes, message: str) -> None:
    with pytest.raises(OpmlError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_opml(data)


def test_empty_body_has_no_feeds() -> None:
    assert parse_opml(b"<opml version='2.0'><head/><body/></opml>") == []


# --------------------------------------------------------------------------
# export_opml


def test_export_nests_feeds_under_their_tags_and_round_trips() -> None:
    feeds = [
        FeedSpec("https://a.example/rss", name="A & <B>"),
        FeedSpec("https://b.example/atom?x=1&y=2", tags=("tech", "de")),
        FeedSpec("https://c.example/rss", name="C", tags=("tech",)),
        FeedSpec("https://d.example/rss", name="D", tags=("tech", "de")),
    ]
    text = export_opml(feeds, "rss-monitor feeds")
    assert text.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<opml version="2.0">')
    assert "<title>rss-monitor feeds</title>" in text
    assert 'xmlUrl="https://b.example/atom?x=1&amp;y=2"' in text
    assert 'text="A &amp; &lt;B&gt;"' in text
    back = parse_opml(text.encode("utf-8"))
    assert {(f.url, f.title, f.tags) for f in back} == {
        ("https://a.example/rss", "A & <B>", ()),
        ("https://b.example/atom?x=1&y=2", None, ("tech", "de")),  # unnamed: label is the URL
        ("https://c.example/rss", "C", ("tech",)),
        ("https://d.example/rss", "D", ("tech", "de")),
    }
    assert text.count('text="tech"') == 1 and text.count('text="de"') == 1


def test_export_of_no_feeds_is_a_valid_empty_document() -> None:
    assert parse_opml(export_opml([], "empty").encode()) == []


# --------------------------------------------------------------------------
# merge_into_yaml

EXISTING = """\
# My monitor config
settings:
  interval: 10m   # poll often

feeds:
  # German tech news
  - url: https://www.heise.de/rss/heise-atom.xml
    name: heise online
    tags: [tech, de]
  - https://bare.example/rss

  # feeds I might add later:
  # - url: https://later.example/rss

rules:
  - name: DeepSeek
    keywords: [DeepSeek]
"""


def _config(text: str) -> list[FeedSpec]:
    return list(parse_config(text, Path("/x/feeds.yaml"), {}).feeds)


def test_merge_appends_new_feeds_keeping_everything_else() -> None:
    merged = merge_into_yaml(
        EXISTING,
        [
            OpmlFeed("https://www.heise.de/rss/heise-atom.xml", "heise (dup)", ("x",)),
            OpmlFeed("https://bare.example/rss"),
            OpmlFeed("https://golem.example/atom", "Golem.de", ("Tech", "Deutsch")),
            OpmlFeed("https://price.example/rss", 'Costs ${HOME} and "quotes"'),
            OpmlFeed("https://plain.example/rss"),
        ],
    )
    assert merged == EXISTING.replace(
        "  - https://bare.example/rss\n",
        "  - https://bare.example/rss\n"
        '  - url: "https://golem.example/atom"\n'
        '    name: "Golem.de"\n'
        '    tags: ["Tech", "Deutsch"]\n'
        '  - url: "https://price.example/rss"\n'
        '    name: "Costs $${HOME} and \\"quotes\\""\n'
        '  - url: "https://plain.example/rss"\n',
    )
    feeds = _config(merged)
    assert [f.url for f in feeds] == [
        "https://www.heise.de/rss/heise-atom.xml",
        "https://bare.example/rss",
        "https://golem.example/atom",
        "https://price.example/rss",
        "https://plain.example/rss",
    ]
    assert feeds[2].tags == ("Tech", "Deutsch")
    assert feeds[3].name == 'Costs ${HOME} and "quotes"'  # not substituted


def test_merge_with_nothing_new_returns_the_text_unchanged() -> None:
    assert merge_into_yaml(EXISTING, [OpmlFeed("https://bare.example/rss")]) == EXISTING
    assert merge_into_yaml(EXISTING, []) == EXISTING


def test_merge_drops_a_title_that_would_duplicate_a_feed_name() -> None:
    merged = merge_into_yaml(
        EXISTING,
        [
            OpmlFeed("https://mirror.example/rss", "heise online"),
            OpmlFeed("https://n.example", "N"),
            OpmlFeed("https://n2.example", "N"),
        ],
    )
    names = {f.url: f.name for f in _config(merged)}
    assert names["https://mirror.example/rss"] is None
    assert names["https://n.example"] == "N" and names["https://n2.example"] is None


@pytest.mark.parametrize(
    ("text", "expected_feeds_block"),
    [
        ("settings:\n  interval: 5m\n", "feeds:\n"),  # no feeds: key yet
        ("settings:\n  interval: 5m", "feeds:\n"),  # and no final newline
        ("feeds: []\nrules: []\n", "feeds:\n"),
        ("feeds:\nrules: []\n", "feeds:\n"),
        ("feeds:\n- url: https://old.example/rss\n", "feeds:\n- url: https://old.example/rss\n"),
        (
            "feeds:\n    - url: https://old.example/rss\n",
            "feeds:\n    - url: https://old.example/rss\n",
        ),
    ],
)
def test_merge_handles_the_shapes_of_a_feeds_block(text: str, expected_feeds_block: str) -> None:
    merged = merge_into_yaml(text, [OpmlFeed("https://new.example/rss", "New")])
    assert expected_feeds_block in merged
    feeds = _config(merged)
    assert feeds[-1] == FeedSpec("https://new.example/rss", name="New")
    # the new entry uses the indentation the file already uses
    indent = "    " if "    - url" in text else ("" if "\n- url" in text else "  ")
    assert f'\n{indent}- url: "https://new.example/rss"\n{indent}  name: "New"\n' in merged


def test_merge_refuses_a_flow_style_feeds_list() -> None:
    with pytest.raises(ValueError, match="flow style"):
        merge_into_yaml("feeds: [https://a.example/rss]\n", [OpmlFeed("https://b.example/rss")])


def test_merge_refuses_invalid_yaml() -> None:
    with pytest.raises(ValueError, match="not valid YAML"):
        merge_into_yaml("feeds:\n  - [unclosed\n", [OpmlFeed("https://b.example/rss")])


def test_import_then_merge_gives_a_valid_config() -> None:
    base = textwrap.dedent(
        """\
        feeds:
          - url: https://www.heise.de/rss/heise-atom.xml
        rules:
          - name: Tech
            keywords: [KI]
            feeds: [Tech]
        """
    )
    # the rule names the tag "Tech" that only the imported feeds bring
    merged = merge_into_yaml(base, parse_opml(_read("nested.opml")))
    feeds = _config(merged)
    assert len(feeds) == 5
    assert {t for f in feeds for t in f.tags} == {"Tech", "Deutsch", "Security"}


def test_import_then_export_through_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from monitor.cli import main

    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        "# my feeds\nfeeds:\n  - url: https://a.example/feed\n    name: A\n"
        "rules:\n  - name: R\n    keywords: [x]\n"
    )
    opml = tmp_path / "subs.opml"
    opml.write_text(
        '<?xml version="1.0"?><opml version="2.0"><head><title>s</title></head><body>'
        '<outline text="News"><outline type="rss" text="B" xmlUrl="https://b.example/rss"/>'
        '<outline type="rss" text="A again" xmlUrl="https://a.example/feed"/></outline>'
        "</body></opml>"
    )
    assert main(["-c", str(cfg), "import-opml", str(opml)]) == 0
    assert "1 feeds added" in capsys.readouterr().out
    assert cfg.read_text().startswith("# my feeds\n")
    assert main(["-c", str(cfg), "export-opml"]) == 0
    exported = parse_opml(capsys.readouterr().out.encode())
    assert [(f.url, f.tags) for f in exported] == [
        ("https://a.example/feed", ()),
        ("https://b.example/rss", ("News",)),
    ]
    assert main(["-c", str(cfg), "import-opml", str(tmp_path / "missing.opml")]) == 2
