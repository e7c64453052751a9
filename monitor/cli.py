"""Command line (SPEC section 3)."""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``monitor`` console script."""
    return 0
