"""The log's two formats, its times, its levels, and the daemon's summary a minute."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from monitor import logs
from monitor.activity import Activity, summary
from monitor.config import Settings
from monitor.notify import failure_text
from monitor.pipeline import PollOutcome
from monitor.redact import RedactingFilter, Redactor
from monitor.update import Alert

SECRET = "tok-7f3a9c2e1b"
UTC_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00$")


def _record(message: str, *args: object, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("monitor.poll", logging.WARNING, __file__, 1, message, args, None)
    record.created = 1764635065.129  # 2025-12-02T00:24:25.129Z
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_text_lines_carry_utc_time_with_its_offset() -> None:
    line = logs.TextFormatter(Redactor()).format(_record("feed=%r failed", "News"))
    assert line == "2025-12-02T00:24:25.129+00:00 WARNING monitor.poll feed='News' failed"


def test_json_lines_are_one_object_with_time_level_logger_message_and_fields() -> None:
    line = logs.JsonFormatter(Redactor()).format(
        _record("in the last minute: %d polls", 3, polls=3, matched=1)
    )
    assert "\n" not in line
    assert json.loads(line) == {
        "time": "2025-12-02T00:24:25.129+00:00",
        "level": "warning",
        "logger": "monitor.poll",
        "message": "in the last minute: 3 polls",
        "polls": 3,
        "matched": 1,
    }


def test_json_lines_hold_a_traceback_in_one_field() -> None:
    try:
        raise ValueError(f"bad {SECRET}")
    except ValueError:
        record = _record("it broke")
        record.exc_info = sys.exc_info()
    line = logs.JsonFormatter(Redactor([SECRET])).format(record)
    data = json.loads(line)
    assert data["exception"].startswith("Traceback") and "ValueError: bad ****" in data["exception"]
    assert SECRET not in line


@pytest.mark.parametrize("formatter", [logs.TextFormatter, logs.JsonFormatter])
def test_no_format_shows_a_secret_in_the_message_or_a_field(
    formatter: type[logs.TextFormatter],
) -> None:
    record = _record("url=%s", f"json://bot:{SECRET}@host/hook", target=f"x{SECRET}x")
    RedactingFilter(Redactor([SECRET])).filter(record)
    line = formatter(Redactor([SECRET])).format(record)
    assert SECRET not in line and "****" in line


@contextlib.contextmanager
def fresh_logging() -> Iterator[None]:
    """A root logger without the test runner's handlers, as in a `monitor` process (pytest
    adds its own as each test starts)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level, logs._log
    monitor_level = logging.getLogger("monitor").level
    root.handlers = []
    logs._log = None
    try:
        yield
    finally:
        root.handlers, root.level, logs._log = saved
        logging.getLogger("monitor").setLevel(monitor_level)
        logging.getLogger("apscheduler").setLevel(logging.WARNING)


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("stream", "settings", "env", "expected"),
    [
        (_Tty(), Settings(), {}, "text"),
        (io.StringIO(), Settings(), {}, "json"),
        (_Tty(), Settings(log_format="json"), {}, "json"),
        (io.StringIO(), Settings(log_format="text"), {}, "text"),
        (_Tty(), Settings(log_format="text"), {"MONITOR_LOG_FORMAT": "json"}, "json"),
    ],
    ids=["auto_terminal", "auto_pipe", "json_setting", "text_setting", "env_wins"],
)
def test_auto_is_text_on_a_terminal_and_json_elsewhere(
    stream: io.StringIO, settings: Settings, env: dict[str, str], expected: str
) -> None:
    with fresh_logging():
        logs.setup(Redactor(), env=env, stream=stream)
        logs.apply(settings)
        logging.getLogger("monitor.test").warning("hello")
    line = stream.getvalue().strip()
    assert line.startswith("{") == (expected == "json"), line


def test_log_level_applies_to_our_loggers_and_apprise_shows_only_with_verbose() -> None:
    stream, verbose = io.StringIO(), io.StringIO()
    with fresh_logging():
        logs.setup(Redactor(), stream=stream)
        logs.apply(Settings(log_level="warning", log_format="text"))
        logging.getLogger("monitor.poll").info("per-poll line")
        logging.getLogger("monitor.daemon").warning("a warning")
        logging.getLogger("apprise").warning("Connection error while submitting email")
        quiet = stream.getvalue()
        logs.apply(Settings(log_level="debug", log_format="text"))
        logging.getLogger("monitor.poll").debug("per-poll line")
        debug = stream.getvalue()
        logs.setup(Redactor(), verbose=True, stream=verbose)
        logs.apply(Settings(log_level="error", log_format="text"))  # -v wins
        logging.getLogger("monitor.poll").debug("debug line")
        logging.getLogger("apprise").warning("apprise line")
    assert quiet.count("\n") == 1 and "a warning" in quiet
    assert "per-poll line" in debug
    assert "debug line" in verbose.getvalue() and "apprise line" in verbose.getvalue()


def test_a_wrong_environment_level_is_reported_and_ignored() -> None:
    stream = io.StringIO()
    with fresh_logging():
        logs.setup(Redactor(), env={"MONITOR_LOG_LEVEL": "loud"}, stream=stream)
        logs.apply(Settings(log_format="text"))
        level = logging.getLogger("monitor").level
    assert "ignored MONITOR_LOG_LEVEL='loud'" in stream.getvalue()
    assert level == logging.INFO


# --------------------------------------------------------------------------
# the summary a minute


def test_activity_counts_polls_and_sends_and_starts_again_when_taken() -> None:
    activity = Activity()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    activity.polled(PollOutcome("f", 200, None, 3, (_alert(),), None))
    activity.polled(PollOutcome("f", None, "timeout", 0, (), None, "error", "timeout"))
    activity.sent("chat", 2, (), None, at)  # one message of two alerts counts once
    activity.sent("chat", 1, (), "down", at)
    counts = activity.take()
    assert counts == {
        "polls": 2,
        "failed_polls": 1,
        "new_entries": 3,
        "matched": 1,
        "messages_sent": 1,
        "send_failures": 1,
    }
    assert summary(counts) == (
        "in the last minute: 2 polls (1 failed), 3 new entries, 1 matched; "
        "1 messages sent, 1 sends failed"
    )
    assert summary(activity.take()) is None  # nothing since: no line


def _alert() -> Alert:
    return Alert("f", "DeepSeek", "https://x.example/1", None, ("DeepSeek",), ("DeepSeek",))


# --------------------------------------------------------------------------
# a failed send in one line

FAILURES = [
    pytest.param(
        [
            ("DEBUG", "Connecting to remote SMTP server..."),
            ("WARNING", 'Connection error while submitting email to "127.0.0.1"'),
            ("DEBUG", "Socket Exception: [Errno 111] Connection refused"),
        ],
        'Connection error while submitting email to "127.0.0.1": Connection refused',
        id="email_refused",
    ),
    pytest.param(
        [
            ("WARNING", "A Connection error occurred sending JSON notification to x.invalid."),
            (
                "DEBUG",
                "Socket Exception: HTTPConnectionPool(host='x.invalid', port=80): Max retries "
                'exceeded with url: /hook (Caused by NameResolutionError("HTTPConnection(host='
                "'x.invalid', port=80): Failed to resolve 'x.invalid' ([Errno -2] Name or "
                'service not known)"))',
            ),
        ],
        "A Connection error occurred sending JSON notification to x.invalid: "
        "Name or service not known",
        id="json_dns",
    ),
    pytest.param(
        [("WARNING", "2026-12-02 00:44:25,129 - WARNING - Failed to send JSON notification: 500")],
        "Failed to send JSON notification: 500",
        id="old_apprise_line_with_its_timestamp",
    ),
    pytest.param(
        [("DEBUG", "read timed out"), ("ERROR", "Sending to chat timed out")],
        "Sending to chat timed out",
        id="cause_already_said",
    ),
    pytest.param([], "the notifier reported a failure", id="nothing_said"),
]


@pytest.mark.parametrize(("lines", "expected"), FAILURES)
def test_a_failed_send_is_one_line_with_its_cause(
    lines: list[tuple[str, str]], expected: str
) -> None:
    assert failure_text(lines) == expected
