"""Telemetry rows in the PostgreSQL store (127.0.0.1:5432, database ``test``); each test works
in a fresh schema that it drops. No skips: a server that is down fails them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from metric_rows_contract import METRIC_CONTRACT, Check, row
from modelrouter.store.postgres import PostgresStore

pytestmark = pytest.mark.integration

SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema = f"mrtest_{uuid.uuid4().hex[:12]}"
    yield f"{SERVER}?schema={schema}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@pytest.mark.parametrize("check", METRIC_CONTRACT, ids=lambda c: c.__name__)
def test_contract(check: Check, pg_url: str) -> None:
    async def main() -> None:
        store = PostgresStore(pg_url)
        try:
            await check(store)
        finally:
            await store.close()

    asyncio.run(main())


def test_rows_of_two_store_connections_are_summed(pg_url: str) -> None:
    async def main() -> None:
        async with PostgresStore(pg_url) as a, PostgresStore(pg_url) as b:
            await a.append_metric_rows([row("a", 1.0, requests=3)])
            await b.append_metric_rows([row("b", 1.0, requests=4)])
            got = await b.query_metric_rows("churn", "v1", 0, 10)
            assert sorted((r.gateway, r.requests) for r in got) == [("a", 3), ("b", 4)]

    asyncio.run(main())
