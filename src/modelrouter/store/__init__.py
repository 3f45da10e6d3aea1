"""Shared state of all gateway processes: routing tables and the audit log.

``open_store(url)`` picks the implementation from the URL scheme; nothing connects until the
store is first used (or :meth:`Store.open` is awaited).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelrouter.errors import ConfigError
from modelrouter.store.base import AuditBounds, RolloutRecord, RoutingRecord, Store, Watch

if TYPE_CHECKING:
    from modelrouter.store.base import Clock

__all__ = ["AuditBounds", "RolloutRecord", "RoutingRecord", "Store", "Watch", "open_store"]

SCHEMES = ("memory", "sqlite", "postgresql", "postgres")


def open_store(url: str, *, clock: Clock | None = None, timeout: float | None = None) -> Store:
    """The store for ``url``: ``memory://``, ``sqlite:///path.db`` (relative to the current
    directory), ``postgresql://user@host:port/db[?schema=NAME]``.

    ``timeout`` bounds how long connecting to PostgreSQL may take (``server.storeTimeout``).

    Raises :class:`~modelrouter.errors.ConfigError` for any other scheme, or when the driver
    for PostgreSQL (``pip install 'modelrouter[postgres]'``) is missing.
    """
    import time

    now = clock or time.time
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in SCHEMES:
        raise ConfigError(
            f"unsupported store {url!r}: use sqlite:///path, postgresql://... or memory://",
            field="server.store",
        )
    if scheme == "memory":
        from modelrouter.store.memory import MemoryStore

        return MemoryStore(clock=now)
    if scheme == "sqlite":
        from modelrouter.store.sqlite import SQLiteStore, sqlite_path

        return SQLiteStore(sqlite_path(url), clock=now)
    try:
        from modelrouter.store.postgres import PostgresStore
    except ImportError as exc:
        raise ConfigError(
            f"store {scheme}:// needs psycopg 3: pip install 'modelrouter[postgres]' ({exc})",
            field="server.store",
        ) from exc
    if timeout is None:
        return PostgresStore(url, clock=now)
    return PostgresStore(url, clock=now, connect_timeout=timeout)
