"""Delivery through apprise: the only module that imports it.

Each apprise URL gets an ``Apprise`` object of its own, so a failing chat
webhook is retried without re-sending the email that already went out
(FACTS: one object with several URLs is falsy when one target fails).
Only masked URLs (``privacy=True`` plus ``redact.mask_url``) ever leave this
module, and a failure's text has every known secret redacted before it is
returned (it is logged and stored in the outbox).
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Protocol, TextIO

import apprise

from monitor.redact import Redactor, mask_url
from monitor.types import Message

CONSOLE = "console"
_EMAIL_SCHEMES = ("mailto", "mailtos", "email", "ses", "sendgrid", "mailgun", "sparkpost")


class Sender(Protocol):
    """Sends one message to one target; returns None on success, else the reason."""

    def send(self, message: Message) -> str | None: ...


class _Checking(threading.local):
    active = False
    warnings: list[str]


_checking = _Checking()


class _HoldWhileChecking(logging.Filter):
    """Keeps apprise's log lines of a thread that is validating a config's URLs.

    While a config loads, the secrets in its URLs are not yet known to the
    log's redactor, and apprise logs them in clear ("Loaded JSON URL: ...
    +X-Api-Key=...", "Unparseable Telegram URL tgram://TOKEN/..."). Its
    warnings say why a URL is refused: url_problem puts them in the config
    error, which the loader redacts.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _checking.active:
            return True
        if record.levelno == logging.WARNING:
            _checking.warnings.append(record.getMessage())
        return False


logging.getLogger("apprise").addFilter(_HoldWhileChecking())


def url_problem(url: str) -> str | None:
    """None when apprise accepts ``url``, else why not (checked at config load)."""
    ap = apprise.Apprise()
    _checking.active, _checking.warnings = True, []
    try:
        if ap.add(url):
            return None
    finally:
        _checking.active = False
    scheme = url.split("://", 1)[0] if "://" in url else url[:12]
    why = f": {_checking.warnings[0].strip()}" if _checking.warnings else ""
    return f"apprise does not accept this URL (scheme {scheme!r}){why}"


def mask(url: str, secrets: Collection[str] = ()) -> str:
    """The URL fit to show and log: apprise's masking, then ours (``redact.mask_url``)."""
    ap = apprise.Apprise()
    if not ap.add(url):
        return url.split("://", 1)[0] + "://…"
    masked = ap.urls(privacy=True)
    return mask_url(str(masked[0]) if masked else url, url, secrets)


def target_key(url: str) -> str:
    """The key outbox rows of schema 1 gave a URL (rows now name the URL's position)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def is_email(url: str) -> bool:
    return url.split("://", 1)[0].lower() in _EMAIL_SCHEMES


@dataclass
class AppriseSender:
    """One apprise URL: HTML (with a text part) for email, Markdown for chat.

    ``secrets`` (the config's) are redacted from the failure text it returns:
    apprise's log lines may quote a token.
    """

    url: str = field(repr=False)  # a repr that lands in a log must not carry the secrets
    secrets: Collection[str] = field(default=frozenset(), repr=False)

    def __post_init__(self) -> None:
        self._apprise = apprise.Apprise()
        if not self._apprise.add(self.url):
            raise ValueError(f"invalid apprise URL {mask(self.url, self.secrets)}")
        self._email = is_email(self.url)
        self._redactor = Redactor(self.secrets)

    def send(self, message: Message) -> str | None:
        if self._email:
            body, fmt = message.html, apprise.NotifyFormat.HTML
        else:
            body, fmt = message.markdown, apprise.NotifyFormat.MARKDOWN
        if hasattr(apprise, "AppriseResult"):
            # apprise 2: the result holds this call's own log lines, also those its
            # worker threads logged; a LogCapture would catch other targets' lines too.
            result = self._apprise.notify(body=body, title=message.title, body_format=fmt)
            if result:
                return None
            lines = [
                str(e.message).strip()
                for e in result.logs()
                if e.level in ("WARNING", "ERROR", "CRITICAL") and str(e.message).strip()
            ]
        else:
            with apprise.LogCapture(level=logging.WARNING) as captured:  # type: ignore[no-untyped-call]
                ok = self._apprise.notify(body=body, title=message.title, body_format=fmt)
            if ok:
                return None
            lines = [ln.strip() for ln in captured.getvalue().splitlines() if ln.strip()]
        if not lines:
            return "the notifier reported a failure"
        return self._redactor.redact(lines[-1])[:300]  # redacted first: a cut secret would show


@dataclass
class ConsoleSender:
    """Prints alerts when no notifier is configured (``make run`` out of the box)."""

    stream: TextIO = sys.stdout

    def send(self, message: Message) -> str | None:
        self.stream.write(f"\n=== {message.title}\n{message.text}\n")
        self.stream.flush()
        return None
