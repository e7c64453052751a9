"""Keeping secrets out of everything the program prints or logs.

Two functions do the work, and everything that shows text uses them:

* ``mask_url`` turns a notifier URL into one fit to show (``check``,
  ``test-notify``, the delivery log): user info, query values (except plainly
  harmless keys such as ``to``), token-like host and path parts, and every
  known secret value are masked.
* ``Redactor.redact`` removes known secret values from any text: log lines
  (``RedactingFilter`` on the log handler), command output
  (``redacted_stdio``), errors stored in the database.

The known secrets of a config (``Config.secrets``) are every value that came
from a ``${...}`` substitution and the credential-like parts of its URLs
(``url_credentials``). Free text is searched only for values of at least
``MIN_SECRET_LENGTH`` characters: a shorter value (a port, ``yes``) would
garble every log line and is too short to be a useful secret; it is still
masked where it is a whole part of a notifier URL.

Pure apart from ``redacted_stdio``, which swaps ``sys.stdout``/``sys.stderr``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import threading
from collections.abc import Collection, Iterable, Iterator
from typing import TextIO, cast
from urllib.parse import quote, quote_plus, unquote

MIN_SECRET_LENGTH = 6
MASK = "****"

# Query keys whose values say where a message goes or how it looks, never who may send it.
HARMLESS_QUERY_KEYS = frozenset(
    {"to", "from", "cc", "bcc", "reply", "name", "mode", "format", "method", "priority", "lang"}
)
# A query key whose value is a credential even when it does not look like one.
_CREDENTIAL_KEY = re.compile(
    r"token|key|secret|pass|pwd|auth|sig|cred|session|bearer|access|hook", re.IGNORECASE
)


def is_token_like(part: str) -> bool:
    """Whether a URL part looks like a generated credential rather than a name.

    Very long parts (32+ characters) always do; from 12 characters on, letters
    mixed with digits do, unless the part holds a dot or ``@`` (a host name,
    a file name, an email address).
    """
    if not part or any(c.isspace() for c in part):
        return False
    if len(part) >= 32:
        return True
    return (
        len(part) >= 12
        and any(c.isdigit() for c in part)
        and any(c.isalpha() for c in part)
        and "." not in part
        and "@" not in part
    )


class _Parts:
    """An apprise-style URL cut into its parts, without validating it.

    ``urllib.parse`` can't be used: apprise URLs put tokens where a port
    would be (``tgram://123456:ABC.../chat``).
    """

    def __init__(self, url: str) -> None:
        self.scheme, sep, rest = url.partition("://")
        self.ok = bool(sep)
        rest, self.hash, self.fragment = rest.partition("#")
        rest, self.qmark, self.query = rest.partition("?")
        netloc, self.slash, self.path = rest.partition("/")
        self.userinfo, self.at, self.hostport = netloc.rpartition("@")
        self.user, self.colon, self.password = self.userinfo.partition(":")

    def host(self) -> str:
        """The host without a numeric port (a token in the port's place stays)."""
        host, _, port = self.hostport.rpartition(":")
        return host if host and port.isdigit() else self.hostport

    def host_is_secret(self, secrets: Collection[str] = ()) -> bool:
        """A token where the host goes (Telegram's bot token), or a known secret.

        A host with a dot is a DNS name or an address, never a token, however long.
        """
        candidates = {unquote(self.hostport), unquote(self.host())}
        if candidates & set(secrets):
            return True
        return "." not in self.hostport and any(is_token_like(c) for c in candidates)

    def params(self) -> list[tuple[str, str, str]]:
        """(decoded key, raw key, raw value) of each query parameter, in order."""
        out = []
        for item in self.query.split("&") if self.query else []:
            key, _, value = item.partition("=")
            out.append((unquote(key), key, value))
        return out

    def join(self) -> str:
        netloc = f"{self.userinfo}{self.at}{self.hostport}"
        return (
            f"{self.scheme}://{netloc}{self.slash}{self.path}"
            f"{self.qmark}{self.query}{self.hash}{self.fragment}"
        )


def _both(part: str) -> set[str]:
    """A URL part as written and percent-decoded: either form may show up in a log."""
    return {p for p in (part, unquote(part)) if p}


def url_credentials(url: str, *, notifier: bool = True) -> frozenset[str]:
    """The credential-like parts of a URL, to be redacted wherever they show up.

    For a notifier URL: the password, a token-like user or host, token-like
    path segments (Telegram, Slack, Discord webhook tokens), the value of a
    query key named like a credential (``token``, ``+X-Api-Key``,
    ``+Authorization``, ...), and any token-like query value. For a feed URL
    only the password and the values of credential-named query keys: its
    path is the feed's identity.
    """
    p = _Parts(url)
    if not p.ok:
        return frozenset()
    found: set[str] = set()
    if p.password:
        found |= _both(p.password)
    for key, _raw, value in p.params():
        if not value or key.lower() in HARMLESS_QUERY_KEYS:
            continue
        # Not every query value: one like "application/json" (a +Content-Type header)
        # would be redacted from every line that mentions it.
        if _CREDENTIAL_KEY.search(key) or (notifier and is_token_like(unquote(value))):
            found |= _both(value)
    if notifier:
        if p.host_is_secret():
            found |= _both(p.hostport) | _both(p.host())
        for part in (p.user, p.fragment, *p.path.split("/")):
            if is_token_like(unquote(part)):
                found |= _both(part)
    return frozenset(found)


def _secret(part: str, secrets: Collection[str]) -> bool:
    return bool(part) and (is_token_like(unquote(part)) or unquote(part) in secrets)


def mask_url(shown: str, original: str, secrets: Collection[str] = ()) -> str:
    """A notifier URL fit to show.

    ``shown`` is apprise's own masked form of ``original`` (``urls(privacy=True)``,
    which knows where each service keeps its tokens) or ``original`` itself.
    On top of it: the user and password, token-like host and path parts, and
    the value of every query key except plainly harmless ones (``to``,
    ``from``, ``mode``, ``format``, ...) are masked; the query keeps only the
    keys the original URL has (apprise adds its defaults); every known secret
    is redacted.
    """
    p = _Parts(shown)
    if not p.ok:  # not a URL at all: nothing of it is safe to show
        return MASK
    if p.userinfo:
        user = MASK if _secret(p.user, secrets) else p.user
        p.userinfo = user + (f":{MASK}" if p.colon else "")
    if p.host_is_secret(secrets):
        p.hostport = MASK
    p.path = "/".join(MASK if _secret(seg, secrets) else seg for seg in p.path.split("/"))
    wanted = {key.lower() for key, _raw, _value in _Parts(original).params()}
    kept = []
    for key, raw, value in p.params():
        if key.lower() not in wanted:
            continue
        harmless = key.lower() in HARMLESS_QUERY_KEYS and not _secret(value, secrets)
        kept.append(f"{raw}={value if harmless or not value else MASK}")
    p.query = "&".join(kept)
    p.qmark = "?" if kept else ""
    if _secret(p.fragment, secrets):
        p.fragment = MASK
    return Redactor(secrets).redact(p.join())


def _forms(secret: str) -> set[str]:
    """The ways a secret can be spelled in output: as is, URL-encoded, JSON or repr escaped."""
    return {
        secret,
        quote(secret, safe=""),
        quote(secret),
        quote_plus(secret),
        json.dumps(secret)[1:-1],
        json.dumps(secret, ensure_ascii=False)[1:-1],
        repr(secret)[1:-1],
    }


class Redactor:
    """Replaces known secret values in text with ``****``; secrets can be added later.

    Secrets are only ever added, never dropped: after a reload a message
    about work started under the old config may still quote an old secret.
    Thread-safe: the compiled pattern is swapped in one assignment.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: frozenset[str] = frozenset()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()
        self.add(secrets)

    @property
    def secrets(self) -> frozenset[str]:
        return self._secrets

    def add(self, secrets: Iterable[str]) -> None:
        """Redact these values too (those shorter than MIN_SECRET_LENGTH are ignored)."""
        with self._lock:
            merged = self._secrets | {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
            if merged == self._secrets:
                return
            forms = {f for s in merged for f in _forms(s)}
            # Longest first, so a secret that contains another is replaced whole.
            alternatives = sorted(forms, key=lambda f: (-len(f), f))
            self._pattern = re.compile("|".join(re.escape(f) for f in alternatives))
            self._secrets = merged

    def redact(self, text: str) -> str:
        """``text`` with every known secret replaced by ``****``."""
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern is not None and text else text


class RedactingFilter(logging.Filter):
    """Redacts a log record's message, exception and stack text before a handler writes it.

    Put it on the handler (not a logger) so records of every logger pass it,
    apprise's and APScheduler's included.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.redactor.secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it when it formats
            return True
        clean = self.redactor.redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        return True


class RedactingStream:
    """A text stream that redacts what is written to it before passing it on."""

    def __init__(self, stream: TextIO, redactor: Redactor) -> None:
        self._stream = stream
        self._redactor = redactor

    def write(self, text: str) -> int:
        self._stream.write(self._redactor.redact(text))
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str) -> object:
        return getattr(self._stream, name)


@contextlib.contextmanager
def redacted_stdio(redactor: Redactor) -> Iterator[None]:
    """Redact everything written to stdout and stderr (prints, tracebacks) meanwhile."""
    out, err = sys.stdout, sys.stderr
    sys.stdout = cast(TextIO, RedactingStream(out, redactor))
    sys.stderr = cast(TextIO, RedactingStream(err, redactor))
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
