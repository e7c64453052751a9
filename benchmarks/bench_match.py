"""Benchmark of the rule matcher (``make bench-match``).

10,000 generated articles of about 5 KB (German/English-ish words from a
seeded RNG, a small HTML summary, plain-text content) are normalized
(``prepare``) and matched against 10, 100 and 1,000 generated rules mixing
words, phrases, prefixes and a few regexes. Every figure includes
normalization. The naive baseline compiles every term into its own regex and
tries them rule by rule; it is slow, so it runs on a slice of the articles
and its result is checked against the matcher's on that slice.

Usage: python benchmarks/bench_match.py [--articles N] [--naive-articles N]
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Callable, Sequence

from monitor.match import compile_rules
from monitor.normalize import normalize, prepare
from monitor.types import Document, RuleSpec

SEED = 20250101
FIELDS = ("title", "summary", "content")

_ONSETS = [
    "b",
    "d",
    "f",
    "g",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "w",
    "z",
    "sch",
    "st",
    "br",
    "tr",
    "gr",
    "kl",
    "pf",
    "ch",
    "th",
    "sp",
]
_NUCLEI = ["a", "e", "i", "o", "u", "ä", "ö", "ü", "ei", "au", "ie", "ea", "oo"]
_CODAS = ["n", "r", "s", "t", "l", "ng", "nd", "ck", "ß", "st", "rt", "ch", "m", "x"]
_REAL = [
    "KI",
    "AI",
    "EU",
    "R1",
    "DeepSeek",
    "Azure",
    "OpenAI",
    "Microsoft",
    "Google",
    "Modell",
    "Modelle",
    "Daten",
    "Cloud",
    "Rechenzentrum",
    "Sicherheit",
    "Software",
    "Hardware",
    "Chip",
    "Chips",
    "Kiosk",
    "Ski",
    "said",
    "neue",
    "Regeln",
    "künstliche",
    "Intelligenz",
    "large",
    "language",
    "model",
    "Stellenangebot",
    "Regierung",
    "Markt",
    "Aktie",
]


def _vocabulary(rng: random.Random, size: int) -> list[str]:
    words = {w.lower() for w in _REAL}
    while len(words) < size:
        syllables = rng.choice((1, 2, 2, 3, 3, 4))
        word = "".join(
            rng.choice(_ONSETS)
            + rng.choice(_NUCLEI)
            + (rng.choice(_CODAS) if rng.random() < 0.5 else "")
            for _ in range(syllables)
        )
        if word.lower() not in words:
            words.add(word)
    # nouns capitalized, German style: the matcher folds case anyway
    ordered = sorted(w.capitalize() if rng.random() < 0.3 else w for w in sorted(words))
    rng.shuffle(ordered)
    return ordered


class Corpus:
    def __init__(self, rng: random.Random) -> None:
        self.vocab = _vocabulary(rng, 30_000)
        # Zipf-like frequencies, so some terms are common and most are rare
        weights = [1.0 / (rank + 1) for rank in range(len(self.vocab))]
        self.cum: list[float] = []
        total = 0.0
        for w in weights:
            total += w
            self.cum.append(total)
        self.phrases = [
            f"{rng.choice(self.vocab[:2000])} {rng.choice(self.vocab[:2000])}" for _ in range(2000)
        ] + ["künstliche Intelligenz", "large language model", "DeepSeek R1"]

    def words(self, rng: random.Random, k: int) -> list[str]:
        return rng.choices(self.vocab, cum_weights=self.cum, k=k)

    def sentence(self, rng: random.Random) -> str:
        words = self.words(rng, rng.randint(6, 18))
        if rng.random() < 0.03:
            words.insert(rng.randrange(len(words)), rng.choice(self.phrases))
        if rng.random() < 0.01:
            words.insert(rng.randrange(len(words)), f"R{rng.randint(1, 30)}")
        text = " ".join(words)
        return text[0].upper() + text[1:] + rng.choice((".", ".", ".", "!", "?", ":"))

    def article(self, rng: random.Random, size: int = 5000) -> tuple[str, str, str]:
        title = " ".join(self.words(rng, rng.randint(5, 10)))
        summary = "<p>" + " ".join(self.sentence(rng) for _ in range(2)) + "</p>"
        parts: list[str] = []
        length = 0
        while length < size:
            paragraph = " ".join(self.sentence(rng) for _ in range(rng.randint(2, 5)))
            parts.append(paragraph)
            length += len(paragraph) + 2
        return title, summary, "\n\n".join(parts)


_REGEXES = [r"/r\d+\b/", r"/gpt-?\d/", r"/\b(?:19|20)\d\d\b/", r"/schau\w+ung/", r"/\bst\w*ß\b/"]


def make_rules(rng: random.Random, corpus: Corpus, count: int) -> list[RuleSpec]:
    """Rules with 1-4 keywords: ~75% words, 12% phrases, 10% prefixes, ~2% regexes;
    a third of them with an `all` term, a fifth with an `exclude` term."""
    # rule terms are rarer than the filler words, as names in the news are
    # (words of 4+ letters, like names and topics; plus the acronyms KI, AI, EU, R1)
    pool = [w for w in corpus.vocab[300:] if len(w) >= 4] + _REAL

    def term() -> str:
        roll = rng.random()
        if roll < 0.02:
            return rng.choice(_REGEXES)
        if roll < 0.12:
            word = rng.choice([w for w in rng.sample(pool, 20) if len(w) >= 8] or ["Rechenzent"])
            return word[: len(word) - 2] + "*"
        if roll < 0.24:
            return rng.choice(corpus.phrases)
        return rng.choice(pool)

    rules = []
    for i in range(count):
        rules.append(
            RuleSpec(
                name=f"rule{i}",
                keywords=tuple(term() for _ in range(rng.randint(1, 4))),
                all=(rng.choice(pool),) if rng.random() < 0.33 else (),
                exclude=(rng.choice(pool),) if rng.random() < 0.2 else (),
            )
        )
    return rules


# --------------------------------------------------------------------------
# the naive baseline: one regex per term, tried rule by rule

_W = r"[^\W_]"


def _naive_regex(term: str) -> re.Pattern[str]:
    if term.startswith("/") and term.endswith("/"):
        return re.compile(term[1:-1], re.IGNORECASE)
    prefix = term.endswith("*")
    tokens = re.split(r"[ \-]+", normalize(term.rstrip("*")).strip(" -"))
    body = r"[ \-]+".join(re.escape(t) for t in tokens)
    tail = rf"{_W}*" if prefix else rf"(?:'s|s)?(?!{_W})"
    return re.compile(rf"(?<!{_W}){body}{tail}", re.IGNORECASE)


def naive_matcher(rules: Sequence[RuleSpec]) -> Callable[[Document], list[str]]:
    compiled = [
        (
            rule.name,
            [_naive_regex(t) for t in rule.keywords],
            [_naive_regex(t) for t in rule.all],
            [_naive_regex(t) for t in rule.exclude],
        )
        for rule in rules
    ]

    def found(pattern: re.Pattern[str], doc: Document) -> bool:
        return any(pattern.search(doc.fields[f]) for f in FIELDS)

    def match(doc: Document) -> list[str]:
        out = []
        for name, keywords, all_, exclude in compiled:
            if keywords and not any(found(p, doc) for p in keywords):
                continue
            if not all(found(p, doc) for p in all_):
                continue
            if any(found(p, doc) for p in exclude):
                continue
            out.append(name)
        return out

    return match


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--articles", type=int, default=10_000)
    parser.add_argument("--naive-articles", type=int, default=200)
    args = parser.parse_args(argv)

    rng = random.Random(SEED)
    corpus = Corpus(rng)
    t0 = time.perf_counter()
    articles = [corpus.article(rng) for _ in range(args.articles)]
    size = sum(len(t) + len(s) + len(c) for t, s, c in articles) / len(articles)
    print(
        f"generated {len(articles)} articles, {size / 1000:.1f} KB average, "
        f"in {time.perf_counter() - t0:.1f} s (seed {SEED})"
    )

    # normalization alone, for reference
    t0 = time.perf_counter()
    docs = [prepare(title=t, summary=s, content=c) for t, s, c in articles]
    prep = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _, _, c in articles[:2000]:
        normalize(c)
    plain = (time.perf_counter() - t0) / min(2000, len(articles))
    print(
        f"prepare() alone: {len(articles) / prep:,.0f} articles/s; "
        f"normalize() of the ~5 KB plain content: {plain * 1e3:.3f} ms"
    )
    print()
    header = (
        f"{'rules':>6} {'compile':>9} {'matcher art/s':>14} {'matches/art':>12} "
        f"{'naive art/s':>12} {'speedup':>8}  agree"
    )
    print(header)
    print("-" * len(header))
    for count in (10, 100, 1000):
        rules = make_rules(random.Random(SEED + count), corpus, count)
        t0 = time.perf_counter()
        matcher = compile_rules(rules)
        compile_s = time.perf_counter() - t0

        matched = 0
        t0 = time.perf_counter()
        for title, summary, content in articles:
            doc = prepare(title=title, summary=summary, content=content)
            matched += len(matcher.match(doc, feed="bench"))
        fast = len(articles) / (time.perf_counter() - t0)

        naive = naive_matcher(rules)
        sample = articles[: args.naive_articles]
        t0 = time.perf_counter()
        naive_results = []
        for title, summary, content in sample:
            doc = prepare(title=title, summary=summary, content=content)
            naive_results.append(naive(doc))
        slow = len(sample) / (time.perf_counter() - t0)
        agree = all(
            [m.rule for m in matcher.match(doc, feed="bench")] == want
            for doc, want in zip(docs, naive_results, strict=False)
        )
        print(
            f"{count:>6} {compile_s * 1e3:>7.0f}ms {fast:>14,.0f} {matched / len(articles):>12.2f} "
            f"{slow:>12,.1f} {fast / slow:>7.0f}x  {'yes' if agree else 'NO'}"
        )
        if not agree:
            print("matcher and naive baseline disagree", file=sys.stderr)
            return 1
    print()
    print(f"naive baseline timed on the first {args.naive_articles} articles; all figures")
    print("include prepare() (HTML summary + plain content normalization); one process, one core.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
