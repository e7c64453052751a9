"""Parsing and extraction, by name: the daemon process never imports them.

They pull in feedparser and beautifulsoup4 (about 5 MB per process,
measured), and only the pool's workers run them. The pipeline hands these
stand-ins to the pool: each pickles as its module and function name, and
imports the real function the first time it is called (in a worker, or in
this process where there is no pool, as in ``monitor poll``).

For the type checker they are the real functions.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

__all__ = ["Stage", "extract", "parse_feed"]


class Stage:
    """A module-level function named by its module and name."""

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.__name__ = name
        self._fn: Callable[..., Any] | None = None

    def resolve(self) -> Callable[..., Any]:
        """The function itself (imported on first use)."""
        if self._fn is None:
            self._fn = getattr(importlib.import_module(self.module), self.__name__)
        return self._fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.resolve()(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Stage, (self.module, self.__name__))

    def __repr__(self) -> str:
        return f"<stage {self.module}.{self.__name__}>"


if TYPE_CHECKING:
    from monitor.extract import extract
    from monitor.parse import parse_feed
else:
    extract = Stage("monitor.extract", "extract")
    parse_feed = Stage("monitor.parse", "parse_feed")
