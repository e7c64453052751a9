"""Query strings: the search-engine alternative to keywords/all/exclude.

Grammar (precedence NOT > AND > OR; adjacent terms without an operator are
joined by an implicit AND, so ``DeepSeek Azure`` means ``DeepSeek AND Azure``)::

    query    := or
    or       := and ("OR" and)*
    and      := not (["AND"] not)*
    not      := ("NOT" | "-") not | primary
    primary  := [field ":"] ( "(" or ")" | term )
    term     := word | word* | "quoted phrase" | /regex/

Operators are upper case only (``and`` is an ordinary word). A ``-`` starts a
negation only at the beginning of a term (``KI-Modelle`` is one word). A field
prefix (``title:DeepSeek``, ``content:(KI OR AI)``) restricts the term or the
group to that field; inner prefixes win over outer ones. Terms keep the term
forms of SPEC section 5: the parser hands them on as written (a phrase without
its quotes, a regex with its slashes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "FIELDS",
    "And",
    "Node",
    "Not",
    "Or",
    "QuerySyntaxError",
    "Term",
    "lowercase_operators",
    "parse_query",
]

# Fields of monitor.types.Document, in the order hits are reported.
FIELDS: tuple[str, ...] = ("title", "summary", "content", "author", "categories", "link")

_MAX_DEPTH = 50  # nesting of parentheses / NOT; deeper is refused, not recursed into


@dataclass(frozen=True, slots=True)
class Term:
    """A term as written, ``offset`` its position in the query string."""

    text: str
    offset: int
    fields: tuple[str, ...] | None = None  # None: the rule's fields


@dataclass(frozen=True, slots=True)
class And:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Or:
    children: tuple[Node, ...]


@dataclass(frozen=True, slots=True)
class Not:
    child: Node


Node = Term | And | Or | Not


class QuerySyntaxError(ValueError):
    """A malformed query; ``offset`` is the 0-based position of the problem."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"{message} (at offset {offset})")
        self.message = message
        self.offset = offset


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "(" ")" AND OR NOT FIELD TERM
    value: str
    offset: int


_FIELD_PREFIX = re.compile(r"([A-Za-z]+):(?=\S)")
_WORD_END = re.compile(r'[\s()"]')


def _tokenize(query: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(query)
    while i < n:
        c = query[i]
        if c.isspace():
            i += 1
        elif c in "()":
            tokens.append(_Token(c, c, i))
            i += 1
        elif c == '"':
            close = query.find('"', i + 1)
            if close < 0:
                raise QuerySyntaxError("unterminated quote", i)
            if not query[i + 1 : close].strip():
                raise QuerySyntaxError("empty quotes", i)
            tokens.append(_Token("TERM", query[i + 1 : close], i + 1))
            i = close + 1
        elif c == "/":
            j = i + 1
            while j < n and query[j] != "/":
                j += 2 if query[j] == "\\" else 1
            if j >= n:
                raise QuerySyntaxError("unterminated regular expression", i)
            tokens.append(_Token("TERM", query[i : j + 1], i))
            i = j + 1
        elif c == "-" and (not tokens or tokens[-1].kind != "FIELD"):
            if i + 1 >= n or query[i + 1].isspace() or query[i + 1] == ")":
                raise QuerySyntaxError("'-' must be followed by a term", i)
            tokens.append(_Token("NOT", "-", i))
            i += 1
        else:
            prefix = _FIELD_PREFIX.match(query, i)
            if prefix is not None:
                name = prefix.group(1)
                if name.lower() not in FIELDS:
                    raise QuerySyntaxError(
                        f"unknown field {name!r} (known: {', '.join(FIELDS)})", i
                    )
                tokens.append(_Token("FIELD", name.lower(), i))
                i = prefix.end()
                continue
            end = _WORD_END.search(query, i)
            j = n if end is None else end.start()
            word = query[i:j]
            kind = word if word in ("AND", "OR", "NOT") else "TERM"
            tokens.append(_Token(kind, word, i))
            i = j
    return tokens


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens = _tokenize(query)
        self.pos = 0
        self.depth = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def here(self) -> int:
        token = self.peek()
        return len(self.query) if token is None else token.offset

    def parse(self) -> Node:
        if not self.tokens:
            raise QuerySyntaxError("empty query", 0)
        node = self.parse_or()
        token = self.peek()
        if token is not None:
            what = "')' without '('" if token.kind == ")" else f"unexpected {token.value!r}"
            raise QuerySyntaxError(what, token.offset)
        return node

    def parse_or(self) -> Node:
        items = [self.parse_and()]
        while (token := self.peek()) is not None and token.kind == "OR":
            self.pos += 1
            items.append(self.parse_and())
        return items[0] if len(items) == 1 else Or(tuple(items))

    def parse_and(self) -> Node:
        items = [self.parse_not()]
        while (token := self.peek()) is not None and token.kind in (
            "AND",
            "NOT",
            "(",
            "FIELD",
            "TERM",
        ):
            if token.kind == "AND":
                self.pos += 1
            items.append(self.parse_not())
        return items[0] if len(items) == 1 else And(tuple(items))

    def parse_not(self) -> Node:
        token = self.peek()
        if token is not None and token.kind == "NOT":
            self.pos += 1
            self.enter(token.offset)
            node = Not(self.parse_not())
            self.depth -= 1
            return node
        return self.parse_primary()

    def parse_primary(self) -> Node:
        token = self.peek()
        if token is None:
            raise QuerySyntaxError("expected a term", len(self.query))
        if token.kind == "FIELD":
            self.pos += 1
            inner = self.peek()
            if inner is None or inner.kind not in ("(", "TERM"):
                raise QuerySyntaxError("expected a term or '(' after the field", self.here())
            return _with_fields(self.parse_primary(), (token.value,))
        if token.kind == "(":
            self.pos += 1
            self.enter(token.offset)
            node = self.parse_or()
            close = self.peek()
            if close is None or close.kind != ")":
                raise QuerySyntaxError("'(' without ')'", token.offset)
            self.pos += 1
            self.depth -= 1
            return node
        if token.kind == "TERM":
            self.pos += 1
            return Term(token.value, token.offset)
        raise QuerySyntaxError(f"expected a term, found {token.value!r}", token.offset)

    def enter(self, offset: int) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            raise QuerySyntaxError(f"nested deeper than {_MAX_DEPTH} levels", offset)


def _with_fields(node: Node, fields: tuple[str, ...]) -> Node:
    if isinstance(node, Term):
        return node if node.fields is not None else Term(node.text, node.offset, fields)
    if isinstance(node, Not):
        return Not(_with_fields(node.child, fields))
    children = tuple(_with_fields(child, fields) for child in node.children)
    return And(children) if isinstance(node, And) else Or(children)


def parse_query(query: str) -> Node:
    """Parse ``query`` into a tree of :class:`Term`, :class:`And`, :class:`Or`, :class:`Not`.

    Raises :class:`QuerySyntaxError` (a ``ValueError``) with the offset of the
    first problem. Terms are not checked here (see ``monitor.match``).
    """
    return _Parser(query).parse()


def lowercase_operators(query: str) -> list[tuple[int, str]]:
    """(offset, word) of each ``and``, ``or``, ``not`` (any case but upper) written as a
    word of ``query``: a term to look for, which is rarely what was meant
    (``raspberry and pi or arduino`` wants all five words). A quoted one is meant."""
    try:
        tokens = _tokenize(query)
    except QuerySyntaxError:
        return []  # the syntax error is reported instead
    return [
        (t.offset, t.value)
        for t in tokens
        if t.kind == "TERM"
        and t.value.upper() in ("AND", "OR", "NOT")
        and t.value != t.value.upper()
        and not (t.offset > 0 and query[t.offset - 1] == '"')
    ]
