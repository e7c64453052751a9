"""Fixtures for every test: no daemon outlives the test that started it; a feed server."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import FeedServer, running


@pytest.fixture(autouse=True)
def _no_daemon_left_behind() -> Iterator[None]:
    """A test that fails before it stops its `monitor run` would leave it running (and
    its workers, and its lock on the database): kill what is still there."""
    from tests.test_daemon import STARTED

    yield
    while STARTED:
        proc = STARTED.pop()
        if proc.poll() is None:
            proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)


# -- databases: the storage contract runs on SQLite and on PostgreSQL -----------------

POSTGRES_ENV = "MONITOR_TEST_POSTGRES"


def postgres_schema_url(url: str, schema: str) -> str:
    """``url`` with libpq's ``options`` setting the search_path to ``schema``."""
    option = f"options=-csearch_path%3D{schema}"
    return f"{url}{'&' if '?' in url else '?'}{option}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A PostgreSQL URL of an empty schema of its own (dropped after the test), from
    $MONITOR_TEST_POSTGRES; the test is skipped when that is unset."""
    import os
    import uuid

    base = os.environ.get(POSTGRES_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need {POSTGRES_ENV}=postgresql://... (a server to use)")
    import psycopg

    schema = f"test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True) as db:
        db.execute(f"CREATE SCHEMA {schema}")
    try:
        yield postgres_schema_url(base, schema)
    finally:
        with psycopg.connect(base, autocommit=True) as db:
            db.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh database with this code's schema, on each backend: a SQLite path, or a
    PostgreSQL URL (migrated, as `monitor db migrate` does)."""
    if request.param == "sqlite":
        return str(tmp_path / "monitor.db")
    from monitor.storage import migrate

    url: str = request.getfixturevalue("postgres_url")
    migrate(url)
    return url


@pytest.fixture
def server() -> Iterator[FeedServer]:
    """A FeedServer on loopback for the test (a module may define its own ``server``)."""
    feeds = FeedServer()
    with running(feeds):
        yield feeds
