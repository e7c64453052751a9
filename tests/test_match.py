"""The matching table of SPEC section 5 and the Matcher's rule semantics."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import NamedTuple

import pytest

from monitor.match import Matcher, compile_rules, snippet, validate_rule
from monitor.normalize import prepare
from monitor.types import Document, Hit, RuleSpec

CASES_FILE = Path(__file__).parent / "data" / "match_cases.tsv"
_ESCAPE = re.compile(r"\\(n|r|t|u[0-9a-fA-F]{4})")


class Case(NamedTuple):
    line: int
    term: str
    text: str
    html: bool
    expected: bool
    hit: str


def _unescape(text: str) -> str:
    def one(m: re.Match[str]) -> str:
        code = m.group(1)
        return {"n": "\n", "r": "\r", "t": "\t"}.get(code) or chr(int(code[1:], 16))

    return _ESCAPE.sub(one, text)


def _load_cases() -> list[Case]:
    cases = []
    for number, line in enumerate(CASES_FILE.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        term, text, html, expected, hit = line.split("\t")
        assert html in ("yes", "no") and expected in ("yes", "no"), f"line {number}"
        cases.append(Case(number, term, _unescape(text), html == "yes", expected == "yes", hit))
    return cases


CASES = _load_cases()


def _doc(content: str, *, html: bool = False, title: str = "", summary: str = "") -> Document:
    return prepare(
        title=title,
        summary=summary,
        content=content,
        html_fields=frozenset({"title", "summary", "content"} if html else ()),
    )


def test_table_has_at_least_150_cases_in_both_outcomes() -> None:
    assert len(CASES) >= 150
    assert sum(c.expected for c in CASES) >= 50
    assert sum(not c.expected for c in CASES) >= 50


@pytest.mark.parametrize("case", CASES, ids=[f"L{c.line}:{c.term}" for c in CASES])
def test_spec_table_case(case: Case) -> None:
    matcher = compile_rules([RuleSpec(name="r", keywords=(case.term,), fields=("content",))])
    doc = _doc(case.text, html=case.html)
    matches = matcher.match(doc, feed="f")
    assert bool(matches) == case.expected, doc.fields["content"]
    if case.expected and case.hit:
        first = matches[0].hits[0]
        assert doc.fields["content"][first.start : first.end] == case.hit
        assert first.term == case.term


def test_keyword_lists_any_all_and_exclude() -> None:
    rule = RuleSpec(
        name="Azure AI",
        keywords=("KI", "AI", "künstliche Intelligenz"),
        all=("Azure",),
        exclude=("Stellenangebot",),
    )
    matcher = compile_rules([rule])
    table = [
        ("Azure bringt neue KI-Dienste", True),
        ("Azure bringt neue Dienste", False),  # no keyword
        ("Neue KI-Dienste bei AWS", False),  # no `all` term
        ("Azure KI Stellenangebot", False),  # excluded
        ("Azure und künstliche\nIntelligenz", True),
    ]
    for text, expected in table:
        assert bool(matcher.match(_doc(text), feed="f")) == expected, text


def test_rule_without_keywords_matches_on_all_terms_alone() -> None:
    matcher = compile_rules([RuleSpec(name="r", all=("Azure", "OpenAI"))])
    assert matcher.match(_doc("Azure OpenAI Service"), feed="f")
    assert not matcher.match(_doc("Azure Service"), feed="f")


def test_rule_fields_limit_where_terms_are_searched() -> None:
    matcher = compile_rules([RuleSpec(name="r", keywords=("DeepSeek",), fields=("title",))])
    assert matcher.match(_doc("x", title="DeepSeek"), feed="f")
    assert not matcher.match(_doc("DeepSeek", title="x"), feed="f")


def test_exclude_applies_in_the_rules_fields_only() -> None:
    rule = RuleSpec(name="r", keywords=("DeepSeek",), exclude=("Job",), fields=("title",))
    matcher = compile_rules([rule])
    assert matcher.match(_doc("Job", title="DeepSeek"), feed="f")
    assert not matcher.match(_doc("", title="DeepSeek Job"), feed="f")


def test_feeds_select_by_feed_name_or_tag_and_empty_means_all() -> None:
    rules = [
        RuleSpec(name="every", keywords=("KI",)),
        RuleSpec(name="heise", keywords=("KI",), feeds=("heise online",)),
        RuleSpec(name="tech", keywords=("KI",), feeds=("tech",)),
    ]
    matcher = compile_rules(rules)
    doc = _doc("KI")

    def names(feed: str, tags: tuple[str, ...] = ()) -> list[str]:
        return [m.rule for m in matcher.match(doc, feed=feed, tags=tags)]

    assert names("heise online") == ["every", "heise"]
    assert names("golem", ("tech", "de")) == ["every", "tech"]
    assert names("golem") == ["every"]


def test_matches_come_in_config_order_with_hits_per_field() -> None:
    rules = [
        RuleSpec(name="b", keywords=("Azure",)),
        RuleSpec(name="a", keywords=("DeepSeek", "R1")),
    ]
    matcher = compile_rules(rules)
    assert matcher.rule_names() == ("b", "a")
    doc = _doc("Azure hostet DeepSeek-R1, DeepSeek eben.", title="DeepSeek auf Azure")
    result = matcher.match(doc, feed="f")
    assert [m.rule for m in result] == ["b", "a"]
    hits = result[1].hits
    assert hits == (
        Hit("DeepSeek", "title", 0, 8),
        Hit("DeepSeek", "content", 13, 21),
        Hit("R1", "content", 22, 24),
        Hit("DeepSeek", "content", 26, 34),
    )
    for hit in hits:
        assert doc.fields[hit.field][hit.start : hit.end] == hit.term.lower()


def test_same_term_in_two_rules_is_reported_as_each_rule_writes_it() -> None:
    matcher = compile_rules(
        [RuleSpec(name="a", keywords=("deepseek",)), RuleSpec(name="b", keywords=("DEEPSEEK",))]
    )
    result = matcher.match(_doc("DeepSeek"), feed="f")
    assert [m.terms for m in result] == [("deepseek",), ("DEEPSEEK",)]


def test_hits_come_only_from_the_branch_that_matched() -> None:
    rule = RuleSpec(name="r", query="(Azure AND Stellenangebot) OR DeepSeek")
    result = compile_rules([rule]).match(_doc("Azure und DeepSeek"), feed="f")
    assert result[0].terms == ("DeepSeek",)


def test_regex_only_rule_is_evaluated_without_literal_trigger() -> None:
    matcher = compile_rules([RuleSpec(name="r", keywords=(r"/r\d+\b/",))])
    assert matcher.match(_doc("Modell R7 ist da"), feed="f")[0].hits == (
        Hit(r"/r\d+\b/", "content", 7, 9),
    )
    assert not matcher.match(_doc("Modell RX"), feed="f")


def test_regex_sees_only_the_bounded_prefix_of_a_huge_field() -> None:
    from monitor.match import MAX_REGEX_TEXT

    matcher = compile_rules([RuleSpec(name="r", keywords=("/needle/",))])
    far = "a " * MAX_REGEX_TEXT + "needle"
    assert not matcher.match(_doc(far), feed="f")
    assert matcher.match(_doc("needle " + far), feed="f")


def test_empty_rule_list_matches_nothing() -> None:
    assert compile_rules([]).match(_doc("DeepSeek"), feed="f") == ()


def test_compile_rules_raises_value_error_naming_every_problem() -> None:
    rules = [
        RuleSpec(name="ok", keywords=("KI",)),
        RuleSpec(name="bad", keywords=("/(a+)+$/", "De*ep")),
    ]
    with pytest.raises(ValueError) as info:
        compile_rules(rules)
    message = str(info.value)
    assert "rule 'bad': keywords[0] at offset 1" in message
    assert "rule 'bad': keywords[1] at offset 2" in message


# validate_rule: (rule, [(key, index, offset)]) -- messages are checked loosely
PROBLEMS: list[tuple[RuleSpec, list[tuple[str, int | None, int | None]]]] = [
    (RuleSpec(name="r", keywords=("KI",)), []),
    (RuleSpec(name="r"), [("keywords", None, None)]),
    (RuleSpec(name="r", exclude=("x",)), [("keywords", None, None)]),
    (RuleSpec(name="r", keywords=("KI", "  ")), [("keywords", 1, 0)]),
    (RuleSpec(name="r", keywords=("KI",), all=("*",)), [("all", 0, 0)]),
    (RuleSpec(name="r", keywords=("KI",), exclude=("a*b",)), [("exclude", 0, 1)]),
    (RuleSpec(name="r", keywords=("/(a+)+/",)), [("keywords", 0, 1)]),
    (RuleSpec(name="r", keywords=(r"/x(\w*y)*/",)), [("keywords", 0, 2)]),
    (RuleSpec(name="r", keywords=("/(?:ab|c{2,})+$/",)), [("keywords", 0, 1)]),
    (RuleSpec(name="r", keywords=("/(ab)+(c+)/",)), []),
    (RuleSpec(name="r", keywords=("/[(a+)]+/",)), []),
    (RuleSpec(name="r", keywords=("/" + "a" * 501 + "/",)), [("keywords", 0, 0)]),
    (RuleSpec(name="r", keywords=("/R(\\d+/",)), [("keywords", 0, 2)]),
    (RuleSpec(name="r", keywords=("/x*/",)), [("keywords", 0, 0)]),
    (RuleSpec(name="r", keywords=("KI",), fields=("title", "body")), [("fields", 1, None)]),
    (RuleSpec(name="r", keywords=("KI",), fields=()), [("fields", None, None)]),
    (RuleSpec(name="r", keywords=("KI",), query="KI"), [("query", None, None)]),
    (RuleSpec(name="r", query="DeepSeek AND (Azure OR"), [("query", None, 22)]),
    (RuleSpec(name="r", query="DeepSeek AND (Azure"), [("query", None, 13)]),
    (RuleSpec(name="r", query='title:"AI Foundry'), [("query", None, 6)]),
    (RuleSpec(name="r", query="titel:DeepSeek"), [("query", None, 0)]),
    (RuleSpec(name="r", query="KI AND /(a*)*/"), [("query", None, 8)]),
    (RuleSpec(name="r", query="KI OR De*ep"), [("query", None, 8)]),
    (RuleSpec(name="r", query="-Stellenangebot"), [("query", None, None)]),
    (RuleSpec(name="r", query="   "), [("query", None, 0)]),
]


@pytest.mark.parametrize(("rule", "expected"), PROBLEMS)
def test_validate_rule_reports_key_index_and_offset(
    rule: RuleSpec, expected: list[tuple[str, int | None, int | None]]
) -> None:
    problems = validate_rule(rule)
    assert [(p.key, p.index, p.offset) for p in problems] == expected
    assert all(p.message for p in problems)


QUERIES = [
    # (query, text, title, expected)
    ('DeepSeek AND (Azure OR "AI Foundry") AND NOT Stellenangebot', "DeepSeek auf Azure", "", True),
    (
        'DeepSeek AND (Azure OR "AI Foundry") AND NOT Stellenangebot',
        "DeepSeek in AI-Foundry",
        "",
        True,
    ),
    ('DeepSeek AND (Azure OR "AI Foundry") AND NOT Stellenangebot', "DeepSeek allein", "", False),
    (
        'DeepSeek AND (Azure OR "AI Foundry") AND NOT Stellenangebot',
        "DeepSeek Azure Stellenangebot",
        "",
        False,
    ),
    ("DeepSeek Azure", "Azure und DeepSeek", "", True),  # implicit AND
    ("DeepSeek Azure", "nur DeepSeek", "", False),
    ("DeepSeek -Stellenangebot", "DeepSeek", "", True),
    ("DeepSeek -Stellenangebot", "DeepSeek Stellenangebot", "", False),
    ("KI-Modelle", "neue KI-Modelle", "", True),  # hyphen inside a word is no NOT
    ("KI OR AI AND Azure", "KI ohne Cloud", "", True),  # AND binds tighter than OR
    ("KI OR AI AND Azure", "AI ohne Cloud", "", False),
    ("KI AND NOT Azure OR DeepSeek", "KI Azure DeepSeek", "", True),  # NOT > AND > OR
    ("KI AND NOT Azure OR DeepSeek", "KI Azure", "", False),
    ("NOT KI AND DeepSeek", "KI und DeepSeek", "", False),
    ("title:DeepSeek", "DeepSeek", "Nachrichten", False),
    ("title:DeepSeek", "x", "DeepSeek-R1 ist da", True),
    ("title:(KI OR AI) content:Azure", "Azure", "KI", True),
    ("title:(KI OR AI) content:Azure", "Azure KI", "Wetter", False),
    ('"künstliche Intelligenz"', "künstliche\nIntelligenz", "", True),
    ("Deep* /r\\d+/", "Deepfake R2", "", True),
    ("Deep* /r\\d+/", "Deepfake RX", "", False),
    ("DeepSeek and Azure", "DeepSeek", "", False),  # lower-case and is a word
]


@pytest.mark.parametrize(("query", "text", "title", "expected"), QUERIES)
def test_query_rule(query: str, text: str, title: str, expected: bool) -> None:
    matcher = compile_rules([RuleSpec(name="q", query=query)])
    assert bool(matcher.match(_doc(text, title=title), feed="f")) == expected


def test_query_field_prefix_overrides_rule_fields() -> None:
    rule = RuleSpec(name="q", query="summary:Azure DeepSeek", fields=("title",))
    matcher = compile_rules([rule])
    doc = prepare(title="DeepSeek", summary="Azure", content="")
    assert matcher.match(doc, feed="f")[0].hits == (
        Hit("DeepSeek", "title", 0, 8),
        Hit("Azure", "summary", 0, 5),
    )


# -- snippets


def test_snippet_of_short_text_is_the_whole_text() -> None:
    doc = _doc("Microsoft bringt DeepSeek nach Azure.")
    hit = Hit("DeepSeek", "content", 17, 25)
    assert snippet(doc, hit) == snippet(doc, hit, width=160)
    s = snippet(doc, hit)
    assert (s.before, s.hit, s.after) == ("Microsoft bringt ", "DeepSeek", " nach Azure.")


def test_snippet_quotes_the_text_as_published_even_after_letters_that_fold_longer() -> None:
    doc = prepare(title="", summary="", content="Die Großbank nutzt DeepSeek.")
    hit = Hit("DeepSeek", "content", 20, 28)
    assert doc.fields["content"][20:28] == "deepseek"
    s = snippet(doc, hit)  # ß folds to ss in the matched text, never in the quote
    assert (s.before, s.hit, s.after) == ("Die Großbank nutzt ", "DeepSeek", ".")
    doc = prepare(title="", summary="", content="Die Bank nutzt DeepSeek.")
    s = snippet(doc, Hit("DeepSeek", "content", 15, 23))
    assert (s.before, s.hit, s.after) == ("Die Bank nutzt ", "DeepSeek", ".")


@pytest.mark.parametrize(
    ("text", "term", "quoted"),
    [
        ("Größere Konkurrenz für DeepSeek", "grössere konkurrenz", "Größere Konkurrenz"),
        ("Die STRAẞE und die Straße", "strasse", "STRAẞE"),
        ("Maß für Maß: DeepSeek", "deepseek", "DeepSeek"),
        ("ﬁnale Version von DeepSeek", "deepseek", "DeepSeek"),
    ],
)
def test_a_hit_after_or_on_a_folding_letter_is_quoted_as_written(
    text: str, term: str, quoted: str
) -> None:
    doc = prepare(title="", summary="", content=text)
    start = doc.fields["content"].index(term)
    s = snippet(doc, Hit(term, "content", start, start + len(term)))
    assert s.hit == quoted
    assert s.before + s.hit + s.after == doc.display.get("content", doc.fields["content"])


def test_snippet_cuts_long_text_at_word_boundaries_with_ellipsis() -> None:
    words = [f"wort{i}" for i in range(200)]
    words[100] = "deepseek"
    doc = _doc(" ".join(words))
    start = doc.fields["content"].index("deepseek")
    s = snippet(doc, Hit("DeepSeek", "content", start, start + 8), width=60)
    assert s.hit == "deepseek"
    assert s.before.startswith("…wort") and s.after.endswith("wort") is False
    assert s.after.endswith("…")
    assert len(s.before) + len(s.hit) + len(s.after) <= 62
    for part in s.before[1:].split() + s.after[:-1].split():
        assert part in words  # no word was cut in half


def test_snippet_gives_unused_room_of_one_side_to_the_other() -> None:
    doc = _doc("DeepSeek " + " ".join(f"w{i}" for i in range(100)))
    s = snippet(doc, Hit("DeepSeek", "content", 0, 8), width=80)
    assert s.before == ""
    assert len(s.after) > 60


# -- the automaton against a naive reference, on generated text

_WORDS = [
    "ki",
    "ai",
    "eu",
    "r1",
    "r15",
    "deepseek",
    "deepseeks",
    "azure",
    "openai",
    "kiosk",
    "ski",
    "said",
    "neu",
    "modell",
    "modelle",
    "künstliche",
    "intelligenz",
    "deep",
    "deepfake",
    "large",
    "language",
    "model",
    "models",
    "e",
    "mail",
    "new",
    "york",
]
_SEPS = [" ", " ", " ", "-", ", ", ". ", "/", "'s ", " - ", "\n", "s "]


def _reference(term: str, text: str) -> bool:
    word = r"[^\W_]"
    if term.startswith("/"):
        return re.search(term[1:-1], text, re.IGNORECASE) is not None
    prefix = term.endswith("*")
    tokens = re.split(r"[ \-]+", term.rstrip("*").lower())
    body = r"[ \-]+".join(re.escape(t) for t in tokens)
    tail = rf"{word}*" if prefix else rf"(?:'s|s)?(?!{word})"
    return re.search(rf"(?<!{word}){body}{tail}", text) is not None


def test_automaton_agrees_with_a_naive_regex_reference_on_generated_text() -> None:
    rng = random.Random(4)
    terms = [
        "KI", "AI", "EU", "R1", "DeepSeek", "Azure", "künstliche Intelligenz",
        "large language model", "E-Mail", "New York", "Deep*", "Modell*", "/r\\d+/",
    ]  # fmt: skip
    rules = [RuleSpec(name=t, keywords=(t,), fields=("content",)) for t in terms]
    matcher: Matcher = compile_rules(rules)
    for _ in range(300):
        text = "".join(rng.choice(_WORDS) + rng.choice(_SEPS) for _ in range(rng.randint(1, 12)))
        doc = _doc(text)
        got = {m.rule for m in matcher.match(doc, feed="f")}
        want = {t for t in terms if _reference(t, doc.fields["content"])}
        assert got == want, doc.fields["content"]


def test_analyze_in_a_worker_process_gives_the_same_matches_as_in_process() -> None:
    """Rules travel to pool workers as records and are compiled there once."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from monitor.analyze import analyze
    from monitor.types import FeedEntry

    rules = (
        RuleSpec("DeepSeek", keywords=("DeepSeek",)),
        RuleSpec("Azure AI", all=("Azure",), keywords=("KI", "AI")),
    )
    entries = [
        FeedEntry("1", None, None, "DeepSeeks neues Modell", "<p>auf Azure</p>", ""),
        FeedEntry("2", None, None, "KI-Modelle", "<p>jetzt bei Azure</p>", ""),
        FeedEntry("3", None, None, "Kiosk", "Ski", ""),
    ]
    here = analyze(rules, entries, {"3": "DeepSeek im Artikel"}, "feed", ())
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx) as pool:
        there = pool.submit(
            analyze, rules, entries, {"3": "DeepSeek im Artikel"}, "feed", ()
        ).result()
    assert there == here
    assert [[m.rule for m in a.matches] for a in here] == [["DeepSeek"], ["Azure AI"], ["DeepSeek"]]
    assert here[2].snippet is not None and here[2].snippet.field == "content"


def test_rules_for_names_the_rules_limited_to_a_feed_or_its_tags() -> None:
    matcher = compile_rules(
        [
            RuleSpec("everywhere", keywords=("x",)),
            RuleSpec("heise only", keywords=("x",), feeds=("heise",)),
            RuleSpec("german", keywords=("x",), feeds=("de",)),
        ]
    )
    assert matcher.rules_for("heise") == {"everywhere", "heise only"}
    assert matcher.rules_for("golem", ("de",)) == {"everywhere", "german"}
    assert matcher.rules_for("register", ("en",)) == {"everywhere"}
