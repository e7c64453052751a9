"""Rule matching (SPEC sections 4 "rules" and 5).

All rules compile into one :class:`Matcher`. Every literal term (word,
phrase, prefix) of every rule is a key of one Aho-Corasick automaton; per
entry the automaton runs once over each normalized field, and each candidate
it reports is checked for word boundaries. Only the rules one of whose
required terms was found are then evaluated, so the cost per entry grows
with the text and the number of hits, hardly with the number of rules.
Regular-expression terms are run lazily, only for rules that need them.

Term forms (``normalize`` applies to terms as to text):

* ``DeepSeek``: the whole word. A word character is a letter or digit
  (``str.isalnum``) that is not CJK; everything else (hyphens, slashes,
  quotes, punctuation, ``_``, CJK ideographs/kana/hangul) is a boundary. The
  word may be followed by ``s`` or ``'s`` (plural/possessive), nothing else.
* ``künstliche Intelligenz``: words in sequence; a space or hyphen in the term
  matches any run of spaces and hyphens in the text.
* ``Deep*``: a word starting with ``Deep`` (also as the last word of a phrase).
* ``/R\\d+\\b/``: a Python regex over the normalized (case-folded) text,
  case-insensitive, run on at most :data:`MAX_REGEX_TEXT` characters per field.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from dataclasses import dataclass

import ahocorasick

from monitor.normalize import normalize
from monitor.query import FIELDS, And, Node, Not, QuerySyntaxError, Term, parse_query
from monitor.types import Document, Hit, RuleMatch, RuleSpec, Snippet

__all__ = [
    "MAX_HITS_PER_FIELD",
    "MAX_REGEX_LENGTH",
    "MAX_REGEX_TEXT",
    "Matcher",
    "RuleProblem",
    "compile_rules",
    "snippet",
    "validate_rule",
]

MAX_REGEX_LENGTH = 500  # characters of a regex term, slashes excluded
MAX_REGEX_TEXT = 100_000  # characters of a field a regex looks at
MAX_HITS_PER_FIELD = 20  # hits kept per term and field, for explanations


@dataclass(frozen=True)
class RuleProblem:
    """Why a rule can't be compiled.

    ``key`` is "keywords", "all", "exclude", "query" or "fields"; ``index`` the
    position in that list (None for query or for the rule as a whole);
    ``offset`` the 0-based character offset in that string, when known.
    """

    key: str
    index: int | None
    offset: int | None
    message: str


# --------------------------------------------------------------------------
# character classes


def _is_cjk(c: str) -> bool:
    o = ord(c)
    return (
        0x2E80 <= o <= 0x9FFF  # radicals, CJK punctuation, kana, bopomofo, ideographs
        or 0xAC00 <= o <= 0xD7AF  # hangul syllables
        or 0xF900 <= o <= 0xFAFF  # compatibility ideographs
        or 0xFF66 <= o <= 0xFF9F  # half-width katakana
        or 0x20000 <= o <= 0x3FFFF  # ideograph extensions
    )


def _is_word(c: str) -> bool:
    """True for a character that continues a word (letters, digits; not CJK)."""
    return c.isalnum() and (c < "\u2e80" or not _is_cjk(c))


# --------------------------------------------------------------------------
# terms


@dataclass(frozen=True, slots=True)
class _Literal:
    """A word, phrase or prefix term, normalized and split into tokens."""

    tokens: tuple[str, ...]
    key_index: int  # the token the automaton looks for (the longest)
    prefix: bool  # the last token is a prefix
    first_word: bool  # the term starts with a word character: needs a boundary
    last_word: bool  # the term ends with a word character: needs a boundary


@dataclass(frozen=True, slots=True)
class _Regex:
    pattern: re.Pattern[str]


_TermSpec = _Literal | _Regex
_SEPARATORS = re.compile(r"[ \-]+")


def _runaway(pattern: str) -> int | None:
    """Offset of a group with a repeated quantifier inside that is itself
    repeated, like ``(a+)+`` or ``(\\w*x)*``: the shape of catastrophic
    backtracking. A heuristic: it reads the pattern, not the regex engine."""
    stack: list[tuple[int, bool]] = []  # (offset of "(", contains a repetition)
    i, n = 0, len(pattern)
    last_group: tuple[int, bool] | None = None  # the group that just closed
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            last_group = None
            continue
        if c == "[":
            j = i + 1
            if j < n and pattern[j] == "^":
                j += 1
            if j < n and pattern[j] == "]":
                j += 1
            while j < n and pattern[j] != "]":
                j += 2 if pattern[j] == "\\" else 1
            i = j + 1
            last_group = None
            continue
        repeat = c in "*+" or (
            c == "{" and re.match(r"\{\d*,\d*\}|\{\d+\}", pattern[i:]) is not None
        )
        if repeat and c == "{":
            m = re.match(r"\{(\d*)(,?)(\d*)\}", pattern[i:])
            assert m is not None
            low, comma, high = m.groups()
            repeat = (comma and (high == "" or int(high) > 1)) or (not comma and int(low or 0) > 1)
        if repeat:
            if last_group is not None and last_group[1]:
                return last_group[0]
            if stack:
                stack[-1] = (stack[-1][0], True)
        if c == "(":
            stack.append((i, False))
            last_group = None
        elif c == ")":
            if stack:
                opened = stack.pop()
                last_group = opened
                if stack and opened[1]:
                    stack[-1] = (stack[-1][0], True)
            else:
                last_group = None
        elif c not in "*+?{":
            last_group = None
        i += 1
    return None


def _case_insensitive(source: str) -> re.Pattern[str]:
    """``source`` compiled to match case-insensitively on case-folded text.

    The text is already lower case, so lowering the pattern's literals gives
    the same matches as re.IGNORECASE at a fraction of the cost (Python's
    engine loses its literal-prefix search under IGNORECASE: 4-8x slower).
    Escapes keep their case (``\\D`` is not ``\\d``); anything unusual
    falls back to re.IGNORECASE.
    """
    out: list[str] = []
    i, n = 0, len(source)
    while i < n:
        c = source[i]
        if c == "\\":
            if source.startswith("N{", i + 1):  # a character name: keep its case
                return _fallback(source)
            out.append(source[i : i + 2])
            i += 2
            continue
        if c == "(" and source.startswith("(?", i) and "L" in source[i : i + 4]:
            return _fallback(source)
        lowered = c.lower()
        if len(lowered) != 1:  # İ lowers to two characters: a quantifier would bind apart
            return _fallback(source)
        out.append(lowered)
        i += 1
    try:
        return re.compile("".join(out))
    except re.error:
        return _fallback(source)


def _fallback(source: str) -> re.Pattern[str]:
    return re.compile(source, re.IGNORECASE)


def _parse_term(raw: str) -> tuple[_TermSpec | None, list[tuple[int | None, str]]]:
    """The compiled form of ``raw`` and its problems as (offset, message)."""
    text = raw.strip()
    lead = raw.find(text[:1]) if text else 0  # offsets refer to ``raw``
    if not text:
        return None, [(0, "empty term")]
    if len(text) >= 2 and text[0] == "/" and text[-1] == "/":
        source = text[1:-1]
        if not source:
            return None, [(lead, "empty regular expression")]
        if len(source) > MAX_REGEX_LENGTH:
            return None, [(lead, f"regular expression longer than {MAX_REGEX_LENGTH} characters")]
        at = _runaway(source)
        if at is not None:
            return None, [
                (
                    lead + 1 + at,
                    "nested repetition like (a+)+ can take exponential time; "
                    "rewrite without the outer repetition",
                )
            ]
        try:
            re.compile(source, re.IGNORECASE)
        except re.error as exc:
            return None, [(lead + 1 + (exc.pos or 0), f"invalid regular expression: {exc.msg}")]
        compiled = _case_insensitive(source)
        if compiled.search("") is not None or any(
            m.start() == m.end() for m in compiled.finditer("ab 12-cd")
        ):
            return None, [(lead, "regular expression matches empty text")]
        return _Regex(compiled), []
    prefix = text.endswith("*")
    body = text[:-1] if prefix else text
    star = body.find("*")
    if star >= 0:
        return None, [(lead + star, "'*' is allowed only at the end of a term")]
    normalized = normalize(body).strip(" -")
    if not normalized:
        return None, [(lead, "term has no text to match")]
    tokens = tuple(_SEPARATORS.split(normalized))
    key_index = max(range(len(tokens)), key=lambda i: (len(tokens[i]), -i))
    return (
        _Literal(
            tokens=tokens,
            key_index=key_index,
            prefix=prefix,
            first_word=_is_word(tokens[0][0]),
            last_word=_is_word(tokens[-1][-1]),
        ),
        [],
    )


def _verify(term: _Literal, text: str, ks: int, ke: int) -> tuple[int, int] | None:
    """The span of ``term`` around its key found at ``text[ks:ke]``, if it is there."""
    tokens = term.tokens
    start = ks
    for i in range(term.key_index - 1, -1, -1):
        j = start
        while j > 0 and text[j - 1] in " -":
            j -= 1
        token = tokens[i]
        if j == start or j < len(token) or not text.startswith(token, j - len(token)):
            return None
        start = j - len(token)
    if term.first_word and start > 0 and _is_word(text[start - 1]):
        return None
    end = ke
    n = len(text)
    for i in range(term.key_index + 1, len(tokens)):
        j = end
        while j < n and text[j] in " -":
            j += 1
        token = tokens[i]
        if j == end or not text.startswith(token, j):
            return None
        end = j + len(token)
    if term.prefix:
        while end < n and _is_word(text[end]):
            end += 1
        return start, end
    if not term.last_word or end == n or not _is_word(text[end]):
        # a following "'s" is part of the hit, for the explanation
        if text.startswith("'s", end) and (end + 2 == n or not _is_word(text[end + 2])):
            return start, end + 2
        return start, end
    if text[end] == "s" and (end + 1 == n or not _is_word(text[end + 1])):
        return start, end + 1
    return None


# --------------------------------------------------------------------------
# rule trees


@dataclass(frozen=True, slots=True)
class _Ref:
    term_id: int
    fields: tuple[str, ...]
    display: str  # the term as the rule writes it
    literal: bool  # found by the automaton (else a regex, run on demand)


@dataclass(frozen=True, slots=True)
class _All:
    children: tuple[_Expr, ...]


@dataclass(frozen=True, slots=True)
class _Any:
    children: tuple[_Expr, ...]


@dataclass(frozen=True, slots=True)
class _None:
    child: _Expr


_Expr = _Ref | _All | _Any | _None


@dataclass(frozen=True, slots=True)
class _Rule:
    name: str
    expr: _Expr
    feeds: frozenset[str]


def _problem_key(rule: RuleSpec) -> list[RuleProblem]:
    problems: list[RuleProblem] = []
    if rule.query is not None and (rule.keywords or rule.all or rule.exclude):
        problems.append(
            RuleProblem("query", None, None, "use either query or keywords/all/exclude, not both")
        )
    if rule.query is None and not rule.keywords and not rule.all:
        problems.append(RuleProblem("keywords", None, None, "a rule needs keywords, all or query"))
    if not rule.fields:
        problems.append(RuleProblem("fields", None, None, "fields is empty"))
    for index, name in enumerate(rule.fields):
        if name not in FIELDS:
            problems.append(
                RuleProblem("fields", index, None, f"unknown field {name!r} ({', '.join(FIELDS)})")
            )
    return problems


class _Builder:
    """Turns RuleSpecs into trees over a shared, deduplicated term table."""

    def __init__(self) -> None:
        self.terms: list[_TermSpec] = []
        self.ids: dict[object, int] = {}

    def term_id(self, spec: _TermSpec) -> int:
        key: object = (
            ("re", spec.pattern.pattern)
            if isinstance(spec, _Regex)
            else ("lit", spec.tokens, spec.prefix)
        )
        if key not in self.ids:
            self.ids[key] = len(self.terms)
            self.terms.append(spec)
        return self.ids[key]

    def build(self, rule: RuleSpec) -> tuple[_Expr | None, list[RuleProblem]]:
        problems = _problem_key(rule)
        fields = tuple(f for f in rule.fields if f in FIELDS)
        if rule.query is not None:
            expr = self.build_query(rule.query, fields, problems)
        else:
            parts: list[_Expr] = []
            keywords = self.refs(rule, "keywords", fields, problems)
            if keywords:
                parts.append(_Any(tuple(keywords)))
            parts.extend(self.refs(rule, "all", fields, problems))
            excluded = self.refs(rule, "exclude", fields, problems)
            if excluded:
                parts.append(_None(_Any(tuple(excluded))))
            expr = _All(tuple(parts))
        return (None if problems or expr is None else expr), problems

    def refs(
        self, rule: RuleSpec, key: str, fields: tuple[str, ...], problems: list[RuleProblem]
    ) -> list[_Expr]:
        out: list[_Expr] = []
        for index, raw in enumerate(getattr(rule, key)):
            spec, found = _parse_term(raw)
            problems.extend(RuleProblem(key, index, offset, msg) for offset, msg in found)
            if spec is not None:
                out.append(
                    _Ref(self.term_id(spec), fields, raw.strip(), isinstance(spec, _Literal))
                )
        return out

    def build_query(
        self, query: str, fields: tuple[str, ...], problems: list[RuleProblem]
    ) -> _Expr | None:
        try:
            tree = parse_query(query)
        except QuerySyntaxError as exc:
            problems.append(RuleProblem("query", None, exc.offset, exc.message))
            return None
        before = len(problems)
        expr = self.convert(tree, fields, problems)
        if len(problems) == before and _evaluate_constant(expr):
            problems.append(
                RuleProblem("query", None, None, "query matches entries without any of its terms")
            )
        return expr

    def convert(self, node: Node, fields: tuple[str, ...], problems: list[RuleProblem]) -> _Expr:
        if isinstance(node, Term):
            spec, found = _parse_term(node.text)
            problems.extend(
                RuleProblem("query", None, node.offset + (off or 0), msg) for off, msg in found
            )
            term_id = -1 if spec is None else self.term_id(spec)
            literal = isinstance(spec, _Literal)
            return _Ref(term_id, node.fields or fields, node.text.strip(), literal)
        if isinstance(node, Not):
            return _None(self.convert(node.child, fields, problems))
        children = tuple(self.convert(child, fields, problems) for child in node.children)
        return _All(children) if isinstance(node, And) else _Any(children)


def _evaluate_constant(expr: _Expr) -> bool:
    """The value of ``expr`` when no term matches."""
    if isinstance(expr, _Ref):
        return False
    if isinstance(expr, _None):
        return not _evaluate_constant(expr.child)
    if isinstance(expr, _All):
        return all(_evaluate_constant(c) for c in expr.children)
    return any(_evaluate_constant(c) for c in expr.children)


def validate_rule(rule: RuleSpec) -> list[RuleProblem]:
    """Every problem of ``rule``: terms, regexes, query syntax, fields. Empty when fine."""
    return _Builder().build(rule)[1]


# --------------------------------------------------------------------------
# the matcher


class _State:
    """Per-entry findings: literal hits from the automaton, regex hits on demand."""

    __slots__ = ("doc", "found", "literal", "regex", "terms")

    def __init__(
        self,
        doc: Document,
        terms: Sequence[_TermSpec],
        literal: dict[int, dict[str, list[tuple[int, int]]]],
    ) -> None:
        self.doc = doc
        self.terms = terms
        self.literal = literal
        self.regex: dict[tuple[int, str], list[tuple[int, int]]] = {}
        self.found: dict[tuple[int, str], bool] = {}

    def spans(self, term_id: int, field: str) -> list[tuple[int, int]]:
        spec = self.terms[term_id]
        if isinstance(spec, _Literal):
            return self.literal.get(term_id, {}).get(field, [])
        key = (term_id, field)
        found = self.regex.get(key)
        if found is None and not self.found.get(key, True):
            found = self.regex[key] = []
        if found is None:
            text = self.doc.fields.get(field, "")
            found = []
            for m in spec.pattern.finditer(text, 0, min(len(text), MAX_REGEX_TEXT)):
                found.append(m.span())
                if len(found) >= MAX_HITS_PER_FIELD:
                    break
            self.regex[key] = found
        return found

    def regex_found(self, term_id: int, field: str) -> bool:
        """Whether a regex term occurs in ``field``: one search, hits only if needed."""
        key = (term_id, field)
        known = self.found.get(key)
        if known is None:
            spec = self.terms[term_id]
            assert isinstance(spec, _Regex)
            text = self.doc.fields.get(field, "")
            known = spec.pattern.search(text, 0, min(len(text), MAX_REGEX_TEXT)) is not None
            self.found[key] = known
        return known

    def true(self, expr: _Expr) -> bool:
        # the hot path of rule evaluation: plain loops, literal terms inline
        if type(expr) is _Ref:
            if expr.literal:
                found = self.literal.get(expr.term_id)
                if found is None:
                    return False
                for f in expr.fields:  # noqa: SIM110
                    if f in found:
                        return True
                return False
            for f in expr.fields:  # noqa: SIM110
                if self.regex_found(expr.term_id, f):
                    return True
            return False
        if type(expr) is _All:
            for c in expr.children:  # noqa: SIM110
                if not self.true(c):
                    return False
            return True
        if type(expr) is _Any:
            for c in expr.children:  # noqa: SIM110
                if self.true(c):
                    return True
            return False
        assert isinstance(expr, _None)
        return not self.true(expr.child)

    def hits(self, expr: _Expr, out: list[Hit]) -> None:
        """Hits of the terms that make the (true) ``expr`` true."""
        if isinstance(expr, _Ref):
            for f in expr.fields:
                for start, end in self.spans(expr.term_id, f):
                    out.append(Hit(expr.display, f, start, end))
        elif isinstance(expr, _All):
            for c in expr.children:
                self.hits(c, out)
        elif isinstance(expr, _Any):
            for c in expr.children:
                if self.true(c):
                    self.hits(c, out)


def _triggers(expr: _Expr, terms: Sequence[_TermSpec]) -> frozenset[int] | None:
    """Literal terms at least one of which must occur for ``expr`` to be true
    (None: the rule must always be evaluated)."""
    if isinstance(expr, _Ref):
        return frozenset({expr.term_id}) if isinstance(terms[expr.term_id], _Literal) else None
    if isinstance(expr, _None):
        return None
    sets = [_triggers(c, terms) for c in expr.children]
    if isinstance(expr, _Any):
        if any(s is None for s in sets):
            return None
        return frozenset().union(*(s for s in sets if s is not None))
    known = [s for s in sets if s is not None]
    return min(known, key=len) if known else None


_FIELD_ORDER = {name: i for i, name in enumerate(FIELDS)}


class Matcher:
    """All rules compiled together; build it with :func:`compile_rules`."""

    def __init__(self, rules: Sequence[_Rule], terms: Sequence[_TermSpec]) -> None:
        self._rules = tuple(rules)
        self._terms = tuple(terms)
        self._fields = tuple(
            f for f in FIELDS if any(f in _fields_of(rule.expr) for rule in self._rules)
        )
        # term id -> rules it can trigger; rules without a literal trigger always run
        self._by_term: dict[int, list[int]] = {}
        self._always: list[int] = []
        for index, rule in enumerate(self._rules):
            trigger = _triggers(rule.expr, self._terms)
            if trigger is None:
                self._always.append(index)
            else:
                for term_id in trigger:
                    self._by_term.setdefault(term_id, []).append(index)
        # one automaton over the key token of every literal term
        keyed: dict[str, list[tuple[int, _Literal, bool]]] = {}
        for term_id, spec in enumerate(self._terms):
            if isinstance(spec, _Literal):
                single = len(spec.tokens) == 1 and not spec.prefix and spec.last_word
                keyed.setdefault(spec.tokens[spec.key_index], []).append((term_id, spec, single))
        self._automaton: ahocorasick.Automaton | None = None
        if keyed:
            automaton = ahocorasick.Automaton()
            for key, entries in keyed.items():
                automaton.add_word(key, (len(key), _is_word(key[0]), tuple(entries)))
            automaton.make_automaton()
            self._automaton = automaton
        self._feed_cache: dict[tuple[str, tuple[str, ...]], frozenset[int]] = {}

    def rule_names(self) -> tuple[str, ...]:
        """Names of the compiled rules, in config order."""
        return tuple(rule.name for rule in self._rules)

    def rules_for(self, feed: str, tags: Collection[str] = ()) -> frozenset[str]:
        """Names of the rules that apply to a feed with this name and these tags."""
        return frozenset(self._rules[i].name for i in self._applicable(feed, tags))

    def _applicable(self, feed: str, tags: Collection[str]) -> frozenset[int]:
        key = (feed, tuple(sorted(tags)))
        found = self._feed_cache.get(key)
        if found is None:
            names = {feed, *tags}
            found = frozenset(
                i for i, rule in enumerate(self._rules) if not rule.feeds or rule.feeds & names
            )
            if len(self._feed_cache) < 10_000:
                self._feed_cache[key] = found
        return found

    def _scan(self, doc: Document) -> dict[int, dict[str, list[tuple[int, int]]]]:
        found: dict[int, dict[str, list[tuple[int, int]]]] = {}
        automaton = self._automaton
        if automaton is None:
            return found
        for field in self._fields:
            text = doc.fields.get(field, "")
            if not text:
                continue
            n = len(text)
            for last, (length, check_start, entries) in automaton.iter(text):
                ke = last + 1
                ks = ke - length
                # every form of a key needs a non-word character before it:
                # a boundary, or a separator from the previous phrase word
                if check_start and ks > 0:
                    c = text[ks - 1]
                    if c.isalnum() and (c < "\u2e80" or not _is_cjk(c)):
                        continue
                after = text[ke] if ke < n else " "
                # a single word followed by a word character other than "s"
                # (the key inside a longer word) is by far the commonest miss
                inside = (
                    after != "s" and after.isalnum() and (after < "\u2e80" or not _is_cjk(after))
                )
                for term_id, term, single in entries:
                    if single and inside:
                        continue
                    span = _verify(term, text, ks, ke)
                    if span is not None:
                        spans = found.setdefault(term_id, {}).setdefault(field, [])
                        if len(spans) < MAX_HITS_PER_FIELD:
                            spans.append(span)
        return found

    def match(
        self, doc: Document, *, feed: str, tags: Collection[str] = ()
    ) -> tuple[RuleMatch, ...]:
        """The rules ``doc`` matches, in config order, each with its hits.

        A rule whose ``feeds`` is empty applies to every feed; otherwise ``feed``
        or one of ``tags`` must be listed. Hits are sorted by field (title,
        summary, content, author, categories, link) and offset.
        """
        applicable = self._applicable(feed, tags)
        literal = self._scan(doc)
        candidates = {i for term_id in literal for i in self._by_term.get(term_id, ())}
        candidates.update(self._always)
        state = _State(doc, self._terms, literal)
        matches: list[RuleMatch] = []
        for index in sorted(candidates & applicable):
            rule = self._rules[index]
            if state.true(rule.expr):
                hits: list[Hit] = []
                state.hits(rule.expr, hits)
                unique = sorted(
                    set(hits), key=lambda h: (_FIELD_ORDER.get(h.field, 99), h.start, h.end, h.term)
                )
                matches.append(RuleMatch(rule.name, tuple(unique)))
        return tuple(matches)


def _fields_of(expr: _Expr) -> set[str]:
    if isinstance(expr, _Ref):
        return set(expr.fields)
    if isinstance(expr, _None):
        return _fields_of(expr.child)
    return set().union(*(_fields_of(c) for c in expr.children))


def compile_rules(rules: Sequence[RuleSpec]) -> Matcher:
    """Compile ``rules`` into one :class:`Matcher`.

    Raises ``ValueError`` listing every problem (those :func:`validate_rule`
    reports) when a rule is invalid.
    """
    builder = _Builder()
    compiled: list[_Rule] = []
    errors: list[str] = []
    for rule in rules:
        expr, problems = builder.build(rule)
        for p in problems:
            where = p.key if p.index is None else f"{p.key}[{p.index}]"
            at = "" if p.offset is None else f" at offset {p.offset}"
            errors.append(f"rule {rule.name!r}: {where}{at}: {p.message}")
        if expr is not None:
            compiled.append(_Rule(rule.name, expr, frozenset(rule.feeds)))
    if errors:
        raise ValueError("invalid rules:\n" + "\n".join(errors))
    return Matcher(compiled, builder.terms)


# --------------------------------------------------------------------------
# explanations

_ELLIPSIS = "…"


def _shown_span(shown: str, start: int, end: int) -> tuple[int, int]:
    """The span of ``shown`` whose case folding is ``shown.casefold()[start:end]``.

    Folding is per character, and a few characters fold to more than one
    (``ß`` -> ``ss``): offsets after them differ between the two texts.
    """
    if len(shown.casefold()) == len(shown):
        return start, end
    lo = hi = -1
    pos = 0
    for i, c in enumerate(shown):
        nxt = pos + len(c.casefold())
        if lo < 0 and nxt > start:
            lo = i
        if nxt >= end:
            hi = i + 1
            break
        pos = nxt
    return max(lo, 0), (hi if hi >= 0 else len(shown))


def snippet(doc: Document, hit: Hit, *, width: int = 160) -> Snippet:
    """An excerpt of about ``width`` characters around ``hit``.

    The context is cut at word boundaries (spaces); ``…`` marks a cut. The hit
    itself is never cut. Text is the field as written (``doc.display``: before
    case folding, ``Größere``, not ``grössere``) where there is one.
    """
    shown = doc.display.get(hit.field)
    if shown is not None:
        text = shown
        start, end = _shown_span(shown, hit.start, hit.end)
        hit = Hit(hit.term, hit.field, start, end)
    else:
        text = doc.fields.get(hit.field, "")
    room = max(0, width - (hit.end - hit.start))
    half = room // 2
    lo = max(0, hit.start - half)
    # give the room one side doesn't need to the other
    hi = min(len(text), hit.end + (room - (hit.start - lo)))
    lo = max(0, hit.start - (room - (hi - hit.end)))
    before = text[lo : hit.start]
    after = text[hit.end : hi]
    if lo > 0:
        if text[lo - 1] != " ":  # started inside a word: drop the piece
            cut = before.find(" ")
            before = before[cut + 1 :] if cut >= 0 else ""
        before = _ELLIPSIS + before
    if hi < len(text):
        if text[hi] != " ":  # ended inside a word: drop the piece
            cut = after.rfind(" ")
            after = after[:cut] if cut >= 0 else ""
        after = after + _ELLIPSIS
    return Snippet(hit.field, before, text[hit.start : hit.end], after)
