"""Build the labelled near-duplicate set ``benchmarks/data/story_pairs.jsonl``.

The stories are invented and written for this benchmark
(``data/story_sources_de.txt``, ``data/story_sources_en.txt``): 16 topic
clusters (8 German, 8 English) of 3 stories each, where every story has a
wire text, alternative headlines, paraphrases of some sentences, sentences
an outlet might add, and an editor's rewrite in its own words. This script
turns them into pairs the way outlets republish wire copy, with a seeded RNG
so the output is reproducible:

same story (``"same": true``)
    ``copy-headline`` (new headline, maybe an outlet's closing line),
    ``copy-trimmed`` (new headline, body cut to its first half or two thirds),
    ``copy-extended`` (an outlet's intro, added context sentences, a closing line),
    ``copy-reworded`` (several sentences reworded, one dropped, dateline gone),
    ``copy-mixed`` (two different modified copies), ``rewrite`` (the story in an
    editor's own words: the hard positives), ``teaser`` (two entries with a
    headline and a summary only), ``teaser-full`` (teaser vs. full text),
    ``short-same`` (two headlines only).

different stories (``"same": false``)
    the cluster's declared relation between two of its stories: ``follow-up``,
    ``same-topic``, ``same-company``, ``press-vs-analysis`` (follow-ups often
    repeat a background paragraph verbatim, analyses quote the release), each
    twice with random variants of both stories; ``shared-boilerplate`` (two
    stories of one outlet with the same long newsletter and disclaimer
    block), ``teaser-different`` and ``short-different``.

Source format: ``== cluster ID`` starts a cluster; ``bg NAME: sentence`` is a
background sentence a body can include as ``@NAME``; ``pair: a b KIND``
declares a relation; ``-- story ID`` starts a story with ``title:``,
``alt:``, ``summary:``, ``body:``, ``para N:`` (a paraphrase of body sentence
N, 1-based), ``extra:``, ``rw-title:``, ``rw-summary:``, ``rw:``.

Usage: python benchmarks/make_story_pairs.py [--check]  (--check: fail if the file differs)
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

DATA = Path(__file__).parent / "data"
SOURCES = {"de": DATA / "story_sources_de.txt", "en": DATA / "story_sources_en.txt"}
OUT = DATA / "story_pairs.jsonl"
SEED = 11_3  # issue 11, item 3

COPY_KINDS = ("copy-headline", "copy-trimmed", "copy-extended", "copy-reworded")

# What outlets put around a wire text.
INTROS = {
    "de": [
        "Hinweis der Redaktion: Dieser Text wird laufend aktualisiert.",
        "Das Wichtigste in Kürze lesen Sie hier.",
        "Eine Nachricht, die viele unserer Leserinnen und Leser beschäftigt.",
    ],
    "en": [
        "This is a developing story and will be updated.",
        "Here is what we know so far.",
        "Editor's note: this article has been updated with additional details.",
    ],
}
TAILS = {
    "de": [
        "Dieser Artikel wurde mit Material der Nachrichtenagentur dpa erstellt.",
        "Mehr zum Thema lesen Sie in unserem Dossier Digitales.",
        "Folgen Sie uns auch auf WhatsApp, um keine Nachricht zu verpassen.",
        "(dpa/fw)",
    ],
    "en": [
        "(Reporting by Anna Lee; Editing by Mark Potter)",
        "Copyright 2025 The Associated Press. All rights reserved.",
        "Sign up for our daily technology newsletter.",
        "This article was produced with material from wire services.",
    ],
}
# A long block one outlet appends to every article (for shared-boilerplate pairs).
BOILERPLATE = {
    "de": (
        "Sie wollen keine wichtige Nachricht aus der Tech-Welt verpassen? "
        "Dann abonnieren Sie unseren kostenlosen Newsletter, der Ihnen jeden Morgen um sieben Uhr "
        "die wichtigsten Meldungen des Tages in Ihr Postfach liefert. "
        "Unsere Redaktion prüft alle Meldungen sorgfältig, bevor sie veröffentlicht werden. "
        "Hinweis: Einige Links in diesem Artikel sind Affiliate-Links; wenn Sie darüber einkaufen, "
        "erhalten wir eine kleine Provision, für Sie ändert sich am Preis nichts. "
        "Haben Sie Hinweise oder Fragen? Schreiben Sie unserer Redaktion über das Kontaktformular."
    ),
    "en": (
        "Want the biggest technology stories in your inbox every morning? "
        "Sign up for our free newsletter and get the day's most important news before your first "
        "coffee. Our journalism is independent and every story is checked by our editors before "
        "it is published. Some links in this article are affiliate links; if you buy something "
        "through them, we may earn a small commission at no extra cost to you. "
        "Do you have a tip for our newsroom? Contact us securely through our tips page."
    ),
}
_DATELINE = re.compile(r"^[^()]{1,60} \([^)]{1,30}\) - ")


@dataclass
class Story:
    key: str  # cluster/story
    lang: str
    title: str = ""
    alts: list[str] = field(default_factory=list)
    summary: str = ""
    body: list[str] = field(default_factory=list)
    paras: dict[int, str] = field(default_factory=dict)  # body index (0-based) -> paraphrase
    extras: list[str] = field(default_factory=list)
    rw_title: str = ""
    rw_summary: str = ""
    rw_body: list[str] = field(default_factory=list)


@dataclass
class Cluster:
    key: str
    lang: str
    stories: dict[str, Story] = field(default_factory=dict)
    pairs: list[tuple[str, str, str]] = field(default_factory=list)


def load(lang: str) -> list[Cluster]:
    """Parse one source file (see the module docstring)."""
    clusters: list[Cluster] = []
    background: dict[str, str] = {}
    story: Story | None = None
    for number, raw in enumerate(SOURCES[lang].read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        where = f"{SOURCES[lang].name}:{number}"
        if line.startswith("== cluster "):
            clusters.append(Cluster(line.split()[2], lang))
            background, story = {}, None
            continue
        if line.startswith("-- story "):
            name = line.split()[2]
            story = Story(f"{clusters[-1].key}/{name}", lang)
            clusters[-1].stories[name] = story
            continue
        key, sep, value = line.partition(": ")
        if not sep:
            raise SystemExit(f"{where}: no 'key: value'")
        if key.startswith("bg "):
            background[key[3:]] = value
        elif key == "pair":
            a, b, kind = value.split()
            clusters[-1].pairs.append((a, b, kind))
        elif story is None:
            raise SystemExit(f"{where}: {key!r} outside a story")
        elif key == "title":
            story.title = value
        elif key == "alt":
            story.alts.append(value)
        elif key == "summary":
            story.summary = value
        elif key == "body":
            story.body.append(background[value[1:]] if value.startswith("@") else value)
        elif key.startswith("para "):
            story.paras[int(key[5:]) - 1] = value
        elif key == "extra":
            story.extras.append(value)
        elif key == "rw-title":
            story.rw_title = value
        elif key == "rw-summary":
            story.rw_summary = value
        elif key == "rw":
            story.rw_body.append(value)
        else:
            raise SystemExit(f"{where}: unknown key {key!r}")
    for cluster in clusters:
        for s in cluster.stories.values():
            if not (s.title and s.alts and s.summary and len(s.body) >= 3 and s.rw_body):
                raise SystemExit(f"{s.key}: incomplete story")
            if any(i >= len(s.body) for i in s.paras):
                raise SystemExit(f"{s.key}: a paraphrase of a sentence that doesn't exist")
    return clusters


# --------------------------------------------------------------------------
# variants of a story, as an outlet would publish it


def entry(title: str, summary: str, body: list[str]) -> dict[str, str]:
    return {"title": title, "summary": summary, "content": " ".join(body)}


def base(s: Story, rng: random.Random) -> dict[str, str]:
    return entry(s.title, s.summary, s.body)


def copy_headline(s: Story, rng: random.Random) -> dict[str, str]:
    body = list(s.body)
    if rng.random() < 0.5:
        body.append(rng.choice(TAILS[s.lang]))
    return entry(rng.choice(s.alts), s.summary, body)


def copy_trimmed(s: Story, rng: random.Random) -> dict[str, str]:
    keep = max(3, round(len(s.body) * rng.uniform(0.45, 0.7)))
    return entry(rng.choice(s.alts), s.summary, s.body[:keep])


def copy_extended(s: Story, rng: random.Random) -> dict[str, str]:
    body = list(s.body)
    for extra in s.extras:
        body.insert(rng.randint(2, len(body)), extra)
    body.insert(0, rng.choice(INTROS[s.lang]))
    body.append(rng.choice(TAILS[s.lang]))
    return entry(rng.choice(s.alts), s.summary, body)


def copy_reworded(s: Story, rng: random.Random) -> dict[str, str]:
    body = [s.paras.get(i, sentence) for i, sentence in enumerate(s.body)]
    body[0] = _DATELINE.sub("", body[0])
    droppable = [i for i in range(1, len(body)) if i not in s.paras]
    if droppable:
        del body[rng.choice(droppable)]
    summary = s.summary if rng.random() < 0.5 else s.rw_summary
    return entry(rng.choice(s.alts), summary, body)


def rewrite(s: Story, rng: random.Random) -> dict[str, str]:
    return entry(s.rw_title, s.rw_summary, s.rw_body)


def teaser(s: Story, rng: random.Random) -> dict[str, str]:
    return entry(rng.choice(s.alts), s.summary, [])


VARIANTS = {
    "base": base,
    "copy-headline": copy_headline,
    "copy-trimmed": copy_trimmed,
    "copy-extended": copy_extended,
    "copy-reworded": copy_reworded,
    "rewrite": rewrite,
}


def pair(
    a: dict[str, str], b: dict[str, str], same: bool, lang: str, kind: str, ident: str
) -> dict[str, object]:
    return {"id": ident, "lang": lang, "kind": kind, "same": same, "a": a, "b": b}


def build() -> list[dict[str, object]]:
    """Every pair, in a fixed order."""
    rng = random.Random(SEED)
    out: list[dict[str, object]] = []
    for lang in ("de", "en"):
        clusters = load(lang)
        stories = [s for c in clusters for s in c.stories.values()]
        for n, s in enumerate(stories):
            # two copies per story, the copy kinds in rotation
            first = COPY_KINDS[n % 4]
            second = COPY_KINDS[(n + 1 + n // 4) % 4]
            if second == first:
                second = COPY_KINDS[(n + 2) % 4]
            out.append(
                pair(base(s, rng), VARIANTS[first](s, rng), True, lang, first, f"{s.key}:{first}")
            )
            if n % 3 == 2:  # two modified copies against each other
                a, b = VARIANTS[first](s, rng), VARIANTS[second](s, rng)
                out.append(pair(a, b, True, lang, "copy-mixed", f"{s.key}:{first}+{second}"))
            else:
                out.append(
                    pair(
                        VARIANTS[second](s, rng),
                        base(s, rng),
                        True,
                        lang,
                        second,
                        f"{s.key}:{second}",
                    )
                )
            if n % 2 == 0:
                other = rng.choice(["base", *COPY_KINDS])
                out.append(
                    pair(
                        VARIANTS[other](s, rng),
                        rewrite(s, rng),
                        True,
                        lang,
                        "rewrite",
                        f"{s.key}:{other}+rewrite",
                    )
                )
            if n % 4 == 1:
                out.append(
                    pair(teaser(s, rng), teaser(s, rng), True, lang, "teaser", f"{s.key}:teaser")
                )
            if n % 4 == 3:
                full = VARIANTS[rng.choice(["base", *COPY_KINDS])](s, rng)
                out.append(
                    pair(teaser(s, rng), full, True, lang, "teaser-full", f"{s.key}:teaser-full")
                )
            if n % 6 == 0:
                title = entry(s.title, "", [])
                alt = entry(rng.choice(s.alts), "", [])
                out.append(pair(title, alt, True, lang, "short-same", f"{s.key}:short"))
        for c in clusters:
            for a_name, b_name, kind in c.pairs:
                a, b = c.stories[a_name], c.stories[b_name]
                for round_ in range(2):
                    va = "base" if round_ == 0 else rng.choice(list(VARIANTS))
                    vb = rng.choice(list(VARIANTS))
                    out.append(
                        pair(
                            VARIANTS[va](a, rng),
                            VARIANTS[vb](b, rng),
                            False,
                            lang,
                            kind,
                            f"{a.key}:{va}~{b.key}:{vb}",
                        )
                    )
            a_name, b_name, _ = c.pairs[0]
            a, b = c.stories[a_name], c.stories[b_name]
            plate = BOILERPLATE[lang]
            ea, eb = base(a, rng), base(b, rng)
            ea["content"] += " " + plate
            eb["content"] += " " + plate
            out.append(pair(ea, eb, False, lang, "shared-boilerplate", f"{a.key}~{b.key}:plate"))
            a_name, b_name, _ = c.pairs[1]
            a, b = c.stories[a_name], c.stories[b_name]
            out.append(
                pair(
                    teaser(a, rng),
                    teaser(b, rng),
                    False,
                    lang,
                    "teaser-different",
                    f"{a.key}~{b.key}:teaser",
                )
            )
            a_name, b_name, _ = c.pairs[2]
            a, b = c.stories[a_name], c.stories[b_name]
            out.append(
                pair(
                    entry(a.title, "", []),
                    entry(rng.choice(b.alts), "", []),
                    False,
                    lang,
                    "short-different",
                    f"{a.key}~{b.key}:short",
                )
            )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the file is out of date")
    args = parser.parse_args(argv)
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in build())
    if args.check:
        if OUT.read_text(encoding="utf-8") != text:
            print(f"{OUT} is out of date: run benchmarks/make_story_pairs.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text, encoding="utf-8")
    pairs = [json.loads(line) for line in text.splitlines()]
    same = sum(p["same"] for p in pairs)
    print(f"{OUT}: {len(pairs)} pairs, {same} same, {len(pairs) - same} different")
    return 0


if __name__ == "__main__":
    sys.exit(main())
