"""The PostgreSQL store against a real server (127.0.0.1:5432, database ``test``).

Each test works in a fresh schema that it drops. No skips: a server that is down fails them.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from modelrouter.errors import ConfigError, StoreError
from modelrouter.store import open_store
from modelrouter.store.postgres import PostgresStore, parse_postgres_url
from store_contract import (
    APPENDER,
    COLUMN_EDITS,
    CONTRACT,
    DOC_V1,
    FORGED_INSERT,
    PUTTER,
    Check,
    decision,
    forged_row,
    run_check,
)

pytestmark = pytest.mark.integration

SERVER = "postgresql://postgres@127.0.0.1:5432/test"


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema = f"mrtest_{uuid.uuid4().hex[:12]}"
    yield f"{SERVER}?schema={schema}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def sql(statement: str) -> None:
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(statement)


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
def test_contract(check: Check, pg_url: str) -> None:
    run_check(open_store(pg_url), check)


def test_url_parsing() -> None:
    conninfo, schema = parse_postgres_url("postgresql://u:pw@h:5433/db?schema=s1&sslmode=disable")
    assert (conninfo, schema) == ("postgresql://u:pw@h:5433/db?sslmode=disable", "s1")
    assert parse_postgres_url("postgres://h/db")[1] == "public"
    with pytest.raises(ConfigError):
        parse_postgres_url("postgresql://h/db?schema=bad;drop")
    store = PostgresStore("postgresql://u:secret@h/db")
    assert "secret" not in store.url


def test_tables_live_in_the_schema_of_the_url(pg_url: str) -> None:
    schema = parse_postgres_url(pg_url)[1]

    async def main() -> None:
        async with open_store(pg_url) as store:
            await store.put_routing("churn", DOC_V1, "alice", "x")

    run(main())
    with psycopg.connect(SERVER) as conn:
        rows = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s ORDER BY 1",
            (schema,),
        ).fetchall()
    assert [r[0] for r in rows] == [
        "mr_alias",
        "mr_audit",
        "mr_intent",
        "mr_lock",
        "mr_metric",
        "mr_rollout",
        "mr_routing",
        "mr_state",
    ]


def _tampered(pg_url: str, statements: list[str]) -> tuple[bool, int | None, str]:
    schema = parse_postgres_url(pg_url)[1]

    async def fill() -> None:
        async with open_store(pg_url) as store:
            await store.append_audit([decision(i) for i in range(8)])

    run(fill())
    for s in statements:
        sql(s.replace("AUDIT", f'"{schema}".mr_audit'))

    async def check() -> tuple[bool, int | None, str]:
        async with open_store(pg_url) as store:
            r = await store.verify_audit()
            return r.ok, r.first_bad_seq, r.reason

    result = run(check())
    assert isinstance(result, tuple)
    return result


def test_an_edited_record_is_detected(pg_url: str) -> None:
    edit = (
        "UPDATE AUDIT SET record = replace(record, '\"status\":200', '\"status\":201')"
        " WHERE seq = 4"
    )
    ok, bad, reason = _tampered(pg_url, [edit])
    assert (ok, bad) == (False, 4)
    assert "edited" in reason


@pytest.mark.parametrize("column", sorted(COLUMN_EDITS))
def test_an_edited_index_column_is_detected(pg_url: str, column: str) -> None:
    """Queries filter on these columns, not on the hashed text: verify cross-checks them."""
    ok, bad, reason = _tampered(pg_url, [f"UPDATE AUDIT SET {COLUMN_EDITS[column]} WHERE seq = 4"])
    assert (ok, bad) == (False, 4)
    assert f"column {column} is" in reason


def test_a_row_chained_after_the_head_is_detected(pg_url: str) -> None:
    table = f'"{parse_postgres_url(pg_url)[1]}".mr_audit'
    ok, _, _ = _tampered(pg_url, [])
    assert ok
    with psycopg.connect(SERVER, autocommit=True) as conn:
        row = conn.execute(f"SELECT hash FROM {table} WHERE seq = 8").fetchone()
        assert row is not None
        conn.execute(FORGED_INSERT.replace("AUDIT", table).format(p="%s"), forged_row(9, row[0]))

    async def check() -> tuple[bool, int | None, str]:
        async with open_store(pg_url) as store:
            assert len(await store.query_audit(request_id="forged")) == 1  # a query sees it
            r = await store.verify_audit(batch=3)
            return r.ok, r.first_bad_seq, r.reason

    result = run(check())
    assert isinstance(result, tuple)
    ok, bad, reason = result
    assert (ok, bad) == (False, 9)
    assert "after the head" in reason


def test_a_moved_anchor_is_detected(pg_url: str) -> None:
    schema = parse_postgres_url(pg_url)[1]
    move = (
        f'UPDATE "{schema}".mr_state SET anchor_seq = 3,'
        " anchor_hash = (SELECT hash FROM AUDIT WHERE seq = 3)"
    )
    ok, bad, reason = _tampered(pg_url, [move])
    assert (ok, bad) == (False, 1)
    assert "at or before the anchor (seq 3)" in reason


def test_deleted_records_are_detected(pg_url: str) -> None:
    ok, bad, _ = _tampered(pg_url, ["DELETE FROM AUDIT WHERE seq = 5"])
    assert (ok, bad) == (False, 5)


def test_the_newest_records_deleted_are_detected(pg_url: str) -> None:
    ok, bad, reason = _tampered(pg_url, ["DELETE FROM AUDIT WHERE seq = 8"])
    assert (ok, bad) == (False, 8)
    assert "deleted" in reason


def test_reordered_records_are_detected(pg_url: str) -> None:
    swap = [
        "UPDATE AUDIT SET seq = -3 WHERE seq = 3",
        "UPDATE AUDIT SET seq = 3 WHERE seq = 4",
        "UPDATE AUDIT SET seq = 4 WHERE seq = -3",
    ]
    ok, bad, _ = _tampered(pg_url, swap)
    assert (ok, bad) == (False, 3)


def test_an_unreachable_server_is_a_store_error() -> None:
    async def main() -> None:
        store = open_store("postgresql://postgres@127.0.0.1:1/test")
        with pytest.raises(StoreError, match="cannot connect"):
            await store.revision()
        await store.close()

    run(main())


def _kill_backends(application_name: str) -> None:
    """Terminate the server side of every connection named ``application_name``; wait for it."""
    query = "FROM pg_stat_activity WHERE application_name = %s"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        killed = conn.execute(f"SELECT pg_terminate_backend(pid) {query}", (application_name,))
        assert killed.fetchall(), "no connection to kill"
        deadline = time.monotonic() + 5
        while conn.execute(f"SELECT count(*) {query}", (application_name,)).fetchone() != (0,):
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_killed_connections_are_replaced(pg_url: str) -> None:
    name = f"mrkill_{uuid.uuid4().hex[:8]}"
    url = f"{pg_url}&application_name={name}"

    async def main() -> None:
        async with open_store(url) as store:
            await store.append_audit([decision(1)])
            changed = asyncio.Event()

            async def on_change() -> None:
                changed.set()

            await store.watch(on_change)
            _kill_backends(name)  # the query connection and the LISTEN connection
            assert await store.revision() == 0  # a read reconnects by itself
            _kill_backends(name)
            with pytest.raises(StoreError):  # a write may or may not have happened: say so
                await store.append_audit([decision(2)])
            assert await store.append_audit([decision(3)]) == [2]
            await asyncio.sleep(0.5)  # the listener reconnects after a short backoff
            changed.clear()
            await store.put_routing("churn", DOC_V1, "alice", "after the outage")
            # fails with TimeoutError if the watch did not survive the lost connection
            await asyncio.wait_for(changed.wait(), 3)
            assert (await store.verify_audit()).ok

    run(main())


def test_two_processes_append_concurrently(pg_url: str, tmp_path: Path) -> None:
    async def init() -> None:
        async with open_store(pg_url) as store:
            await store.open()

    run(init())
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, pg_url, tag, "150", str(go)])
        for tag in ("alpha", "beta")
    ]
    time.sleep(0.5)
    go.touch()
    assert [p.wait(timeout=60) for p in procs] == [0, 0]

    async def check() -> None:
        async with open_store(pg_url) as store:
            records = [r async for r in store.iter_audit(batch=64)]
            assert [r["seq"] for r in records] == list(range(1, 301))
            for tag in ("alpha", "beta"):
                mine = [r["request_id"] for r in records if r["model"] == tag]
                assert mine == [f"{tag}-{i}" for i in range(150)]
            result = await store.verify_audit()
            assert result.ok, result
            assert result.checked == 300

    run(check())


def test_watch_sees_a_put_from_another_process(pg_url: str, tmp_path: Path) -> None:
    go = tmp_path / "go"

    async def main() -> None:
        async with open_store(pg_url) as store:
            seen: list[float] = []

            changed = asyncio.Event()

            async def on_change() -> None:
                seen.append(time.time())
                changed.set()

            await store.watch(on_change)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PUTTER, pg_url, str(go), stdout=asyncio.subprocess.PIPE
            )
            await asyncio.sleep(0.3)
            go.touch()
            line = await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
            committed = float(line)
            assert await proc.wait() == 0
            await asyncio.wait_for(changed.wait(), 1.5)
            assert seen[0] - committed < 1.0
            assert (await store.get_routing())["churn"].actor == "other-process"

    run(main())


def test_a_truncated_log_with_a_rewritten_head_fails_verify_checkpoints(
    pg_url: str, tmp_path: Path
) -> None:
    from modelrouter.audit.checkpoints import verify_checkpoints, write_checkpoint
    from modelrouter.audit.signing import SigningKey
    from modelrouter.audit.sinks import FileSink

    key = SigningKey.generate()
    sink = FileSink(tmp_path / "checkpoints.jsonl")
    table = f'"{parse_postgres_url(pg_url)[1]}"'

    async def fill() -> None:
        async with open_store(pg_url) as store:
            await store.append_audit([decision(i) for i in range(8)])
            await write_checkpoint(store, sink, key)

    run(fill())
    with psycopg.connect(SERVER, autocommit=True) as conn:
        row = conn.execute(f"SELECT hash FROM {table}.mr_audit WHERE seq = 5").fetchone()
        assert row is not None
        conn.execute(f"DELETE FROM {table}.mr_audit WHERE seq > 5")
        conn.execute(f"UPDATE {table}.mr_state SET head_seq = 5, head_hash = %s", (row[0],))

    async def check() -> tuple[bool, bool, int | None, str]:
        async with open_store(pg_url) as store:
            await store.append_audit([decision(50)])  # a new seq 6 on the cut log
            plain = await store.verify_audit()
            signed = await verify_checkpoints(store, sink.lines(), key.public)
            return plain.ok, signed.ok, signed.first_bad_seq, signed.reason

    result = run(check())
    assert isinstance(result, tuple)
    plain_ok, signed_ok, bad, reason = result
    assert plain_ok
    assert (signed_ok, bad) == (False, 7)
    assert "says the log reached seq 8, but the store's head is seq 6" in reason


def test_audit_hashes_reads_the_stored_hashes(pg_url: str) -> None:
    async def main() -> None:
        async with open_store(pg_url) as store:
            await store.append_audit([decision(i) for i in range(3)])
            page = await store.scan_audit(0, 10)
            hashes = await store.audit_hashes([3, 1, 99])
            assert hashes == {1: page[0].record["hash"], 3: page[2].record["hash"]}
            assert page[1].columns is not None
            assert page[1].columns[:3] == (2, page[1].record["time"], "decision")

    run(main())
