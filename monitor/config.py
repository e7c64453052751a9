"""feeds.yaml: load, substitute ``${ENV}``, validate, report every error at once.

The loader works on PyYAML's node tree rather than on plain dicts, so every
problem can be reported as ``feeds.yaml:LINE:COL: message`` (SPEC section 4).
Loading is pure apart from reading the file: the environment is passed in.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from monitor import notify
from monitor.match import validate_rule
from monitor.types import RuleSpec

DEFAULT_INTERVAL = 15 * 60.0
DEFAULT_TIMEOUT = 20.0
DEFAULT_MAX_AGE = 2 * 86400.0
DEFAULT_RETENTION = 30 * 86400.0
MIN_INTERVAL = 1.0
MB = 1024 * 1024
# Each worker's memory ceiling (RLIMIT_DATA). Measured as the smallest limit
# that works: about 40 MB for an ordinary feed; 140 MB for an 11 MB feed of
# 50,000 items, 187 MB for an 8 MB page of 220,000 paragraphs (documents near
# max_bytes). 512 MB leaves room for several times that, and an entity bomb's
# 5 GB string fails at once.
DEFAULT_WORKER_MEMORY = 512 * MB
MIN_WORKER_MEMORY = 64 * MB  # below this a worker can't import its libraries and parse


class ConfigError(Exception):
    """The config has problems; ``problems`` holds every one, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line, p.column))
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
class Settings:
    """The ``settings:`` block; every key optional."""

    database: str = "monitor.db"
    interval: float = DEFAULT_INTERVAL
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
    worker_memory: int = DEFAULT_WORKER_MEMORY  # each worker's memory ceiling in bytes; 0: none


@dataclass(frozen=True, slots=True)
class FeedSpec:
    """One entry of ``feeds:``. ``name`` is None when the config gives none."""

    url: str
    name: str | None = None
    interval: float | None = None
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
    """A named notifier: one or more apprise URLs, each delivered on its own."""

    name: str
    urls: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Config:
    """A validated feeds.yaml."""

    path: Path
    settings: Settings = field(default_factory=Settings)
    notifiers: tuple[NotifierSpec, ...] = ()
    feeds: tuple[FeedSpec, ...] = ()
    rules: tuple[RuleSpec, ...] = ()

    def database_path(self) -> str:
        """The database URL or path; a relative path resolves next to feeds.yaml."""
        db = self.settings.database
        if "://" in db or db == ":memory:":
            return db
        p = Path(db).expanduser()
        return str(p if p.is_absolute() else self.path.parent / p)

    def feed_interval(self, feed: FeedSpec) -> float:
        return feed.interval if feed.interval is not None else self.settings.interval

    def feed_extract(self, feed: FeedSpec) -> bool:
        return feed.extract if feed.extract is not None else self.settings.extract


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


_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class _Loader:
    """Walks the YAML node tree; records problems instead of stopping at the first."""

    def __init__(self, path: str, env: Mapping[str, str]) -> None:
        self.path = path
        self.env = env
        self.problems: list[Problem] = []
        self.constructor = yaml.constructor.SafeConstructor()

    def error(self, node: Node | None, message: str, offset: int | None = None) -> None:
        line, col = (node.start_mark.line + 1, node.start_mark.column + 1) if node else (1, 1)
        if offset is not None and isinstance(node, ScalarNode):
            # Point inside the string: skip the opening quote of a quoted scalar.
            col += offset + (1 if node.style in ("'", '"') else 0)
        self.problems.append(Problem(self.path, line, col, message))

    # scalars ---------------------------------------------------------------

    def string(self, node: Node, what: str) -> str | None:
        if not isinstance(node, ScalarNode) or node.tag == "tag:yaml.org,2002:null":
            self.error(node, f"{what} must be a string")
            return None
        return self.substitute(node, node.value)

    def substitute(self, node: ScalarNode, value: str) -> str | None:
        failed = False

        def repl(m: re.Match[str]) -> str:
            nonlocal failed
            if m.group(0) == "$$":
                return "$"
            name = m.group(1)
            if name not in self.env:
                self.error(node, f"environment variable {name} is not set", m.start())
                failed = True
                return ""
            return self.env[name]

        result = _ENV.sub(repl, value)
        return None if failed else result

    def scalar(self, node: Node) -> Any:
        """The Python value of a scalar node (strings substituted); other nodes as they are."""
        if not isinstance(node, ScalarNode):
            return node
        if node.tag == "tag:yaml.org,2002:str":
            return self.substitute(node, node.value)
        return self.constructor.construct_object(node, deep=True)

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


_SETTINGS_KEYS = (
    "database",
    "interval",
    "timeout",
    "max_age",
    "extract",
    "allow_private_addresses",
    "retention",
    "concurrency",
    "per_host",
    "user_agent",
    "max_bytes",
    "retry_delay",
    "host_spacing",
    "workers",
    "worker_memory",
)
_FEED_KEYS = ("url", "name", "interval", "extract", "tags")
_RULE_KEYS = ("name", "keywords", "all", "exclude", "query", "fields", "feeds", "notify")


def _settings(ld: _Loader, node: Node) -> Settings:
    values: dict[str, Any] = {}
    for key, _k, v in ld.mapping(node, "settings", _SETTINGS_KEYS):
        value: Any
        if key in ("database", "user_agent"):
            value = ld.string(v, f"settings.{key}")
        elif key in ("extract", "allow_private_addresses"):
            value = ld.boolean(v, f"settings.{key}")
        elif key in ("concurrency", "per_host", "workers"):
            value = ld.integer(v, f"settings.{key}")
        elif key == "max_bytes":
            value = ld.size(v, "settings.max_bytes", 1)
        elif key == "worker_memory":
            value = ld.size(v, "settings.worker_memory", 0)
            if value and value < MIN_WORKER_MEMORY:
                ld.error(
                    v,
                    "settings.worker_memory must be 0 (no limit) or at least "
                    f"{format_size(MIN_WORKER_MEMORY)}",
                )
                value = None
        else:
            minimum = MIN_INTERVAL if key == "interval" else 0.0
            value = ld.duration(v, f"settings.{key}", minimum)
            if key == "timeout" and value == 0:
                ld.error(v, "settings.timeout must be more than 0")
                value = None
        if value is not None:
            values[key] = value
    return Settings(**values)


def _notifiers(ld: _Loader, node: Node) -> tuple[NotifierSpec, ...]:
    out = []
    for name, _k, v in ld.mapping(node, "notifiers", None):
        urls = ld.string_list(v, f"notifier {name!r}")
        if not urls and isinstance(v, SequenceNode):
            ld.error(v, f"notifier {name!r} needs at least one apprise URL")
        for url, unode in urls:
            problem = notify.url_problem(url)
            if problem:
                ld.error(unode, f"notifier {name!r}: {problem}")
        out.append(NotifierSpec(name, tuple(u for u, _ in urls)))
    return tuple(out)


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
                    values[key] = ld.duration(v, "feed interval", MIN_INTERVAL)
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
        if not re.match(r"https?://[^/\s]+", url, re.IGNORECASE):
            ld.error(url_node, f"feed url must start with http:// or https://, got {url!r}")
            continue
        if url in seen_urls:
            ld.error(url_node, f"duplicate feed url {url!r}")
            continue
        seen_urls[url] = url_node
        out.append(FeedSpec(**{k: v for k, v in values.items() if v is not None}))
    return tuple(out)


def _rules(
    ld: _Loader, node: Node, notifiers: set[str], feed_refs: set[str]
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
                ld.error(item_nodes["feeds"][i], f"rule {name!r}: no feed or tag named {f!r}")
        spec = RuleSpec(**{k: v for k, v in values.items() if v is not None})
        for problem in validate_rule(spec):  # terms, regexes, query syntax, the rule's shape
            pnode: Node | None = nodes.get(problem.key, item)
            if problem.index is not None and problem.key in item_nodes:
                pnode = item_nodes[problem.key][problem.index]
            ld.error(pnode, f"rule {name!r}: {problem.message}", problem.offset)
        out.append(spec)
    return tuple(out)


def parse_config(text: str, path: Path, env: Mapping[str, str]) -> Config:
    """Validate the text of a feeds.yaml; raises ConfigError with every problem."""
    ld = _Loader(path.name, env)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise ConfigError([Problem(path.name, line, col, f"YAML: {exc.problem}")]) from None
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
    rules = _rules(ld, sections["rules"], notifier_names, refs) if "rules" in sections else ()
    if ld.problems:
        raise ConfigError(ld.problems)
    return Config(path=path, settings=settings, notifiers=notifiers, feeds=feeds, rules=rules)


def load_config(path: Path, env: Mapping[str, str]) -> Config:
    """Read and validate feeds.yaml; raises ConfigError (also for an unreadable file)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(str(path), 1, 1, f"can't read the config: {exc}")]) from None
    return parse_config(text, path.resolve(), env)


def summary(config: Config, display: Callable[[str], str] = lambda url: url) -> str:
    """A short human summary of a valid config, for ``monitor check``."""
    s = config.settings
    lines = [
        f"{config.path}: OK",
        f"  database: {config.database_path()}",
        f"  feeds: {len(config.feeds)} (default interval {format_duration(s.interval)}, "
        f"extract {'on' if s.extract else 'off'}, max_age {format_duration(s.max_age)})",
    ]
    for f in config.feeds:
        lines.append(f"    - {f.label()} [{format_duration(config.feed_interval(f))}]")
    lines.append(f"  rules: {len(config.rules)}")
    for r in config.rules:
        lines.append(f"    - {r.name}")
    if config.notifiers:
        lines.append(f"  notifiers: {len(config.notifiers)}")
        for n in config.notifiers:
            lines.append(f"    - {n.name}: {', '.join(display(u) for u in n.urls)}")
    else:
        lines.append("  notifiers: none (alerts are printed to the console)")
    return "\n".join(lines)
