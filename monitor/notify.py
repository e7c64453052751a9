"""Delivery through apprise: the only module that imports it.

Each apprise URL gets an ``Apprise`` object of its own, so a failing chat
webhook is retried without re-sending the email that already went out
(FACTS: one object with several URLs is falsy when one target fails).
Only masked URLs (``privacy=True`` plus ``redact.mask_url``) ever leave this
module, and a failure's text has every known secret redacted before it is
returned (it is logged and stored in the outbox).

apprise is imported on first use, not with this module: a ``monitor poll``
that has nothing to send never needs it (``url_shape_problem`` checks a URL
without it; ``url_problem`` asks apprise itself). And a URL's service is made
by its own plugin module where that can be done (``_one_plugin``): apprise's
``add`` imports every plugin module first (about 0.2 s, more than a round of
1,000 unchanged feeds).
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import re
import sys
import threading
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TextIO
from urllib.parse import unquote

from monitor.redact import Redactor, mask_url
from monitor.render import Format, Rendered, clean
from monitor.types import AlertItem

if TYPE_CHECKING:
    import apprise

CONSOLE = "console"
_EMAIL_SCHEMES = ("mailto", "mailtos", "email", "ses", "sendgrid", "mailgun", "sparkpost")


class Sender(Protocol):
    """Sends one message to one target; returns None on success, else the reason.

    ``format`` is what the target renders, ``max_body`` its size limit in
    characters (None: none that matters), ``min_interval`` the seconds apprise
    keeps between two messages to it (the sender waits that long before it
    takes the next batch, so what queued meanwhile goes out as one message).
    """

    format: Format
    max_body: int | None
    min_interval: float

    def send(self, message: Rendered, items: Sequence[AlertItem] = ()) -> str | None: ...


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
# Debug records are made, so a send's own result holds the cause of a failure (apprise
# says "Connection error" as a warning and "[Errno 111] Connection refused" at debug).
# The log shows apprise's lines only with -v (see logs.py).
logging.getLogger("apprise").setLevel(logging.DEBUG)


def _apprise() -> Any:
    """The apprise module (imported here, on first use; see the module's docstring)."""
    import apprise

    return apprise


# A URL: a scheme (as apprise's own URL parser takes it), "://", and something after it.
_URL_SHAPE = re.compile(r"^[a-z][a-z0-9+.-]*://\S", re.IGNORECASE)


def url_shape_problem(url: str) -> str | None:
    """None when ``url`` has the shape of an apprise URL (``scheme://...``), else why not.

    A check that needs no apprise: ``url_problem`` is the real one (a known
    service, its tokens well formed).
    """
    if _URL_SHAPE.match(url.strip()):
        return None
    return "not an apprise URL (SCHEME://...)"


# Plugin modules named otherwise than the schemes they serve; any other scheme is looked
# for in the module of its own name (ntfy, slack, discord, gotify, ...).
_PLUGIN_MODULES = {
    "mailto": "email",
    "mailtos": "email",
    "json": "custom_json",
    "jsons": "custom_json",
    "xml": "custom_xml",
    "xmls": "custom_xml",
    "form": "custom_form",
    "forms": "custom_form",
    "tgram": "telegram",
    "ntfys": "ntfy",
    "matrixs": "matrix",
    "rocket": "rocketchat",
    "rockets": "rocketchat",
    "mmost": "mattermost",
    "mmosts": "mattermost",
    "gotifys": "gotify",
    "pover": "pushover",
}
_SCHEME = re.compile(r"^\s*([a-z0-9+.-]+)://", re.IGNORECASE)


def _schemes(plugin: type) -> set[str]:
    out: set[str] = set()
    for value in (getattr(plugin, "protocol", None), getattr(plugin, "secure_protocol", None)):
        values = (value,) if isinstance(value, str) else value or ()
        out.update(v.lower() for v in values if isinstance(v, str))
    return out


def _one_plugin(url: str, asset: Any) -> Any | None:
    """The service of ``url``, made by its plugin alone; None when that can't be done
    here (then apprise's own ``add`` decides, after importing every one of its plugin
    modules first: about 0.2 s).

    Only the plugin module of the URL's scheme is imported, and the service is made as
    ``Apprise.instantiate`` makes it (the plugin's ``parse_url``, the class with the
    asset and no tags, enabled or not): what is made here apprise accepts too.
    Anything else, a refused URL included, goes to apprise, which says why.
    """
    m = _SCHEME.match(url)
    if m is None:
        return None
    scheme = m[1].lower()
    name = _PLUGIN_MODULES.get(scheme, scheme)
    if not name.isidentifier():
        return None
    apprise = _apprise()
    try:
        module = importlib.import_module(f"apprise.plugins.{name}")
    except Exception:  # no such module (or it fails to import): apprise decides
        return None
    found = {
        obj
        for obj in vars(module).values()
        if isinstance(obj, type)
        and issubclass(obj, apprise.NotifyBase)
        and obj is not apprise.NotifyBase
        and scheme in _schemes(obj)
    }
    if len(found) != 1:
        return None
    plugin: Any = found.pop()
    if not getattr(plugin, "enabled", True):
        return None
    results = plugin.parse_url(url.replace("/#", "/%23"))
    if not results:
        return None
    results["tag"] = set()
    results["asset"] = asset
    try:
        service = plugin(**results)
    except Exception:
        return None
    return service if getattr(service, "enabled", True) else None


def _add(ap: Any, url: str) -> bool:
    """``ap.add(url)``, by the URL's plugin alone where it can be (see ``_one_plugin``)."""
    service = _one_plugin(url, ap.asset)
    return bool(ap.add(service if service is not None else url))


def url_problem(url: str) -> str | None:
    """None when apprise accepts ``url``, else why not (checked at config load)."""
    ap = _apprise().Apprise()
    _checking.active, _checking.warnings = True, []
    try:
        if _add(ap, url):
            return None
    finally:
        _checking.active = False
    scheme = url.split("://", 1)[0] if "://" in url else url[:12]
    why = f": {_checking.warnings[0].strip()}" if _checking.warnings else ""
    return f"apprise does not accept this URL (scheme {scheme!r}){why}"


_DELIMITERS = re.compile(r"[/@?&=#:]")


def _private_parts(url: str) -> frozenset[str] | None:
    ap = _apprise().Apprise()
    _checking.active, _checking.warnings = True, []  # apprise logs the URL as it loads it
    try:
        if not _add(ap, url):
            return None
    finally:
        _checking.active = False
    plain, private = str(ap.urls()[0]), str(ap.urls(privacy=True)[0])
    a, b = _DELIMITERS.split(plain), _DELIMITERS.split(private)
    if len(a) != len(b):  # not the same shape: our own masking has to do
        return frozenset()
    found = {x for x, y in zip(a, b, strict=True) if x != y and x}
    return frozenset(unquote(x) for x in found)


def private_parts(url: str) -> frozenset[str]:
    """The parts of ``url`` apprise masks in its privacy form (it knows where each service
    keeps its tokens: Slack's three, Telegram's bot token, a Pushover user key); empty for
    a URL apprise refuses. Found by comparing apprise's URL with and without privacy."""
    return _private_parts(url) or frozenset()


def mask(url: str, secrets: Collection[str] = ()) -> str:
    """The URL as the config has it, fit to show and log (``redact.mask_url``), with the
    parts apprise itself would mask masked too, and none of apprise's own parameters."""
    private = _private_parts(url)
    if private is None:
        return url.split("://", 1)[0] + "://…"
    return mask_url(url, url, {*secrets, *private})


_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T][\d:,.]+\s*-\s*[A-Z]+\s*-\s*")
# The underlying cause in apprise's debug lines ("Socket Exception: ... [Errno 111]
# Connection refused"), most specific first.
_CAUSES = (
    re.compile(r"\[Errno -?\d+\] ([^\"'()\]\[\\]+)"),
    re.compile(r"(certificate verify failed[^\"'()\]]*)", re.IGNORECASE),
    re.compile(r"((?:read |connect )?timed out)", re.IGNORECASE),
)


def failure_text(lines: Sequence[tuple[str, str]]) -> str:
    """One line for a failed send, from apprise's (level, message) lines of that call:
    its last warning or error, and the cause its debug lines name (``Connection error
    while submitting email to "mail.example.com": Connection refused``)."""
    what = ""
    for level, message in lines:
        if level in ("WARNING", "ERROR", "CRITICAL") and message.strip():
            what = _TIMESTAMP.sub("", message.strip().splitlines()[0])
    cause = ""
    for _level, message in lines:
        for pattern in _CAUSES:
            m = pattern.search(message)
            if m:
                cause = m.group(1).strip().rstrip(".")
                break
    what = what or "the notifier reported a failure"
    if cause and cause.lower() not in what.lower():
        return f"{what.rstrip('.')}: {cause}"
    return what


def target_key(url: str) -> str:
    """The key outbox rows of schema 1 gave a URL (rows now name the URL's position)."""
    return hashlib.sha256(url.encode()).hexdigest()[:16]


def is_email(url: str) -> bool:
    return url.split("://", 1)[0].lower() in _EMAIL_SCHEMES


_GENERIC_WEBHOOKS = ("json", "jsons", "xml", "xmls", "form", "forms")


def _apprise_format(ours: Format) -> Any:
    formats = _apprise().NotifyFormat
    return {
        Format.TEXT: formats.TEXT,
        Format.MARKDOWN: formats.MARKDOWN,
        Format.HTML: formats.HTML,
    }[ours]


def format_for(url: str, plugin: object | None = None) -> Format:
    """What a target renders: plain text for generic webhooks (their body is data,
    not markup), HTML for email, Markdown for a chat service that renders it,
    else HTML or text, as the apprise plugin says it takes."""
    scheme = url.split("://", 1)[0].lower()
    if scheme in _GENERIC_WEBHOOKS:
        return Format.TEXT
    if scheme in _EMAIL_SCHEMES:
        return Format.HTML
    supported = getattr(plugin, "notify_format", _apprise_format(Format.TEXT))
    formats = supported if isinstance(supported, tuple) else (supported,)
    for ours in (Format.MARKDOWN, Format.HTML):
        if _apprise_format(ours) in formats:
            return ours
    return Format.TEXT


def structured(items: Sequence[AlertItem]) -> list[dict[str, object]]:
    """The alerts of a message as data, for a JSON webhook's payload (``alerts``)."""
    out: list[dict[str, object]] = []
    for it in items:
        snip = it.snippet
        out.append(
            {
                "rules": list(it.rules),
                "feed": clean(it.feed),
                "title": clean(it.title),
                "link": it.link,
                "published": it.published.isoformat() if it.published else None,
                "snippet": clean(snip.before + snip.hit + snip.after) if snip else None,
                "hit": clean(snip.hit) if snip else None,
                "terms": list(it.terms),
            }
        )
    return out


@dataclass
class AppriseSender:
    """One apprise URL, sent in the format its target renders (see ``format_for``).

    ``secrets`` (the config's) are redacted from the failure text it returns:
    apprise's log lines may quote a token. A JSON webhook's payload gets the
    alerts as data (``alerts``) beside the text.
    """

    url: str = field(repr=False)  # a repr that lands in a log must not carry the secrets
    secrets: Collection[str] = field(default=frozenset(), repr=False)

    def __post_init__(self) -> None:
        self._apprise: apprise.Apprise = _apprise().Apprise()
        if not _add(self._apprise, self.url):
            raise ValueError(f"invalid apprise URL {mask(self.url, self.secrets)}")
        self._plugin = self._apprise[0]
        self.format = format_for(self.url, self._plugin)
        limit = int(getattr(self._plugin, "body_maxlen", 0) or 0)
        self.max_body: int | None = limit or None
        self.min_interval = float(getattr(self._plugin, "request_rate_per_sec", 0) or 0)
        extras = getattr(self._plugin, "payload_extras", None)
        self._extras = dict(extras) if isinstance(extras, dict) else None
        self._json = self.url.split("://", 1)[0].lower() in ("json", "jsons")
        self._redactor = Redactor(self.secrets)

    def send(self, message: Rendered, items: Sequence[AlertItem] = ()) -> str | None:
        if self._json and self._extras is not None:
            # apprise adds payload_extras to the JSON body (the URL's :key=value too)
            setattr(self._plugin, "payload_extras", {**self._extras, "alerts": structured(items)})  # noqa: B010
        apprise = _apprise()
        fmt = _apprise_format(message.format)
        lines: list[tuple[str, str]]
        if hasattr(apprise, "AppriseResult"):
            # apprise 2: the result holds this call's own log lines, also those its
            # worker threads logged; a LogCapture would catch other targets' lines too.
            result = self._apprise.notify(
                body=message.body, title=message.title, body_format=fmt, log_level=logging.DEBUG
            )
            if result:
                return None
            lines = [(str(e.level), str(e.message)) for e in result.logs()]
        else:
            with apprise.LogCapture(level=logging.DEBUG) as captured:
                ok = self._apprise.notify(body=message.body, title=message.title, body_format=fmt)
            if ok:
                return None
            lines = [
                (m.group(1), ln)
                for ln in captured.getvalue().splitlines()
                if (m := re.search(r" - ([A-Z]+) - ", ln))
            ]
        # redacted before it is cut: a cut secret would no longer be found
        return self._redactor.redact(failure_text(lines))[:300]


@dataclass
class ConsoleSender:
    """Prints alerts when no notifier is configured (``make run`` out of the box)."""

    stream: TextIO = sys.stdout
    format: Format = Format.TEXT
    max_body: int | None = None
    min_interval: float = 0.0

    def send(self, message: Rendered, items: Sequence[AlertItem] = ()) -> str | None:
        self.stream.write(f"\n=== {message.title}\n{message.body}\n")
        self.stream.flush()
        return None
