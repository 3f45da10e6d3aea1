"""Telemetry rows in the memory and SQLite stores (PostgreSQL: tests/integration)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from metric_rows_contract import METRIC_CONTRACT, Check, row
from modelrouter.store import Store
from modelrouter.store.memory import MemoryStore
from modelrouter.store.sqlite import SQLiteStore


def run(store: Store, check: Check) -> None:
    async def main() -> None:
        try:
            await check(store)
        finally:
            await store.close()

    asyncio.run(main())


@pytest.mark.parametrize("check", METRIC_CONTRACT, ids=lambda c: c.__name__)
def test_memory(check: Check) -> None:
    run(MemoryStore(), check)


@pytest.mark.parametrize("check", METRIC_CONTRACT, ids=lambda c: c.__name__)
def test_sqlite(check: Check, tmp_path: Path) -> None:
    run(SQLiteStore(tmp_path / "s.db"), check)


def test_sqlite_rows_are_shared_between_store_objects(tmp_path: Path) -> None:
    async def main() -> None:
        async with SQLiteStore(tmp_path / "s.db") as a, SQLiteStore(tmp_path / "s.db") as b:
            await a.append_metric_rows([row("a", 1.0, requests=3)])
            await b.append_metric_rows([row("b", 1.0, requests=4)])
            got = await a.query_metric_rows("churn", "v1", 0, 10)
            assert sorted(r.gateway for r in got) == ["a", "b"]

    asyncio.run(main())
