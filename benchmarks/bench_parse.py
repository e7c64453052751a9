"""Cost of sanitize_xml and parse_feed on a ~62 KB farm feed (they run on every parse).

    .venv/bin/python benchmarks/bench_parse.py
    git show REV:monitor/parse.py > /tmp/parse_rev.py
    .venv/bin/python benchmarks/bench_parse.py --against /tmp/parse_rev.py

Prints the best of 7 runs per figure, for the feed as the farm serves it (one
line) and with one item per line; then a changed document (one new item of 20)
parsed whole and with the index of the document before (``known``: the items
that are the same bytes are not parsed again).
"""

from __future__ import annotations

import argparse
import importlib.util
import inspect
import timeit
from types import ModuleType
from typing import Any

from farm import _FarmApp

from monitor import parse

HEADERS = {"Content-Type": "application/rss+xml; charset=utf-8"}


def _load(path: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location("parse_against", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _best(fn: Any, number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=7)) / number


def _figures(module: ModuleType, body: bytes) -> tuple[float, float]:
    takes_headers = len(inspect.signature(module.sanitize_xml).parameters) > 1
    lower = {k.lower(): v for k, v in HEADERS.items()}

    def sanitize() -> Any:
        return module.sanitize_xml(body, lower) if takes_headers else module.sanitize_xml(body)

    return (
        _best(sanitize, 2000),
        _best(lambda: module.parse_feed(body, "http://127.0.0.1/feed", HEADERS), 50),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--against", help="another version of monitor/parse.py to time as well")
    args = ap.parse_args()
    versions = [("this", parse)] + ([("against", _load(args.against))] if args.against else [])
    one_line = _FarmApp("http://127.0.0.1:1", 2, 0.0, 1.0).feed_body(1)
    for name, body in (
        ("one line", one_line),
        ("an item a line", one_line.replace(b"<item>", b"\n<item>")),
    ):
        for label, module in versions:
            sanitize, whole = _figures(module, body)
            print(
                f"{len(body):,} bytes, {name}, {label}: sanitize_xml {sanitize * 1e6:.0f} us, "
                f"parse_feed {whole * 1e3:.2f} ms ({sanitize / whole:.1%} of it)"
            )
    farm = _FarmApp("http://127.0.0.1:1", 2, 0.0, 1.0)
    before = farm.feed_body(0)
    farm.bump(1)
    after = farm.feed_body(0)
    index = parse.parse_feed(before, "http://127.0.0.1/feed", HEADERS).items
    whole = _best(lambda: parse.parse_feed(after, "http://127.0.0.1/feed", HEADERS), 50)
    known = _best(lambda: parse.parse_feed(after, "http://127.0.0.1/feed", HEADERS, index), 50)
    print(
        f"{len(after):,} bytes, one new item of 20: parsed whole {whole * 1e3:.2f} ms, "
        f"with the last document's index {known * 1e3:.2f} ms ({whole / known:.1f}x)"
    )


if __name__ == "__main__":
    main()
