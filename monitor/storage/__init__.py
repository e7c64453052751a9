"""Storage: the protocol in ``base``, the embedded SQLite default in ``sqlite``, and
PostgreSQL for several instances in ``postgres`` (loaded only when a URL asks for it:
psycopg is an optional extra)."""

from __future__ import annotations

from types import ModuleType
from urllib.parse import urlsplit, urlunsplit

from monitor.storage.base import Storage, StorageError
from monitor.storage.sqlite import SCHEMA_VERSION, SQLiteStorage

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def is_postgres(url: str) -> bool:
    """Whether ``url`` names a PostgreSQL database (else it is a SQLite path)."""
    return url.startswith(POSTGRES_SCHEMES)


def shown_location(location: str) -> str:
    """The database as messages name it: a PostgreSQL URL with its password masked."""
    if not is_postgres(location):
        return location
    try:
        parts = urlsplit(location)
        password = parts.password
    except ValueError:
        return "postgresql://…"
    if password is None:
        return location
    user, _, host = parts.netloc.rpartition("@")
    return urlunsplit(parts._replace(netloc=f"{user.partition(':')[0]}:****@{host}"))


def _postgres() -> ModuleType:
    try:
        from monitor.storage import postgres
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] == "psycopg":
            raise StorageError(
                "a postgresql:// database needs psycopg, which is not installed: "
                "pip install 'rss-monitor[postgresql]'"
            ) from None
        raise
    return postgres


def open_storage(url: str, *, readonly: bool = False) -> Storage:
    """Open the store at ``url`` (a path, or a URL; see ``config.choose_database``).

    ``readonly``: never create, migrate or write it. A SQLite file is created and
    migrated on open; a PostgreSQL database must have been migrated (``migrate``).
    """
    if is_postgres(url):
        store: Storage = _postgres().PostgresStorage(url, readonly=readonly)
        return store
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") :]
    return SQLiteStorage(url, readonly=readonly)


def migrate(url: str) -> tuple[int, int]:
    """Bring the store at ``url`` to this code's schema (``monitor db migrate``); returns
    the schema version before and after. SQLite migrates on every open anyway."""
    if is_postgres(url):
        before, after = _postgres().migrate(url)
        return int(before), int(after)
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") :]
    store = SQLiteStorage(url)
    try:
        return store.schema_version(), SCHEMA_VERSION
    finally:
        store.close()


__all__ = [
    "SQLiteStorage",
    "Storage",
    "StorageError",
    "is_postgres",
    "migrate",
    "open_storage",
    "shown_location",
]
