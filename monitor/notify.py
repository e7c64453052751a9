"""Delivery through apprise: the only module that imports it.

Each apprise URL gets an ``Apprise`` object of its own, so a failing chat
webhook is retried without re-sending the email that already went out
(FACTS: one object with several URLs is falsy when one target fails).
Only masked URLs (``privacy=True``) ever leave this module.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from dataclasses import dataclass
from typing import Protocol, TextIO

import apprise

from monitor.types import Message

CONSOLE = "console"
_EMAIL_SCHEMES = ("mailto", "mailtos", "email", "ses", "sendgrid", "mailgun", "sparkpost")


class Sender(Protocol):
    """Sends one message to one target; returns None on success, else the reason."""

    def send(self, message: Message) -> str | None: ...


def url_problem(url: str) -> str | None:
    """None when apprise accepts ``url``, else why not (checked at config load)."""
    ap = apprise.Apprise()
    if ap.add(url):
        return None
    scheme = url.split("://", 1)[0] if "://" in url else url[:12]
    return f"apprise does not accept this URL (scheme {scheme!r})"


def mask(url: str) -> str:
    """The URL with secrets masked, safe to log and show in status."""
    ap = apprise.Apprise()
    if not ap.add(url):
        return url.split("://", 1)[0] + "://…"
    masked = ap.urls(privacy=True)
    return str(masked[0]) if masked else url.split("://", 1)[0] + "://…"


def target_key(url: str) -> str:
    """The key outbox rows of schema 1 gave a URL (rows now name the URL's position)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def is_email(url: str) -> bool:
    return url.split("://", 1)[0].lower() in _EMAIL_SCHEMES


@dataclass
class AppriseSender:
    """One apprise URL: HTML (with a text part) for email, Markdown for chat."""

    url: str

    def __post_init__(self) -> None:
        self._apprise = apprise.Apprise()
        if not self._apprise.add(self.url):
            raise ValueError(f"invalid apprise URL {mask(self.url)}")
        self._email = is_email(self.url)

    def send(self, message: Message) -> str | None:
        if self._email:
            body, fmt = message.html, apprise.NotifyFormat.HTML
        else:
            body, fmt = message.markdown, apprise.NotifyFormat.MARKDOWN
        with apprise.LogCapture(level=logging.WARNING) as captured:  # type: ignore[no-untyped-call]
            ok = self._apprise.notify(body=body, title=message.title, body_format=fmt)
        if ok:
            return None
        lines = [ln.strip() for ln in captured.getvalue().splitlines() if ln.strip()]
        return lines[-1][:300] if lines else "the notifier reported a failure"


@dataclass
class ConsoleSender:
    """Prints alerts when no notifier is configured (``make run`` out of the box)."""

    stream: TextIO = sys.stdout

    def send(self, message: Message) -> str | None:
        self.stream.write(f"\n=== {message.title}\n{message.text}\n")
        self.stream.flush()
        return None
