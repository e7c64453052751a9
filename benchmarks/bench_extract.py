"""Extraction benchmarks: the shared English benchmark's callables, and our German set.

``extract`` and ``trafilatura_extract`` are the callables for the shared benchmark
(/work/shared/extraction-bench/evaluate.py, run by ``make bench-extract``).
trafilatura is imported lazily so this file also loads in our own venv (it lives
only in benchmarks/.venv-peers, never in our dependencies).

Run as a script, it scores the German pages of tests/data/extract/de (must-contain
and must-not-contain snippets in snippets.json), ours and then trafilatura from
benchmarks/.venv-peers in the same run:

    .venv/bin/python benchmarks/bench_extract.py
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GERMAN_SET = ROOT / "tests" / "data" / "extract" / "de"
PEERS_PYTHON = ROOT / "benchmarks" / ".venv-peers" / "bin" / "python"
_WORD = re.compile(r"\w+")

# Load each extractor's modules when the evaluator loads this file, outside its clock,
# so the first page of either side doesn't pay for imports. Each venv has only its own.
for _module in ("monitor.extract", "trafilatura"):
    with contextlib.suppress(ImportError):
        importlib.import_module(_module)


def extract(html: str, url: str | None = None) -> str:
    """Our extractor, in the evaluator's callable form."""
    from monitor.extract import extract_text

    return extract_text(html, url)


def trafilatura_extract(html: str | bytes, url: str | None = None) -> str:
    """trafilatura with the settings of the published baseline."""
    import trafilatura

    out: Any = trafilatura.extract(html, url=url, include_comments=False, favor_precision=True)
    return out or ""


def _ours_from_bytes(body: bytes, url: str) -> str:
    from monitor.extract import extract as extract_article

    return extract_article(body, url).text


def occurrences(text: str, snippet: str) -> int:
    """How often a snippet's words occur in the text as a run of whole words.

    Case-sensitive; punctuation and white space don't count, so a table row
    rendered as ``Bayern | 28.410`` or ``Bayern 28.410`` matches either way.
    """
    haystack = " " + " ".join(_WORD.findall(text)) + " "
    needle = " " + " ".join(_WORD.findall(snippet)) + " "
    return haystack.count(needle) if needle.strip() else 0


def score_german_set(run: Callable[[bytes, str], str]) -> dict[str, Any]:
    """Snippet counts of one extractor over the German set (raw page bytes in)."""
    snippets = json.loads((GERMAN_SET / "snippets.json").read_text(encoding="utf-8"))
    found = wanted = kept_out = unwanted = 0
    seconds = 0.0
    misses: list[str] = []
    for page, expected in sorted(snippets.items()):
        body = (GERMAN_SET / page).read_bytes()
        start = time.perf_counter()
        text = run(body, f"https://example.de/{page.removesuffix('.html')}")
        seconds += time.perf_counter() - start
        for snippet in expected["must_contain"]:
            wanted += 1
            if occurrences(text, snippet):
                found += 1
            else:
                misses.append(f"{page}: missing {snippet!r}")
        for snippet in expected.get("once", []):
            wanted += 1
            if occurrences(text, snippet) == 1:
                found += 1
            else:
                misses.append(f"{page}: not exactly once {snippet!r}")
        for snippet in expected["must_not_contain"]:
            unwanted += 1
            if occurrences(text, snippet):
                misses.append(f"{page}: kept {snippet!r}")
            else:
                kept_out += 1
    return {
        "pages": len(snippets),
        "found": found,
        "wanted": wanted,
        "kept_out": kept_out,
        "unwanted": unwanted,
        "seconds": seconds,
        "misses": misses,
    }


def _summary(name: str, result: dict[str, Any]) -> str:
    found = result["found"] / result["wanted"]
    kept_out = result["kept_out"] / result["unwanted"]
    rate = result["pages"] / result["seconds"] if result["seconds"] else 0.0
    return (
        f"german-set {name}: snippets {(found + kept_out) / 2:.3f}  "
        f"found {found:.3f} ({result['found']}/{result['wanted']})  "
        f"kept out {kept_out:.3f} ({result['kept_out']}/{result['unwanted']})  "
        f"pages {result['pages']}  pages/s {rate:.0f}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", choices=["ours", "trafilatura"], help="run one extractor")
    parser.add_argument("--json", action="store_true", help="print the raw counts as JSON")
    parser.add_argument("--misses", action="store_true", help="list every snippet missed")
    args = parser.parse_args(argv)

    if args.only:
        runner = _ours_from_bytes if args.only == "ours" else trafilatura_extract
        result = score_german_set(runner)
        print(json.dumps(result) if args.json else _summary(args.only, result))
        if args.misses and not args.json:
            print("\n".join(result["misses"]))
        return 0

    ours = score_german_set(_ours_from_bytes)
    print(_summary("ours", ours))
    if args.misses:
        print("\n".join("  " + miss for miss in ours["misses"]))
    if not PEERS_PYTHON.exists():
        print(
            "german-set trafilatura: benchmarks/.venv-peers missing (make bench-extract builds it)"
        )
        return 0
    peer = subprocess.run(
        [str(PEERS_PYTHON), __file__, "--only", "trafilatura", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    theirs = json.loads(peer.stdout.strip().splitlines()[-1])
    print(_summary("trafilatura", theirs))
    if args.misses:
        print("\n".join("  " + miss for miss in theirs["misses"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
