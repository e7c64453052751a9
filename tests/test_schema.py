"""The JSON Schema of feeds.yaml: shipped, in step with the loader, and agreeing with
`monitor check` on every mistake a schema can express."""

from __future__ import annotations

import dataclasses
import re
import textwrap
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from monitor.cli import main
from monitor.config import (
    SETTINGS,
    ConfigError,
    Settings,
    parse_config,
    parse_duration,
    parse_size,
)
from monitor.schema import CHECK_ONLY, feeds_schema, render

# apprise's email plugin imports the deprecated imghdr module when it first loads.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

REPO = Path(__file__).resolve().parent.parent
VALIDATOR = jsonschema.Draft7Validator(feeds_schema())


def _schema_errors(data: Any) -> list[str]:
    return [e.message for e in VALIDATOR.iter_errors(data)]


def _check_ok(text: str) -> bool:
    try:
        parse_config(text, Path("/etc/rss-monitor/feeds.yaml"), {"TOKEN": "s3cr3t-t0ken-value"})
    except ConfigError:
        return False
    return True


def test_the_schema_is_a_valid_draft_7_schema() -> None:
    jsonschema.Draft7Validator.check_schema(feeds_schema())


def test_the_shipped_schema_file_is_what_monitor_schema_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == render()
    # `make schema` writes it; the copy at the root (a link) is what feeds.yaml names
    assert (REPO / "monitor" / "feeds.schema.json").read_text() == printed
    assert (REPO / "feeds.schema.json").read_text() == printed


def test_the_shipped_feeds_yaml_names_the_schema_and_validates() -> None:
    text = (REPO / "feeds.yaml").read_text()
    assert text.splitlines()[0] == "# yaml-language-server: $schema=feeds.schema.json"
    assert _schema_errors(yaml.safe_load(text)) == []
    assert _check_ok(text)


def _readme_examples() -> list[tuple[str, Any]]:
    """Every YAML example of the README, a fragment (a list of rules) as the config it is
    part of."""
    readme = (REPO / "README.md").read_text()
    out = []
    for i, m in enumerate(re.finditer(r"```yaml\n(.*?)```", readme, re.S)):
        first = m.group(1).splitlines()[0].strip()
        if re.fullmatch(r"# [\w.-]+\.ya?ml", first) and first != "# feeds.yaml":
            continue  # another program's file (prometheus.yml, its alert rules)
        data = yaml.safe_load(textwrap.dedent(m.group(1)))
        if isinstance(data, list):  # "  - name: ...": rules shown on their own
            data = {"rules": data}
        out.append((f"example {i + 1}: {m.group(1).splitlines()[0].strip()}", data))
    return out


@pytest.mark.parametrize(("where", "data"), _readme_examples(), ids=lambda v: str(v)[:40])
def test_every_readme_example_validates(where: str, data: Any) -> None:
    assert _schema_errors(data) == [], where


def test_the_readme_has_yaml_examples_to_check() -> None:
    assert len(_readme_examples()) >= 2


def test_every_setting_is_in_the_table_with_a_default_the_loader_agrees_with() -> None:
    assert {k.name for k in SETTINGS} == {f.name for f in dataclasses.fields(Settings)}
    defaults = Settings()
    for key in SETTINGS:
        if key.default is None or key.name == "database":
            continue
        expected = getattr(defaults, key.name)
        if key.kind in ("duration", "interval"):
            assert parse_duration(key.default) == expected, key.name
        elif key.kind == "size":
            assert parse_size(key.default) == expected, key.name
        else:
            assert key.default == expected, key.name
        assert key.description, key.name


# --------------------------------------------------------------------------
# check and schema agree

FEED = "feeds:\n  - url: https://example.org/rss\n"

AGREE: list[tuple[str, str, bool]] = [
    ("minimal", FEED, True),
    ("a bare feed URL", "feeds:\n  - https://example.org/rss\n", True),
    (
        "every setting",
        "settings:\n"
        + "".join(
            f"  {k.name}: {k.example!r}\n"
            if not isinstance(k.example, str)
            else f"  {k.name}: {k.example}\n"
            for k in SETTINGS
            if k.name != "admin_notify"
        ),
        True,
    ),
    (
        "durations as numbers and strings",
        "settings:\n  interval: 90\n  timeout: 1h30m\n  max_age: 2D\n  host_spacing: 500ms\n",
        True,
    ),
    ("sizes", "settings:\n  max_bytes: 64KiB\n  worker_memory: 0\n", True),
    ("unknown top-level key", "feed:\n  - https://example.org/rss\n", False),
    ("unknown setting", "settings:\n  intervall: 10m\n", False),
    ("a bad duration", "settings:\n  interval: 10x\n", False),
    ("a negative duration", "settings:\n  max_age: -1\n", False),
    ("interval below a second", "settings:\n  interval: 0.5\n", False),
    ("timeout of 0", "settings:\n  timeout: 0\n", False),
    ("a bad size", "settings:\n  max_bytes: lots\n", False),
    ("worker_memory below 64 MB", "settings:\n  worker_memory: 1024\n", False),
    ("a boolean as a word", "settings:\n  extract: sometimes\n", False),
    ("concurrency 0", "settings:\n  concurrency: 0\n", False),
    ("concurrency as text", "settings:\n  concurrency: many\n", False),
    ("log_format", "settings:\n  log_format: json\n  log_level: debug\n", True),
    ("an unknown log_format", "settings:\n  log_format: xml\n", False),
    ("an unknown log_level", "settings:\n  log_level: verbose\n", False),
    ("respect_ttl", "settings:\n  respect_ttl: false\n", True),
    ("metrics on loopback", "settings:\n  metrics: 127.0.0.1:9464\n", True),
    ("metrics on IPv6", "settings:\n  metrics: '[::1]:9464'\n", True),
    ("metrics on every interface", "settings:\n  metrics: :9464\n", True),
    ("metrics as a bare port", "settings:\n  metrics: 9464\n", False),
    ("metrics past the last port", "settings:\n  metrics: 127.0.0.1:65536\n", False),
    ("metrics with a scheme", "settings:\n  metrics: http://127.0.0.1:9464\n", False),
    ("metrics on a bad IPv6", "settings:\n  metrics: '[::g]:9464'\n", False),
    ("settings as a list", "settings: [interval]\n", False),
    ("feeds as a mapping", "feeds:\n  url: https://example.org/rss\n", False),
    ("a feed without url", "feeds:\n  - name: x\n", False),
    ("a feed url without http", "feeds:\n  - url: ftp://example.org/rss\n", False),
    ("a feed with a bad interval", FEED + "    interval: soon\n", False),
    ("a feed's unknown key", FEED + "    tag: [x]\n", False),
    ("tags as one string", FEED + "    tags: tech\n", True),
    ("an empty tag", FEED + "    tags: ['']\n", False),
    ("notifier string", "notifiers:\n  chat: json://127.0.0.1:8099/hook\n", True),
    ("notifier list", "notifiers:\n  chat: [json://127.0.0.1:1/a, json://127.0.0.1:1/b]\n", True),
    ("notifier empty list", "notifiers:\n  chat: []\n", False),
    ("notifier without a scheme", "notifiers:\n  chat: 127.0.0.1:8099/hook\n", False),
    ("notifier as a number", "notifiers:\n  chat: 5\n", False),
    (
        "notifier mapping",
        "notifiers:\n  night:\n    url: json://127.0.0.1:8099/hook\n"
        "    quiet_hours: '22:00-07:00'\n    timezone: Europe/Berlin\n    max_per_hour: 10\n"
        "    digest: daily 08:00\n    template: '{{ count }}'\n",
        True,
    ),
    ("notifier mapping without url", "notifiers:\n  night:\n    max_per_hour: 10\n", False),
    (
        "notifier policy typo",
        "notifiers:\n  night:\n    url: json://127.0.0.1:1/a\n    quiet: '22:00-07:00'\n",
        False,
    ),
    (
        "quiet_hours malformed",
        "notifiers:\n  n:\n    url: json://127.0.0.1:1/a\n    quiet_hours: 22-7\n",
        False,
    ),
    (
        "quiet_hours past midnight",
        "notifiers:\n  n:\n    url: json://127.0.0.1:1/a\n    quiet_hours: '25:00-07:00'\n",
        False,
    ),
    (
        "max_per_hour 0",
        "notifiers:\n  n:\n    url: json://127.0.0.1:1/a\n    max_per_hour: 0\n",
        False,
    ),
    (
        "a secret from the environment",
        "notifiers:\n  chat: json://bot:${TOKEN}@127.0.0.1/h\n",
        True,
    ),
    ("rule with keywords", "rules:\n  - name: r\n    keywords: [DeepSeek]\n", True),
    ("rule with all only", "rules:\n  - name: r\n    all: [Azure]\n", True),
    ("rule with one keyword string", "rules:\n  - name: r\n    keywords: DeepSeek\n", True),
    ("rule with query", "rules:\n  - name: r\n    query: 'DeepSeek AND Azure'\n", True),
    ("rule without terms", "rules:\n  - name: r\n    exclude: [x]\n", False),
    ("rule with empty keywords", "rules:\n  - name: r\n    keywords: []\n", False),
    (
        "rule with query and keywords",
        "rules:\n  - name: r\n    query: a\n    keywords: [b]\n",
        False,
    ),
    ("rule without name", "rules:\n  - keywords: [x]\n", False),
    ("rule key typo", "rules:\n  - name: r\n    keyword: [x]\n", False),
    ("rule fields", "rules:\n  - name: r\n    keywords: [x]\n    fields: [title, link]\n", True),
    ("rule unknown field", "rules:\n  - name: r\n    keywords: [x]\n    fields: [body]\n", False),
    ("rule empty fields", "rules:\n  - name: r\n    keywords: [x]\n    fields: []\n", False),
    ("rule priority", "rules:\n  - name: r\n    keywords: [x]\n    priority: high\n", True),
    (
        "rule priority urgent",
        "rules:\n  - name: r\n    keywords: [x]\n    priority: urgent\n",
        False,
    ),
    ("rules as a mapping", "rules:\n  r:\n    keywords: [x]\n", False),
    ("an empty keyword", "rules:\n  - name: r\n    keywords: ['  ']\n", False),
]


@pytest.mark.parametrize(
    ("text", "valid"), [(t, v) for _n, t, v in AGREE], ids=[n for n, *_ in AGREE]
)
def test_check_and_the_schema_agree(text: str, valid: bool) -> None:
    data = yaml.safe_load(text)
    assert (_schema_errors(data) == []) == valid, _schema_errors(data)
    assert _check_ok(text) == valid


# Mistakes only `monitor check` can catch (CHECK_ONLY): the schema lets them through.
CHECK_ONLY_CASES: list[tuple[str, str]] = [
    ("a substituted value that is no duration", "settings:\n  interval: ${TOKEN}x\n"),
    ("an unset variable", "notifiers:\n  chat: json://bot:${UNSET_VAR}@127.0.0.1/h\n"),
    ("apprise refuses the URL", "notifiers:\n  chat: nosuchservice://x\n"),
    ("duplicate feed url", FEED + "  - url: https://example.org/rss\n"),
    (
        "duplicate rule name",
        "rules:\n  - name: r\n    keywords: [a]\n  - name: r\n    keywords: [b]\n",
    ),
    ("unknown notifier in a rule", "rules:\n  - name: r\n    keywords: [a]\n    notify: [x]\n"),
    ("unknown feed in a rule", "rules:\n  - name: r\n    keywords: [a]\n    feeds: [x]\n"),
    ("admin_notify naming no notifier", "settings:\n  admin_notify: ops\n"),
    ("a bad regex", "rules:\n  - name: r\n    keywords: ['/R(\\d+/']\n"),
    ("a bad query", "rules:\n  - name: r\n    query: 'a AND (b'\n"),
    ("interval as a string below a second", "settings:\n  interval: 500ms\n"),
    (
        "an unknown time zone",
        "notifiers:\n  n:\n    url: json://127.0.0.1:1/a\n    timezone: Mars/Olympus\n",
    ),
    (
        "a digest that is no schedule",
        "notifiers:\n  n:\n    url: json://127.0.0.1:1/a\n    digest: sometimes\n",
    ),
    (
        "a template that doesn't compile",
        "notifiers:\n  n:\n    url: json://127.0.0.1:1/a\n    template: '{% for %}'\n",
    ),
]


@pytest.mark.parametrize(
    "text", [t for _n, t in CHECK_ONLY_CASES], ids=[n for n, _t in CHECK_ONLY_CASES]
)
def test_what_only_check_catches_passes_the_schema_and_fails_check(text: str) -> None:
    assert _schema_errors(yaml.safe_load(text)) == []
    assert not _check_ok(text)


def test_the_schema_says_what_only_check_catches() -> None:
    description = feeds_schema()["description"]
    assert all(item in description for item in CHECK_ONLY)
