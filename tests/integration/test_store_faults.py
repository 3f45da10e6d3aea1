"""Store faults against real SQLite files and a real PostgreSQL (127.0.0.1:5432, db ``test``):
a store dropped and recreated empty, a store restored from an older snapshot, a database of
the older layout. Two store clients stand for two gateways. No skips."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from modelrouter.audit.gaps import explain_gap
from modelrouter.store import Store, open_store
from modelrouter.store.base import SCHEMA_VERSION
from store_contract import DOC_V1, decision

pytestmark = pytest.mark.integration

SERVER = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Backend:
    url: str
    reset: Callable[[], None]
    """Drop the store's database and recreate it empty."""
    snapshot: Callable[[], None]
    """Take a backup of the store as it is now."""
    restore: Callable[[], None]
    """Replace the store with the backup."""
    downgrade: Callable[[], None]
    """Turn the store into the layout of schema 1 (no epoch)."""
    state: Callable[[], tuple[int, str | None]]
    """``(schema_version, epoch)`` of the state row."""


def _pg(conn_sql: list[str]) -> list[Any]:
    out: list[Any] = []
    with psycopg.connect(SERVER, autocommit=True) as conn, conn.transaction():
        for statement in conn_sql:
            cur = conn.execute(statement)
            if cur.description:
                out.extend(cur.fetchall())
    return out


def postgres_backend() -> Iterator[Backend]:
    schema = f"mrtest_{uuid.uuid4().hex[:12]}"
    backup = f"{schema}_bak"
    tables = ("mr_state", "mr_routing", "mr_audit", "mr_rollout", "mr_lock", "mr_metric")

    def reset() -> None:
        _pg([f'DROP SCHEMA "{schema}" CASCADE', f'CREATE SCHEMA "{schema}"'])

    def snapshot() -> None:
        _pg(
            [f'CREATE SCHEMA "{backup}"']
            + [f'CREATE TABLE "{backup}".{t} AS TABLE "{schema}".{t}' for t in tables]
        )

    def restore() -> None:
        _pg([f'DROP SCHEMA "{schema}" CASCADE', f'ALTER SCHEMA "{backup}" RENAME TO "{schema}"'])

    def downgrade() -> None:
        _pg(
            [
                f'ALTER TABLE "{schema}".mr_state DROP COLUMN epoch',
                f'UPDATE "{schema}".mr_state SET schema_version = 1',
            ]
        )

    def state() -> tuple[int, str | None]:
        with psycopg.connect(SERVER) as conn:
            cur = conn.execute(f'SELECT * FROM "{schema}".mr_state')
            row = cur.fetchone()
            assert row is not None
            assert cur.description is not None
            values = dict(zip([d.name for d in cur.description], row, strict=True))
        return int(values["schema_version"]), values.get("epoch")

    try:
        yield Backend(f"{SERVER}?schema={schema}", reset, snapshot, restore, downgrade, state)
    finally:
        _pg([f'DROP SCHEMA IF EXISTS "{s}" CASCADE' for s in (schema, backup)])


def sqlite_backend(folder: Path) -> Iterator[Backend]:
    path = folder / "store.db"
    backup = folder / "backup.db"

    def files(p: Path) -> list[Path]:
        return [p, Path(f"{p}-wal"), Path(f"{p}-shm")]

    def reset() -> None:  # what `rm modelrouter.db*` does under running gateways
        for f in files(path):
            f.unlink(missing_ok=True)

    def snapshot() -> None:
        with sqlite3.connect(path) as src, sqlite3.connect(backup) as dst:
            src.backup(dst)

    def restore() -> None:
        for f in files(path)[1:]:
            f.unlink(missing_ok=True)
        shutil.copy(backup, f"{path}.new")
        os.replace(f"{path}.new", path)

    def downgrade() -> None:
        with sqlite3.connect(path) as conn:
            conn.execute("ALTER TABLE mr_state DROP COLUMN epoch")
            conn.execute("UPDATE mr_state SET schema_version = 1")

    def state() -> tuple[int, str | None]:
        with sqlite3.connect(path) as conn:
            row = conn.execute("SELECT * FROM mr_state").fetchone()
            names = [d[0] for d in conn.execute("SELECT * FROM mr_state").description]
        values = dict(zip(names, row, strict=True))
        return int(values["schema_version"]), values.get("epoch")

    yield Backend(f"sqlite:///{path}", reset, snapshot, restore, downgrade, state)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "postgres":
        yield from postgres_backend()
    else:
        yield from sqlite_backend(tmp_path)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def fill(store: Store, first: int, n: int) -> list[int]:
    return await store.append_audit([decision(i) for i in range(first, first + n)])


def test_a_store_recreated_empty_continues_the_chain_with_one_gap(backend: Backend) -> None:
    async def main() -> None:
        async with open_store(backend.url) as one, open_store(backend.url) as two:
            await fill(one, 0, 5)
            await fill(two, 5, 3)
            await one.put_routing("churn", DOC_V1, "alice", "before the reset")
            before = await one.audit_bounds()
            assert await one.reconcile() == []
            assert await two.reconcile() == []
            assert before.head.seq == 9

            backend.reset()
            # the first write after the reset: tables back, a gap record first, then the batch
            assert await fill(one, 100, 2) == [11, 12]
            assert await one.get_routing() == {}  # the gateway re-seeds it (store_guard)
            (gap,) = await one.audit_gaps()
            assert gap["seq"] == 10
            assert gap["cause"] == "empty"
            assert (gap["first_lost_seq"], gap["last_lost_seq"]) == (1, 9)
            assert (gap["seen_seq"], gap["seen_hash"]) == (9, before.head.hash)
            assert gap["prev_hash"] == before.head.hash  # the chain goes on from what was seen
            (fault,) = await one.reconcile()
            assert (fault.cause, fault.gap_seq, fault.adopted) == ("empty", 10, False)

            # the other client sees the same fault and follows, without a second gap record
            assert await fill(two, 200, 1) == [13]
            (seen,) = await two.reconcile()
            assert (seen.gap_seq, seen.adopted) == (10, True)
            assert len(await two.audit_gaps()) == 1

            result = await two.verify_audit()
            assert result.ok, result
            assert result.checked == 4  # the gap record and three new ones, from the anchor
            bounds = await two.audit_bounds()
            assert bounds.anchor == before.head
            text = explain_gap(gap)
            assert "seq 1..9" in text
            assert "came back empty" in text
            assert "seq 10" in text
            assert await one.reconcile() == []
            assert await two.reconcile() == []

    run(main())


def test_reconcile_repairs_a_reset_store_without_a_write(backend: Backend) -> None:
    async def main() -> None:
        async with open_store(backend.url) as store:
            await fill(store, 0, 4)
            backend.reset()
            (fault,) = await store.reconcile()
            assert fault.cause == "empty"
            assert fault.seen.seq == 4
            (gap,) = await store.audit_gaps()
            assert gap["seq"] == 5
            assert (await store.verify_audit()).ok

    run(main())


def test_a_store_restored_from_an_older_backup_gets_a_gap(backend: Backend) -> None:
    async def main() -> None:
        async with open_store(backend.url) as one, open_store(backend.url) as two:
            await fill(one, 0, 3)
            await two.reconcile()
            backend.snapshot()
            await fill(one, 3, 4)  # seq 4..7: lost by the restore
            assert await two.reconcile() == []
            epoch_before = backend.state()[1]

            backend.restore()
            (fault,) = await two.reconcile()
            assert fault.cause == "rollback"
            assert not fault.adopted
            (gap,) = await two.audit_gaps()
            assert gap["seq"] == 4
            assert gap["found_seq"] == 3
            assert (gap["first_lost_seq"], gap["last_lost_seq"]) == (4, 7)
            assert backend.state()[1] not in (None, epoch_before)  # others notice too
            # the client that wrote the lost records follows the gap of the other
            assert await fill(one, 50, 1) == [5]
            (seen,) = await one.reconcile()
            assert seen.adopted
            assert seen.gap_seq == 4
            assert len(await one.audit_gaps()) == 1
            assert (await one.verify_audit()).ok
            assert "seq 4..7" in explain_gap(gap)
            assert "older head" in explain_gap(gap)

    run(main())


def test_a_store_of_the_older_layout_is_migrated(backend: Backend) -> None:
    async def main() -> None:
        async with open_store(backend.url) as store:
            await fill(store, 0, 3)
            await store.put_routing("churn", DOC_V1, "alice", "kept")
        backend.downgrade()
        assert backend.state() == (1, None)
        async with open_store(backend.url) as store:
            assert (await store.get_routing())["churn"].actor == "alice"
            assert await fill(store, 3, 1) == [5]
            assert await store.reconcile() == []  # a migration is not a fault
            assert (await store.verify_audit()).ok
        version, epoch = backend.state()
        assert version == SCHEMA_VERSION == 2
        assert epoch

    run(main())
