"""The log: readable text on a terminal, one JSON object per line elsewhere.

Every line carries its time in UTC with the offset (``2026-12-02T00:44:25.129+00:00``),
the same convention as ``status``, ``matches`` and ``--json`` output. A JSON line
has ``time``, ``level``, ``logger``, ``message``, the structured fields a call
passes with ``extra=`` and, for an error, ``exception``: journald keeps it as
the message, Loki and ``jq`` read the fields.

Levels: ``settings.log_level`` (``MONITOR_LOG_LEVEL`` wins) sets the level of
rss-monitor's own loggers (``monitor.*``); other libraries log their warnings
only. ``-v`` is debug for everything, the libraries included. apprise's own
lines are shown only with ``-v``: every failed send is logged by the delivery
line that says why (see ``notify``), and apprise's lines would say it again,
in another format.

Secrets: the ``RedactingFilter`` on the handler redacts each record, and each
formatted line is redacted once more (structured fields included).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TextIO

from monitor.config import LOG_FORMATS, LOG_LEVELS, Settings
from monitor.redact import RedactingFilter, Redactor

LEVELS = {name: getattr(logging, name.upper()) for name in LOG_LEVELS}
# Attributes every LogRecord has: anything else came from ``extra=``.
_STANDARD = {
    *vars(logging.LogRecord("", 0, "", 0, "", None, None)),
    "message",
    "asctime",
    "taskName",
}


def timestamp(record: logging.LogRecord) -> str:
    """The record's time in UTC, ISO 8601 with milliseconds and the offset."""
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")


def fields(record: logging.LogRecord) -> dict[str, object]:
    """The structured fields a log call passed with ``extra=``."""
    return {k: v for k, v in vars(record).items() if k not in _STANDARD and not k.startswith("_")}


class _Redacting(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self.redactor.redact(self.render(record))

    def render(self, record: logging.LogRecord) -> str:
        raise NotImplementedError

    def details(self, record: logging.LogRecord) -> str:
        """The exception and stack of a record, as text ('' when it has none)."""
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        parts = [p for p in (record.exc_text, record.stack_info) if p]
        return "\n".join(parts)


class TextFormatter(_Redacting):
    """``TIME LEVEL LOGGER MESSAGE``, then the traceback if any."""

    def render(self, record: logging.LogRecord) -> str:
        line = f"{timestamp(record)} {record.levelname} {record.name} {record.getMessage()}"
        details = self.details(record)
        return f"{line}\n{details}" if details else line


class JsonFormatter(_Redacting):
    """One JSON object per line: time, level, logger, message, fields, exception."""

    def render(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in fields(record).items():
            out.setdefault(key, value)
        details = self.details(record)
        if details:
            out["exception"] = details
        return json.dumps(out, ensure_ascii=False, default=str)


class _HideApprise(logging.Filter):
    """apprise's own lines, unless ``-v``: the delivery line already says why a send failed."""

    def __init__(self) -> None:
        super().__init__()
        self.show = False

    def filter(self, record: logging.LogRecord) -> bool:
        return self.show or not record.name.startswith("apprise")


class _Log:
    """The handler this module installed, and what it was told."""

    def __init__(
        self, handler: logging.Handler, hide: _HideApprise, redactor: Redactor, verbose: bool
    ) -> None:
        self.handler = handler
        self.hide = hide
        self.redactor = redactor
        self.verbose = verbose
        self.env: Mapping[str, str] = {}


_log: _Log | None = None


def setup(
    redactor: Redactor,
    *,
    verbose: bool = False,
    env: Mapping[str, str] | None = None,
    stream: TextIO | None = None,
) -> None:
    """Log to ``stream`` (stderr) until a config says otherwise (``apply``).

    A program that set up logging itself (a test runner, an embedding
    application) keeps its handlers; they only get the redacting filter.
    """
    global _log
    root = logging.getLogger()
    ours = _log.handler if _log else None
    if any(h is not ours for h in root.handlers):
        for handler in root.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter(redactor))
        return
    if _log is not None:
        root.removeHandler(_log.handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    hide = _HideApprise()
    handler.addFilter(hide)
    handler.addFilter(RedactingFilter(redactor))
    root.addHandler(handler)
    _log = _Log(handler, hide, redactor, verbose)
    _log.env = env if env is not None else {}
    apply(Settings())


def apply(settings: Settings) -> None:
    """Use a config's ``log_level`` and ``log_format`` (at start and on every reload).

    ``MONITOR_LOG_LEVEL`` and ``MONITOR_LOG_FORMAT`` win over the config, ``-v``
    over both. Does nothing when ``setup`` left the logging to someone else.
    """
    if _log is None:
        return
    env = _log.env
    level = env.get("MONITOR_LOG_LEVEL") or settings.log_level
    fmt = env.get("MONITOR_LOG_FORMAT") or settings.log_format
    wrong = []
    if level not in LEVELS:
        wrong.append(f"MONITOR_LOG_LEVEL={level!r} (one of {', '.join(LOG_LEVELS)})")
        level = settings.log_level
    if fmt not in LOG_FORMATS:
        wrong.append(f"MONITOR_LOG_FORMAT={fmt!r} (one of {', '.join(LOG_FORMATS)})")
        fmt = settings.log_format
    if _log.verbose:
        level = "debug"
    if fmt == "auto":
        stream = getattr(_log.handler, "stream", None)
        fmt = "text" if stream is not None and stream.isatty() else "json"
    formatter = TextFormatter if fmt == "text" else JsonFormatter
    _log.handler.setFormatter(formatter(_log.redactor))
    logging.getLogger().setLevel(logging.DEBUG if _log.verbose else logging.WARNING)
    logging.getLogger("monitor").setLevel(LEVELS[level])
    logging.getLogger("apscheduler").setLevel(logging.DEBUG if _log.verbose else logging.WARNING)
    _log.hide.show = _log.verbose
    for problem in wrong:
        logging.getLogger("monitor.logs").warning("ignored %s", problem)
