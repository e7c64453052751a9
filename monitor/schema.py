"""The JSON Schema of feeds.yaml, built from the key tables ``monitor check`` reads.

Editors (VS Code's YAML extension, any yaml-language-server client) complete
keys and flag mistakes as you type when feeds.yaml starts with::

    # yaml-language-server: $schema=feeds.schema.json

``monitor schema`` prints it; the package ships it as ``monitor/feeds.schema.json``
(``make schema`` writes that file again). Pure: data in, data out.

A schema sees one file and no environment, so some mistakes only ``monitor
check`` catches (see ``CHECK_ONLY``). Where a value may come from ``${NAME}``
or ``${file:NAME}``, a string holding ``${`` is let through: its value is only
known when the config is loaded.
"""

from __future__ import annotations

import json
from typing import Any

from monitor.config import (
    AUTO,
    FEED_KEYS,
    NOTIFIER_KEYS,
    RULE_KEYS,
    SETTINGS,
    Key,
    format_duration,
)
from monitor.query import FIELDS

DRAFT = "http://json-schema.org/draft-07/schema#"  # what editors support best

# What only `monitor check` finds: the schema can't see the environment, other
# files, apprise or the meaning of a string.
CHECK_ONLY = (
    "an unset ${NAME} or an unreadable ${file:NAME}",
    "an apprise URL apprise refuses",
    "duplicate keys, feed URLs, feed names and rule names",
    "a rule naming a notifier, feed or tag that doesn't exist; admin_notify naming no notifier",
    "regular expressions, query syntax, and a query that matches without its terms",
    "minimums of durations and sizes written as strings (interval: 500ms)",
    "unknown time zones, impossible digest schedules, quiet_hours that start and end together",
    "Jinja2 templates that don't compile",
    "a settings.metrics host that is not an IP address or host name",
)

# ECMA 262 regexes (no inline flags): units in either case.
_NUMBER = r"\d+(\.\d+)?"
_UNIT = r"([mM][sS]|[sSmMhHdDwW])"
DURATION_PATTERN = rf"^\s*({_NUMBER}\s*{_UNIT}\s*)+$|^\s*{_NUMBER}\s*$"
SIZE_PATTERN = rf"^\s*{_NUMBER}\s*[kKmMgGtT]?([iI]?[bB])?\s*$"
_HOUR = r"([01]?\d|2[0-3]):[0-5]\d"
QUIET_PATTERN = rf"^\s*{_HOUR}\s*-\s*{_HOUR}\s*$"
SUBSTITUTION = r"\$\{"  # ${NAME} or ${file:NAME}: known only when loaded
FEED_URL_PATTERN = rf"^[hH][tT][tT][pP][sS]?://[^/\s]+|{SUBSTITUTION}"
APPRISE_URL_PATTERN = rf"://|{SUBSTITUTION}"
_PORT = r"([0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
LISTEN_PATTERN = rf"^\s*(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]*):{_PORT}\s*$"


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


def _substituted(pattern: str) -> str:
    return f"{pattern}|{SUBSTITUTION}"


def _with_docs(schema: dict[str, Any], key: Key, hint: str = "") -> dict[str, Any]:
    out = {"description": key.description + (f" ({hint})" if hint else ""), **schema}
    if key.default is not None:
        out["default"] = key.default
    if key.example is not None:
        out["examples"] = [key.example]
    return out


def _strings(pattern: str | None = None) -> dict[str, Any]:
    """A string or a list of them (a single string counts as a list of one)."""
    item: dict[str, Any] = {"type": "string", "pattern": pattern or r"\S"}
    return {"anyOf": [item, {"type": "array", "items": item}]}


def value_schema(key: Key) -> dict[str, Any]:
    """The JSON Schema of one key's value, with its description, default and example."""
    minimum = key.minimum
    hint = ""
    if key.kind == "string":
        schema: dict[str, Any] = {"type": "string"}
    elif key.kind == "boolean":
        schema = {"type": "boolean"}
    elif key.kind == "integer":
        schema = {"type": "integer", "minimum": int(minimum or 1)}
    elif key.kind == "choice":
        schema = {"enum": list(key.choices)}
    elif key.kind in ("duration", "interval"):
        number: dict[str, Any] = {"type": "number", "minimum": _number(minimum or 0)}
        if key.name == "timeout":
            number = {"type": "number", "exclusiveMinimum": 0}
        hint = "a duration: 30s, 10m, 1h, 2d, 1h30m, or seconds"
        if minimum:
            hint += f"; at least {format_duration(minimum)}"
        options: list[dict[str, Any]] = [
            number,
            {"type": "string", "pattern": _substituted(DURATION_PATTERN)},
        ]
        if key.kind == "interval":
            hint += "; or auto: by how often the feed publishes"
            options.append({"const": AUTO})
        schema = {"anyOf": options}
    elif key.kind == "size":
        number = {"type": "integer", "minimum": int(minimum or 0)}
        if key.name == "worker_memory":
            number = {"type": "integer", "anyOf": [{"const": 0}, {"minimum": 64 * 1024 * 1024}]}
        hint = "bytes, or 512MB, 1GB, 64KiB: units count in 1024s"
        schema = {"anyOf": [number, {"type": "string", "pattern": _substituted(SIZE_PATTERN)}]}
    elif key.kind == "strings":
        schema = _strings()
    elif key.kind == "urls":
        url = {"type": "string", "pattern": APPRISE_URL_PATTERN}
        schema = {"anyOf": [url, {"type": "array", "items": url, "minItems": 1}]}
    elif key.kind == "feed_url":
        schema = {"type": "string", "pattern": FEED_URL_PATTERN}
    elif key.kind == "quiet_hours":
        schema = {"type": "string", "pattern": _substituted(QUIET_PATTERN)}
    elif key.kind == "listen":
        schema = {"type": "string", "pattern": _substituted(LISTEN_PATTERN)}
        hint = "e.g. 127.0.0.1:9464, [::1]:9464, or :9464 for every interface"
    elif key.kind == "fields":
        field = {"enum": list(FIELDS)}
        schema = {"anyOf": [field, {"type": "array", "items": field, "minItems": 1}]}
    else:  # pragma: no cover - a key table names a kind this module doesn't know
        raise ValueError(f"no schema for kind {key.kind!r} of {key.name!r}")
    return _with_docs(schema, key, hint)


def _object(keys: tuple[Key, ...], description: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {k.name: value_schema(k) for k in keys},
        "additionalProperties": False,
        **extra,
    }


def _given(key: str) -> dict[str, Any]:
    """``key`` is there and not empty (an empty list counts as not given)."""
    return {
        "required": [key],
        "properties": {key: {"anyOf": [{"type": "string"}, {"type": "array", "minItems": 1}]}},
    }


def feeds_schema() -> dict[str, Any]:
    """The JSON Schema (draft 7) of feeds.yaml."""
    settings = _object(SETTINGS, "every key optional")
    url_schema = value_schema(NOTIFIER_KEYS[0])
    notifier_mapping = _object(
        NOTIFIER_KEYS, "an apprise URL (or several) with delivery policies", required=["url"]
    )
    notifier = {
        "description": "an apprise URL, a list of them, or a mapping with url: and policies",
        "anyOf": [*url_schema["anyOf"], notifier_mapping],
    }
    feed_url = value_schema(FEED_KEYS[0])
    feed = {
        "anyOf": [
            {**feed_url, "description": "a feed with every default: just its URL"},
            _object(FEED_KEYS, "a feed", required=["url"]),
        ]
    }
    rule = _object(
        RULE_KEYS,
        "an entry matches when any keywords term, every all term and no exclude term "
        "matches in its fields (or when its query does)",
        required=["name"],
    )
    rule["if"] = {"required": ["query"]}
    rule["then"] = {"not": {"anyOf": [_given("keywords"), _given("all"), _given("exclude")]}}
    rule["else"] = {"anyOf": [_given("keywords"), _given("all")]}
    return {
        "$schema": DRAFT,
        "title": "rss-monitor feeds.yaml",
        "description": "Which feeds to watch, what to look for, whom to tell. "
        "`monitor check` validates everything, also what a schema can't: "
        + "; ".join(CHECK_ONLY)
        + ".",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "settings": settings,
            "notifiers": {
                "type": "object",
                "description": "name -> apprise URL, list of URLs, or mapping with policies",
                "additionalProperties": notifier,
            },
            "feeds": {"type": "array", "items": feed},
            "rules": {"type": "array", "items": rule},
        },
    }


def render() -> str:
    """The schema as ``monitor schema`` prints it and ``monitor/feeds.schema.json`` holds it."""
    return json.dumps(feeds_schema(), indent=2, ensure_ascii=False) + "\n"
