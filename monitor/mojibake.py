"""Mojibake repair: the only module that imports ftfy, and only when it is needed.

ftfy and its tables cost about 8 MB of memory in every process that imports
them (measured: RSS 17 -> 25 MB), and the daemon and each pool worker would
all pay it. Mojibake is rare, so a cheap test decides whether ftfy is loaded
and asked at all; ftfy then decides whether the text changes.
"""

from __future__ import annotations

import re

__all__ = ["repair"]

# UTF-8 read as Latin-1/cp1252: a lead byte C2-F4 shown as Â..ô followed by a
# continuation byte 80-BF shown as a C1 control, a cp1252 symbol or NBSP..¿
# ("Ã¼", "Ã\x9f", "â€", "ÃŸ").
_HINT = re.compile(
    "[\u00c2-\u00f4][\u0080-\u00bf\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192"
    "\u02c6\u02dc\u2013\u2014\u2018-\u201e\u2020-\u2022\u2026\u2030\u2039\u203a"
    "\u20ac\u2122]"
)


def repair(text: str) -> str:
    """``text`` with UTF-8-read-as-cp1252 mojibake undone; unchanged when it has none."""
    if _HINT.search(text) is None:
        return text
    import ftfy  # loaded on the first suspicious text (see above)

    return ftfy.fix_encoding(text)
