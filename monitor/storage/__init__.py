"""Storage: the protocol in ``base``, the embedded SQLite default in ``sqlite``."""

from __future__ import annotations

from monitor.storage.base import Storage, StorageError
from monitor.storage.sqlite import SQLiteStorage


def open_storage(url: str, *, readonly: bool = False) -> Storage:
    """Open the store at ``url`` (a path, or a URL; see ``config.choose_database``).

    ``readonly``: never create, migrate or write it (``SQLiteStorage``).
    """
    if url.startswith(("postgresql://", "postgres://")):
        raise StorageError("PostgreSQL storage is not available in this version; use a SQLite path")
    if url.startswith("sqlite:///"):
        url = url[len("sqlite:///") :]
    return SQLiteStorage(url, readonly=readonly)


__all__ = ["SQLiteStorage", "Storage", "StorageError", "open_storage"]
