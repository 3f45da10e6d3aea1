"""The shared store for several machines: PostgreSQL through psycopg 3 (async).

URL: ``postgresql://user[:password]@host[:port]/db[?schema=NAME&...]``. ``schema`` (default
``public``) is created if missing; other query parameters go to libpq. Tables are prefixed
``mr_``.

One connection runs the queries (one operation at a time, guarded by an asyncio lock; a broken
connection is replaced on the next call); each :meth:`watch` holds its own ``LISTEN`` connection.
Every write takes ``pg_advisory_xact_lock`` (one key per schema), so concurrent appenders from any
number of gateways keep the chain linear, and :meth:`put_routing` sends ``pg_notify`` inside its
transaction, so listeners hear of a change exactly when it is committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import psycopg

from modelrouter.audit.chain import GENESIS_HASH, ChainPoint, index_columns, seal_text, unseal
from modelrouter.audit.gaps import GAP_KIND
from modelrouter.errors import (
    ConfigError,
    ModelRouterError,
    RolloutConflict,
    StoreError,
)
from modelrouter.store.base import (
    FEEDBACK_ONCE_INDEX,
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
Conn = psycopg.AsyncConnection[Any]

log = logging.getLogger("modelrouter.store")

_INLINE_BATCH = 16
"""Batches larger than this are normalized and hashed in a worker thread."""

_SCHEMA_GONE = (
    psycopg.errors.UndefinedTable,
    psycopg.errors.InvalidSchemaName,
    psycopg.errors.UndefinedColumn,
)
"""What a query gets when the schema was dropped or replaced under the gateway: the tables are
created again and the query retried once (it failed whole, so nothing was committed)."""

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def parse_postgres_url(url: str) -> tuple[str, str]:
    """``(conninfo for libpq, schema)`` from a store URL; the ``schema`` parameter is ours."""
    parts = urlsplit(url)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ConfigError(f"not a PostgreSQL URL: {url!r}")
    params = parse_qsl(parts.query, keep_blank_values=True)
    schema = "public"
    rest = []
    for key, value in params:
        if key == "schema":
            schema = value
        else:
            rest.append((key, value))
    if not _IDENTIFIER.match(schema):
        raise ConfigError(
            f"schema {schema!r} in {url!r}: use letters, digits and _ (not first), up to 63"
        )
    return urlunsplit(parts._replace(query=urlencode(rest))), schema


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


class PostgresStore(Store):
    def __init__(
        self, url: str, *, connect_timeout: float = 10.0, clock: Clock = time.time
    ) -> None:
        super().__init__(clock)
        self._conninfo, self.schema = parse_postgres_url(url)
        self.url = _redact(url)
        self._connect_timeout = connect_timeout
        digest = hashlib.sha256(f"modelrouter:{self.schema}".encode()).digest()
        self._lock_key = int.from_bytes(digest[:8], "big", signed=True)
        self.channel = f"modelrouter_{self.schema}"[:63].lower()
        self._conn: Conn | None = None
        self._lock = asyncio.Lock()
        self._schema_ready = False
        s = f'"{self.schema}"'
        self._t_state = f"{s}.mr_state"
        self._t_routing = f"{s}.mr_routing"
        self._t_audit = f"{s}.mr_audit"
        self._t_rollout = f"{s}.mr_rollout"
        self._t_lock = f"{s}.mr_lock"
        self._t_intent = f"{s}.mr_intent"
        self._t_alias = f"{s}.mr_alias"
        self._faults = FaultTracker()

    # -- plumbing ------------------------------------------------------------------------

    async def _connect(self) -> Conn:
        try:
            return await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=max(1, int(self._connect_timeout))
            )
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL store {self.url}: cannot connect: {exc}") from exc

    async def open(self) -> None:
        async with self._lock:
            conn = await self._connection()
            if self._faults.epoch is None:  # what a later fault is measured against
                try:
                    epoch, bounds = await self._state(conn)
                except psycopg.Error as exc:
                    raise StoreError(f"PostgreSQL store {self.url}: {exc}") from exc
                self._faults.observe(epoch, bounds.head)

    async def _connection(self) -> Conn:
        """The query connection (caller holds ``self._lock``); (re)connects when needed."""
        if self._closed:
            raise StoreError(f"store {self.url} is closed")
        if self._conn is not None and (self._conn.closed or self._conn.broken):
            await self._conn.close()
            self._conn = None
        conn = self._conn or await self._connect()
        try:
            if not self._schema_ready:
                await self._create_schema(conn)
                self._schema_ready = True
        except BaseException:
            self._conn = None
            await conn.close()
            raise
        self._conn = conn
        return conn

    async def _create_schema(self, conn: Conn) -> None:
        try:
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                cur = await conn.execute(
                    "SELECT 1 FROM pg_namespace WHERE nspname = %s", (self.schema,)
                )
                if await cur.fetchone() is None:
                    await conn.execute(f'CREATE SCHEMA "{self.schema}"')
                for statement in self._schema_statements():
                    await conn.execute(statement)
                try:
                    async with conn.transaction():  # a savepoint
                        await conn.execute(feedback_once_sql(self._t_audit))
                except psycopg.errors.UniqueViolation as exc:
                    # a store from before the constraint holding duplicates: keep serving
                    log.warning("audit log has duplicate feedback; not unique per request: %s", exc)
                cur = await conn.execute(f"SELECT schema_version FROM {self._t_state} WHERE id = 1")
                row = await cur.fetchone()
                if row is not None and row[0] > SCHEMA_VERSION:
                    raise StoreError(
                        f"the store was written by a newer modelrouter (schema {row[0]}, "
                        f"this one knows {SCHEMA_VERSION}): upgrade modelrouter"
                    )
                await self._migrate(conn)
        except psycopg.Error as exc:
            raise StoreError(f"PostgreSQL store {self.url}: cannot create tables: {exc}") from exc

    async def _migrate(self, conn: Conn) -> None:
        """Bring a database of an older layout up to :data:`SCHEMA_VERSION` (idempotent)."""
        # 1 -> 2: the state row's epoch (the store's identity, see modelrouter.store.faults)
        await conn.execute(f"ALTER TABLE {self._t_state} ADD COLUMN IF NOT EXISTS epoch text")
        await conn.execute(
            f"UPDATE {self._t_state} SET epoch = %s WHERE epoch IS NULL", (new_epoch(),)
        )
        await conn.execute(
            f"UPDATE {self._t_state} SET schema_version = %s WHERE schema_version < %s",
            (SCHEMA_VERSION, SCHEMA_VERSION),
        )

    def _schema_statements(self) -> list[str]:
        a = self._t_audit
        return [
            f"""CREATE TABLE IF NOT EXISTS {self._t_state} (
                id integer PRIMARY KEY CHECK (id = 1),
                schema_version integer NOT NULL,
                revision bigint NOT NULL,
                head_seq bigint NOT NULL,
                head_hash text NOT NULL,
                anchor_seq bigint NOT NULL,
                anchor_hash text NOT NULL,
                epoch text)""",
            f"""CREATE TABLE IF NOT EXISTS {self._t_routing} (
                model text PRIMARY KEY,
                version bigint NOT NULL,
                document text NOT NULL,
                updated_at double precision NOT NULL,
                actor text NOT NULL)""",
            f"""CREATE TABLE IF NOT EXISTS {a} (
                seq bigint PRIMARY KEY,
                time double precision NOT NULL,
                kind text NOT NULL,
                model text,
                version text,
                rule text,
                request_id text,
                record text NOT NULL,
                prev_hash text NOT NULL,
                hash text NOT NULL)""",
            f"CREATE INDEX IF NOT EXISTS mr_audit_time ON {a} (time)",
            f"CREATE INDEX IF NOT EXISTS mr_audit_model ON {a} (model, seq)",
            f"CREATE INDEX IF NOT EXISTS mr_audit_kind ON {a} (kind, seq)",
            f"CREATE INDEX IF NOT EXISTS mr_audit_request ON {a} (request_id)",
            # rollouts: state of each rollout, and the lease locks of their controllers
            f"""CREATE TABLE IF NOT EXISTS {self._t_rollout} (
                name text PRIMARY KEY,
                version bigint NOT NULL,
                state text NOT NULL,
                updated_at double precision NOT NULL)""",
            f"""CREATE TABLE IF NOT EXISTS {self._t_lock} (
                name text PRIMARY KEY,
                owner text NOT NULL,
                expires double precision NOT NULL)""",
            # telemetry windows: what each gateway counted per version and time bucket
            f"""CREATE TABLE IF NOT EXISTS {self._t_metric} (
                gateway text NOT NULL,
                model text NOT NULL,
                version text NOT NULL,
                start double precision NOT NULL,
                requests bigint NOT NULL,
                errors bigint NOT NULL,
                latency text NOT NULL,
                feedback bigint NOT NULL,
                correct bigint NOT NULL,
                abs_error_sum double precision NOT NULL,
                rewards bigint NOT NULL,
                reward_sum double precision NOT NULL,
                shadow_compared bigint NOT NULL,
                shadow_agreeing bigint NOT NULL)""",
            f"CREATE INDEX IF NOT EXISTS mr_metric_version ON {self._t_metric} "
            "(model, version, start)",
            f"CREATE INDEX IF NOT EXISTS mr_metric_start ON {self._t_metric} (start)",
            # repository intents: explicit load/unload of a version, followed by every gateway
            f"""CREATE TABLE IF NOT EXISTS {self._t_intent} (
                model text NOT NULL,
                version text NOT NULL,
                state text NOT NULL,
                actor text NOT NULL,
                reason text NOT NULL,
                revision bigint NOT NULL,
                updated_at double precision NOT NULL,
                PRIMARY KEY (model, version))""",
            # MLflow aliases as the cluster's alias watcher last saw them
            f"""CREATE TABLE IF NOT EXISTS {self._t_alias} (
                name text NOT NULL,
                alias text NOT NULL,
                version text NOT NULL,
                revision bigint NOT NULL,
                updated_at double precision NOT NULL,
                PRIMARY KEY (name, alias))""",
            # the epoch is set by _migrate, for a new row and a row of schema 1 alike
            f"""INSERT INTO {self._t_state}
                (id, schema_version, revision, head_seq, head_hash, anchor_seq, anchor_hash)
                VALUES (1, {SCHEMA_VERSION}, 0, 0, '{GENESIS_HASH}', 0, '{GENESIS_HASH}')
                ON CONFLICT (id) DO NOTHING""",
        ]

    async def _op(self, fn: Callable[[Conn], Awaitable[T]], *, read_only: bool = True) -> T:
        """Run ``fn`` on the query connection, one at a time; psycopg errors become StoreError.

        A read that finds the connection dead (server restart, failover, idle timeout) is
        retried once on a new one; a write is not, since whether it committed is unknown.
        """
        async with self._lock:
            for attempt in (1, 2):
                conn = await self._connection()
                try:
                    return await fn(conn)
                except ModelRouterError:
                    raise
                except _SCHEMA_GONE as exc:
                    self._schema_ready = False
                    if attempt == 1:
                        log.warning(
                            "PostgreSQL store %s: tables are gone (%s); creating them again",
                            self.url,
                            str(exc).splitlines()[0],
                        )
                        continue
                    raise StoreError(f"PostgreSQL store {self.url}: {exc}") from exc
                except psycopg.errors.UniqueViolation as exc:
                    if FEEDBACK_ONCE_INDEX in str(exc):
                        raise duplicate_feedback(exc.diag.message_primary) from exc
                    raise StoreError(f"PostgreSQL store {self.url}: {exc}") from exc
                except psycopg.Error as exc:
                    dead = conn.broken or conn.closed
                    if dead:
                        self._conn = None
                        await conn.close()
                    if dead and read_only and attempt == 1:
                        log.info("PostgreSQL store %s: connection lost, reconnecting", self.url)
                        continue
                    raise StoreError(f"PostgreSQL store {self.url}: {exc}") from exc
                except asyncio.CancelledError:
                    # cancelled mid-statement: the connection's state is unknown, start afresh
                    self._conn = None
                    await conn.close()
                    raise
            raise AssertionError("unreachable")

    async def _write(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """``fn`` in a transaction holding the store's advisory lock."""

        async def run(conn: Conn) -> T:
            snapshot = self._faults.snapshot()
            try:
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock_key,))
                    return await fn(conn)
            except BaseException:
                self._faults.restore(snapshot)  # a gap record rolled back with the rest
                raise

        return await self._op(run, read_only=False)

    async def close(self) -> None:
        await super().close()
        async with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                await conn.close()

    # -- routing -------------------------------------------------------------------------

    async def get_routing(self) -> dict[str, RoutingRecord]:
        async def read(conn: Conn) -> dict[str, RoutingRecord]:
            cur = await conn.execute(
                f"SELECT model, version, document, updated_at, actor FROM {self._t_routing}"
            )
            rows = await cur.fetchall()
            return {m: RoutingRecord(m, v, json.loads(d), u, a) for m, v, d, u, a in rows}

        return await self._op(read)

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

        async def write(conn: Conn) -> RoutingRecord:
            cur = await conn.execute(
                f"SELECT version, document, updated_at, actor FROM {self._t_routing}"
                " WHERE model = %s",
                (model,),
            )
            row = await cur.fetchone()
            before = (
                RoutingRecord(model, row[0], json.loads(row[1]), row[2], row[3]) if row else None
            )
            current = before.version if before else 0
            check_expected(model, current, expected_version)
            after = RoutingRecord(model, current + 1, doc, self._clock(), actor)
            if rollout is not None:
                await self._put_rollout_locked(
                    conn, rollout.name, rollout_text, rollout.expected_version
                )
            await conn.execute(
                f"INSERT INTO {self._t_routing} VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (model) DO UPDATE SET version = excluded.version,"
                " document = excluded.document, updated_at = excluded.updated_at,"
                " actor = excluded.actor",
                (model, after.version, text, after.updated_at, actor),
            )
            cur = await conn.execute(
                f"UPDATE {self._t_state} SET revision = revision + 1 WHERE id = 1"
                " RETURNING revision"
            )
            rev = await cur.fetchone()
            change = change_record(model, before, after, reason)
            await self._append_locked(conn, prepare_records([change], after.updated_at))
            await conn.execute(
                "SELECT pg_notify(%s, %s)", (self.channel, str(rev[0] if rev else ""))
            )
            return after

        return await self._write(write)

    async def revision(self) -> int:
        async def read(conn: Conn) -> int:
            cur = await conn.execute(f"SELECT revision FROM {self._t_state} WHERE id = 1")
            row = await cur.fetchone()
            return int(row[0]) if row else 0

        return await self._op(read)

    async def _arm(self, watch: Watch, poll_interval: float) -> None:
        """LISTEN on a connection of its own; ``poll_interval`` is not needed."""
        await self.open()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        watch.add_task(asyncio.create_task(self._listen(watch, ready)))
        await ready

    async def _listen(self, watch: Watch, ready: asyncio.Future[None]) -> None:
        delay = 0.1
        while True:
            try:
                conn = await self._connect()
                try:
                    await conn.execute(f'LISTEN "{self.channel}"')
                    if ready.done():
                        watch.notify()  # changes may have been missed while reconnecting
                    else:
                        ready.set_result(None)
                    delay = 0.1
                    async for _ in conn.notifies():
                        watch.notify()
                finally:
                    with contextlib.suppress(Exception):
                        await conn.close()
            except Exception as exc:
                if not ready.done():
                    err = exc if isinstance(exc, ModelRouterError) else StoreError(str(exc))
                    ready.set_exception(err)
                    return
                log.warning("routing watch: LISTEN connection lost (%s); reconnecting", exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)

    # -- audit ---------------------------------------------------------------------------

    async def _state(self, conn: Conn) -> tuple[str, AuditBounds]:
        cur = await conn.execute(
            f"SELECT epoch, anchor_seq, anchor_hash, head_seq, head_hash FROM {self._t_state}"
            " WHERE id = 1"
        )
        row = await cur.fetchone()
        if row is None:
            raise StoreError(f"PostgreSQL store {self.url}: the state row is missing")
        return str(row[0]), AuditBounds(ChainPoint(row[1], row[2]), ChainPoint(row[3], row[4]))

    async def _repair_locked(self, conn: Conn) -> ChainPoint:
        """Under the write lock: handle a fault (gap record) before anything is appended.
        Returns the head to append after."""
        epoch, bounds = await self._state(conn)
        if not self._faults.suspect(epoch, bounds.head):
            self._faults.observe(epoch, bounds.head)
            return bounds.head
        cur = await conn.execute(
            f"SELECT record, prev_hash, hash FROM {self._t_audit} WHERE kind = %s"
            " ORDER BY seq DESC LIMIT %s",
            (GAP_KIND, RECENT_GAPS),
        )
        gaps = [unseal(*row) for row in await cur.fetchall()]
        if self._faults.adopt(epoch, bounds.head, gaps):
            return bounds.head
        repair = self._faults.plan(epoch, bounds.head, bounds.anchor, gaps)
        if repair is None:
            return bounds.head
        if repair.rebase:
            await conn.execute(
                f"UPDATE {self._t_state} SET anchor_seq = %s, anchor_hash = %s,"
                " head_seq = %s, head_hash = %s WHERE id = 1",
                (repair.seen.seq, repair.seen.hash, repair.seen.seq, repair.seen.hash),
            )
        await conn.execute(f"UPDATE {self._t_state} SET epoch = %s WHERE id = 1", (repair.epoch,))
        now = self._clock()
        start = repair.seen if repair.rebase else bounds.head
        await self._append_raw(conn, prepare_records([repair.record(now)], now), start)
        head = self._faults.seen  # the gap record
        self._faults.repaired(repair, head.seq, head)
        return head

    async def _append_locked(self, conn: Conn, prepared: list[dict[str, Any]]) -> list[int]:
        head = await self._repair_locked(conn)
        return await self._append_raw(conn, prepared, head)

    async def _append_raw(
        self, conn: Conn, prepared: list[dict[str, Any]], head: ChainPoint
    ) -> list[int]:
        """Seal and insert ``prepared`` after ``head`` (read under the write lock)."""
        head_seq, head_hash = head.seq, head.hash
        if len(prepared) > _INLINE_BATCH:  # hashing is CPU work: keep the event loop free
            rows = await asyncio.to_thread(_sealed_rows, prepared, head_seq, head_hash)
        else:
            rows = _sealed_rows(prepared, head_seq, head_hash)
        async with conn.cursor() as cur:
            await cur.executemany(
                f"INSERT INTO {self._t_audit}"
                " (seq, time, kind, model, version, rule, request_id, record, prev_hash, hash)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                rows,
            )
        await conn.execute(
            f"UPDATE {self._t_state} SET head_seq = %s, head_hash = %s WHERE id = 1",
            (rows[-1][0], rows[-1][-1]),
        )
        self._faults.seen = ChainPoint(rows[-1][0], rows[-1][-1])
        return [r[0] for r in rows]

    async def reconcile(self) -> list[StoreFault]:
        epoch, bounds = await self._op(self._state)
        if self._faults.suspect(epoch, bounds.head):
            await self._write(self._repair_locked)
        else:
            self._faults.observe(epoch, bounds.head)
        return self._faults.drain()

    async def append_audit(self, records: Sequence[Mapping[str, Any]]) -> list[int]:
        if not records:
            return []
        if len(records) > _INLINE_BATCH:
            prepared = await asyncio.to_thread(prepare_records, records, self._clock())
        else:
            prepared = prepare_records(records, self._clock())
        return await self._write(lambda conn: self._append_locked(conn, prepared))

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
            self._t_audit,
            "%s",
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

        async def read(conn: Conn) -> list[dict[str, Any]]:
            cur = await conn.execute(query, params)
            return [unseal(*row) for row in await cur.fetchall()]

        return await self._op(read)

    async def scan_audit(self, after_seq: int, limit: int) -> list[StoredRecord]:
        query = (
            "SELECT seq, time, kind, model, version, rule, request_id, record, prev_hash, hash"
            f" FROM {self._t_audit} WHERE seq > %s ORDER BY seq LIMIT %s"
        )

        async def read(conn: Conn) -> list[StoredRecord]:
            cur = await conn.execute(query, (after_seq, limit))
            return [StoredRecord(unseal(*row[7:]), tuple(row[:7])) for row in await cur.fetchall()]

        return await self._op(read)

    async def audit_hashes(self, seqs: Sequence[int]) -> dict[int, str]:
        wanted = sorted({int(s) for s in seqs})
        query = f"SELECT seq, hash FROM {self._t_audit} WHERE seq = ANY(%s)"

        async def read(conn: Conn) -> dict[int, str]:
            cur = await conn.execute(query, (wanted,))
            return {int(seq): digest for seq, digest in await cur.fetchall()}

        return await self._op(read)

    async def prune_audit(
        self,
        max_age: float | None = None,
        max_count: int | None = None,
        actor: str = "modelrouter",
    ) -> int:
        check_prune(max_age, max_count)

        async def write(conn: Conn) -> int:
            now = self._clock()
            bounds = await self._bounds(conn)
            first_young = None
            if max_age is not None:
                cur = await conn.execute(
                    f"SELECT MIN(seq) FROM {self._t_audit} WHERE time >= %s", (now - max_age,)
                )
                row = await cur.fetchone()
                first_young = row[0] if row else None
            cutoff = prune_cutoff(bounds, max_count, first_young, max_age is not None)
            if cutoff <= bounds.anchor.seq:
                return 0
            if cutoff == bounds.head.seq:
                anchor = bounds.head
            else:
                cur = await conn.execute(
                    f"SELECT hash FROM {self._t_audit} WHERE seq = %s", (cutoff,)
                )
                found = await cur.fetchone()
                if found is None:
                    raise StoreError(f"audit record {cutoff} is missing: run 'audit verify'")
                anchor = ChainPoint(cutoff, found[0])
            cur = await conn.execute(f"DELETE FROM {self._t_audit} WHERE seq <= %s", (cutoff,))
            deleted = cur.rowcount
            await conn.execute(
                f"UPDATE {self._t_state} SET anchor_seq = %s, anchor_hash = %s WHERE id = 1",
                (anchor.seq, anchor.hash),
            )
            note = prune_record(deleted, anchor, actor, max_age, max_count, now)
            await self._append_locked(conn, prepare_records([note], now))
            return deleted

        return await self._write(write)

    async def _bounds(self, conn: Conn) -> AuditBounds:
        cur = await conn.execute(
            f"SELECT anchor_seq, anchor_hash, head_seq, head_hash FROM {self._t_state} WHERE id = 1"
        )
        row = await cur.fetchone()
        if row is None:
            raise StoreError(f"PostgreSQL store {self.url}: the state row is missing")
        return AuditBounds(ChainPoint(row[0], row[1]), ChainPoint(row[2], row[3]))

    async def audit_bounds(self) -> AuditBounds:
        return await self._op(self._bounds)

    # -- rollouts ------------------------------------------------------------------------

    async def get_rollout(self, name: str) -> RolloutRecord | None:
        async def read(conn: Conn) -> RolloutRecord | None:
            cur = await conn.execute(
                f"SELECT version, state, updated_at FROM {self._t_rollout} WHERE name = %s",
                (name,),
            )
            row = await cur.fetchone()
            return None if row is None else RolloutRecord(name, row[0], json.loads(row[1]), row[2])

        return await self._op(read)

    async def put_rollout(
        self, name: str, state: Mapping[str, Any], expected_version: int | None = None
    ) -> RolloutRecord:
        data = normalize_rollout_state(state)
        text = json.dumps(data, ensure_ascii=False)

        async def write(conn: Conn) -> RolloutRecord:
            async with conn.transaction():
                version, updated_at = await self._put_rollout_locked(
                    conn, name, text, expected_version
                )
                return RolloutRecord(name, version, data, updated_at)

        try:
            return await self._op(write, read_only=False)
        except StoreError as exc:
            if isinstance(exc.__cause__, psycopg.errors.UniqueViolation):
                raise RolloutConflict(f"rollout {name} was created concurrently; retry") from exc
            raise

    async def _put_rollout_locked(
        self, conn: Conn, name: str, text: str, expected_version: int | None
    ) -> tuple[int, float]:
        """Replace rollout ``name``'s state (JSON ``text``) inside the caller's transaction,
        its row locked first; its new version and time."""
        cur = await conn.execute(
            f"SELECT version FROM {self._t_rollout} WHERE name = %s FOR UPDATE", (name,)
        )
        row = await cur.fetchone()
        current = row[0] if row else 0
        check_rollout_expected(name, current, expected_version)
        version, updated_at = current + 1, self._clock()
        await conn.execute(
            f"INSERT INTO {self._t_rollout} VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (name) DO UPDATE SET version = excluded.version,"
            " state = excluded.state, updated_at = excluded.updated_at",
            (name, version, text, updated_at),
        )
        return version, updated_at

    async def list_rollouts(self) -> list[RolloutRecord]:
        async def read(conn: Conn) -> list[RolloutRecord]:
            cur = await conn.execute(
                f"SELECT name, version, state, updated_at FROM {self._t_rollout} ORDER BY name"
            )
            return [RolloutRecord(n, v, json.loads(t), u) for n, v, t, u in await cur.fetchall()]

        return await self._op(read)

    async def try_lock(self, name: str, owner: str, ttl: float) -> bool:
        """One statement: insert, or take over when expired or already ours."""

        async def write(conn: Conn) -> bool:
            now = self._clock()
            cur = await conn.execute(
                f"INSERT INTO {self._t_lock} AS l VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,"
                " expires = excluded.expires WHERE l.owner = excluded.owner OR l.expires <= %s",
                (name, owner, now + ttl, now),
            )
            return cur.rowcount == 1

        return await self._op(write, read_only=False)

    async def release_lock(self, name: str, owner: str) -> None:
        async def write(conn: Conn) -> None:
            await conn.execute(
                f"DELETE FROM {self._t_lock} WHERE name = %s AND owner = %s", (name, owner)
            )

        await self._op(write, read_only=False)

    # -- repository intents --------------------------------------------------------------

    async def put_intent(
        self, model: str, version: str, state: IntentState, actor: str, reason: str = ""
    ) -> IntentRecord:
        state = check_intent(model, version, state)

        async def write(conn: Conn) -> IntentRecord:
            cur = await conn.execute(f"SELECT COALESCE(MAX(revision), 0) FROM {self._t_intent}")
            row = await cur.fetchone()
            top = int(row[0]) if row else 0
            cur = await conn.execute(
                f"SELECT state FROM {self._t_intent} WHERE model = %s AND version = %s",
                (model, version),
            )
            old = await cur.fetchone()
            intent = IntentRecord(model, version, state, actor, reason, top + 1, self._clock())
            await conn.execute(
                f"INSERT INTO {self._t_intent} VALUES (%s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (model, version) DO UPDATE SET state = excluded.state,"
                " actor = excluded.actor, reason = excluded.reason,"
                " revision = excluded.revision, updated_at = excluded.updated_at",
                (model, version, state, actor, reason, intent.revision, intent.updated_at),
            )
            record = intent_audit_record(intent, old[0] if old else None)
            await self._append_locked(conn, prepare_records([record], intent.updated_at))
            return intent

        return await self._write(write)

    async def list_intents(self) -> list[IntentRecord]:
        async def read(conn: Conn) -> list[IntentRecord]:
            cur = await conn.execute(
                "SELECT model, version, state, actor, reason, revision, updated_at"
                f" FROM {self._t_intent} ORDER BY revision"
            )
            return [IntentRecord(*r) for r in await cur.fetchall()]

        return await self._op(read)

    async def intent_revision(self) -> int:
        async def read(conn: Conn) -> int:
            cur = await conn.execute(f"SELECT COALESCE(MAX(revision), 0) FROM {self._t_intent}")
            row = await cur.fetchone()
            return int(row[0]) if row else 0

        return await self._op(read)

    # -- MLflow aliases ------------------------------------------------------------------

    async def move_alias(
        self,
        name: str,
        alias: str,
        version: str,
        expected: str | None,
        record: Mapping[str, Any] | None = None,
    ) -> AliasRecord | None:
        prepared = None if record is None else prepare_records([record], self._clock())

        async def write(conn: Conn) -> AliasRecord | None:
            cur = await conn.execute(
                f"SELECT version FROM {self._t_alias} WHERE name = %s AND alias = %s",
                (name, alias),
            )
            row = await cur.fetchone()
            if (row[0] if row else None) != expected:
                return None
            cur = await conn.execute(f"SELECT COALESCE(MAX(revision), 0) FROM {self._t_alias}")
            top = await cur.fetchone()
            moved = AliasRecord(
                name, alias, str(version), (int(top[0]) if top else 0) + 1, self._clock()
            )
            await conn.execute(
                f"INSERT INTO {self._t_alias} VALUES (%s, %s, %s, %s, %s)"
                " ON CONFLICT (name, alias) DO UPDATE SET version = excluded.version,"
                " revision = excluded.revision, updated_at = excluded.updated_at",
                (name, alias, moved.version, moved.revision, moved.updated_at),
            )
            if prepared is not None:
                await self._append_locked(conn, prepared)
            return moved

        return await self._write(write)

    async def list_aliases(self) -> list[AliasRecord]:
        async def read(conn: Conn) -> list[AliasRecord]:
            cur = await conn.execute(
                "SELECT name, alias, version, revision, updated_at"
                f" FROM {self._t_alias} ORDER BY revision"
            )
            return [AliasRecord(*r) for r in await cur.fetchall()]

        return await self._op(read)

    # -- telemetry windows ---------------------------------------------------------------

    @property
    def _t_metric(self) -> str:
        return f'"{self.schema}".mr_metric'

    async def append_metric_rows(self, rows: Sequence[MetricRow]) -> None:
        values = [metric_values(r) for r in check_metric_rows(rows)]
        if not values:
            return
        query = (
            f"INSERT INTO {self._t_metric} ({METRIC_COLUMNS}) VALUES "
            "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
        )

        async def write(conn: Conn) -> None:
            async with conn.transaction(), conn.cursor() as cur:
                await cur.executemany(query, values)

        await self._op(write, read_only=False)

    async def query_metric_rows(
        self, model: str, version: str, since: float, until: float
    ) -> list[MetricRow]:
        query = (
            f"SELECT {METRIC_COLUMNS} FROM {self._t_metric}"
            " WHERE model = %s AND version = %s AND start >= %s AND start < %s ORDER BY start"
        )

        async def read(conn: Conn) -> list[MetricRow]:
            cur = await conn.execute(query, (model, version, since, until))
            return [metric_row(r) for r in await cur.fetchall()]

        return await self._op(read)

    async def prune_metric_rows(self, before: float) -> int:
        async def write(conn: Conn) -> int:
            cur = await conn.execute(f"DELETE FROM {self._t_metric} WHERE start < %s", (before,))
            return cur.rowcount

        return await self._op(write, read_only=False)


def _sealed_rows(prepared: list[dict[str, Any]], seq: int, prev: str) -> list[tuple[Any, ...]]:
    """Insert rows for ``prepared`` records chained after ``(seq, prev)``; hash is the last."""
    rows = []
    for data in prepared:
        seq += 1
        body, digest = seal_text(data, seq, prev)
        rows.append((seq, *index_columns(data), body, prev, digest))
        prev = digest
    return rows
