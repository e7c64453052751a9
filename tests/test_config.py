"""feeds.yaml validation: tables of configs and the exact problems they must produce."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest

from monitor.config import (
    DEFAULT_WORKER_MEMORY,
    Config,
    ConfigError,
    DatabaseChoice,
    FeedSpec,
    choose_database,
    format_duration,
    format_size,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
)

# apprise's email plugin imports the deprecated imghdr module when it first loads.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

REPO = Path(__file__).resolve().parent.parent
CHAT = "json://127.0.0.1:8099/hook"


def _parse(text: str, env: Mapping[str, str] | None = None) -> Config:
    return parse_config(textwrap.dedent(text), Path("/etc/monitor/feeds.yaml"), env or {})


def _problems(text: str, env: Mapping[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _parse(text, env)
    return [str(p) for p in info.value.problems]


# --------------------------------------------------------------------------
# durations

DURATIONS = [
    ("30s", 30.0),
    ("10m", 600.0),
    ("1h", 3600.0),
    ("2d", 172800.0),
    ("1w", 604800.0),
    ("1h30m", 5400.0),
    (" 1h 30m ", 5400.0),
    ("30 s", 30.0),
    ("1.5h", 5400.0),
    ("500ms", 0.5),
    ("10M", 600.0),  # units are case-insensitive
    ("90", 90.0),
    (90, 90.0),
    (2.5, 2.5),
    (0, 0.0),
]


@pytest.mark.parametrize(("value", "seconds"), DURATIONS)
def test_parse_duration_accepts(value: object, seconds: float) -> None:
    assert parse_duration(value) == seconds


BAD_DURATIONS = ["10x", "", "h", "1h30", "1m1s1", "-5", "ten minutes", "1h,30m", None, True, -5]


@pytest.mark.parametrize("value", BAD_DURATIONS)
def test_parse_duration_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(90, "1m30s"), (3600, "1h"), (5400, "1h30m"), (172800, "2d"), (0.5, "0.5s")],
)
def test_format_duration_round_trips(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


SIZES = [
    (0, 0),
    (10485760, 10485760),
    ("10485760", 10485760),
    ("512MB", 512 * 1024 * 1024),
    ("1GB", 1024 * 1024 * 1024),
    ("768M", 768 * 1024 * 1024),
    ("1.5 GiB", 1536 * 1024 * 1024),
    ("64kb", 64 * 1024),
    ("100B", 100),
]


@pytest.mark.parametrize(("value", "size"), SIZES)
def test_parse_size_accepts_bytes_and_units_in_1024s(value: object, size: int) -> None:
    assert parse_size(value) == size


@pytest.mark.parametrize(
    "value", ["lots", "", "1 parsec", "MB", "-5MB", "1,5GB", -1, 1.5, True, None]
)
def test_parse_size_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_size(value)


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (512 * 1024 * 1024, "512 MB"),
        (1536 * 1024 * 1024, "1.5 GB"),
        (700 * 1024, "700 KB"),
        (99, "99 bytes"),
    ],
)
def test_format_size(size: int, text: str) -> None:
    assert format_size(size) == text


# --------------------------------------------------------------------------
# problems, exactly as the user sees them

PROBLEM_TABLE: list[tuple[str, str, list[str]]] = [
    (
        "unknown_top_level_key",
        """\
        feed:
          - https://example.org/rss
        """,
        [
            "feeds.yaml:1:1: the config: unknown key 'feed' "
            "(known: settings, notifiers, feeds, rules)"
        ],
    ),
    (
        "unknown_settings_key",
        """\
        settings:
          intervall: 10m
        """,
        [
            "feeds.yaml:2:3: settings: unknown key 'intervall' (known: database, interval, "
            "min_interval, max_interval, timeout, max_age, extract, allow_private_addresses, "
            "retention, concurrency, "
            "per_host, user_agent, max_bytes, retry_delay, host_spacing, workers, story_window, "
            "admin_notify, admin_failures, worker_memory, respect_ttl, log_level, log_format,"
            " metrics)"
        ],
    ),
    (
        "unknown_feed_key",
        """\
        feeds:
          - url: https://example.org/rss
            tag: [x]
        """,
        ["feeds.yaml:3:5: a feed: unknown key 'tag' (known: url, name, interval, extract, tags)"],
    ),
    (
        "unknown_rule_key",
        """\
        rules:
          - name: r
            keywords: [x]
            notifiers: [a]
        """,
        [
            "feeds.yaml:4:5: a rule: unknown key 'notifiers' (known: name, keywords, all, "
            "exclude, query, fields, feeds, notify, priority)"
        ],
    ),
    (
        "duplicate_key",
        """\
        settings:
          interval: 10m
          interval: 20m
        """,
        ["feeds.yaml:3:3: settings: duplicate key 'interval'"],
    ),
    (
        "bad_durations",
        """\
        settings:
          interval: 10x
          timeout: 0
          max_age: -1
        feeds:
          - url: https://example.org/rss
            interval: 0.5
        """,
        [
            "feeds.yaml:2:13: settings.interval: expected a duration like 30s, 10m, 1h, 2d, "
            "got '10x'",
            "feeds.yaml:3:12: settings.timeout must be more than 0",
            "feeds.yaml:4:12: settings.max_age: a duration can't be negative",
            "feeds.yaml:7:15: feed interval must be at least 1s",
        ],
    ),
    (
        "wrong_types",
        """\
        settings:
          extract: "yes please"
          concurrency: 0
          per_host: 1.5
          database: [a, b]
          workers: 0
        feeds:
          - url: https://example.org/rss
            extract: 1
            tags: {a: b}
        rules: {name: r}
        """,
        [
            "feeds.yaml:2:12: settings.extract must be true or false",
            "feeds.yaml:3:16: settings.concurrency must be a whole number >= 1",
            "feeds.yaml:4:13: settings.per_host must be a whole number >= 1",
            "feeds.yaml:5:13: settings.database must be a string",
            "feeds.yaml:6:12: settings.workers must be a whole number >= 1",
            "feeds.yaml:9:14: feed extract must be true or false",
            "feeds.yaml:10:11: feed tags must be a list of strings",
            "feeds.yaml:11:8: rules must be a list",
        ],
    ),
    (
        "sections_of_the_wrong_shape",
        """\
        settings: [interval]
        notifiers: json://127.0.0.1/x
        feeds: https://example.org/rss
        """,
        [
            "feeds.yaml:1:11: settings must be a mapping",
            "feeds.yaml:2:12: notifiers must be a mapping",
            "feeds.yaml:3:8: feeds must be a list",
        ],
    ),
    (
        "sizes_out_of_range",
        """\
        settings:
          max_bytes: 0
          worker_memory: 10MB
        """,
        [
            "feeds.yaml:2:14: settings.max_bytes must be at least 1 byte",
            "feeds.yaml:3:18: settings.worker_memory must be 0 (no limit) or at least 64 MB",
        ],
    ),
    (
        "sizes_that_are_not_sizes",
        """\
        settings:
          max_bytes: ten megabytes
          worker_memory: 1.5
        """,
        [
            "feeds.yaml:2:14: settings.max_bytes: expected a size like 512MB, 1GB or a number "
            "of bytes, got 'ten megabytes'",
            "feeds.yaml:3:18: settings.worker_memory: expected a size like 512MB, 1GB or a "
            "number of bytes, got 1.5",
        ],
    ),
    (
        "feed_urls",
        """\
        feeds:
          - url: https://example.org/rss
          - url: https://example.org/rss
          - ftp://example.org/rss
          - url: example.org/rss
          - name: no url here
        """,
        [
            "feeds.yaml:3:10: duplicate feed url 'https://example.org/rss'",
            "feeds.yaml:4:5: feed url must start with http:// or https://, "
            "got 'ftp://example.org/rss'",
            "feeds.yaml:5:10: feed url must start with http:// or https://, got 'example.org/rss'",
            "feeds.yaml:6:5: a feed needs a url",
        ],
    ),
    (
        "duplicate_feed_name",
        """\
        feeds:
          - url: https://a.example/rss
            name: News
          - url: https://b.example/rss
            name: News
        """,
        ["feeds.yaml:5:11: duplicate feed name 'News'"],
    ),
    (
        "duplicate_rule_name",
        """\
        rules:
          - name: AI
            keywords: [AI]
          - name: AI
            keywords: [KI]
        """,
        ["feeds.yaml:4:11: duplicate rule name 'AI'"],
    ),
    (
        "rule_names_missing_notifier_and_feed",
        f"""\
        notifiers:
          chat: {CHAT}
        feeds:
          - url: https://a.example/rss
            name: heise
            tags: [de]
        rules:
          - name: r
            keywords: [x]
            notify: [chat, mail]
            feeds: [heise, de, en]
        """,
        [
            "feeds.yaml:10:20: rule 'r': no notifier named 'mail'",
            "feeds.yaml:11:24: rule 'r': no feed or tag named 'en'",
        ],
    ),
    (
        "rule_without_terms",
        """\
        rules:
          - name: nothing
            exclude: [x]
          - name: empty lists
            keywords: []
            all: []
          - keywords: [x]
        """,
        [
            "feeds.yaml:2:5: rule 'nothing': a rule needs keywords, all or query",
            "feeds.yaml:5:15: rule 'empty lists': a rule needs keywords, all or query",
            "feeds.yaml:7:5: a rule needs a name",
        ],
    ),
    (
        "rule_with_query_and_lists",
        """\
        rules:
          - name: q
            query: "DeepSeek AND R1"
            keywords: [x]
        """,
        ["feeds.yaml:3:12: rule 'q': use either query or keywords/all/exclude, not both"],
    ),
    (
        "rule_unknown_field_and_empty_term",
        """\
        rules:
          - name: r
            keywords: [x, ""]
            fields: [title, body]
        """,
        [
            "feeds.yaml:3:19: rule keywords can't contain an empty string",
            "feeds.yaml:4:21: rule 'r': unknown field 'body' (title, summary, content, author, "
            "categories, link)",
        ],
    ),
    (
        "invalid_apprise_url",
        f"""\
        notifiers:
          chat: {CHAT}
          bogus: "nosuchscheme://x"
          several: ["{CHAT}", "notaurl"]
          empty: []
        """,
        [
            "feeds.yaml:3:10: notifier 'bogus': apprise does not accept this URL "
            "(scheme 'nosuchscheme')",
            "feeds.yaml:4:43: notifier 'several': apprise does not accept this URL "
            "(scheme 'notaurl')",
            "feeds.yaml:5:10: notifier 'empty' needs at least one apprise URL",
        ],
    ),
    (
        "yaml_syntax_error",
        """\
        feeds:
          - url: https://example.org/rss
           name: broken indent
        """,
        ["feeds.yaml:3:4: YAML: expected <block end>, but found '<block mapping start>'"],
    ),
    ("empty_file", "", ["feeds.yaml:1:1: the config is empty"]),
    ("not_a_mapping", "- a\n- b\n", ["feeds.yaml:1:1: the config must be a mapping"]),
]


@pytest.mark.parametrize(
    ("text", "expected"),
    [pytest.param(t, e, id=name) for name, t, e in PROBLEM_TABLE],
)
def test_config_reports_every_problem_with_its_place(text: str, expected: list[str]) -> None:
    assert _problems(text) == expected


def test_problems_of_all_sections_are_reported_at_once_in_file_order() -> None:
    text = """\
    rules:
      - name: r
        notify: [nobody]
    settings:
      interval: soon
    feeds:
      - url: gopher://x
    """
    assert _problems(text) == [
        "feeds.yaml:2:5: rule 'r': a rule needs keywords, all or query",
        "feeds.yaml:3:14: rule 'r': no notifier named 'nobody'",
        "feeds.yaml:5:13: settings.interval: expected a duration like 30s, 10m, 1h, 2d, got 'soon'",
        "feeds.yaml:7:10: feed url must start with http:// or https://, got 'gopher://x'",
    ]


# --------------------------------------------------------------------------
# ${ENV} substitution

ENV_TABLE: list[tuple[str, str, dict[str, str], list[str]]] = [
    (
        "unset_in_double_quotes",
        'notifiers:\n  mail: "mailtos://u:${SMTP_PASSWORD}@mail.example.com?to=a@example.com"\n',
        {},
        ["feeds.yaml:2:22: environment variable SMTP_PASSWORD is not set"],
    ),
    (
        "unset_in_plain_scalar",
        "notifiers:\n  mail: mailtos://u:${SMTP_PASSWORD}@mail.example.com?to=a@example.com\n",
        {},
        ["feeds.yaml:2:21: environment variable SMTP_PASSWORD is not set"],
    ),
    (
        "two_unset_in_one_string",
        "settings:\n  user_agent: '${A}-${B}'\n",
        {},
        [
            "feeds.yaml:2:16: environment variable A is not set",
            "feeds.yaml:2:21: environment variable B is not set",
        ],
    ),
    (
        "unset_in_a_list_item",
        "feeds:\n  - url: https://x.example/rss\n    tags: [ok, '${TAG}']\n",
        {},
        ["feeds.yaml:3:17: environment variable TAG is not set"],
    ),
]


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [pytest.param(t, env, e, id=name) for name, t, env, e in ENV_TABLE],
)
def test_unset_environment_variable_is_an_error_at_its_column(
    text: str, env: dict[str, str], expected: list[str]
) -> None:
    assert _problems(text, env) == expected


@pytest.mark.parametrize(
    ("value", "env", "result"),
    [
        ("${HOME}/monitor.db", {"HOME": "/home/u"}, "/home/u/monitor.db"),
        ("a${X}b${X}c", {"X": "-"}, "a-b-c"),
        ("$${NOT_ENV}", {}, "${NOT_ENV}"),
        ("price $$5", {}, "price $5"),
        ("$HOME stays", {"HOME": "/h"}, "$HOME stays"),  # only the braced form substitutes
        ("${EMPTY}x", {"EMPTY": ""}, "x"),
    ],
)
def test_environment_substitution(value: str, env: dict[str, str], result: str) -> None:
    config = _parse(f"settings:\n  user_agent: '{value}'\n", env)
    assert config.settings.user_agent == result


def test_substituted_value_is_validated_like_a_literal() -> None:
    config = _parse("settings:\n  interval: ${INTERVAL}\n", {"INTERVAL": "90s"})
    assert config.settings.interval == 90.0
    assert _problems("settings:\n  interval: ${INTERVAL}\n", {"INTERVAL": "soon"}) == [
        "feeds.yaml:2:13: settings.interval: expected a duration like 30s, 10m, 1h, 2d, got 'soon'"
    ]


def test_secret_from_environment_reaches_the_notifier_url() -> None:
    config = _parse(
        'notifiers:\n  chat: "json://127.0.0.1:8099/${HOOK}"\n', {"HOOK": "s3cr3t-path"}
    )
    assert config.notifiers[0].urls == ("json://127.0.0.1:8099/s3cr3t-path",)


# --------------------------------------------------------------------------
# secrets: ${file:...} and what the config records


def _creds(tmp_path: Path, **files: str) -> Path:
    folder = tmp_path / "credentials"
    folder.mkdir(exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_file_substitution_reads_a_credential_from_credentials_directory(tmp_path: Path) -> None:
    folder = _creds(tmp_path, smtp_password="s3cret-pw\n")
    config = _parse(
        'notifiers:\n  mail: "mailtos://u:${file:smtp_password}@mail.example.com?to=a@example.com"\n',
        {"CREDENTIALS_DIRECTORY": str(folder)},
    )
    assert config.notifiers[0].urls == ("mailtos://u:s3cret-pw@mail.example.com?to=a@example.com",)
    assert "s3cret-pw" in config.secrets
    assert config.files == (folder / "smtp_password",)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("tok\n", "tok"),
        ("tok\r\n", "tok"),
        ("tok\n\n", "tok\n"),  # only one newline is not part of the secret
        ("tok", "tok"),
        (" tok ", " tok "),
    ],
)
def test_file_substitution_strips_one_trailing_newline(
    tmp_path: Path, text: str, value: str
) -> None:
    path = tmp_path / "token"
    path.write_bytes(text.encode())
    config = _parse(f"settings:\n  user_agent: 'x${{file:{path}}}x'\n")  # an absolute path
    assert config.settings.user_agent == f"x{value}x"


def test_file_problems_are_config_errors_at_their_column(tmp_path: Path) -> None:
    folder = _creds(tmp_path)
    (folder / "latin1").write_bytes(b"caf\xe9")
    (folder / "huge").write_bytes(b"x" * (64 * 1024 + 1))
    text = (
        "settings:\n"
        "  user_agent: 'a${file:missing}'\n"
        "  database: ${file:sub/dir}\n"
        "notifiers:\n"
        "  a: json://127.0.0.1/${file:latin1}\n"
        "  b: json://127.0.0.1/${file:huge}\n"
        "  c: json://127.0.0.1/${file:}\n"
    )
    problems = _problems(text, {"CREDENTIALS_DIRECTORY": str(folder)})
    assert problems == [
        f"feeds.yaml:2:17: can't read credential file {folder}/missing: No such file or directory",
        "feeds.yaml:3:13: ${file:sub/dir}: a credential name has no '/'; give an absolute path",
        f"feeds.yaml:5:23: credential file {folder}/latin1 is not UTF-8 text",
        f"feeds.yaml:6:23: credential file {folder}/huge is larger than 65536 bytes",
        "feeds.yaml:7:23: ${file:...} needs a file name",
    ]
    assert _problems("settings:\n  user_agent: ${file:token}\n") == [
        "feeds.yaml:2:15: ${file:token}: CREDENTIALS_DIRECTORY is not set (systemd sets it for "
        "LoadCredential=; elsewhere set it or give an absolute path)"
    ]


def test_every_substituted_value_and_url_credential_is_a_secret(tmp_path: Path) -> None:
    folder = _creds(tmp_path, hook="file-hook-token")
    config = _parse(
        """\
        settings:
          user_agent: "monitor ${UA}"
        notifiers:
          chat: "json://bot:${PW}@127.0.0.1:8099/${file:hook}"
          tg: "tgram://123456789:AAFh2kP9xQ7mZ3vB8nL4cT6yR1wE5uI0oP/12345"
        feeds:
          - url: "https://news.example.com/feed?token=literal-tok"
        """,
        {"UA": "agent-string", "PW": "env-password", "CREDENTIALS_DIRECTORY": str(folder)},
    )
    assert config.secrets == {
        "agent-string",
        "env-password",
        "file-hook-token",
        "123456789:AAFh2kP9xQ7mZ3vB8nL4cT6yR1wE5uI0oP",
        "literal-tok",
    }


def test_config_error_never_quotes_a_substituted_secret() -> None:
    with pytest.raises(ConfigError) as info:
        _parse(
            "settings:\n  interval: ${INTERVAL}\n  database: state.db\n",
            {"INTERVAL": "hunter2-secret"},
        )
    assert "hunter2-secret" not in str(info.value)
    assert str(info.value) == (
        "feeds.yaml:2:13: settings.interval: expected a duration like 30s, 10m, 1h, 2d, got '****'"
    )
    assert info.value.secrets == {"hunter2-secret"}
    assert info.value.database == "state.db"  # so `status` still finds the store


# --------------------------------------------------------------------------
# where the config and the database are


def test_symlinked_config_keeps_its_path_and_resolves_relative_paths_next_to_the_link(
    tmp_path: Path,
) -> None:
    target = tmp_path / "store" / "v1"
    target.mkdir(parents=True)
    (target / "feeds.yaml").write_text("settings:\n  database: monitor.db\n")
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "feeds.yaml").symlink_to(target / "feeds.yaml")
    config = load_config(etc / "feeds.yaml", {})
    assert config.path == etc / "feeds.yaml"
    assert config.database_path() == str(etc / "monitor.db")


DATABASES = [
    pytest.param(
        "x.db", {"MONITOR_DB": "/env/m.db"}, "state.db", "{cwd}/x.db", "--db", id="option"
    ),
    pytest.param(
        None, {"MONITOR_DB": "/env/m.db"}, "state.db", "/env/m.db", "MONITOR_DB", id="env"
    ),
    pytest.param(None, {"MONITOR_DB": "rel.db"}, None, "{cwd}/rel.db", "MONITOR_DB", id="env_rel"),
    pytest.param(
        None,
        {"MONITOR_DB": ""},
        "state.db",
        "/etc/rss/state.db",
        "settings.database in /etc/rss/feeds.yaml",
        id="setting",
    ),
    pytest.param(
        None,
        {},
        None,
        "/etc/rss/monitor.db",
        "the default: monitor.db next to /etc/rss/feeds.yaml, which sets no settings.database",
        id="default",
    ),
    pytest.param(
        "postgresql://db/m", {}, None, "postgresql://db/m", "--db", id="url_stays_as_it_is"
    ),
]


@pytest.mark.parametrize(("option", "env", "setting", "location", "source"), DATABASES)
def test_database_precedence_is_option_env_setting_default(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    option: str | None,
    env: dict[str, str],
    setting: str | None,
    location: str,
    source: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    choice = choose_database(Path("/etc/rss/feeds.yaml"), setting, option=option, env=env)
    assert choice == DatabaseChoice(location.format(cwd=tmp_path), source)


# --------------------------------------------------------------------------
# valid configs


def test_full_valid_config_becomes_typed_records() -> None:
    config = _parse(
        f"""\
        settings:
          interval: 10m
          max_age: 1d
          extract: false
          workers: 1
          worker_memory: 768M
          max_bytes: 20MB
        notifiers:
          chat: {CHAT}
          both: ["{CHAT}", "json://127.0.0.1:8099/other"]
        feeds:
          - https://bare.example/rss
          - url: https://www.heise.de/rss/heise-atom.xml
            name: heise online
            interval: 5m
            extract: true
            tags: [tech, de]
        rules:
          - name: Azure AI
            all: Azure
            keywords: [KI, AI]
            exclude: [Stellenangebot]
            fields: [title]
            feeds: [tech]
            notify: [chat]
        """
    )
    assert config.settings.interval == 600.0
    assert config.settings.max_age == 86400.0
    assert config.settings.extract is False
    assert config.settings.workers == 1
    assert config.settings.worker_memory == 768 * 1024 * 1024
    assert config.settings.max_bytes == 20 * 1024 * 1024
    assert [n.name for n in config.notifiers] == ["chat", "both"]
    assert config.notifiers[1].urls == (CHAT, "json://127.0.0.1:8099/other")
    bare, heise = config.feeds
    assert bare == FeedSpec(url="https://bare.example/rss")
    assert heise == FeedSpec(
        url="https://www.heise.de/rss/heise-atom.xml",
        name="heise online",
        interval=300.0,
        extract=True,
        tags=("tech", "de"),
    )
    assert config.feed_interval(bare) == 600.0 and config.feed_interval(heise) == 300.0
    assert config.feed_extract(bare) is False and config.feed_extract(heise) is True
    (rule,) = config.rules
    assert rule.all == ("Azure",)  # a single string is a list of one
    assert rule.keywords == ("KI", "AI")
    assert rule.fields == ("title",)
    assert rule.notify == ("chat",)


def test_empty_sections_give_defaults() -> None:
    config = _parse("settings: {}\nnotifiers: {}\nfeeds: []\nrules: []\n")
    assert config.feeds == () and config.rules == () and config.notifiers == ()
    assert config.settings.interval == 15 * 60.0
    assert config.settings.worker_memory == DEFAULT_WORKER_MEMORY == 512 * 1024 * 1024
    off = _parse("settings: {worker_memory: 0, max_bytes: 1048576}\n").settings
    assert (off.worker_memory, off.max_bytes) == (0, 1048576)


@pytest.mark.parametrize(
    ("database", "expected"),
    [
        ("monitor.db", "{dir}/monitor.db"),
        ("state/monitor.db", "{dir}/state/monitor.db"),
        ("/var/lib/monitor/m.db", "/var/lib/monitor/m.db"),
        ("'~/m.db'", "{home}/m.db"),
        ("postgresql://db.example/monitor", "postgresql://db.example/monitor"),
        ("':memory:'", ":memory:"),
    ],
)
def test_database_path_resolves_next_to_feeds_yaml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, database: str, expected: str
) -> None:
    cfg = tmp_path / "conf" / "feeds.yaml"
    cfg.parent.mkdir()
    cfg.write_text(f"settings:\n  database: {database}\n", encoding="utf-8")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the working directory must not matter
    config = load_config(Path("../conf/feeds.yaml"), {})
    assert config.database_path() == expected.format(dir=cfg.parent.resolve(), home=Path.home())


def test_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing, {})
    (problem,) = info.value.problems
    assert problem.line == 1 and "can't read the config" in problem.message


# --------------------------------------------------------------------------
# through the real command line


def _cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("MONITOR_CONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=REPO,
        timeout=60,
    )


def test_check_prints_every_problem_and_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        textwrap.dedent(
            """\
            settings:
              interval: 10x
            notifiers:
              mail: "mailtos://u:${NO_SUCH_SECRET_VAR}@mail.example.com?to=a@example.com"
            feeds:
              - url: https://example.org/rss
              - url: https://example.org/rss
            rules:
              - name: r
                keywords: [x]
                notify: [chat]
            """
        ),
        encoding="utf-8",
    )
    done = _cli("check", "-c", str(cfg))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "feeds.yaml:2:13: settings.interval: expected a duration like 30s, 10m, 1h, 2d, got '10x'",
        "feeds.yaml:4:22: environment variable NO_SUCH_SECRET_VAR is not set",
        "feeds.yaml:7:10: duplicate feed url 'https://example.org/rss'",
        "feeds.yaml:11:14: rule 'r': no notifier named 'chat'",
    ]
    assert done.stdout == ""


def test_check_of_a_valid_config_exits_0_with_a_summary(tmp_path: Path) -> None:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text(
        "feeds:\n  - url: https://example.org/rss\n    name: Example\n"
        "rules:\n  - name: r\n    keywords: [x]\n",
        encoding="utf-8",
    )
    done = _cli("check", "-c", str(cfg))
    assert done.returncode == 0, done.stderr
    assert f"database: {tmp_path.resolve()}/monitor.db" in done.stdout
    assert "- Example [15m]" in done.stdout


def test_config_option_before_the_command_is_honoured(tmp_path: Path) -> None:
    cfg = tmp_path / "feeds.yaml"
    cfg.write_text("settings:\n  interval: 10x\n", encoding="utf-8")
    done = _cli("-c", str(cfg), "check")
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "feeds.yaml:2:13: settings.interval: expected a duration like 30s, 10m, 1h, 2d, got '10x'"
    ]


def test_shipped_example_config_is_valid() -> None:
    example = REPO / "feeds.yaml"
    if not example.exists():
        pytest.skip("feeds.yaml not in this checkout yet")
    env = {"SMTP_PASSWORD": "x", **os.environ}
    config = load_config(example, env)
    assert config.feeds, "the example should watch at least one feed"
    assert config.rules, "the example should have at least one rule"


# --------------------------------------------------------------------------
# notifier policies (the mapping form), rule priority, operator notices


def test_a_notifier_with_policies_is_a_mapping_and_the_plain_forms_stay() -> None:
    config = _parse(
        """
        settings: {admin_notify: ops, story_window: 12h, admin_failures: 3}
        notifiers:
          night: {url: "json://127.0.0.1:9/hook", quiet_hours: "22:00-07:00",
                  timezone: Europe/Berlin, max_per_hour: 10}
          team:
            url: ["json://127.0.0.1:9/a", "json://127.0.0.1:9/b"]
            digest: weekly mon 08:00
            template: |
              {% for it in items %}- {{ it.title }}
              {% endfor %}
          ops: "json://127.0.0.1:9/ops"
          both: ["json://127.0.0.1:9/c", "json://127.0.0.1:9/d"]
        rules:
          - {name: Outage, keywords: [Ausfall], priority: high}
          - {name: Other, keywords: [x]}
        """
    )
    night, team, ops, both = config.notifiers
    assert (night.urls, night.quiet_hours, night.timezone, night.max_per_hour) == (
        ("json://127.0.0.1:9/hook",),
        (22 * 60, 7 * 60),
        "Europe/Berlin",
        10,
    )
    assert team.urls == ("json://127.0.0.1:9/a", "json://127.0.0.1:9/b")
    assert team.digest == "weekly mon 08:00" and team.template is not None
    assert ops.urls == ("json://127.0.0.1:9/ops",) and ops.digest is None
    assert len(both.urls) == 2
    assert [r.priority for r in config.rules] == ["high", "normal"]
    s = config.settings
    assert (s.admin_notify, s.story_window, s.admin_failures) == ("ops", 12 * 3600.0, 3)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ('{url: "json://h/x", quiet_hours: "22-7"}', 'quiet_hours must look like "22:00-07:00"'),
        ('{url: "json://h/x", quiet_hours: "25:00-07:00"}', "quiet_hours must look like"),
        ('{url: "json://h/x", quiet_hours: "07:00-07:00"}', "can't start and end at the same time"),
        ('{url: "json://h/x", timezone: Mars/Olympus}', "unknown timezone 'Mars/Olympus'"),
        ('{url: "json://h/x", digest: "hourly"}', "digest: expected 'daily HH:MM'"),
        ('{url: "json://h/x", digest: "weekly funday 08:00"}', "digest: no such day 'funday'"),
        ('{url: "json://h/x", digest: "61 * * * *"}', "digest: not a cron expression"),
        ('{url: "json://h/x", max_per_hour: 0}', "max_per_hour must be a whole number >= 1"),
        ('{url: "json://h/x", colour: red}', "unknown key 'colour'"),
        ('{quiet_hours: "22:00-07:00"}', "notifier 'n' needs a url"),
    ],
)
def test_bad_notifier_policies_are_config_errors_with_their_place(
    snippet: str, expected: str
) -> None:
    (problem,) = _problems(f"notifiers:\n  n: {snippet}\n")
    assert problem.startswith("feeds.yaml:2:") and expected in problem, problem


def test_a_template_error_names_the_line_of_the_template_in_feeds_yaml() -> None:
    problems = _problems(
        """
        notifiers:
          n:
            url: "json://h/x"
            template: |
              line one
              {{ it.title ) }}
        """
    )
    assert problems == ["feeds.yaml:7:7: notifier 'n': template: unexpected ')'"], problems


def test_admin_notify_and_priority_must_name_what_exists() -> None:
    problems = _problems(
        """
        settings: {admin_notify: pager}
        notifiers: {ops: "json://h/x"}
        rules:
          - {name: R, keywords: [x], priority: urgent}
        """
    )
    assert problems == [
        "feeds.yaml:2:26: settings.admin_notify: no notifier named 'pager'",
        "feeds.yaml:5:40: rule priority must be high or normal, got 'urgent'",
    ]
