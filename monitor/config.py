"""feeds.yaml: load, substitute ``${ENV}``, validate, report every error at once.

The loader works on PyYAML's node tree rather than on plain dicts, so every
problem can be reported as ``feeds.yaml:LINE:COL: message`` (SPEC section 4).
Loading is pure apart from reading files (feeds.yaml and the ``${file:...}``
credentials it names): the environment is passed in.

Every value that came from a substitution is recorded in ``Config.secrets``
(with the credential-like parts of the notifier URLs), so everything that
prints or logs can mask it (see ``redact``).
"""

from __future__ import annotations

import gc
import ipaddress
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from monitor import notify
from monitor.match import validate_rule
from monitor.query import lowercase_operators
from monitor.redact import Redactor, url_credentials
from monitor.types import RuleSpec

DEFAULT_INTERVAL = 15 * 60.0
DEFAULT_TIMEOUT = 20.0
DEFAULT_MAX_AGE = 2 * 86400.0
DEFAULT_RETENTION = 30 * 86400.0
DEFAULT_STORY_WINDOW = 48 * 3600.0
AUTO = "auto"  # `interval: auto`: polled by how often the feed publishes
DEFAULT_MIN_INTERVAL = 5 * 60.0  # the shortest interval `auto` picks
DEFAULT_MAX_INTERVAL = 6 * 3600.0  # the longest: a quiet feed is still asked 4 times a day
MIN_INTERVAL = 1.0
DEFAULT_DATABASE = "monitor.db"  # next to feeds.yaml
MAX_CREDENTIAL_BYTES = 64 * 1024  # a ${file:...} longer than this is a mistake (/dev/zero?)
MB = 1024 * 1024
# Each worker's memory ceiling (RLIMIT_DATA). Measured as the smallest limit
# that works: about 40 MB for an ordinary feed; 140 MB for an 11 MB feed of
# 50,000 items, 187 MB for an 8 MB page of 220,000 paragraphs (documents near
# max_bytes). 512 MB leaves room for several times that, and an entity bomb's
# 5 GB string fails at once.
DEFAULT_WORKER_MEMORY = 512 * MB
MIN_WORKER_MEMORY = 64 * MB  # below this a worker can't import its libraries and parse


class ConfigError(Exception):
    """The config has problems; ``problems`` holds every one, in file order.

    What could still be read comes along, so ``monitor status`` can show the
    store of a broken config without leaking its secrets: ``secrets`` (as
    ``Config.secrets``) and ``database`` (``settings.database`` as written).
    """

    def __init__(
        self,
        problems: list[Problem],
        *,
        secrets: frozenset[str] = frozenset(),
        database: str | None = None,
    ) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line, p.column))
        self.secrets = secrets
        self.database = database
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class Problem:
    """One config problem at a place in the file (line and column 1-based)."""

    path: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


@dataclass(frozen=True, slots=True)
class Listen:
    """An address to listen on: ``settings.metrics``. ``host`` "" is every interface."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


_HOST_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?$")


def parse_listen(text: str) -> Listen:
    """``host:port`` as Prometheus exporters take it: ``127.0.0.1:9464``,
    ``[::1]:9464``, ``localhost:9464``, or ``:9464`` for every interface (IPv4 and
    IPv6). Port 0 picks a free port. ValueError, fit for a config error, otherwise."""
    value = text.strip()
    hint = "write host:port, e.g. 127.0.0.1:9464 (or :9464 for every interface)"
    if "/" in value:
        raise ValueError(f"{value!r} is not an address; {hint}, no scheme or path")
    if value.startswith("["):
        end = value.find("]")
        host, rest = value[1:end], value[end + 1 :]
        if end < 0 or not rest.startswith(":"):
            raise ValueError(f"{value!r} is not [IPv6 address]:port; {hint}")
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
        port = rest[1:]
    else:
        host, sep, port = value.rpartition(":")
        if not sep:
            raise ValueError(f"{value!r} has no port; {hint}")
        if ":" in host:
            try:
                ipaddress.IPv6Address(host)
            except ValueError:
                raise ValueError(f"{value!r} is not an address; {hint}") from None
            raise ValueError(f"put an IPv6 address in brackets: [{host}]:{port}")
        if host and not _HOST_NAME.match(host):
            raise ValueError(f"{host!r} is not an IP address or host name")
    if not port.isascii() or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{port!r} is not a port (0-65535); {hint}")
    return Listen(host, int(port))


@dataclass(frozen=True, slots=True)
class Settings:
    """The ``settings:`` block; every key optional."""

    database: str | None = None  # None: DEFAULT_DATABASE next to feeds.yaml
    interval: float | str = DEFAULT_INTERVAL  # seconds, or "auto"
    min_interval: float = DEFAULT_MIN_INTERVAL  # the range of `interval: auto`
    max_interval: float = DEFAULT_MAX_INTERVAL
    timeout: float = DEFAULT_TIMEOUT
    max_age: float = DEFAULT_MAX_AGE
    extract: bool = True
    allow_private_addresses: bool = False
    retention: float = DEFAULT_RETENTION  # how long normalized article text is kept
    concurrency: int = 50  # HTTP requests in flight at once
    per_host: int = 2  # HTTP requests in flight to one host
    host_spacing: float = 0.1  # seconds between request starts to one host
    user_agent: str | None = None
    max_bytes: int = 10 * MB
    retry_delay: float = 30.0  # first delivery retry; doubles up to an hour
    workers: int | None = None  # worker processes; None: one per available CPU, at most 4
    story_window: float = DEFAULT_STORY_WINDOW  # one story, one alert per rule within this
    admin_notify: str | None = None  # the notifier that gets operator notices
    admin_failures: int = 5  # polls failed in a row before the operator is told
    worker_memory: int = DEFAULT_WORKER_MEMORY  # each worker's memory ceiling in bytes; 0: none
    respect_ttl: bool = True  # a feed's ttl / Cache-Control max-age may lengthen its interval
    log_level: str = "info"  # of the daemon's own loggers (monitor.*)
    log_format: str = "auto"  # auto: text on a terminal, else one JSON object per line
    metrics: Listen | None = None  # where `monitor run` serves /metrics and /healthz; None: off


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One entry of ``feeds:``. ``name`` is None when the config gives none."""

    url: str
    name: str | None = None
    interval: float | str | None = None  # seconds, or "auto"; None: settings.interval
    extract: bool | None = None
    tags: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The feed's identity in the store: its configured URL."""
        return self.url

    def label(self) -> str:
        """The name to show while the feed's own title is not known."""
        return self.name or self.url


@dataclass(frozen=True, slots=True)
class NotifierSpec:
    """A named notifier: one or more apprise URLs, each delivered on its own, and
    its delivery policies (the mapping form of ``notifiers:``).

    Outbox rows name a URL by its position here, so rotating a secret (or
    editing the URL) keeps the alerts still pending: they go to the URL in force.
    ``quiet_hours`` holds (start, end) as minutes after midnight in ``timezone``
    (None: the system's); ``digest`` the schedule as written (see
    ``scheduler.digest_trigger``); ``template`` a Jinja2 template for the body.
    """

    name: str
    urls: tuple[str, ...]
    quiet_hours: tuple[int, int] | None = None
    timezone: str | None = None
    max_per_hour: int | None = None
    digest: str | None = None
    template: str | None = None


@dataclass(frozen=True, slots=True)
class UncheckedUrl:
    """A notifier URL that apprise has not seen yet (``load_config(check_notifiers=False)``),
    with where the config writes it; ``check_notifiers`` shows it to apprise."""

    url: str = field(repr=False)
    what: str  # "notifier 'mail'"
    place: Problem  # its place in the file (the message is empty)


@dataclass(frozen=True, slots=True)
class Config:
    """A validated feeds.yaml.

    ``path`` is absolute but not resolved: a feeds.yaml that is a symlink
    (a Kubernetes ConfigMap, NixOS) is watched through its link, and relative
    paths in it resolve next to the link. ``secrets`` holds every value that
    came from a ``${...}`` substitution and the credential-like parts of the
    notifier and feed URLs; ``files`` the ``${file:...}`` files read.
    """

    path: Path
    settings: Settings = field(default_factory=Settings)
    notifiers: tuple[NotifierSpec, ...] = ()
    feeds: tuple[FeedSpec, ...] = ()
    rules: tuple[RuleSpec, ...] = ()
    secrets: frozenset[str] = frozenset()
    files: tuple[Path, ...] = ()
    warnings: tuple[Problem, ...] = ()  # valid, but likely not what was meant
    # Notifier URLs only checked for their shape so far (see ``check_notifiers``).
    unchecked: tuple[UncheckedUrl, ...] = ()

    def database_path(self) -> str:
        """``settings.database`` (else DEFAULT_DATABASE); relative paths resolve next to feeds.yaml.

        Commands use ``choose_database``, which lets ``--db`` and ``MONITOR_DB`` win.
        """
        return _database_location(self.settings.database or DEFAULT_DATABASE, self.path)

    def notifier_urls(self) -> dict[str, int]:
        """Notifier name -> how many URLs it has (the console's when none is configured)."""
        if not self.notifiers:
            return {notify.CONSOLE: 1}
        return {n.name: len(n.urls) for n in self.notifiers}

    def feed_interval(self, feed: FeedSpec) -> float | None:
        """The feed's poll interval in seconds; None for ``interval: auto``."""
        interval = feed.interval if feed.interval is not None else self.settings.interval
        return None if interval == AUTO else float(interval)

    def feed_extract(self, feed: FeedSpec) -> bool:
        return feed.extract if feed.extract is not None else self.settings.extract


def _database_location(db: str, config_path: Path) -> str:
    if "://" in db or db == ":memory:":
        return db
    p = Path(db).expanduser()
    return str(p if p.is_absolute() else config_path.parent / p)


@dataclass(frozen=True, slots=True)
class DatabaseChoice:
    """Which database a command uses, and why that one (for messages)."""

    location: str  # a path, or a URL
    source: str  # e.g. "settings.database in /etc/rss-monitor/feeds.yaml"


def choose_database(
    config_path: Path, setting: str | None, *, option: str | None, env: Mapping[str, str]
) -> DatabaseChoice:
    """The one place that decides where the database is, for every command.

    ``--db`` (``option``) > ``$MONITOR_DB`` > ``settings.database`` > ``monitor.db``
    next to feeds.yaml. A relative ``--db`` or ``MONITOR_DB`` is relative to
    the working directory, like any path typed in a shell; a relative
    ``settings.database`` is next to feeds.yaml (the path as named, not a
    symlink's target). So the service and an operator's ``monitor -c
    /etc/rss-monitor/feeds.yaml status`` read the same file as long as the
    database is set in the config.
    """
    config_path = Path(os.path.abspath(config_path))

    def absolute(db: str) -> str:
        return db if "://" in db or db == ":memory:" else os.path.abspath(Path(db).expanduser())

    if option:
        return DatabaseChoice(absolute(option), "--db")
    if env.get("MONITOR_DB"):
        return DatabaseChoice(absolute(env["MONITOR_DB"]), "MONITOR_DB")
    if setting:
        location = _database_location(setting, config_path)
        return DatabaseChoice(location, f"settings.database in {config_path}")
    return DatabaseChoice(
        _database_location(DEFAULT_DATABASE, config_path),
        f"the default: {DEFAULT_DATABASE} next to {config_path}, which sets no settings.database",
    )


# --------------------------------------------------------------------------
# durations

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)", re.IGNORECASE)
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration(value: object) -> float:
    """``30s``, ``10m``, ``1h``, ``2d``, ``1h30m`` or a number of seconds -> seconds.

    Raises ValueError with a message fit for a config error.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration like 30s, 10m, 1h, 2d, got {value!r}")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration can't be negative")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return float(text)
        pos = 0
        total = 0.0
        for m in _DURATION.finditer(text):
            if text[pos : m.start()].strip():
                break
            total += float(m.group(1)) * _UNIT[m.group(2).lower()]
            pos = m.end()
        else:
            if pos and not text[pos:].strip():
                return total
    raise ValueError(f"expected a duration like 30s, 10m, 1h, 2d, got {value!r}")


def format_duration(seconds: float) -> str:
    """Seconds -> the shortest exact duration string (``90`` -> ``1m30s``)."""
    if seconds < 1:
        return f"{seconds:.3g}s"
    rest = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts)


# --------------------------------------------------------------------------
# sizes

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?", re.IGNORECASE)
_SIZE_UNIT = {"": 1, "k": 1024, "m": MB, "g": 1024 * MB, "t": 1024 * 1024 * MB}


def parse_size(value: object) -> int:
    """``512MB``, ``1GB``, ``768M``, ``64KiB`` or a whole number of bytes -> bytes.

    Units count in 1024s, as in systemd's ``MemoryMax=`` (``1MB`` = ``1MiB``).
    Raises ValueError with a message fit for a config error.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        m = _SIZE.fullmatch(value.strip())
        if m:
            return int(float(m.group(1)) * _SIZE_UNIT[m.group(2).lower()])
    raise ValueError(f"expected a size like 512MB, 1GB or a number of bytes, got {value!r}")


def format_size(size: int) -> str:
    """Bytes -> ``512 MB``, ``1.5 GB``, ``700 KB`` or ``100 bytes`` (in 1024s)."""
    for unit, name in ((1024 * MB, "GB"), (MB, "MB"), (1024, "KB")):
        if size >= unit:
            return f"{size / unit:.4g} {name}"
    return f"{size} byte" if size == 1 else f"{size} bytes"


# --------------------------------------------------------------------------
# loading


# ``$$`` (a literal ``$``), ``${file:NAME}`` (a credential file), ``${NAME}`` (the environment)
# libyaml's loader keeps every node's line and column too, and composes a 100,000-feed
# file in seconds where the pure-Python one takes half a minute. The base loader leaves
# every plain scalar a string: resolving the tag of each (a Python call per scalar, most
# of them URLs and names) cost as much again, so it is done only where a value is read
# as something other than a string (``_Loader.tag``).
_LOADER = getattr(yaml, "CBaseLoader", yaml.BaseLoader)
_RESOLVER = yaml.resolver.Resolver()
_STR = "tag:yaml.org,2002:str"
_NULL = "tag:yaml.org,2002:null"

_SUBST = re.compile(r"\$\$|\$\{file:([^}]*)\}|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Loader:
    """Walks the YAML node tree; records problems instead of stopping at the first."""

    def __init__(self, path: str, env: Mapping[str, str], check_notifiers: bool = True) -> None:
        self.path = path
        self.env = env
        self.check_notifiers = check_notifiers
        self.unchecked: list[UncheckedUrl] = []
        self.problems: list[Problem] = []
        self.warnings: list[Problem] = []
        self.secrets: set[str] = set()  # every value a substitution put in
        self.files: dict[Path, str] = {}  # ${file:...} read so far, each once per load
        self.constructor = yaml.constructor.SafeConstructor()
        self.nodes: dict[str, Node] = {}  # nodes checked after the section that holds them
        self.text = ""  # the file's text, for places inside a string

    def warn(self, node: Node, message: str, offset: int | None = None) -> None:
        """Something valid that is likely a mistake (reported, not refused)."""
        before = len(self.problems)
        self.error(node, f"warning: {message}", offset)
        self.warnings.append(self.problems.pop(before))

    def error(
        self,
        node: Node | None,
        message: str,
        offset: int | None = None,
        template_line: int | None = None,
    ) -> None:
        self.problems.append(replace(self.place(node, offset, template_line), message=message))

    def place(
        self, node: Node | None, offset: int | None = None, template_line: int | None = None
    ) -> Problem:
        """Where ``node`` (or a place inside its string) is, as a Problem without a message."""
        line, col = (node.start_mark.line + 1, node.start_mark.column + 1) if node else (1, 1)
        if offset is not None and isinstance(node, ScalarNode):
            # Point inside the string: skip the opening quote of a quoted scalar.
            col += offset + (1 if node.style in ("'", '"') else 0)
        if template_line is not None and isinstance(node, ScalarNode):
            # A line of a string: a block scalar (| or >) starts on the line after its key,
            # and its text at the indentation of that line.
            block = node.style in ("|", ">")
            line += template_line - 1 + (1 if block else 0)
            lines = self.text.splitlines() if block else []
            if line - 1 < len(lines):
                here = lines[line - 1]
                col = len(here) - len(here.lstrip(" ")) + 1
        return Problem(self.path, line, col, "")

    # scalars ---------------------------------------------------------------

    @staticmethod
    def tag(node: ScalarNode) -> str:
        """The node's tag as YAML's core schema resolves it (a plain ``3`` is an int)."""
        if node.tag == _STR and not node.style:  # plain (None, or "" from libyaml): implicit
            resolved: str = _RESOLVER.resolve(  # type: ignore[no-untyped-call]
                ScalarNode, node.value, (True, False)
            )
            return resolved
        return str(node.tag)

    def string(self, node: Node, what: str) -> str | None:
        if not isinstance(node, ScalarNode) or self.tag(node) == _NULL:
            self.error(node, f"{what} must be a string")
            return None
        return self.substitute(node, node.value)

    def credential_file(self, name: str) -> tuple[Path | None, str]:
        """(the file ``${file:NAME}`` names, or None) and else why it can't be used.

        A relative NAME is a credential in ``$CREDENTIALS_DIRECTORY`` (systemd's
        ``LoadCredential=``), an absolute one a path.
        """
        if not name:
            return None, "${file:...} needs a file name"
        if os.path.isabs(name):
            return Path(name), ""
        if "/" in name:
            return None, f"${{file:{name}}}: a credential name has no '/'; give an absolute path"
        folder = self.env.get("CREDENTIALS_DIRECTORY")
        if not folder:
            return None, (
                f"${{file:{name}}}: CREDENTIALS_DIRECTORY is not set (systemd sets it for "
                "LoadCredential=; elsewhere set it or give an absolute path)"
            )
        return Path(folder) / name, ""

    def read_credential(self, path: Path) -> tuple[str | None, str]:
        """(the file's text without one trailing newline, or None) and else why not."""
        if path in self.files:
            return self.files[path], ""
        try:
            with path.open("rb") as f:
                data = f.read(MAX_CREDENTIAL_BYTES + 1)
        except OSError as exc:
            return None, f"can't read credential file {path}: {exc.strerror or exc}"
        if len(data) > MAX_CREDENTIAL_BYTES:
            return None, f"credential file {path} is larger than {MAX_CREDENTIAL_BYTES} bytes"
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return None, f"credential file {path} is not UTF-8 text"
        # Editors and `echo` end a file with a newline that is not part of the secret.
        text = text.removesuffix("\n").removesuffix("\r")
        self.files[path] = text
        return text, ""

    def substitute(self, node: ScalarNode, value: str) -> str | None:
        failed = False

        def repl(m: re.Match[str]) -> str:
            nonlocal failed
            if m.group(0) == "$$":
                return "$"
            result: str | None
            if m.group(2) is not None:
                name = m.group(2)
                result = self.env.get(name)
                problem = "" if result is not None else f"environment variable {name} is not set"
            else:
                path, problem = self.credential_file(m.group(1))
                result, problem = self.read_credential(path) if path else (None, problem)
            if result is None:
                self.error(node, problem, m.start())
                failed = True
                return ""
            if result:
                self.secrets.add(result)
            return result

        result = _SUBST.sub(repl, value)
        return None if failed else result

    def scalar(self, node: Node) -> Any:
        """The Python value of a scalar node (strings substituted); other nodes as they are."""
        if not isinstance(node, ScalarNode):
            return node
        tag = self.tag(node)
        if tag == _STR:
            return self.substitute(node, node.value)
        typed = ScalarNode(tag, node.value, node.start_mark, node.end_mark, node.style)
        return self.constructor.construct_object(typed, deep=True)

    def boolean(self, node: Node, what: str) -> bool | None:
        value = self.scalar(node)
        if isinstance(value, bool):
            return value
        self.error(node, f"{what} must be true or false")
        return None

    def integer(self, node: Node, what: str, minimum: int = 1) -> int | None:
        value = self.scalar(node)
        if isinstance(value, int) and not isinstance(value, bool) and value >= minimum:
            return value
        self.error(node, f"{what} must be a whole number >= {minimum}")
        return None

    def choice(self, node: Node, what: str, choices: tuple[str, ...]) -> str | None:
        value = self.string(node, what)
        if value is None or value in choices:
            return value
        self.error(node, f"{what} must be one of {', '.join(choices)}, got {value!r}")
        return None

    def duration(self, node: Node, what: str, minimum: float = 0.0) -> float | None:
        value = self.scalar(node)
        if value is None:
            self.error(node, f"{what} must be a duration like 30s, 10m, 1h, 2d")
            return None
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.error(node, f"{what}: {exc}")
            return None
        if seconds < minimum:
            self.error(node, f"{what} must be at least {format_duration(minimum)}")
            return None
        return seconds

    def size(self, node: Node, what: str, minimum: int) -> int | None:
        value = self.scalar(node)
        try:
            size = parse_size(value)
        except ValueError as exc:
            self.error(node, f"{what}: {exc}")
            return None
        if size < minimum:
            self.error(node, f"{what} must be at least {format_size(minimum)}")
            return None
        return size

    def interval(self, node: Node, what: str) -> float | str | None:
        """A poll interval: a duration of at least MIN_INTERVAL, or ``auto``."""
        if isinstance(node, ScalarNode) and node.value == AUTO:
            return AUTO
        return self.duration(node, what, MIN_INTERVAL)

    def string_list(self, node: Node, what: str) -> list[tuple[str, Node]]:
        """A list of strings (a single string counts as a list of one)."""
        if isinstance(node, ScalarNode):
            s = self.string(node, what)
            return [(s, node)] if s is not None else []
        if not isinstance(node, SequenceNode):
            self.error(node, f"{what} must be a list of strings")
            return []
        out = []
        for item in node.value:
            s = self.string(item, f"each item of {what}")
            if s is not None:
                if not s.strip():
                    self.error(item, f"{what} can't contain an empty string")
                    continue
                out.append((s, item))
        return out

    # mappings --------------------------------------------------------------

    def mapping(
        self, node: Node, what: str, known: tuple[str, ...] | None
    ) -> Iterator[tuple[str, Node, Node]]:
        """Yield (key, key node, value node); report non-mappings, unknown and duplicate keys."""
        if not isinstance(node, MappingNode):
            self.error(node, f"{what} must be a mapping")
            return
        seen: set[str] = set()
        for knode, vnode in node.value:
            key = knode.value if isinstance(knode, ScalarNode) else None
            if not isinstance(key, str):
                self.error(knode, f"{what}: keys must be strings")
                continue
            if key in seen:
                self.error(knode, f"{what}: duplicate key {key!r}")
                continue
            seen.add(key)
            if known is not None and key not in known:
                self.error(knode, f"{what}: unknown key {key!r} (known: {', '.join(known)})")
                continue
            yield key, knode, vnode


@dataclass(frozen=True, slots=True)
class Key:
    """One key of feeds.yaml: what the loader reads and ``monitor schema`` describes.

    ``kind`` says how the value is read (and which JSON Schema it gets):
    ``string``, ``boolean``, ``integer``, ``duration``, ``size``, ``choice``
    (one of ``choices``), ``strings`` (a string or a list of strings),
    ``feed_url``, ``urls`` (an apprise URL or a list of them), ``quiet_hours``,
    ``fields`` (a list of rule fields), ``listen`` (host:port). ``default`` and
    ``example`` are written as in feeds.yaml. ``minimum`` is in the value's unit (seconds, bytes).
    """

    name: str
    kind: str
    description: str
    default: object = None
    example: object = None
    minimum: float | None = None
    choices: tuple[str, ...] = ()


LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "text", "json")

# The one table of settings: the loader, `monitor check` and `monitor schema` read it.
SETTINGS: tuple[Key, ...] = (
    Key(
        "database",
        "string",
        "SQLite file (a relative path is next to feeds.yaml), or a postgresql:// URL",
        DEFAULT_DATABASE,
        "/var/lib/rss-monitor/monitor.db",
    ),
    Key(
        "interval",
        "interval",
        "default poll interval of a feed",
        "15m",
        "10m",
        MIN_INTERVAL,
    ),
    Key(
        "min_interval",
        "duration",
        "the shortest interval `interval: auto` picks",
        "5m",
        "2m",
        MIN_INTERVAL,
    ),
    Key(
        "max_interval",
        "duration",
        "the longest interval `interval: auto` picks",
        "6h",
        "1d",
        MIN_INTERVAL,
    ),
    Key("timeout", "duration", "per HTTP request (total deadline); more than 0", "20s", "30s"),
    Key("max_age", "duration", "entries published longer ago never alert", "2d", "1d", 0),
    Key("extract", "boolean", "fetch the article page and match its text too", True, False),
    Key(
        "allow_private_addresses",
        "boolean",
        "allow fetches to loopback, private and link-local addresses",
        False,
        True,
    ),
    Key(
        "retention",
        "duration",
        "how long history is kept: article text, entries, matches, sent alerts (an entry its"
        " feed still lists is kept)",
        "30d",
        "7d",
        0,
    ),
    Key("concurrency", "integer", "HTTP requests in flight", 50, 20, 1),
    Key("per_host", "integer", "HTTP requests in flight to one host", 2, 4, 1),
    Key("user_agent", "string", "HTTP User-Agent (default: rss-monitor/VERSION)", None, "..."),
    Key("max_bytes", "size", "response size cap, after decompression", "10MB", "20MB", 1),
    Key(
        "retry_delay",
        "duration",
        "first delivery retry; doubles with each failure, capped at an hour",
        "30s",
        "1m",
        0,
    ),
    Key("host_spacing", "duration", "pause between two requests to one host", "0.1s", "1s", 0),
    Key("workers", "integer", "worker processes (default: one per CPU, at most 4)", None, 2, 1),
    Key(
        "story_window",
        "duration",
        "the same story from several feeds alerts once per rule within this",
        "48h",
        "24h",
        0,
    ),
    Key("admin_notify", "string", "the notifier that gets operator notices", None, "ops"),
    Key(
        "admin_failures",
        "integer",
        "failed polls in a row before the operator hears of a feed",
        5,
        3,
        1,
    ),
    Key(
        "worker_memory",
        "size",
        "each worker's memory ceiling; 0: none, else at least 64MB",
        "512MB",
        "1GB",
        0,
    ),
    Key(
        "respect_ttl",
        "boolean",
        "let a feed's ttl or Cache-Control max-age lengthen its interval (up to "
        "4 times the configured one, at most a day); false: poll at the interval",
        True,
        False,
    ),
    Key("log_level", "choice", "of the daemon's log", "info", "debug", choices=LOG_LEVELS),
    Key(
        "log_format",
        "choice",
        "auto: text on a terminal, else one JSON object per line (journald, Loki)",
        "auto",
        "json",
        choices=LOG_FORMATS,
    ),
    Key(
        "metrics",
        "listen",
        "serve Prometheus metrics (/metrics) and a health check (/healthz) here while"
        " `monitor run` runs: host:port, [IPv6]:port, or :port for every interface;"
        " default: off",
        None,
        "127.0.0.1:9464",
    ),
)
NOTIFIER_KEYS: tuple[Key, ...] = (
    Key("url", "urls", "an apprise URL, or a list of them (each delivered on its own)"),
    Key(
        "quiet_hours",
        "quiet_hours",
        "alerts are held, never dropped, and sent as one message when it ends",
        example="22:00-07:00",
    ),
    Key(
        "timezone",
        "string",
        "of quiet_hours, digest and the times shown (default: the system's)",
        example="Europe/Berlin",
    ),
    Key(
        "max_per_hour",
        "integer",
        "past it, alerts fold into one message at the end of the hour",
        example=10,
        minimum=1,
    ),
    Key(
        "digest",
        "string",
        "collect matches and send them at this time: 'daily HH:MM', 'weekly DAY HH:MM' "
        "or a cron expression",
        example="daily 08:00",
    ),
    Key("template", "string", "the body, as a Jinja2 template"),
)
_FEED_URL = re.compile(r"https?://[^/\s]+", re.IGNORECASE)
FEED_KEYS: tuple[Key, ...] = (
    Key("url", "feed_url", "the feed's http(s) URL", example="https://example.com/feed.xml"),
    Key(
        "name",
        "string",
        "what rules (feeds:), `poll --feed` and `feeds pause` call it; default: its own title",
    ),
    Key(
        "interval",
        "interval",
        "overrides settings.interval",
        minimum=MIN_INTERVAL,
    ),
    Key("extract", "boolean", "overrides settings.extract"),
    Key("tags", "strings", "names rules can refer to several feeds by", example=["de", "tech"]),
)
RULE_KEYS: tuple[Key, ...] = (
    Key("name", "string", "the rule's name, shown in alerts"),
    Key("keywords", "strings", "any one of these terms", example=["DeepSeek", "DeepSeek R1"]),
    Key("all", "strings", "every one of these terms as well"),
    Key("exclude", "strings", "none of these terms"),
    Key(
        "query",
        "string",
        "instead of keywords/all/exclude: AND, OR, NOT (upper case), -term, quotes, "
        "parentheses, field prefixes",
        example='DeepSeek AND (Azure OR "AI Foundry")',
    ),
    Key("fields", "fields", "where to look (default: title, summary, content)"),
    Key("feeds", "strings", "feed names or tags (default: every feed)"),
    Key("notify", "strings", "notifier names (default: every notifier)"),
    Key(
        "priority",
        "choice",
        "high: past quiet hours, caps and digests",
        "normal",
        choices=("normal", "high"),
    ),
)
_SETTINGS = {k.name: k for k in SETTINGS}
_SETTINGS_KEYS = tuple(_SETTINGS)
_NOTIFIER_KEYS = tuple(k.name for k in NOTIFIER_KEYS)
_FEED_KEYS = tuple(k.name for k in FEED_KEYS)
_RULE_KEYS = tuple(k.name for k in RULE_KEYS)
_QUIET = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def _settings(ld: _Loader, node: Node) -> Settings:
    values: dict[str, Any] = {}
    for key, _k, v in ld.mapping(node, "settings", _SETTINGS_KEYS):
        spec = _SETTINGS[key]
        what = f"settings.{key}"
        value: Any
        if spec.kind == "string":
            value = ld.string(v, what)
            if key == "admin_notify" and value is not None:
                ld.nodes["admin_notify"] = v
        elif spec.kind == "boolean":
            value = ld.boolean(v, what)
        elif spec.kind == "integer":
            value = ld.integer(v, what, int(spec.minimum or 1))
        elif spec.kind == "choice":
            value = ld.choice(v, what, spec.choices)
        elif spec.kind == "size":
            value = ld.size(v, what, int(spec.minimum or 0))
            if key == "worker_memory" and value and value < MIN_WORKER_MEMORY:
                ld.error(
                    v,
                    "settings.worker_memory must be 0 (no limit) or at least "
                    f"{format_size(MIN_WORKER_MEMORY)}",
                )
                value = None
        elif spec.kind == "listen":
            text = ld.string(v, what)
            value = None
            if text is not None:
                try:
                    value = parse_listen(text)
                except ValueError as exc:
                    ld.error(v, f"{what}: {exc}")
        elif key == "interval":
            value = ld.interval(v, "settings.interval")
        else:
            value = ld.duration(v, what, spec.minimum or 0.0)
            if key == "timeout" and value == 0:
                ld.error(v, "settings.timeout must be more than 0")
                value = None
        if value is not None:
            values[key] = value
    return Settings(**values)


def _notifiers(ld: _Loader, node: Node) -> tuple[NotifierSpec, ...]:
    out = []
    for name, _k, v in ld.mapping(node, "notifiers", None):
        what = f"notifier {name!r}"
        policy: dict[str, Any] = {}
        policy_nodes: dict[str, Node] = {}
        url_node: Node | None = v
        if isinstance(v, MappingNode):  # {url: ..., quiet_hours: ..., ...}
            url_node = None
            for key, _kn, pv in ld.mapping(v, what, _NOTIFIER_KEYS):
                if key == "url":
                    url_node = pv
                else:
                    policy[key] = _notifier_policy(ld, what, key, pv)
                    policy_nodes[key] = pv
            if url_node is None:
                ld.error(v, f"{what} needs a url")
        urls = ld.string_list(url_node, what) if url_node is not None else []
        if not urls and isinstance(url_node, SequenceNode):
            ld.error(url_node, f"{what} needs at least one apprise URL")
        for url, unode in urls:
            ld.secrets.update(url_credentials(url))
            if not ld.check_notifiers:
                problem = notify.url_shape_problem(url)
                if problem:
                    ld.error(unode, f"{what}: {problem}")
                else:
                    ld.unchecked.append(UncheckedUrl(url, what, ld.place(unode)))
                continue
            problem = notify.url_problem(url)
            if problem:
                ld.error(unode, f"{what}: {problem}")
            else:  # what apprise itself would mask (a Slack token too short to look like one)
                ld.secrets.update(notify.private_parts(url))
        spec = NotifierSpec(
            name, tuple(u for u, _ in urls), **{k: x for k, x in policy.items() if x is not None}
        )
        if spec.digest is not None:  # checked with its timezone, once both are read
            from monitor.scheduler import digest_trigger

            try:
                digest_trigger(spec.digest, spec.timezone)
            except ValueError as exc:
                ld.error(policy_nodes["digest"], f"{what}: digest: {exc}")
        out.append(spec)
    return tuple(out)


def _notifier_policy(ld: _Loader, what: str, key: str, node: Node) -> Any:
    """One policy key of a notifier in the mapping form; None (and an error) when wrong."""
    if key == "max_per_hour":
        return ld.integer(node, f"{what}: max_per_hour")
    value = ld.string(node, f"{what}: {key}")
    if value is None:
        return None
    if key == "quiet_hours":
        m = _QUIET.match(value)
        if not m or int(m[1]) > 23 or int(m[3]) > 23 or int(m[2]) > 59 or int(m[4]) > 59:
            ld.error(node, f'{what}: quiet_hours must look like "22:00-07:00", got {value!r}')
            return None
        start, end = int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4])
        if start == end:
            ld.error(node, f"{what}: quiet_hours can't start and end at the same time")
            return None
        return (start, end)
    if key == "timezone":
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            ld.error(node, f"{what}: unknown timezone {value!r} (e.g. Europe/Berlin, UTC)")
            return None
        return value
    if key == "digest":
        return value
    # template: compiled now, so a mistake is a config error with its line
    from jinja2 import TemplateSyntaxError

    from monitor.render import Format, compile_template

    try:
        compile_template(value, Format.TEXT)
    except TemplateSyntaxError as exc:
        ld.error(node, f"{what}: template: {exc.message}", template_line=exc.lineno)
        return None
    return value


def _feeds(ld: _Loader, node: Node) -> tuple[FeedSpec, ...]:
    if not isinstance(node, SequenceNode):
        ld.error(node, "feeds must be a list")
        return ()
    out: list[FeedSpec] = []
    seen_urls: dict[str, Node] = {}
    seen_names: set[str] = set()
    for item in node.value:
        if isinstance(item, ScalarNode):  # a bare URL is a feed with defaults
            url = ld.string(item, "a feed")
            values: dict[str, Any] = {"url": url}
            url_node: Node = item
        else:
            values = {}
            url_node = item
            for key, knode, v in ld.mapping(item, "a feed", _FEED_KEYS):
                if key in ("url", "name"):
                    values[key] = ld.string(v, f"feed {key}")
                    if key == "url":
                        url_node = v
                    elif values[key] is not None:
                        if values[key] in seen_names:
                            ld.error(v, f"duplicate feed name {values[key]!r}")
                        seen_names.add(values[key])
                elif key == "interval":
                    values[key] = ld.interval(v, "feed interval")
                elif key == "extract":
                    values[key] = ld.boolean(v, "feed extract")
                elif key == "tags":
                    values[key] = tuple(s for s, _ in ld.string_list(v, "feed tags"))
                del knode
            if "url" not in values:
                ld.error(item, "a feed needs a url")
                continue
        url = values.get("url")
        if url is None:
            continue
        if "@" in url or "?" in url:  # a feed URL's only credentials: a password, a query
            ld.secrets.update(url_credentials(url, notifier=False))
        if not _FEED_URL.match(url):
            ld.error(url_node, f"feed url must start with http:// or https://, got {url!r}")
            continue
        if url in seen_urls:
            ld.error(url_node, f"duplicate feed url {url!r}")
            continue
        seen_urls[url] = url_node
        out.append(FeedSpec(**{k: _own(v) for k, v in values.items() if v is not None}))
    return tuple(out)


def _own(value: Any) -> Any:
    """A copy of a feed's strings that shares no memory with the YAML nodes.

    The nodes of a 100,000-feed config take some 200 MB while it loads. Feeds that
    kept the nodes' own strings kept a few live objects in nearly every block of that
    memory, so none of it went back to the system: the daemon stayed at 240 MB with
    23 MB in use. With copies made while the nodes live (in fresh blocks), the nodes'
    blocks empty out entirely when they go (70 MB)."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "surrogatepass")
    if isinstance(value, tuple):
        return tuple(_own(v) for v in value)
    return value


def _rules(
    ld: _Loader, node: Node, notifiers: set[str], feed_refs: set[str], nameless: int = 0
) -> tuple[RuleSpec, ...]:
    if not isinstance(node, SequenceNode):
        ld.error(node, "rules must be a list")
        return ()
    out: list[RuleSpec] = []
    names: set[str] = set()
    for item in node.value:
        values: dict[str, Any] = {}
        nodes: dict[str, Node] = {}
        item_nodes: dict[str, list[Node]] = {}
        for key, _k, v in ld.mapping(item, "a rule", _RULE_KEYS):
            nodes[key] = v
            if key in ("name", "query"):
                values[key] = ld.string(v, f"rule {key}")
            elif key == "priority":
                values[key] = ld.string(v, "rule priority")
                if values[key] not in (None, "high", "normal"):
                    ld.error(v, f"rule priority must be high or normal, got {values[key]!r}")
                    values[key] = None
            else:
                pairs = ld.string_list(v, f"rule {key}")
                values[key] = tuple(s for s, _ in pairs)
                item_nodes[key] = [n for _, n in pairs]
        if not isinstance(item, MappingNode):
            continue
        name = values.get("name")
        if "name" not in values:
            ld.error(item, "a rule needs a name")
            continue
        if name is None:
            continue
        if name in names:
            ld.error(nodes["name"], f"duplicate rule name {name!r}")
        names.add(name)
        for i, n in enumerate(values.get("notify", ())):
            if n not in notifiers:
                ld.error(item_nodes["notify"][i], f"rule {name!r}: no notifier named {n!r}")
        for i, f in enumerate(values.get("feeds", ())):
            if f not in feed_refs:
                hint = (
                    f" ({nameless} feeds have no name: and are shown under their own title,"
                    " which a rule can't name: give the feed a name:)"
                    if nameless
                    else ""
                )
                ld.error(item_nodes["feeds"][i], f"rule {name!r}: no feed or tag named {f!r}{hint}")
        spec = RuleSpec(**{k: v for k, v in values.items() if v is not None})
        if spec.query is not None:
            for offset, word in lowercase_operators(spec.query):
                ld.warn(
                    nodes["query"],
                    f"rule {name!r}: {word!r} in the query is a word to look for, not an "
                    f"operator (operators are upper case: {word.upper()})",
                    offset,
                )
        for problem in validate_rule(spec):  # terms, regexes, query syntax, the rule's shape
            pnode: Node | None = nodes.get(problem.key, item)
            if problem.index is not None and problem.key in item_nodes:
                pnode = item_nodes[problem.key][problem.index]
            ld.error(pnode, f"rule {name!r}: {problem.message}", problem.offset)
        out.append(spec)
    return tuple(out)


def parse_config(
    text: str, path: Path, env: Mapping[str, str], *, check_notifiers: bool = True
) -> Config:
    """Validate the text of a feeds.yaml; raises ConfigError with every problem.

    ``path`` is kept as given: relative paths in the config resolve next to it.
    ``check_notifiers=False`` checks notifier URLs only for their shape, without
    loading apprise (``monitor poll``, which may have nothing to send): the
    Config lists them in ``unchecked`` for ``check_notifiers``.
    """
    # The nodes and records of a big config make no reference cycles, but their
    # number triggers the cyclic collector again and again: at 100,000 feeds it
    # cost a second of the 2.5 s. Paused here, and back as it was after.
    collecting = gc.isenabled()
    gc.disable()
    try:
        return _parse_config(text, path, env, check_notifiers)
    finally:
        if collecting:
            gc.enable()


def _parse_config(text: str, path: Path, env: Mapping[str, str], check_notifiers: bool) -> Config:
    ld = _Loader(path.name, env, check_notifiers)
    ld.text = text
    try:
        try:
            root = yaml.compose(text, Loader=_LOADER)
        except yaml.YAMLError:  # PyYAML's own parser says what is wrong better than libyaml
            root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML: {exc.problem}"
        if "escape character" in str(exc.problem):
            message += (
                r" (inside double quotes a backslash starts an escape: write a regular "
                r"expression in single quotes, '/R\d+/')"
            )
        raise ConfigError([Problem(path.name, line, col, message)]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(path.name, 1, 1, f"YAML: {exc}")]) from None
    if root is None:
        raise ConfigError([Problem(path.name, 1, 1, "the config is empty")])
    sections: dict[str, Node] = {}
    for key, _k, v in ld.mapping(root, "the config", ("settings", "notifiers", "feeds", "rules")):
        sections[key] = v
    settings = _settings(ld, sections["settings"]) if "settings" in sections else Settings()
    notifiers = _notifiers(ld, sections["notifiers"]) if "notifiers" in sections else ()
    feeds = _feeds(ld, sections["feeds"]) if "feeds" in sections else ()
    refs = {f.name for f in feeds if f.name} | {t for f in feeds for t in f.tags}
    notifier_names = {n.name for n in notifiers}
    nameless = sum(1 for f in feeds if not f.name)
    rules = (
        _rules(ld, sections["rules"], notifier_names, refs, nameless) if "rules" in sections else ()
    )
    if settings.admin_notify is not None and settings.admin_notify not in notifier_names:
        ld.error(
            ld.nodes.get("admin_notify"),
            f"settings.admin_notify: no notifier named {settings.admin_notify!r}",
        )
    secrets = frozenset(ld.secrets)
    if ld.problems:
        # A message may quote a substituted value ("got '...'"): never a secret.
        redactor = Redactor(secrets)
        problems = [replace(p, message=redactor.redact(p.message)) for p in ld.problems]
        raise ConfigError(problems, secrets=secrets, database=settings.database)
    return Config(
        path=path,
        settings=settings,
        notifiers=notifiers,
        feeds=feeds,
        rules=rules,
        secrets=secrets,
        files=tuple(ld.files),
        warnings=tuple(
            replace(w, message=Redactor(secrets).redact(w.message))
            for w in sorted(ld.warnings, key=lambda p: (p.line, p.column))
        ),
        unchecked=tuple(ld.unchecked),
    )


def load_config(path: Path, env: Mapping[str, str], *, check_notifiers: bool = True) -> Config:
    """Read and validate feeds.yaml; raises ConfigError (also for an unreadable file).

    The path is made absolute but not resolved (see ``Config``). For
    ``check_notifiers`` see ``parse_config``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(path), 1, 1, f"can't read the config: {exc}")]) from None
    return parse_config(text, Path(os.path.abspath(path)), env, check_notifiers=check_notifiers)


def check_notifiers(config: Config) -> Config:
    """``config`` with the notifier URLs it left ``unchecked`` shown to apprise, as
    ``load_config`` does by default: the same errors at the same places (raised as
    ConfigError), and what apprise masks in them added to ``secrets``."""
    if not config.unchecked:
        return config
    secrets = set(config.secrets)
    problems = []
    for u in config.unchecked:
        problem = notify.url_problem(u.url)
        if problem:
            problems.append(replace(u.place, message=f"{u.what}: {problem}"))
        else:
            secrets.update(notify.private_parts(u.url))
    if problems:
        redactor = Redactor(frozenset(secrets))
        problems = [replace(p, message=redactor.redact(p.message)) for p in problems]
        raise ConfigError(problems, secrets=frozenset(secrets), database=config.settings.database)
    return replace(config, secrets=frozenset(secrets), unchecked=())


def _interval(interval: float | str, s: Settings) -> str:
    if interval == AUTO:
        return f"auto, {format_duration(s.min_interval)}-{format_duration(s.max_interval)}"
    return format_duration(float(interval))


def _policies(n: NotifierSpec) -> str:
    parts = []
    if n.digest:
        parts.append(f"digest {n.digest}")
    if n.quiet_hours:
        (a, b) = n.quiet_hours
        parts.append(f"quiet {a // 60:02}:{a % 60:02}-{b // 60:02}:{b % 60:02}")
    if n.max_per_hour:
        parts.append(f"at most {n.max_per_hour} messages an hour")
    if parts or n.timezone:
        parts.append(f"timezone {n.timezone or 'of the system'}")
    if n.template:
        parts.append("own template")
    return "; ".join(parts)


def summary(
    config: Config,
    display: Callable[[str], str] = lambda url: url,
    database: DatabaseChoice | None = None,
) -> str:
    """A short human summary of a valid config, for ``monitor check``."""
    s = config.settings
    db = f"{database.location} ({database.source})" if database else config.database_path()
    lines = [
        f"{config.path}: OK",
        f"  database: {db}",
        f"  feeds: {len(config.feeds)} (default interval {_interval(s.interval, s)}, "
        f"extract {'on' if s.extract else 'off'}, max_age {format_duration(s.max_age)})",
    ]
    for f in config.feeds:
        lines.append(f"    - {f.label()} [{_interval(f.interval or s.interval, s)}]")
    lines.append(f"  rules: {len(config.rules)}")
    for r in config.rules:
        lines.append(f"    - {r.name}" + (" (priority high)" if r.priority == "high" else ""))
    if config.notifiers:
        lines.append(f"  notifiers: {len(config.notifiers)}")
        for n in config.notifiers:
            lines.append(f"    - {n.name}: {', '.join(display(u) for u in n.urls)}")
            policies = _policies(n)
            if policies:
                lines.append(f"      {policies}")
        if s.admin_notify:
            lines.append(
                f"  operator notices: {s.admin_notify} (a feed failing {s.admin_failures}"
                " polls in a row, and recovering; an alert given up; a reload that fails)"
            )
    else:
        lines.append("  notifiers: none (alerts are printed to the console)")
    if s.metrics is not None:
        where = "every interface" if not s.metrics.host else s.metrics.host
        port = "a free port (logged)" if not s.metrics.port else f"port {s.metrics.port}"
        lines.append(f"  metrics: /metrics and /healthz on {where}, {port} (monitor run)")
    return "\n".join(lines)
