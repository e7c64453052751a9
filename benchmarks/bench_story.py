"""Benchmark of the near-duplicate decision for stories (``make bench-story``).

1. Quality, on the labelled pairs of ``data/story_pairs.jsonl`` (German and
   English, written for this benchmark, see ``make_story_pairs.py``): every
   entry is normalized (``prepare``), reduced to its story text and
   sketched; a pair counts as "same story" when the sketches share a band key
   and ``similar()`` says so, which is what the database lookup plus
   ``similar`` on its candidates decides. Precision, recall and F1 overall, per
   language and per kind, the confusion table, and a sweep of
   ``MIN_CONTAINMENT`` next to the same decision on the exact shingle sets
   (what the 64-value sketch costs).
2. Cost, at 10,000 stories in the window: synthetic stories (a word-bigram
   model of the labelled set's sources, so common phrases recur more often
   than in real news: a pessimistic candidate count) are sketched and put in
   an in-memory band index equivalent to the database index (band key ->
   story ids); then new entries, 5 % of them wire copies of stored stories,
   are looked up: sketch, band keys, candidates, ``similar`` on each
   candidate read back from its stored bytes. Microseconds per entry, one
   process, one core.
3. The store, one story in many feeds: a wire story stored as the first
   report, then copied by 10, 100 and 400 other feeds (SQLite, a temporary
   file); milliseconds to store (``commit_poll``, folding included) each of
   the next 20 copies. The 100,000-feed soak's farm repeats 400 texts, so
   every story there is copied hundreds of times within the hour.

Usage: python benchmarks/bench_story.py [--stories N] [--queries N] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import make_story_pairs

from monitor.normalize import prepare
from monitor.story import (
    BANDS,
    BINS,
    MAX_WORDS,
    MIN_CONTAINMENT,
    MIN_MATCHING_BINS,
    MIN_SHINGLES,
    SHINGLE_WORDS,
    Fingerprint,
    band_keys,
    fingerprint,
    resemblance,
    similar,
    story_text,
)

PAIRS = Path(__file__).parent / "data" / "story_pairs.jsonl"
SEED = 20250113
SWEEP = (0.40, 0.45, 0.50, 0.55, 0.60, 0.70)
BINS_SWEEP = (4, 6, 8, 10, 12, 16)
VARY = 0.5  # share of longer words replaced in the news-like window (see Bigrams)
_WORD = re.compile(r"\w+")


def text_of(entry: dict[str, str]) -> str:
    """The story text of a labelled entry, as the pipeline would build it."""
    doc = prepare(title=entry["title"], summary=entry["summary"], content=entry["content"])
    f = doc.fields
    return story_text(title=f["title"], summary=f["summary"], content=f["content"])


def shingles(text: str) -> set[str]:
    """The exact shingle set the sketch samples (for the reference column)."""
    words = _WORD.findall(text)[:MAX_WORDS]
    n = SHINGLE_WORDS
    if len(words) < n:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + n]) for i in range(len(words) - n + 1)}


@dataclass
class Scored:
    lang: str
    kind: str
    same: bool
    ident: str
    size: int  # the smaller shingle count
    containment: float  # estimated
    matching_bins: int
    candidate: bool  # the sketches share a band key
    decided: bool  # similar() and candidate
    similar_alone: bool
    exact: float  # exact containment of the shingle sets


def score(pairs: list[dict[str, object]]) -> list[Scored]:
    out = []
    for p in pairs:
        a, b = p["a"], p["b"]
        assert isinstance(a, dict) and isinstance(b, dict)
        ta, tb = text_of(a), text_of(b)
        fa, fb = fingerprint(ta), fingerprint(tb)
        r = resemblance(fa, fb)
        candidate = bool(set(band_keys(fa)) & set(band_keys(fb)))
        sa, sb = shingles(ta), shingles(tb)
        smaller = min(len(sa), len(sb))
        exact = len(sa & sb) / smaller if smaller else 0.0
        alone = similar(fa, fb)
        out.append(
            Scored(
                str(p["lang"]),
                str(p["kind"]),
                bool(p["same"]),
                str(p["id"]),
                min(fa.size, fb.size),
                r.containment,
                r.matching_bins,
                candidate,
                alone and candidate,
                alone,
                exact,
            )
        )
    return out


def prf(pairs: Iterable[tuple[bool, bool]]) -> tuple[float, float, float, int, int, int, int]:
    """(precision, recall, F1, tp, fp, fn, tn) of (truth, decision) pairs."""
    tp = fp = fn = tn = 0
    for truth, decided in pairs:
        if decided and truth:
            tp += 1
        elif decided:
            fp += 1
        elif truth:
            fn += 1
        else:
            tn += 1
    p = tp / (tp + fp) if tp + fp else 1.0
    r = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    return p, r, f1, tp, fp, fn, tn


def decide(
    s: Scored, threshold: float, *, bins: int = MIN_MATCHING_BINS, exact: bool = False
) -> bool:
    """The decision of similar() + band lookup at other thresholds."""
    if s.size < MIN_SHINGLES:
        return False
    if exact:
        return s.exact >= threshold
    return s.candidate and s.matching_bins >= bins and s.containment >= threshold


def quality_report(scored: list[Scored]) -> None:
    same = sum(s.same for s in scored)
    langs = Counter(s.lang for s in scored)
    per_lang = ", ".join(f"{k} {v}" for k, v in sorted(langs.items()))
    print(
        f"labelled set: {len(scored)} pairs ({per_lang}; {same} same story, "
        f"{len(scored) - same} different), {PAIRS.name}"
    )
    print(
        f"thresholds: MIN_CONTAINMENT {MIN_CONTAINMENT}, MIN_MATCHING_BINS {MIN_MATCHING_BINS}, "
        f"MIN_SHINGLES {MIN_SHINGLES}; decision = a shared band key and similar()"
    )
    print()

    def row(name: str, group: list[Scored], decided: list[bool] | None = None) -> None:
        got = decided if decided is not None else [s.decided for s in group]
        p, r, f1, _, fp, fn, _ = prf(zip((s.same for s in group), got, strict=True))
        print(
            f"{name:<26}{len(group):>6}{sum(s.same for s in group):>6}"
            f"{p:>8.3f}{r:>8.3f}{f1:>8.3f}{fp:>5}{fn:>5}"
        )

    print(f"{'':<26}{'pairs':>6}{'same':>6}{'P':>8}{'R':>8}{'F1':>8}{'FP':>5}{'FN':>5}")
    row("all", scored)
    for lang in sorted(langs):
        row(lang, [s for s in scored if s.lang == lang])
    row("similar() alone, no bands", scored, [s.similar_alone for s in scored])
    reachable = [s for s in scored if s.kind not in ("rewrite", "short-same")]
    row("without rewrites and", reachable)
    print("  headline-only pairs")

    _, _, _, tp, fp, fn, tn = prf((s.same, s.decided) for s in scored)
    print()
    print("confusion (all pairs)      decided same   decided different")
    print(f"  same story               {tp:>12}   {fn:>17}")
    print(f"  different stories        {fp:>12}   {tn:>17}")

    print()
    print(f"per kind{'':<18}{'pairs':>6}  decided same   {'mean est. / exact containment':>30}")
    kinds: dict[tuple[bool, str], list[Scored]] = defaultdict(list)
    for s in scored:
        kinds[(s.same, s.kind)].append(s)
    for (truth, kind), group in sorted(kinds.items(), key=lambda kv: (not kv[0][0], kv[0][1])):
        decided = sum(s.decided for s in group)
        est = sum(s.containment for s in group) / len(group)
        exact = sum(s.exact for s in group) / len(group)
        label = f"{'same' if truth else 'diff'} {kind}"
        counts = f"{decided:>5} of {len(group):<4}"
        print(f"  {label:<24}{len(group):>6}  {counts}   {est:>14.2f} / {exact:.2f}")

    print()
    print("sweep of MIN_CONTAINMENT (sketch + band lookup | the exact shingle sets)")
    columns = f"{'P':>8}{'R':>8}{'F1':>8}{'FP':>5}"
    print(f"  {'threshold':>9}{columns}   |{columns}")
    for t in SWEEP:
        p, r, f1, _, fp, _, _ = prf((s.same, decide(s, t)) for s in scored)
        xp, xr, xf1, _, xfp, _, _ = prf((s.same, decide(s, t, exact=True)) for s in scored)
        mark = " <- chosen" if abs(t - MIN_CONTAINMENT) < 1e-9 else ""
        print(
            f"  {t:>9.2f}{p:>8.3f}{r:>8.3f}{f1:>8.3f}{fp:>5}   |"
            f"{xp:>8.3f}{xr:>8.3f}{xf1:>8.3f}{xfp:>5}{mark}"
        )
    assert all(decide(s, MIN_CONTAINMENT) == s.decided for s in scored)
    print()
    print(f"sweep of MIN_MATCHING_BINS (of {BINS}) at MIN_CONTAINMENT {MIN_CONTAINMENT}")
    print(f"  {'bins':>9}{columns}")
    for bins in BINS_SWEEP:
        p, r, f1, _, fp, _, _ = prf((s.same, decide(s, MIN_CONTAINMENT, bins=bins)) for s in scored)
        mark = " <- chosen" if bins == MIN_MATCHING_BINS else ""
        print(f"  {bins:>9}{p:>8.3f}{r:>8.3f}{f1:>8.3f}{fp:>5}{mark}")

    print()
    wrong = [s for s in scored if s.decided and not s.same]
    print(f"false positives ({len(wrong)}): " + ", ".join(s.ident for s in wrong))
    missed = Counter(s.kind for s in scored if s.same and not s.decided)
    no_band = sum(s.same and s.similar_alone and not s.candidate for s in scored)
    print(
        "false negatives by kind: "
        + ", ".join(f"{k} {v}" for k, v in missed.most_common())
        + f" (of which similar() but no shared band: {no_band})"
    )


# --------------------------------------------------------------------------
# cost at 10,000 stories in the window


_SYLLABLES = [a + b for a in "bdfgklmnprstwz" for b in ("a", "e", "i", "o", "u", "ei", "au", "ä")]


class Bigrams:
    """A word-bigram model of the labelled set's source sentences, per language.

    The model is small (about 9,000 words per language), so its sentences
    repeat long runs of the sources: stories drawn from it overlap far more
    than real news does. ``vary`` replaces that share of the longer words by
    invented ones (3,000 per model, drawn Zipf-like), which brings the overlap
    between two unrelated stories down to that of real prose.
    """

    def __init__(self, sentences: list[str], rng: random.Random) -> None:
        self.next: dict[str, list[str]] = defaultdict(list)
        self.starts: list[str] = []
        for sentence in sentences:
            words = sentence.split()
            if len(words) < 3:
                continue
            self.starts.append(words[0])
            for a, b in itertools.pairwise(words):
                self.next[a].append(b)
        self.invented = [
            "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 4))) for _ in range(3000)
        ]
        self.cum_weights = list(itertools.accumulate(1 / rank for rank in range(1, 3001)))

    def sentence(self, rng: random.Random, vary: float) -> str:
        word = rng.choice(self.starts)
        words = [word]
        while len(words) < 35 and not word.endswith((".", "?", "!")):
            followers = self.next.get(word)
            if not followers:
                break
            word = rng.choice(followers)
            words.append(word)
        if vary:
            words = [
                rng.choices(self.invented, cum_weights=self.cum_weights)[0]
                if len(w) > 3 and rng.random() < vary
                else w
                for w in words
            ]
        return " ".join(words)

    def story(self, rng: random.Random, words: int, vary: float) -> dict[str, str]:
        body: list[str] = []
        count = 0
        while count < words:
            s = self.sentence(rng, vary)
            body.append(s)
            count += len(s.split())
        title = " ".join(self.sentence(rng, vary).split()[:9]).rstrip(".")
        summary = " ".join(self.sentence(rng, vary) for _ in range(2))
        return {"title": title, "summary": summary, "content": " ".join(body)}


def models(rng: random.Random) -> list[Bigrams]:
    out = []
    for lang in ("de", "en"):
        sentences: list[str] = []
        for cluster in make_story_pairs.load(lang):
            for s in cluster.stories.values():
                sentences += [*s.body, *s.paras.values(), *s.extras, *s.rw_body, s.summary]
        out.append(Bigrams(sentences, rng))
    return out


def wire_copy(rng: random.Random, entry: dict[str, str]) -> dict[str, str]:
    """A republished copy: new headline, one sentence dropped, an outlet's closing line."""
    sentences = re.split(r"(?<=[.?!]) ", entry["content"])
    if len(sentences) > 3:
        del sentences[rng.randrange(1, len(sentences))]
    sentences.append("Dieser Artikel wurde mit Material der Nachrichtenagentur dpa erstellt.")
    return {
        "title": "Neu: " + entry["title"],
        "summary": entry["summary"],
        "content": " ".join(sentences),
    }


def mean_jaccard(texts: list[str]) -> float:
    """Mean Jaccard resemblance of the shingle sets of all pairs of ``texts``."""
    sets = [shingles(t) for t in texts]
    total = 0.0
    pairs = 0
    for i, a in enumerate(sets):
        for b in sets[i + 1 :]:
            total += len(a & b) / len(a | b)
            pairs += 1
    return total / pairs


def corpus_jaccard() -> float:
    """Mean Jaccard of the labelled set's stories from different clusters, one language."""
    total = 0.0
    pairs = 0
    for lang in ("de", "en"):
        stories = [
            (c.key, shingles(text_of(make_story_pairs.base(s, random.Random(0)))))
            for c in make_story_pairs.load(lang)
            for s in c.stories.values()
        ]
        for i, (ca, a) in enumerate(stories):
            for cb, b in stories[i + 1 :]:
                if ca != cb:
                    total += len(a & b) / len(a | b)
                    pairs += 1
    return total / pairs


def cost_report(stories: int, queries: int, vary: float, name: str) -> None:
    rng = random.Random(SEED)
    langs = models(rng)

    def story() -> dict[str, str]:
        return rng.choice(langs).story(rng, rng.randint(200, 800), vary)

    t0 = time.perf_counter()
    window = [story() for _ in range(stories)]
    fresh = []
    copies = set()
    for i in range(queries):
        if rng.random() < 0.05:
            fresh.append(wire_copy(rng, rng.choice(window)))
            copies.add(i)
        else:
            fresh.append(story())
    # normalization happens for matching anyway: not part of the cost measured here
    window_texts = [text_of(e) for e in window]
    fresh_texts = [text_of(e) for e in fresh]
    words = sum(len(t.split()) for t in window_texts) / len(window_texts)
    print()
    print(
        f"{name}: {stories:,} synthetic stories in the window ({words:.0f} words on average, "
        f"German and English; mean Jaccard of two of them {mean_jaccard(window_texts[:200]):.4f}), "
        f"{queries:,} new entries of which {len(copies)} wire copies "
        f"(generated in {time.perf_counter() - t0:.0f} s)"
    )

    # the window: stored bytes and a band index as the database holds them
    stored: list[bytes] = []
    index: dict[int, list[int]] = defaultdict(list)
    t0 = time.perf_counter()
    for i, text in enumerate(window_texts):
        fp = fingerprint(text)
        stored.append(fp.to_bytes())
        for key in band_keys(fp):
            index[key].append(i)
    insert = (time.perf_counter() - t0) / stories

    t_fp = t_keys = t_lookup = t_sim = 0.0
    candidates_total = 0
    candidates_max = 0
    found_copies = 0
    false_found = 0
    for i, text in enumerate(fresh_texts):
        a = time.perf_counter()
        fp = fingerprint(text)
        b = time.perf_counter()
        keys = band_keys(fp)
        c = time.perf_counter()
        candidates: set[int] = set()
        for key in keys:
            candidates.update(index.get(key, ()))
        e = time.perf_counter()
        hits = [j for j in candidates if similar(fp, Fingerprint.from_bytes(stored[j]))]
        f = time.perf_counter()
        t_fp += b - a
        t_keys += c - b
        t_lookup += e - c
        t_sim += f - e
        candidates_total += len(candidates)
        candidates_max = max(candidates_max, len(candidates))
        if hits and i in copies:
            found_copies += 1
        elif hits:
            false_found += 1
    n = len(fresh_texts)
    total = t_fp + t_keys + t_lookup + t_sim
    print(
        f"  per new entry: {total / n * 1e6:,.0f} µs = fingerprint {t_fp / n * 1e6:,.0f} "
        f"+ {BANDS} band keys {t_keys / n * 1e6:,.0f} + candidate lookup {t_lookup / n * 1e6:,.1f} "
        f"+ similar() on the candidates {t_sim / n * 1e6:,.1f}"
    )
    print(
        f"  candidates per entry: {candidates_total / n:.2f} on average, {candidates_max} at most; "
        f"wire copies found {found_copies} of {len(copies)}, other entries called duplicates "
        f"{false_found}"
    )
    print(
        f"  storing a story (fingerprint + band keys): {insert * 1e6:,.0f} µs; "
        f"{len(stored[0])} bytes + {BANDS} keys of 8 bytes"
    )


def store_report(levels: tuple[int, ...] = (10, 100, 400), probes: int = 20) -> None:
    import tempfile
    from datetime import UTC, datetime, timedelta

    from monitor.match import Hit, RuleMatch
    from monitor.storage.base import FeedRef, NewEntry, Story
    from monitor.storage.sqlite import SQLiteStorage
    from monitor.types import FeedEntry

    rng = random.Random(SEED)
    text = rng.choice(models(rng)).story(rng, 400, VARY)
    fp = fingerprint(
        story_text(title=text["title"], summary="", content=text["content"].casefold())
    )
    t0 = datetime(2026, 1, 5, 12, tzinfo=UTC)

    def copy(n: int) -> tuple[str, NewEntry]:
        feed = f"https://f{n}.example/rss"
        link = f"https://f{n}.example/a/{n}"
        entry = FeedEntry(
            identity=link, guid=link, link=link, title=text["title"], summary="", content=""
        )
        at = t0 + timedelta(seconds=n)
        hit = RuleMatch("wire", (Hit("wire", "title", 0, 4),))
        return feed, NewEntry(entry, at, matches=(hit,), story=Story(link, fp, 48 * 3600.0))

    print("the store, one story copied by many feeds (SQLite): ms to store one more copy")
    with tempfile.TemporaryDirectory() as tmp:
        store = SQLiteStorage(Path(tmp) / "story.db")
        stored = 0
        for level in levels:
            while stored <= level:
                feed, new = copy(stored)
                store.ensure_feeds([FeedRef(feed)])
                store.commit_poll(store.feed_state(feed), [new])
                stored += 1
            times = []
            for _ in range(probes):
                feed, new = copy(stored)
                store.ensure_feeds([FeedRef(feed)])
                state = store.feed_state(feed)
                started = time.perf_counter()
                store.commit_poll(state, [new])
                times.append(time.perf_counter() - started)
                stored += 1
            times.sort()
            print(f"  after {level:4d} copies: median {times[len(times) // 2] * 1000:6.2f} ms")
        store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--quick", action="store_true", help="skip the pessimistic window")
    args = parser.parse_args(argv)

    built = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in make_story_pairs.build())
    if built != PAIRS.read_text(encoding="utf-8"):
        print(f"{PAIRS} is out of date: run benchmarks/make_story_pairs.py", file=sys.stderr)
        return 1
    pairs = [json.loads(line) for line in built.splitlines()]
    t0 = time.perf_counter()
    scored = score(pairs)
    quality_report(scored)
    print(f"(scored in {time.perf_counter() - t0:.1f} s)")
    print()
    print(
        f"cost (stories of different clusters in the labelled set: mean Jaccard "
        f"{corpus_jaccard():.4f})"
    )
    cost_report(args.stories, args.queries, VARY, "news-like window")
    if not args.quick:
        cost_report(args.stories, args.queries, 0.0, "one-topic window, the pessimistic case")
    print()
    print("one process, one core; the normalization (prepare) is not counted: the pipeline")
    print("has the normalized text from matching already.")
    print()
    store_report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
