"""Callables for the extraction benchmark (/work/shared/extraction-bench/evaluate.py).

``extract`` is ours; ``trafilatura_extract`` is the peer we compare with, imported
lazily so this file also loads in our own venv (trafilatura lives only in
benchmarks/.venv-peers, never in our dependencies).
"""

from __future__ import annotations

from typing import Any


def extract(html: str, url: str | None = None) -> str:
    """Our extractor, in the evaluator's callable form."""
    from monitor.extract import extract_text

    return extract_text(html, url)


def trafilatura_extract(html: str, url: str | None = None) -> str:
    """trafilatura with the settings of the published baseline."""
    import trafilatura

    out: Any = trafilatura.extract(html, url=url, include_comments=False, favor_precision=True)
    return out or ""
