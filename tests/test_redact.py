"""Masking notifier URLs and redacting secrets: tables of inputs and what must come out."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys

import pytest

from monitor import notify
from monitor.redact import (
    MASK,
    MIN_SECRET_LENGTH,
    RedactingFilter,
    Redactor,
    is_token_like,
    mask_url,
    redacted_stdio,
    url_credentials,
)

# apprise's email plugin imports the deprecated imghdr module when it first loads.
pytestmark = pytest.mark.filterwarnings("ignore:'imghdr' is deprecated:DeprecationWarning")

HOOK = "hk3f9a7c1e5d2b8a40"
TG = "123456789:AAFh2kP9xQ7mZ3vB8nL4cT6yR1wE5uI0oP"
SLACK = "TIiajkdnlazkcOXrIdevi7FQ"
DISCORD = "JHMHI8qBe7bk2ZwO5U711o3dV_jsXq"

# (URL, the secrets the config knows, what `check` and the log show)
MASKED = [
    pytest.param(
        f"json://bot:{HOOK}@127.0.0.1:8099/hook?+X-Api-Key={HOOK}",
        {HOOK},
        "json://bot:****@127.0.0.1:8099/hook?+X-Api-Key=****",
        id="json_user_info_and_header",
    ),
    pytest.param(
        "json://127.0.0.1:8099/hook",
        set(),
        "json://127.0.0.1:8099/hook",
        id="json_without_secrets_is_shown_as_written",
    ),
    pytest.param(
        "json://127.0.0.1:8099/short1",
        {"short1"},
        "json://127.0.0.1:8099/****",
        id="known_secret_as_a_whole_path_segment",
    ),
    pytest.param(
        "json://127.0.0.1:8099/hooks/a8f3k2m9x7q4w1e6",
        set(),
        "json://127.0.0.1:8099/hooks/****",
        id="token_like_path_segment_written_literally",
    ),
    pytest.param(
        "mailto://alerts:pw2024@127.0.0.1:2525?from=a@example.com&to=b@example.com&mode=insecure",
        set(),
        "mailto://alerts:****@127.0.0.1:2525?from=a@example.com&to=b@example.com&mode=insecure",
        id="mailto_password_masked_harmless_keys_kept_as_written",
    ),
    pytest.param(
        f"mailtos://{HOOK}:pw99x@mail.example.com?to=news@example.com",
        set(),
        "mailtos://****:****@mail.example.com?to=news@example.com",
        id="token_like_user",
    ),
    pytest.param(f"tgram://{TG}/12345", {TG}, "tgram://****/12345", id="telegram_bot_token"),
    pytest.param(
        f"slack://T1JJ3T3L2/A1BRTD4JD/{SLACK}/#general",
        {SLACK},
        "slack://****/****/****/#general",
        id="slack_tokens",
    ),
    pytest.param(
        f"discord://4174216298/{DISCORD}", {DISCORD}, "discord://****/****", id="discord_webhook"
    ),
    pytest.param(
        "ntfy://user:ntfy-pass-1@ntfy.example.com/topic?priority=high",
        {"ntfy-pass-1"},
        "ntfy://user:****@ntfy.example.com/topic?priority=high",
        id="ntfy_password_and_harmless_priority",
    ),
    pytest.param(
        "json://127.0.0.1:8099/hook?:token=abc",
        set(),
        "json://127.0.0.1:8099/hook?:token=****",
        id="payload_value_of_a_credential_named_key",
    ),
]


@pytest.mark.parametrize(("url", "secrets", "shown"), MASKED)
def test_notifier_url_is_masked_for_display(url: str, secrets: set[str], shown: str) -> None:
    masked = notify.mask(url, secrets)
    assert masked == shown
    for secret in secrets | url_credentials(url):
        assert secret not in masked


def test_our_pass_keeps_only_the_query_keys_written_and_masks_known_secrets() -> None:
    original = "json://h.example/hook?to=s3cretvalue&mode=x"
    shown = "json://h.example/hook?method=POST&to=s3cretvalue&mode=x&retry=0"
    assert mask_url(shown, original, {"s3cretvalue"}) == "json://h.example/hook?to=****&mode=x"


ONE_PLUGIN_URLS = [
    "mailto://127.0.0.1:2525?from=a@example.com&to=b@example.com&mode=insecure",
    "mailtos://user:pw123456@mail.example.com?to=news@example.com",
    "json://bot:pw@127.0.0.1:8099/hook?+X-Api-Key=abcdef123456",
    "tgram://123456789:abcdefg_hijklmnop/12345",
    "ntfys://ntfy.example.com/topic",
    "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general",
    "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",
    "mailto://",  # refused by the plugin: apprise says why
    "nosuchscheme://x",
    "https://discord.com/api/webhooks/4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",  # native
]


@pytest.mark.parametrize("url", ONE_PLUGIN_URLS)
def test_a_url_made_by_its_plugin_alone_is_what_apprise_makes_of_it(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def seen(u: str) -> tuple[object, ...]:
        sender: object = None
        if notify.url_problem(u) is None:
            s = notify.AppriseSender(u)
            sender = (s.format, s.max_body, s.min_interval)
        return (notify.url_problem(u), notify.private_parts(u), notify.mask(u), sender)

    by_plugin = seen(url)
    monkeypatch.setattr(notify, "_one_plugin", lambda url, asset: None)  # apprise's own add

    assert by_plugin == seen(url)


def test_an_email_url_loads_its_plugin_module_and_not_every_other() -> None:
    code = (
        "import sys; from monitor import notify; "
        "u = 'mailto://127.0.0.1:2525?from=a@example.com&to=b@example.com&mode=insecure'; "
        "assert notify.url_problem(u) is None; notify.AppriseSender(u); notify.mask(u); "
        "print(sorted(m for m in sys.modules if m.startswith('apprise.plugins.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = out.stdout
    assert "apprise.plugins.email" in loaded
    assert "apprise.plugins.slack" not in loaded and "apprise.plugins.telegram" not in loaded


def test_url_that_can_not_be_parsed_shows_at_most_its_scheme() -> None:
    assert mask_url("not a url", "not a url") == "****"
    assert notify.mask("nosuchscheme://user:pw@host") == "nosuchscheme://…"


CREDENTIALS = [
    (f"json://bot:{HOOK}@127.0.0.1:8099/hook?+X-Api-Key={HOOK}", {HOOK}),
    ("json://127.0.0.1:8099/hook?to=a@example.com&mode=insecure", set()),
    ("mailto://user:p%40ssw0rd@mail.example.com", {"p%40ssw0rd", "p@ssw0rd"}),
    (f"tgram://{TG}/12345", {TG}),
    (f"slack://T1JJ3T3L2/A1BRTD4JD/{SLACK}/#general", {SLACK}),
    (f"discord://4174216298/{DISCORD}", {DISCORD}),
    ("json://hooks.example-company-with-a-long-name.com/hook", set()),
    ("json://127.0.0.1/x?apikey=abc123", {"abc123"}),
]


@pytest.mark.parametrize(("url", "expected"), CREDENTIALS)
def test_credential_like_parts_of_a_notifier_url(url: str, expected: set[str]) -> None:
    assert url_credentials(url) == expected


def test_feed_url_credentials_are_its_password_and_credential_named_query_values() -> None:
    url = "https://reader:pa55word@news.example.com/feeds/a8f3k2m9x7q4w1e6?token=t0k3n99&page=2"
    assert url_credentials(url, notifier=False) == {"pa55word", "t0k3n99"}


@pytest.mark.parametrize(
    ("part", "token_like"),
    [
        ("hook", False),
        ("12345", False),
        ("a8f3k2m9x7q4", True),
        ("news2025@example.com", False),
        ("report-2025.html", False),
        ("a" * 32, True),
        ("TIiajkdnlazkcOXrIdevi7FQ", True),
        ("incoming-webhooks", False),
    ],
)
def test_token_like(part: str, token_like: bool) -> None:
    assert is_token_like(part) is token_like


def test_redactor_replaces_every_spelling_of_a_secret() -> None:
    secret = 'p@ss/w"rd+1'
    r = Redactor([secret])
    text = (
        f"raw {secret} url p%40ss%2Fw%22rd%2B1 path p%40ss/w%22rd%2B1 "
        f"plus p%40ss%2Fw%22rd%2B1 json {json.dumps(secret)} repr {secret!r}"
    )
    assert "p@ss" not in r.redact(text) and "p%40ss" not in r.redact(text)
    assert r.redact(text).count(MASK) == 6


def test_short_values_are_not_searched_for_in_free_text() -> None:
    short = "x" * (MIN_SECRET_LENGTH - 1)
    r = Redactor([short, "abcdef"])
    assert r.redact(f"{short} abcdef") == f"{short} {MASK}"
    assert r.secrets == {"abcdef"}


def test_longer_secret_is_replaced_whole_and_secrets_accumulate() -> None:
    r = Redactor(["secret-one"])
    r.add(["secret-one-and-more"])
    assert r.redact("a secret-one-and-more b secret-one") == f"a {MASK} b {MASK}"


def test_logging_filter_redacts_message_arguments_and_traceback() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactingFilter(Redactor(["tok-123456"])))
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("url=%s", "https://x/?t=tok-123456")
        try:
            raise ValueError("failed with tok-123456")
        except ValueError:
            logger.exception("boom %d", 1)
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    out = stream.getvalue()
    assert "tok-123456" not in out
    assert "url=https://x/?t=****" in out and "ValueError: failed with ****" in out


def test_redacted_stdio_covers_print_and_restores_the_streams(
    capsys: pytest.CaptureFixture[str],
) -> None:
    r = Redactor(["hunter2-xyz"])
    before = sys.stdout
    with redacted_stdio(r):
        print("password hunter2-xyz")
        print("err hunter2-xyz", file=sys.stderr)
        r.add(["added-later"])
        print("added-later")
    assert sys.stdout is before
    out, err = capsys.readouterr()
    assert out == "password ****\n****\n" and err == "err ****\n"
