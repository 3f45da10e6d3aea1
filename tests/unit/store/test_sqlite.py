"""The SQLite store: the contract, tampering seen by verify, several processes on one file."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from modelrouter.errors import StoreError
from modelrouter.store import open_store
from modelrouter.store.sqlite import SQLiteStore, sqlite_path
from store_contract import (
    APPENDER,
    COLUMN_EDITS,
    CONTRACT,
    DOC_SPLIT,
    DOC_V1,
    FORGED_INSERT,
    PUTTER,
    Check,
    decision,
    forged_row,
    run_check,
)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
def test_contract(check: Check, tmp_path: Path) -> None:
    run_check(SQLiteStore(tmp_path / "store.db"), check)


def test_url_paths_resolve_against_the_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert sqlite_path("sqlite:///./modelrouter.db") == tmp_path / "modelrouter.db"
    assert sqlite_path("sqlite:///sub/x.db") == tmp_path / "sub" / "x.db"
    assert sqlite_path("sqlite:////var/lib/x.db") == Path("/var/lib/x.db")
    store = open_store("sqlite:///./modelrouter.db")
    assert isinstance(store, SQLiteStore)
    assert store.path == tmp_path / "modelrouter.db"


def test_state_persists_and_the_file_is_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "s.db"

    async def write() -> None:
        async with SQLiteStore(path) as store:
            await store.put_routing("churn", DOC_V1, "alice", "x")
            await store.append_audit([decision(1)])

    async def read() -> None:
        async with SQLiteStore(path) as store:
            assert (await store.get_routing())["churn"].version == 1
            assert await store.revision() == 1
            assert [r["seq"] for r in await store.query_audit()] == [2, 1]
            assert (await store.verify_audit()).ok

    run(write())
    run(read())
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_two_stores_on_one_file_share_state(tmp_path: Path) -> None:
    async def main() -> None:
        async with SQLiteStore(tmp_path / "s.db") as a, SQLiteStore(tmp_path / "s.db") as b:
            await a.put_routing("churn", DOC_V1, "alice", "x")
            await b.put_routing("churn", DOC_SPLIT, "bob", "y", expected_version=1)
            results = await asyncio.gather(
                *(s.append_audit([decision(i)]) for i in range(20) for s in (a, b))
            )
            assert sorted(x for r in results for x in r) == list(range(3, 43))
            assert (await a.get_routing())["churn"].document == DOC_SPLIT
            assert (await b.verify_audit()).ok

    run(main())


def _tampered(tmp_path: Path, statements: list[str]) -> tuple[bool, int | None, str]:
    path = tmp_path / "t.db"

    async def fill() -> None:
        async with SQLiteStore(path) as store:
            await store.append_audit([decision(i) for i in range(8)])

    run(fill())
    with sqlite3.connect(path) as conn:
        for s in statements:
            conn.execute(s)

    async def check() -> tuple[bool, int | None, str]:
        async with SQLiteStore(path) as store:
            r = await store.verify_audit()
            return r.ok, r.first_bad_seq, r.reason

    result = run(check())
    assert isinstance(result, tuple)
    return result


def _edit_json(seq: int, field: str, value: object) -> str:
    return (
        f"UPDATE mr_audit SET record = json_set(record, '$.{field}', json('{json.dumps(value)}'))"
        f" WHERE seq = {seq}"
    )


def test_an_edited_record_is_detected(tmp_path: Path) -> None:
    ok, bad, reason = _tampered(tmp_path, [_edit_json(4, "version", "v9")])
    assert (ok, bad) == (False, 4)
    assert "edited" in reason


@pytest.mark.parametrize("column", sorted(COLUMN_EDITS))
def test_an_edited_index_column_is_detected(tmp_path: Path, column: str) -> None:
    """Queries filter on these columns, not on the hashed text: verify cross-checks them."""
    edit = f"UPDATE mr_audit SET {COLUMN_EDITS[column]} WHERE seq = 4"
    ok, bad, reason = _tampered(tmp_path, [edit])
    assert (ok, bad) == (False, 4)
    assert f"column {column} is" in reason


def test_a_row_chained_after_the_head_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    ok, bad, _ = _tampered(tmp_path, [])
    assert ok
    with sqlite3.connect(path) as conn:
        (prev,) = conn.execute("SELECT hash FROM mr_audit WHERE seq = 8").fetchone()
        conn.execute(FORGED_INSERT.replace("AUDIT", "mr_audit").format(p="?"), forged_row(9, prev))

    async def check() -> tuple[bool, int | None, str]:
        async with SQLiteStore(path) as store:
            assert len(await store.query_audit(request_id="forged")) == 1  # a query sees it
            r = await store.verify_audit(batch=3)
            return r.ok, r.first_bad_seq, r.reason

    ok, bad, reason = run(check())  # type: ignore[misc]
    assert (ok, bad) == (False, 9)
    assert "after the head" in reason


def test_a_moved_anchor_is_detected(tmp_path: Path) -> None:
    """Setting the anchor to seq 3 would leave seqs 1..3 queryable but never verified."""
    move = (
        "UPDATE mr_state SET anchor_seq = 3,"
        " anchor_hash = (SELECT hash FROM mr_audit WHERE seq = 3)"
    )
    ok, bad, reason = _tampered(tmp_path, [_edit_json(2, "version", "v9"), move])
    assert (ok, bad) == (False, 1)
    assert "at or before the anchor (seq 3)" in reason


def test_a_record_deleted_in_the_middle_is_detected(tmp_path: Path) -> None:
    ok, bad, reason = _tampered(tmp_path, ["DELETE FROM mr_audit WHERE seq = 5"])
    assert (ok, bad) == (False, 5)
    assert "missing" in reason


def test_the_newest_records_deleted_are_detected(tmp_path: Path) -> None:
    ok, bad, reason = _tampered(tmp_path, ["DELETE FROM mr_audit WHERE seq >= 7"])
    assert (ok, bad) == (False, 7)
    assert "deleted" in reason


def test_the_oldest_record_deleted_is_detected(tmp_path: Path) -> None:
    ok, bad, _ = _tampered(tmp_path, ["DELETE FROM mr_audit WHERE seq = 1"])
    assert (ok, bad) == (False, 1)


def test_reordered_records_are_detected(tmp_path: Path) -> None:
    swap = [
        "UPDATE mr_audit SET seq = -3 WHERE seq = 3",
        "UPDATE mr_audit SET seq = 3 WHERE seq = 4",
        "UPDATE mr_audit SET seq = 4 WHERE seq = -3",
    ]
    ok, bad, _ = _tampered(tmp_path, swap)
    assert (ok, bad) == (False, 3)


def test_sqlite_errors_become_store_errors(tmp_path: Path) -> None:
    async def missing_dir() -> None:
        store = SQLiteStore(tmp_path / "no" / "such" / "dir.db")
        with pytest.raises(StoreError, match="unable to open"):
            await store.get_routing()
        await store.close()

    run(missing_dir())
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database" * 100)

    async def not_a_db() -> None:
        store = SQLiteStore(junk)
        with pytest.raises(StoreError):
            await store.revision()
        await store.close()

    run(not_a_db())

    async def closed() -> None:
        store = SQLiteStore(tmp_path / "c.db")
        await store.open()
        await store.close()
        with pytest.raises(StoreError, match="closed"):
            await store.revision()

    run(closed())


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    run(SQLiteStore(path).close())

    async def init() -> None:
        async with SQLiteStore(path) as s:
            await s.revision()

    run(init())
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE mr_state SET schema_version = 99")

    async def reopen() -> None:
        store = SQLiteStore(path)
        with pytest.raises(StoreError, match="newer"):
            await store.revision()
        await store.close()

    run(reopen())


def test_two_processes_append_concurrently(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"

    async def init() -> None:
        async with open_store(url) as store:
            await store.open()

    run(init())
    go = tmp_path / "go"
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, url, tag, "150", str(go)])
        for tag in ("alpha", "beta")
    ]
    time.sleep(0.5)
    go.touch()
    assert [p.wait(timeout=60) for p in procs] == [0, 0]

    async def check() -> None:
        async with open_store(url) as store:
            records = [r async for r in store.iter_audit()]
            assert [r["seq"] for r in records] == list(range(1, 301))
            for tag in ("alpha", "beta"):
                mine = [r["request_id"] for r in records if r["model"] == tag]
                assert mine == [f"{tag}-{i}" for i in range(150)]
            result = await store.verify_audit()
            assert result.ok, result
            assert result.checked == 300

    run(check())


def test_watch_sees_a_put_from_another_process(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    go = tmp_path / "go"

    async def main() -> None:
        async with open_store(url) as store:
            seen: list[float] = []

            changed = asyncio.Event()

            async def on_change() -> None:
                seen.append(time.time())
                changed.set()

            await store.watch(on_change, poll_interval=0.1)
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-c", PUTTER, url, str(go), stdout=asyncio.subprocess.PIPE
            )
            await asyncio.sleep(0.3)  # let it start and open the store
            go.touch()
            line = await asyncio.wait_for(proc.stdout.readline(), 30)  # type: ignore[union-attr]
            committed = float(line)
            assert await proc.wait() == 0
            await asyncio.wait_for(changed.wait(), 1.5)
            assert seen[0] - committed < 1.0
            assert (await store.get_routing())["churn"].actor == "other-process"

    run(main())


@pytest.mark.parametrize("size", [1, 255, 256, 257, 511, 600])
def test_a_batch_across_insert_chunks_is_one_unbroken_chain(tmp_path: Path, size: int) -> None:
    """Records go in by multi-row statements of 256, 128, ... 1 rows: every row lands once,
    in order, and the chain verifies."""

    async def go() -> tuple[list[int], list[tuple[int, str | None]], bool]:
        async with SQLiteStore(tmp_path / "t.db") as store:
            await store.append_audit([decision(0)])
            seqs = await store.append_audit([decision(i) for i in range(1, size + 1)])
            rows = await store.query_audit(limit=None, order="asc")
            return (
                seqs,
                [(r["seq"], r.get("request_id")) for r in rows],
                (await store.verify_audit()).ok,
            )

    seqs, rows, ok = run(go())  # type: ignore[misc]
    assert seqs == list(range(2, size + 2))
    assert rows == [(i + 1, decision(i)["request_id"]) for i in range(size + 1)]
    assert ok


def test_insert_chunks_fit_an_old_sqlites_parameter_limit(tmp_path: Path) -> None:
    """SQLite before 3.32 allowed 999 parameters a statement: 99 rows of 10 at most."""
    from modelrouter.store.sqlite import insert_audit_rows

    conn = sqlite3.connect(tmp_path / "t.db")
    conn.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 999)
    conn.execute(
        "CREATE TABLE mr_audit (seq INTEGER PRIMARY KEY, time, kind, model, version, rule,"
        " request_id, record, prev_hash, hash)"
    )
    rows = [(i, 1.0, "decision", "m", "v1", None, f"r{i}", "{}", "p", "h") for i in range(1, 600)]
    insert_audit_rows(conn, rows)
    assert [r[0] for r in conn.execute("SELECT seq FROM mr_audit ORDER BY seq")] == list(
        range(1, 600)
    )
    conn.close()
