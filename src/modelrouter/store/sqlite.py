"""The embedded store: one SQLite file shared by every gateway process on the machine.

The stdlib ``sqlite3`` runs in one worker thread per store (the connection never leaves it), so
the event loop never blocks on disk. The file is in WAL mode (readers never wait for the writer)
with a busy timeout; every write is ``BEGIN IMMEDIATE``, which takes the database's write lock
up front, so concurrent appenders from several processes queue up and the chain stays linear.
``synchronous=FULL``: a committed transaction survives a crash of the machine, not only of the
process, which is what the audit writer's durable mode promises.

Change notification polls :meth:`revision` (SQLite has no cross-process notification).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from modelrouter.audit.chain import GENESIS_HASH, ChainPoint, index_columns, seal_text, unseal
from modelrouter.audit.gaps import GAP_KIND
from modelrouter.errors import ModelRouterError, StoreError
from modelrouter.store.base import (
    METRIC_COLUMNS,
    SCHEMA_VERSION,
    AliasRecord,
    AuditBounds,
    Clock,
    IntentRecord,
    IntentState,
    MetricRow,
    Order,
    RolloutRecord,
    RolloutWrite,
    RoutingRecord,
    Store,
    StoredRecord,
    Watch,
    audit_select,
    change_record,
    check_expected,
    check_intent,
    check_metric_rows,
    check_prune,
    check_rollout_expected,
    duplicate_feedback,
    feedback_once_sql,
    intent_audit_record,
    metric_row,
    metric_values,
    normalize_document,
    normalize_rollout_state,
    prepare_records,
    prune_cutoff,
    prune_record,
    stored_rollout_state,
)
from modelrouter.store.faults import RECENT_GAPS, FaultTracker, StoreFault, new_epoch

T = TypeVar("T")
log = logging.getLogger("modelrouter.store")

log = logging.getLogger("modelrouter.store")

_SCHEMA = [
    """CREATE TABLE IF NOT EXISTS mr_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        schema_version INTEGER NOT NULL,
        revision INTEGER NOT NULL,
        head_seq INTEGER NOT NULL,
        head_hash TEXT NOT NULL,
        anchor_seq INTEGER NOT NULL,
        anchor_hash TEXT NOT NULL,
        epoch TEXT)""",
    """CREATE TABLE IF NOT EXISTS mr_routing (
        model TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        document TEXT NOT NULL,
        updated_at REAL NOT NULL,
        actor TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS mr_audit (
        seq INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        kind TEXT NOT NULL,
        model TEXT,
        version TEXT,
        rule TEXT,
        request_id TEXT,
        record TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS mr_audit_time ON mr_audit (time)",
    "CREATE INDEX IF NOT EXISTS mr_audit_model ON mr_audit (model, seq)",
    "CREATE INDEX IF NOT EXISTS mr_audit_kind ON mr_audit (kind, seq)",
    "CREATE INDEX IF NOT EXISTS mr_audit_request ON mr_audit (request_id)",
    # rollouts: state of each rollout, and the lease locks of their controllers
    """CREATE TABLE IF NOT EXISTS mr_rollout (
        name TEXT PRIMARY KEY,
        version INTEGER NOT NULL,
        state TEXT NOT NULL,
        updated_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS mr_lock (
        name TEXT PRIMARY KEY,
        owner TEXT NOT NULL,
        expires REAL NOT NULL)""",
    # telemetry windows: what each gateway counted per version and time bucket (deltas)
    """CREATE TABLE IF NOT EXISTS mr_metric (
        gateway TEXT NOT NULL,
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        start REAL NOT NULL,
        requests INTEGER NOT NULL,
        errors INTEGER NOT NULL,
        latency TEXT NOT NULL,
        feedback INTEGER NOT NULL,
        correct INTEGER NOT NULL,
        abs_error_sum REAL NOT NULL,
        rewards INTEGER NOT NULL,
        reward_sum REAL NOT NULL,
        shadow_compared INTEGER NOT NULL,
        shadow_agreeing INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS mr_metric_version ON mr_metric (model, version, start)",
    "CREATE INDEX IF NOT EXISTS mr_metric_start ON mr_metric (start)",
    # repository intents: explicit load/unload of a version, followed by every gateway
    """CREATE TABLE IF NOT EXISTS mr_intent (
        model TEXT NOT NULL,
        version TEXT NOT NULL,
        state TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        revision INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (model, version))""",
    # MLflow aliases as the cluster's alias watcher last saw them
    """CREATE TABLE IF NOT EXISTS mr_alias (
        name TEXT NOT NULL,
        alias TEXT NOT NULL,
        version TEXT NOT NULL,
        revision INTEGER NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (name, alias))""",
    f"""INSERT OR IGNORE INTO mr_state
        (id, schema_version, revision, head_seq, head_hash, anchor_seq, anchor_hash)
        VALUES (1, {SCHEMA_VERSION}, 0, 0, '{GENESIS_HASH}', 0, '{GENESIS_HASH}')""",
]

_ABANDONED: list[sqlite3.Connection] = []
"""Connections to a database file that was deleted under them, never closed (see
:meth:`SQLiteStore._check_file`)."""

_AUDIT_COLUMNS = "seq, time, kind, model, version, rule, request_id, record, prev_hash, hash"
_AUDIT_ROW = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_INSERT_CHUNKS = tuple(1 << k for k in range(8, -1, -1))
"""Rows one ``INSERT`` of audit records holds: 256, 128, ... 1 (2,560 parameters at most;
SQLite allows 32,766 since 3.32, 999 before: the chunks a connection uses fit its limit)."""
_INSERT_AUDIT = {
    n: f"INSERT INTO mr_audit ({_AUDIT_COLUMNS}) VALUES " + ", ".join([_AUDIT_ROW] * n)
    for n in _INSERT_CHUNKS
}


def insert_audit_rows(conn: sqlite3.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
    """Insert audit ``rows`` with a few multi-row statements rather than one per row.

    ``executemany`` steps the statement once per row, and Python's sqlite3 lets go of the
    interpreter lock around every step: a batch of 300 records was hundreds of hand-overs
    with the event loop's thread, which cost that thread about 20 us of CPU per request
    (bench/README.md). Chunks of 256, 128, ... 1 rows keep the steps to a handful per batch
    and the statement texts to nine, all in the connection's statement cache."""
    start, left = 0, len(rows)
    most = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER) // 10
    for n in _INSERT_CHUNKS:
        while left >= n and n <= most:
            conn.execute(_INSERT_AUDIT[n], [v for row in rows[start : start + n] for v in row])
            start += n
            left -= n


_SCAN_AUDIT = (
    "SELECT seq, time, kind, model, version, rule, request_id, record, prev_hash, hash"
    " FROM mr_audit WHERE seq > ? ORDER BY seq LIMIT ?"
)


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///path`` URL, made absolute against the current directory.

    ``sqlite:///./x.db`` and ``sqlite:///x.db`` are relative, ``sqlite:////var/x.db`` absolute.
    """
    from modelrouter.errors import ConfigError

    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigError(f"not a SQLite URL: {url!r} (use sqlite:///path/to/file.db)")
    raw = url[len(prefix) :].split("?", 1)[0]
    if not raw or raw == ":memory:":
        raise ConfigError(
            f"{url!r}: give a file (sqlite:///./modelrouter.db); use memory:// for tests"
        )
    return Path(raw).absolute()


class SQLiteStore(Store):
    def __init__(
        self, path: str | Path, *, busy_timeout: float = 10.0, clock: Clock = time.time
    ) -> None:
        super().__init__(clock)
        self.path = Path(path).absolute()
        self.url = f"sqlite:///{self.path}"
        self._busy_timeout = busy_timeout
        self._executor: ThreadPoolExecutor | None = None
        self._conn: sqlite3.Connection | None = None
        self._open_lock = asyncio.Lock()
        self._faults = FaultTracker()
        self._identity: tuple[int, int] | None = None
        self._wal_identity: tuple[int, int] | None = None

    # -- plumbing ------------------------------------------------------------------------

    async def open(self) -> None:
        if self._conn is not None:
            return
        async with self._open_lock:
            if self._conn is not None:  # another task opened it while we waited
                return  # type: ignore[unreachable]  # mypy cannot see the await above
            if self._closed:
                raise StoreError(f"store {self.url} is closed")
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="modelrouter-sqlite")
            self._conn = await self._in_thread(self._connect)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            deadline = time.monotonic() + self._busy_timeout
            while True:
                try:
                    conn.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as exc:
                    # switching a new file to WAL can race another process doing the same
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            conn.execute("PRAGMA synchronous=FULL")
            self._transaction(conn, self._create_schema)
            epoch, bounds = self._state(conn)
        except BaseException:
            conn.close()
            raise
        self._identity = _file_identity(self.path)
        self._wal_identity = _file_identity(Path(f"{self.path}-wal"))
        self._faults.observe(epoch, bounds.head)
        return conn

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        for statement in _SCHEMA:
            conn.execute(statement)
        try:
            conn.execute("SAVEPOINT feedback_once")
            conn.execute(feedback_once_sql("mr_audit"))
            conn.execute("RELEASE feedback_once")
        except sqlite3.IntegrityError as exc:
            # a store from before the constraint that already holds duplicates: keep serving
            conn.execute("ROLLBACK TO feedback_once")
            conn.execute("RELEASE feedback_once")
            log.warning("audit log has duplicate feedback; not unique per request: %s", exc)
        (version,) = conn.execute("SELECT schema_version FROM mr_state WHERE id = 1").fetchone()
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"the store was written by a newer modelrouter (schema {version}, "
                f"this one knows {SCHEMA_VERSION}): upgrade modelrouter"
            )
        # 1 -> 2: the state row's epoch (the store's identity, see modelrouter.store.faults)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(mr_state)")}
        if "epoch" not in columns:
            conn.execute("ALTER TABLE mr_state ADD COLUMN epoch TEXT")
        conn.execute("UPDATE mr_state SET epoch = ? WHERE epoch IS NULL", (new_epoch(),))
        conn.execute(
            "UPDATE mr_state SET schema_version = ? WHERE schema_version < ?",
            (SCHEMA_VERSION, SCHEMA_VERSION),
        )

    def _check_file(self) -> None:
        """In the store's thread: the file was deleted or replaced (a reset) -> open the new
        one. Closing the old connection (the last one of its WAL database) checkpoints and
        deletes ``<file>-wal`` *by name*: it is closed only while that name is free or still its
        own WAL; when another process already made a new ``-wal`` there, it is abandoned
        instead (kept open for the life of the process)."""
        if self._conn is None or _file_identity(self.path) == self._identity:
            return
        log.warning("SQLite store %s: the file was deleted or replaced; opening it anew", self.path)
        wal = Path(f"{self.path}-wal")
        if not self.path.exists():
            for stale in (wal, Path(f"{self.path}-shm")):  # left over from the old file
                stale.unlink(missing_ok=True)
        old, self._conn = self._conn, None
        if _file_identity(wal) in (None, self._wal_identity):
            try:
                old.close()
            except sqlite3.Error as exc:
                log.warning("SQLite store %s: closing the old file failed: %s", self.path, exc)
        else:
            _ABANDONED.append(old)
        self._conn = self._connect_keeping_faults()

    def _connect_keeping_faults(self) -> sqlite3.Connection:
        """:meth:`_connect` without letting the new file's state row count as "seen"."""
        seen = self._faults.snapshot()
        try:
            return self._connect()
        finally:
            self._faults.restore(seen)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` in the store's thread; sqlite3 errors become StoreError."""
        assert self._executor is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, functools.partial(self._translated, fn, *args)
        )

    def _translated(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            self._check_file()
            return fn(*args)
        except ModelRouterError:
            raise
        except sqlite3.IntegrityError as exc:
            if "mr_audit.request_id" in str(exc):
                raise duplicate_feedback(exc) from exc
            raise StoreError(f"SQLite store {self.path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite store {self.path}: {exc}") from exc

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        await self.open()
        return await self._in_thread(fn, *args)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        await self.open()
        return await self._in_thread(self._tracked_write, fn)

    def _tracked_write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """A write transaction on the current connection (read in the store's thread, where
        :meth:`_check_file` may have replaced it); a rolled-back gap record is forgotten."""
        assert self._conn is not None
        snapshot = self._faults.snapshot()
        try:
            return self._transaction(self._conn, fn)
        except BaseException:
            self._faults.restore(snapshot)
            raise

    @staticmethod
    def _transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
        """``fn(conn)`` inside ``BEGIN IMMEDIATE``: holds the write lock until commit."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._conn is not None
        return fn(self._conn)

    async def close(self) -> None:
        await super().close()
        async with self._open_lock:
            conn, self._conn = self._conn, None
            executor, self._executor = self._executor, None
            if executor is None:
                return
            if conn is not None:
                await asyncio.get_running_loop().run_in_executor(executor, conn.close)
            executor.shutdown(wait=False)

    # -- routing -------------------------------------------------------------------------

    async def get_routing(self) -> dict[str, RoutingRecord]:
        def read(conn: sqlite3.Connection) -> dict[str, RoutingRecord]:
            rows = conn.execute(
                "SELECT model, version, document, updated_at, actor FROM mr_routing"
            ).fetchall()
            return {m: RoutingRecord(m, v, json.loads(d), u, a) for m, v, d, u, a in rows}

        return await self._run(self._read, read)

    async def put_routing(
        self,
        model: str,
        document: Mapping[str, Any],
        actor: str,
        reason: str,
        expected_version: int | None = None,
        rollout: RolloutWrite | None = None,
    ) -> RoutingRecord:
        doc = normalize_document(document)
        text = json.dumps(doc, ensure_ascii=False)
        rollout_text = stored_rollout_state(rollout)

        def write(conn: sqlite3.Connection) -> RoutingRecord:
            row = conn.execute(
                "SELECT version, document, updated_at, actor FROM mr_routing WHERE model = ?",
                (model,),
            ).fetchone()
            before = (
                RoutingRecord(model, row[0], json.loads(row[1]), row[2], row[3]) if row else None
            )
            current = before.version if before else 0
            check_expected(model, current, expected_version)
            after = RoutingRecord(model, current + 1, doc, self._clock(), actor)
            if rollout is not None:
                self._put_rollout_locked(conn, rollout.name, rollout_text, rollout.expected_version)
            conn.execute(
                "INSERT OR REPLACE INTO mr_routing VALUES (?, ?, ?, ?, ?)",
                (model, after.version, text, after.updated_at, actor),
            )
            conn.execute("UPDATE mr_state SET revision = revision + 1 WHERE id = 1")
            change = change_record(model, before, after, reason)
            self._append_locked(conn, [change], after.updated_at)
            return after

        return await self._write(write)

    async def revision(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            (rev,) = conn.execute("SELECT revision FROM mr_state WHERE id = 1").fetchone()
            return int(rev)

        return await self._run(self._read, read)

    async def _arm(self, watch: Watch, poll_interval: float) -> None:
        await self._poll_revision(watch, poll_interval)

    # -- audit ---------------------------------------------------------------------------

    @staticmethod
    def _state(conn: sqlite3.Connection) -> tuple[str, AuditBounds]:
        epoch, a_seq, a_hash, h_seq, h_hash = conn.execute(
            "SELECT epoch, anchor_seq, anchor_hash, head_seq, head_hash FROM mr_state WHERE id = 1"
        ).fetchone()
        return str(epoch), AuditBounds(ChainPoint(a_seq, a_hash), ChainPoint(h_seq, h_hash))

    def _repair_locked(self, conn: sqlite3.Connection) -> ChainPoint:
        """Inside the write transaction: handle a fault (gap record) before any append.
        Returns the head to append after."""
        epoch, bounds = self._state(conn)
        if not self._faults.suspect(epoch, bounds.head):
            self._faults.observe(epoch, bounds.head)
            return bounds.head
        rows = conn.execute(
            "SELECT record, prev_hash, hash FROM mr_audit WHERE kind = ? ORDER BY seq DESC LIMIT ?",
            (GAP_KIND, RECENT_GAPS),
        ).fetchall()
        gaps = [unseal(*r) for r in rows]
        if self._faults.adopt(epoch, bounds.head, gaps):
            return bounds.head
        repair = self._faults.plan(epoch, bounds.head, bounds.anchor, gaps)
        if repair is None:
            return bounds.head
        if repair.rebase:
            seen = repair.seen
            conn.execute(
                "UPDATE mr_state SET anchor_seq = ?, anchor_hash = ?, head_seq = ?, head_hash = ?"
                " WHERE id = 1",
                (seen.seq, seen.hash, seen.seq, seen.hash),
            )
        conn.execute("UPDATE mr_state SET epoch = ? WHERE id = 1", (repair.epoch,))
        now = self._clock()
        start = repair.seen if repair.rebase else bounds.head
        self._append_raw(conn, [repair.record(now)], now, start)
        head = self._faults.seen  # the gap record
        self._faults.repaired(repair, head.seq, head)
        return head

    def _append_locked(
        self, conn: sqlite3.Connection, records: Sequence[Mapping[str, Any]], now: float
    ) -> list[int]:
        """Seal and insert ``records`` (in the store's thread, inside the write transaction)."""
        head = self._repair_locked(conn)
        return self._append_raw(conn, records, now, head)

    def _append_raw(
        self,
        conn: sqlite3.Connection,
        records: Sequence[Mapping[str, Any]],
        now: float,
        head: ChainPoint,
    ) -> list[int]:
        prepared = prepare_records(records, now)
        head_seq, head_hash = head.seq, head.hash
        rows = []
        seqs = []
        for data in prepared:
            seq, prev = head_seq + 1, head_hash
            body, head_hash = seal_text(data, seq, prev)
            head_seq = seq
            rows.append((seq, *index_columns(data), body, prev, head_hash))
            seqs.append(seq)
        insert_audit_rows(conn, rows)
        conn.execute(
            "UPDATE mr_state SET head_seq = ?, head_hash = ? WHERE id = 1", (head_seq, head_hash)
        )
        self._faults.seen = ChainPoint(head_seq, head_hash)
        return seqs

    async def reconcile(self) -> list[StoreFault]:
        epoch, bounds = await self._run(self._read, self._state)
        if self._faults.suspect(epoch, bounds.head):
            await self._write(self._repair_locked)
        else:
            self._faults.observe(epoch, bounds.head)
        return self._faults.drain()

    async def append_audit(self, records: Sequence[Mapping[str, Any]]) -> list[int]:
        if not records:
            return []
        batch, now = list(records), self._clock()
        return await self._write(lambda conn: self._append_locked(conn, batch, now))

    async def query_audit(
        self,
        model: str | None = None,
        version: str | None = None,
        rule: str | None = None,
        kind: str | None = None,
        request_id: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int | None = 100,
        order: Order = "desc",
        after_seq: int | None = None,
    ) -> list[dict[str, Any]]:
        query, params = audit_select(
            "mr_audit",
            "?",
            model,
            version,
            rule,
            kind,
            request_id,
            since,
            until,
            limit,
            order,
            after_seq,
        )

        def read(conn: sqlite3.Connection) -> list[dict[str, Any]]:
            return [unseal(*row) for row in conn.execute(query, params)]

        return await self._run(self._read, read)

    async def scan_audit(self, after_seq: int, limit: int) -> list[StoredRecord]:
        def read(conn: sqlite3.Connection) -> list[StoredRecord]:
            rows = conn.execute(_SCAN_AUDIT, (after_seq, limit))
            return [StoredRecord(unseal(*row[7:]), tuple(row[:7])) for row in rows]

        return await self._run(self._read, read)

    async def audit_hashes(self, seqs: Sequence[int]) -> dict[int, str]:
        wanted = sorted({int(s) for s in seqs})

        def read(conn: sqlite3.Connection) -> dict[int, str]:
            out: dict[int, str] = {}
            for i in range(0, len(wanted), 500):
                chunk = wanted[i : i + 500]
                marks = ", ".join("?" * len(chunk))
                query = f"SELECT seq, hash FROM mr_audit WHERE seq IN ({marks})"
                out.update(conn.execute(query, chunk).fetchall())
            return out

        return await self._run(self._read, read)

    async def prune_audit(
        self,
        max_age: float | None = None,
        max_count: int | None = None,
        actor: str = "modelrouter",
    ) -> int:
        check_prune(max_age, max_count)

        def write(conn: sqlite3.Connection) -> int:
            now = self._clock()
            bounds = self._bounds(conn)
            first_young = None
            if max_age is not None:
                (first_young,) = conn.execute(
                    "SELECT MIN(seq) FROM mr_audit WHERE time >= ?", (now - max_age,)
                ).fetchone()
            cutoff = prune_cutoff(bounds, max_count, first_young, max_age is not None)
            if cutoff <= bounds.anchor.seq:
                return 0
            if cutoff == bounds.head.seq:
                anchor = bounds.head
            else:
                row = conn.execute("SELECT hash FROM mr_audit WHERE seq = ?", (cutoff,))
                found = row.fetchone()
                if found is None:
                    raise StoreError(f"audit record {cutoff} is missing: run 'audit verify'")
                anchor = ChainPoint(cutoff, found[0])
            deleted = conn.execute("DELETE FROM mr_audit WHERE seq <= ?", (cutoff,)).rowcount
            conn.execute(
                "UPDATE mr_state SET anchor_seq = ?, anchor_hash = ? WHERE id = 1",
                (anchor.seq, anchor.hash),
            )
            note = prune_record(deleted, anchor, actor, max_age, max_count, now)
            self._append_locked(conn, [note], now)
            return deleted

        return await self._write(write)

    @staticmethod
    def _bounds(conn: sqlite3.Connection) -> AuditBounds:
        a_seq, a_hash, h_seq, h_hash = conn.execute(
            "SELECT anchor_seq, anchor_hash, head_seq, head_hash FROM mr_state WHERE id = 1"
        ).fetchone()
        return AuditBounds(ChainPoint(a_seq, a_hash), ChainPoint(h_seq, h_hash))

    async def audit_bounds(self) -> AuditBounds:
        return await self._run(self._read, self._bounds)

    # -- rollouts ------------------------------------------------------------------------

    async def get_rollout(self, name: str) -> RolloutRecord | None:
        def read(conn: sqlite3.Connection) -> RolloutRecord | None:
            row = conn.execute(
                "SELECT version, state, updated_at FROM mr_rollout WHERE name = ?", (name,)
            ).fetchone()
            return None if row is None else RolloutRecord(name, row[0], json.loads(row[1]), row[2])

        return await self._run(self._read, read)

    async def put_rollout(
        self, name: str, state: Mapping[str, Any], expected_version: int | None = None
    ) -> RolloutRecord:
        data = normalize_rollout_state(state)
        text = json.dumps(data, ensure_ascii=False)

        def write(conn: sqlite3.Connection) -> RolloutRecord:
            version, updated_at = self._put_rollout_locked(conn, name, text, expected_version)
            return RolloutRecord(name, version, data, updated_at)

        return await self._write(write)

    def _put_rollout_locked(
        self, conn: sqlite3.Connection, name: str, text: str, expected_version: int | None
    ) -> tuple[int, float]:
        """Replace rollout ``name``'s state (JSON ``text``) inside a write transaction; its
        new version and time."""
        row = conn.execute("SELECT version FROM mr_rollout WHERE name = ?", (name,)).fetchone()
        current = row[0] if row else 0
        check_rollout_expected(name, current, expected_version)
        version, updated_at = current + 1, self._clock()
        conn.execute(
            "INSERT OR REPLACE INTO mr_rollout VALUES (?, ?, ?, ?)",
            (name, version, text, updated_at),
        )
        return version, updated_at

    async def list_rollouts(self) -> list[RolloutRecord]:
        def read(conn: sqlite3.Connection) -> list[RolloutRecord]:
            rows = conn.execute(
                "SELECT name, version, state, updated_at FROM mr_rollout ORDER BY name"
            ).fetchall()
            return [RolloutRecord(n, v, json.loads(t), u) for n, v, t, u in rows]

        return await self._run(self._read, read)

    async def try_lock(self, name: str, owner: str, ttl: float) -> bool:
        def write(conn: sqlite3.Connection) -> bool:
            now = self._clock()
            cur = conn.execute(
                "INSERT INTO mr_lock VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET"
                " owner = excluded.owner, expires = excluded.expires"
                " WHERE mr_lock.owner = excluded.owner OR mr_lock.expires <= ?",
                (name, owner, now + ttl, now),
            )
            return cur.rowcount == 1

        return await self._write(write)

    async def release_lock(self, name: str, owner: str) -> None:
        def write(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM mr_lock WHERE name = ? AND owner = ?", (name, owner))

        await self._write(write)

    # -- telemetry windows ---------------------------------------------------------------

    # -- repository intents --------------------------------------------------------------

    async def put_intent(
        self, model: str, version: str, state: IntentState, actor: str, reason: str = ""
    ) -> IntentRecord:
        state = check_intent(model, version, state)

        def write(conn: sqlite3.Connection) -> IntentRecord:
            (top,) = conn.execute("SELECT COALESCE(MAX(revision), 0) FROM mr_intent").fetchone()
            old = conn.execute(
                "SELECT state FROM mr_intent WHERE model = ? AND version = ?", (model, version)
            ).fetchone()
            intent = IntentRecord(model, version, state, actor, reason, top + 1, self._clock())
            conn.execute(
                "INSERT OR REPLACE INTO mr_intent VALUES (?, ?, ?, ?, ?, ?, ?)",
                (model, version, state, actor, reason, intent.revision, intent.updated_at),
            )
            record = intent_audit_record(intent, old[0] if old else None)
            self._append_locked(conn, [record], intent.updated_at)
            return intent

        return await self._write(write)

    async def list_intents(self) -> list[IntentRecord]:
        def read(conn: sqlite3.Connection) -> list[IntentRecord]:
            rows = conn.execute(
                "SELECT model, version, state, actor, reason, revision, updated_at"
                " FROM mr_intent ORDER BY revision"
            ).fetchall()
            return [IntentRecord(*r) for r in rows]

        return await self._run(self._read, read)

    async def intent_revision(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            (top,) = conn.execute("SELECT COALESCE(MAX(revision), 0) FROM mr_intent").fetchone()
            return int(top)

        return await self._run(self._read, read)

    # -- MLflow aliases ------------------------------------------------------------------

    async def move_alias(
        self,
        name: str,
        alias: str,
        version: str,
        expected: str | None,
        record: Mapping[str, Any] | None = None,
    ) -> AliasRecord | None:
        def write(conn: sqlite3.Connection) -> AliasRecord | None:
            row = conn.execute(
                "SELECT version FROM mr_alias WHERE name = ? AND alias = ?", (name, alias)
            ).fetchone()
            if (row[0] if row else None) != expected:
                return None
            (top,) = conn.execute("SELECT COALESCE(MAX(revision), 0) FROM mr_alias").fetchone()
            moved = AliasRecord(name, alias, str(version), top + 1, self._clock())
            conn.execute(
                "INSERT OR REPLACE INTO mr_alias VALUES (?, ?, ?, ?, ?)",
                (name, alias, moved.version, moved.revision, moved.updated_at),
            )
            if record is not None:
                self._append_locked(conn, [record], moved.updated_at)
            return moved

        return await self._write(write)

    async def list_aliases(self) -> list[AliasRecord]:
        def read(conn: sqlite3.Connection) -> list[AliasRecord]:
            rows = conn.execute(
                "SELECT name, alias, version, revision, updated_at FROM mr_alias ORDER BY revision"
            ).fetchall()
            return [AliasRecord(*r) for r in rows]

        return await self._run(self._read, read)

    async def append_metric_rows(self, rows: Sequence[MetricRow]) -> None:
        values = [metric_values(r) for r in check_metric_rows(rows)]
        if not values:
            return

        def write(conn: sqlite3.Connection) -> None:
            conn.executemany(_INSERT_METRIC, values)

        await self._write(write)

    async def query_metric_rows(
        self, model: str, version: str, since: float, until: float
    ) -> list[MetricRow]:
        def read(conn: sqlite3.Connection) -> list[MetricRow]:
            rows = conn.execute(
                f"SELECT {METRIC_COLUMNS} FROM mr_metric"
                " WHERE model = ? AND version = ? AND start >= ? AND start < ? ORDER BY start",
                (model, version, since, until),
            ).fetchall()
            return [metric_row(r) for r in rows]

        return await self._run(self._read, read)

    async def prune_metric_rows(self, before: float) -> int:
        def write(conn: sqlite3.Connection) -> int:
            return conn.execute("DELETE FROM mr_metric WHERE start < ?", (before,)).rowcount

        return await self._write(write)


_INSERT_METRIC = (
    f"INSERT INTO mr_metric ({METRIC_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _file_identity(path: Path) -> tuple[int, int] | None:
    """``(device, inode)`` of the database file, None when it does not exist."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return st.st_dev, st.st_ino
