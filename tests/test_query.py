"""The query parser: precedence, implicit AND, field prefixes, error offsets."""

from __future__ import annotations

import pytest

from monitor.query import And, Node, Not, Or, QuerySyntaxError, Term, parse_query


def _show(node: Node) -> str:
    """A compact, fully parenthesized rendering, to compare trees as strings."""
    if isinstance(node, Term):
        prefix = f"{','.join(node.fields)}:" if node.fields else ""
        return f"{prefix}<{node.text}>"
    if isinstance(node, Not):
        return f"NOT {_show(node.child)}"
    op = " AND " if isinstance(node, And) else " OR "
    assert isinstance(node, And | Or)
    return "(" + op.join(_show(c) for c in node.children) + ")"


TREES = [
    ("DeepSeek", "<DeepSeek>"),
    ("a b c", "(<a> AND <b> AND <c>)"),
    ("a AND b OR c", "((<a> AND <b>) OR <c>)"),
    ("a OR b AND c", "(<a> OR (<b> AND <c>))"),
    ("NOT a AND b", "(NOT <a> AND <b>)"),
    ("NOT a OR b", "(NOT <a> OR <b>)"),
    ("-a b", "(NOT <a> AND <b>)"),
    ("NOT NOT a", "NOT NOT <a>"),
    ("a -(b OR c)", "(<a> AND NOT (<b> OR <c>))"),
    ('DeepSeek AND (Azure OR "AI Foundry") AND NOT Stellenangebot',
     "(<DeepSeek> AND (<Azure> OR <AI Foundry>) AND NOT <Stellenangebot>)"),
    ("title:DeepSeek", "title:<DeepSeek>"),
    ('title:"AI Foundry"', "title:<AI Foundry>"),
    ("title:(a OR content:b)", "(title:<a> OR content:<b>)"),
    ("Title:/r\\d+ x/", "title:</r\\d+ x/>"),
    ("KI-Modelle", "<KI-Modelle>"),
    ("a and b", "(<a> AND <and> AND <b>)"),
    ("Deep*", "<Deep*>"),
    ("/a\\/b/ c", "(</a\\/b/> AND <c>)"),
    ("((a))", "<a>"),
]  # fmt: skip


@pytest.mark.parametrize(("query", "tree"), TREES)
def test_parse_query_builds_tree_with_precedence_not_and_or(query: str, tree: str) -> None:
    assert _show(parse_query(query)) == tree


def test_term_offsets_point_into_the_query() -> None:
    node = parse_query('KI "AI Foundry" /x/')
    assert isinstance(node, And)
    offsets = [c.offset for c in node.children if isinstance(c, Term)]
    assert offsets == [0, 4, 16]


ERRORS = [
    ("", 0, "empty"),
    ("a AND", 5, "expected a term"),
    ("AND a", 0, "expected a term"),
    ("a OR OR b", 5, "expected a term"),
    ("(a OR b", 0, "'(' without ')'"),
    ("a OR b)", 6, "')' without '('"),
    ('a "b', 2, "unterminated quote"),
    ('a ""', 2, "empty quotes"),
    ("a /b", 2, "unterminated regular expression"),
    ("a - b", 2, "'-' must be followed"),
    ("titel:a", 0, "unknown field"),
    ("title: a", 7, "unexpected") if False else ("title:()", 7, "expected a term"),
    ("a NOT", 5, "expected a term"),
    ("(" * 60 + "a" + ")" * 60, 50, "nested deeper"),
]


@pytest.mark.parametrize(("query", "offset", "message"), ERRORS)
def test_malformed_query_reports_offset(query: str, offset: int, message: str) -> None:
    with pytest.raises(QuerySyntaxError) as info:
        parse_query(query)
    assert info.value.offset == offset
    assert message in info.value.message
