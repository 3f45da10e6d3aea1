"""Rollout state and lease locks in every store (PostgreSQL: the real server of the tests)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from modelrouter.errors import Conflict
from modelrouter.store import Store
from modelrouter.store.memory import MemoryStore
from modelrouter.store.postgres import PostgresStore
from modelrouter.store.sqlite import SQLiteStore

PG = "postgresql://postgres@127.0.0.1:5432/test"


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def check(make: Callable[[Clock], Store]) -> None:
    async def main() -> None:
        clock = Clock()
        store = make(clock)
        try:
            assert await store.get_rollout("r") is None
            rec = await store.put_rollout("r", {"phase": "Initialized"}, 0)
            assert rec.version == 1
            with pytest.raises(Conflict):
                await store.put_rollout("r", {"phase": "X"}, 0)
            rec = await store.put_rollout("r", {"phase": "Progressing", "weights": {"v2": 10}}, 1)
            got = await store.get_rollout("r")
            assert got is not None
            assert (got.version, got.state["weights"]) == (2, {"v2": 10})
            await store.put_rollout("a", {"phase": "Initialized"})
            assert [r.name for r in await store.list_rollouts()] == ["a", "r"]

            assert await store.try_lock("rollout/r", "gw-1", 10)
            assert await store.try_lock("rollout/r", "gw-1", 10)  # renewal
            assert not await store.try_lock("rollout/r", "gw-2", 10)
            clock.now += 11
            assert await store.try_lock("rollout/r", "gw-2", 10)  # expired: taken over
            await store.release_lock("rollout/r", "gw-1")  # not the holder: nothing
            assert not await store.try_lock("rollout/r", "gw-1", 10)
            await store.release_lock("rollout/r", "gw-2")
            assert await store.try_lock("rollout/r", "gw-1", 10)
        finally:
            await store.close()

    asyncio.run(main())


def test_memory() -> None:
    check(lambda clock: MemoryStore(clock=clock))


def test_sqlite(tmp_path: Path) -> None:
    check(lambda clock: SQLiteStore(tmp_path / "s.db", clock=clock))


@pytest.mark.integration
def test_postgres() -> None:
    schema = f"mrtest_{uuid.uuid4().hex[:12]}"
    try:
        check(lambda clock: PostgresStore(f"{PG}?schema={schema}", clock=clock))
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
