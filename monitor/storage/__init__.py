"""Storage: the protocol in ``base``, the embedded SQLite default in ``sqlite``."""

from __future__ import annotations

from monitor.storage.base import Storage, StorageError
from monitor.storage.sqlite import SQLiteStorage


def open_storage(url: str) -> Storage:
    """Open the store named by ``settings.database`` (a path, or a URL)."""
    if url.startswith(("postgresql://", "postgres://")):
        raise StorageError("PostgreSQL storage is not available in this version; use a SQLite path")
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") :]
    return SQLiteStorage(url)


__all__ = ["SQLiteStorage", "Storage", "StorageError", "open_storage"]
