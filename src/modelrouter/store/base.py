"""The Store interface: state that every gateway process must agree on.

Two things live here: the routing tables (one versioned JSON document per model) and the audit
log (append-only, hash-chained, see :mod:`modelrouter.audit.chain`). Implementations:
:class:`~modelrouter.store.memory.MemoryStore` (tests),
:class:`~modelrouter.store.sqlite.SQLiteStore` (embedded default; processes of one machine) and
:class:`~modelrouter.store.postgres.PostgresStore` (several machines).

Every method is async and raises only :mod:`modelrouter.errors` types: :class:`StoreError` when the
backend fails (retrying may help), :class:`Conflict` when an optimistic update loses a race,
:class:`InvalidInput` for a record or document that is not JSON.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

from modelrouter.audit import records
from modelrouter.audit.chain import (
    ChainPoint,
    ChainVerifier,
    IndexRow,
    VerifyResult,
    normalize,
    prepare_record,
)
from modelrouter.errors import Conflict, InvalidInput, RolloutConflict
from modelrouter.store.faults import StoreFault

log = logging.getLogger("modelrouter.store")

Order = Literal["asc", "desc"]
WatchCallback = Callable[[], Awaitable[None]]
Clock = Callable[[], float]

SCHEMA_VERSION = 2
"""Version of the table layout; a store refuses a database written by a newer layout and
migrates an older one (1 -> 2: the state row's ``epoch``, see :mod:`modelrouter.store.faults`)."""


@dataclass(frozen=True, slots=True)
class RoutingRecord:
    """The current routing document of one model. ``version`` starts at 1 and grows by 1."""

    model: str
    version: int
    document: dict[str, Any]
    updated_at: float
    actor: str


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    """The persisted state of one rollout. ``version`` starts at 1 and grows by 1 per write."""

    name: str
    version: int
    state: dict[str, Any]
    updated_at: float


IntentState = Literal["loaded", "unloaded"]
INTENT_STATES: tuple[IntentState, ...] = ("loaded", "unloaded")


@dataclass(frozen=True, slots=True)
class RolloutWrite:
    """A rollout state written in the same transaction as a routing document
    (:meth:`Store.put_routing`): a rollout's step moves the weights and records where it is
    as one change, so no reader sees the new weights with the old state, or the reverse."""

    name: str
    state: Mapping[str, Any]
    expected_version: int
    """The stored version the controller read (0: none yet); the new one is this plus 1."""


@dataclass(frozen=True, slots=True)
class IntentRecord:
    """What every gateway must do with one model version: keep it ``loaded`` or ``unloaded``.

    ``revision`` counts intent writes across all versions (1, 2, ...): a gateway applies each
    intent whose revision it has not applied yet (see :mod:`modelrouter.runtime.intents`)."""

    model: str
    version: str
    state: IntentState
    actor: str
    reason: str
    revision: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class AliasRecord:
    """Where an MLflow alias (``name@alias``) points, as the cluster's alias watcher last saw it.

    ``revision`` counts alias writes across all aliases; every gateway swaps its
    ``models:/name@alias`` versions to ``version`` (see :mod:`modelrouter.runtime.aliases`)."""

    name: str
    alias: str
    version: str
    revision: int
    updated_at: float


@dataclass(frozen=True, slots=True)
class AuditBounds:
    """Where the stored log starts (``anchor``: the last pruned record) and ends (``head``)."""

    anchor: ChainPoint
    head: ChainPoint


@dataclass(frozen=True, slots=True)
class StoredRecord:
    """A record as read for verification: the record and, in SQL stores, its index columns
    (:data:`~modelrouter.audit.chain.INDEX_COLUMNS`) as stored beside it."""

    record: dict[str, Any]
    columns: IndexRow | None = None


class Watch:
    """A running :meth:`Store.watch`: calls ``callback()`` after changes until :meth:`stop`.

    Changes are coalesced: several puts in quick succession may give one call, and calls never
    overlap, so the callback should re-read :meth:`Store.get_routing` rather than count calls.
    An exception in the callback is logged and the watch goes on.
    """

    def __init__(self, callback: WatchCallback) -> None:
        self._callback = callback
        self._event = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = [asyncio.create_task(self._dispatch())]
        self.calls = 0

    def notify(self) -> None:
        """Schedule a call of the callback (from the event loop thread)."""
        self._event.set()

    def add_task(self, task: asyncio.Task[None]) -> None:
        """Tie a background task (a poller or a listener) to this watch's lifetime."""
        self._tasks.append(task)

    @property
    def running(self) -> bool:
        return any(not t.done() for t in self._tasks)

    async def _dispatch(self) -> None:
        while True:
            await self._event.wait()
            self._event.clear()
            try:
                await self._callback()
            except Exception:
                log.exception("routing watch callback failed")
            self.calls += 1

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()


class Store(abc.ABC):
    """Shared state of all gateway processes. Use ``async with`` or call :meth:`close`."""

    url: str = ""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._watches: list[Watch] = []
        self._closed = False

    # -- lifecycle -----------------------------------------------------------------------

    async def open(self) -> None:  # noqa: B027 (a hook, empty for stores without a connection)
        """Connect and create the tables if needed. Optional: every method opens on first use."""

    async def close(self) -> None:
        """Stop every watch and release connections. Idempotent."""
        self._closed = True
        watches, self._watches = self._watches, []
        for w in watches:
            await w.stop()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- routing tables ------------------------------------------------------------------

    @abc.abstractmethod
    async def get_routing(self) -> dict[str, RoutingRecord]:
        """The current routing document of every model that has one."""

    @abc.abstractmethod
    async def put_routing(
        self,
        model: str,
        document: Mapping[str, Any],
        actor: str,
        reason: str,
        expected_version: int | None = None,
        rollout: RolloutWrite | None = None,
    ) -> RoutingRecord:
        """Replace the routing document of ``model``, bump its version and :meth:`revision`.

        With ``expected_version`` (0 for "the model has no document yet") the write happens only
        if the stored version still equals it, else :class:`~modelrouter.errors.Conflict`.
        The same transaction appends a ``change`` audit record (actor, before, after, reason)
        and notifies every watcher. With ``rollout``, it also replaces that rollout's state
        (as :meth:`put_rollout` with its ``expected_version``): both are written or neither,
        and a stale rollout version is a :class:`~modelrouter.errors.RolloutConflict`.
        """

    @abc.abstractmethod
    async def revision(self) -> int:
        """A counter bumped by every :meth:`put_routing` of any process; cheap to poll."""

    async def watch(self, callback: WatchCallback, poll_interval: float = 0.5) -> Watch:
        """Call ``callback()`` after every routing change made by any process.

        Returns once the watch is armed: a change committed after this returns is seen. Stop it
        with :meth:`Watch.stop` or :meth:`close`.
        """
        if poll_interval <= 0:
            raise InvalidInput("poll_interval must be positive")
        w = Watch(callback)
        try:
            await self._arm(w, poll_interval)
        except BaseException:
            await w.stop()
            raise
        self._watches = [x for x in self._watches if x.running]
        self._watches.append(w)
        return w

    @abc.abstractmethod
    async def _arm(self, watch: Watch, poll_interval: float) -> None:
        """Start whatever makes ``watch.notify()`` happen on a change (a poller, a listener)."""

    async def _poll_revision(self, watch: Watch, poll_interval: float) -> None:
        """Arm ``watch`` by polling :meth:`revision` (for stores without push notification)."""
        last = await self.revision()

        async def poll() -> None:
            nonlocal last
            while True:
                await asyncio.sleep(poll_interval)
                try:
                    current = await self.revision()
                except Exception as exc:
                    log.warning("routing watch: cannot read the revision: %s", exc)
                    continue
                if current != last:
                    last = current
                    watch.notify()

        watch.add_task(asyncio.create_task(poll()))

    # -- audit log -----------------------------------------------------------------------

    @abc.abstractmethod
    async def append_audit(self, records: Sequence[Mapping[str, Any]]) -> list[int]:
        """Append ``records`` in one transaction, in order; return their seqs.

        Each record needs a ``kind``; ``time`` is set to now when absent; ``seq``, ``prev_hash``
        and ``hash`` are assigned by the store (values given for them are replaced).
        """

    @abc.abstractmethod
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
        """Records matching every filter given, ``limit`` of them (None: all) in seq ``order``.

        ``since``/``until`` bound ``time`` (epoch seconds, both inclusive). ``after_seq`` is a
        cursor: records that come after it in the requested order (seq > after_seq ascending,
        seq < after_seq descending), so the last seq of a page fetches the next page.
        """

    async def get_decision(self, request_id: str) -> dict[str, Any] | None:
        """The newest ``decision`` record of ``request_id``, or None."""
        found = await self.query_audit(request_id=request_id, kind="decision", limit=1)
        return found[0] if found else None

    async def iter_audit(self, batch: int = 1000) -> AsyncIterator[dict[str, Any]]:
        """Every stored record in seq order, read ``batch`` at a time."""
        if batch < 1:
            raise InvalidInput("batch must be at least 1")
        after: int | None = None
        while True:
            page = await self.query_audit(limit=batch, order="asc", after_seq=after)
            for record in page:
                yield record
            if len(page) < batch:
                return
            after = page[-1]["seq"]

    @abc.abstractmethod
    async def prune_audit(
        self,
        max_age: float | None = None,
        max_count: int | None = None,
        actor: str = "modelrouter",
    ) -> int:
        """Delete the oldest records: those older than ``max_age`` seconds, and all but the
        newest ``max_count``. Returns how many were deleted.

        The seq and hash of the last deleted record become the new anchor, so the rest still
        verifies; when anything was deleted, an ``admin`` record (action ``prune_audit``, by
        ``actor``) is appended in the same transaction, so a prune is itself on the record.
        """

    @abc.abstractmethod
    async def audit_bounds(self) -> AuditBounds:
        """The anchor and head of the log, read together."""

    async def scan_audit(self, after_seq: int, limit: int) -> list[StoredRecord]:
        """Up to ``limit`` stored records with seq > ``after_seq``, in seq order, with the index
        columns a SQL store filters on (what :meth:`verify_audit` cross-checks)."""
        page = await self.query_audit(limit=limit, order="asc", after_seq=after_seq)
        return [StoredRecord(r) for r in page]

    async def audit_hashes(self, seqs: Sequence[int]) -> dict[int, str]:
        """The stored ``hash`` of each of ``seqs`` that is in the log (checkpoint checks)."""
        out: dict[int, str] = {}
        for seq in seqs:
            page = await self.scan_audit(seq - 1, 1)
            if page and page[0].record.get("seq") == seq:
                out[seq] = page[0].record["hash"]
        return out

    async def verify_audit(self, batch: int = 1000) -> VerifyResult:
        """Verify the whole stored log against its anchor and head, ``batch`` records at a time
        (memory stays bounded by one batch).

        Checks every record's hash and link, that its index columns are the ones derived from
        it, that nothing is missing up to the head and that nothing is stored after it, nor at
        or before the anchor (a prune deletes those: one still there means the anchor was
        moved to leave records unverified).
        Records appended while this runs are not checked (it stops at the head read first).
        A concurrent prune can make it fail spuriously.
        """
        if batch < 1:
            raise InvalidInput("batch must be at least 1")
        bounds = await self.audit_bounds()
        verifier = ChainVerifier(bounds.anchor)
        first = await self.scan_audit(-1, 1)
        if first:
            seq = first[0].record.get("seq") if first[0].columns is None else first[0].columns[0]
            if isinstance(seq, int) and seq <= bounds.anchor.seq:
                return verifier.before_anchor(seq, bounds.anchor)
        after = bounds.anchor.seq
        while not verifier.failed:
            page = await self.scan_audit(after, batch)
            for row in page:
                seq = row.record.get("seq")
                if row.columns is not None:
                    seq = row.columns[0]
                if isinstance(seq, int) and seq > bounds.head.seq:
                    return await self._past_head(verifier, seq, bounds.head)
                if not verifier.feed(row.record, row.columns):
                    break
            if len(page) < batch:
                break
            last = page[-1]
            after = last.columns[0] if last.columns is not None else last.record["seq"]
        return verifier.finish(bounds.head)

    async def audit_gaps(self) -> list[dict[str, Any]]:
        """Every ``gap`` record (records lost by a store fault), oldest first."""
        return await self.query_audit(kind="gap", limit=None, order="asc")

    async def reconcile(self) -> list[StoreFault]:
        """Check that the store still holds what this client saw; repair it if not.

        A store that came back empty or at an older head (dropped and recreated, restored) gets
        its schema back and a ``gap`` record naming the lost range before anything else is
        appended (see :mod:`modelrouter.store.faults`). Returns the faults handled since the last
        call, including those found inside writes; the gateway then re-seeds what it owns.
        Stores that cannot lose state (memory) return ``[]``.
        """
        return []

    async def _past_head(self, verifier: ChainVerifier, seq: int, head: ChainPoint) -> VerifyResult:
        """A record after the head read first: appended since (fine, stop there), or planted
        outside the store (the head, updated in every append's transaction, is still below)."""
        if verifier.last.seq < head.seq:  # something before the head is missing
            return verifier.finish(head)
        current = (await self.audit_bounds()).head
        if current.seq >= seq:
            return verifier.finish(head)
        return verifier.past_head(seq, current)

    # -- rollouts (state and lease locks of the rollout controllers) -----------------------

    @abc.abstractmethod
    async def get_rollout(self, name: str) -> RolloutRecord | None:
        """The stored state of rollout ``name``, or None."""

    @abc.abstractmethod
    async def put_rollout(
        self, name: str, state: Mapping[str, Any], expected_version: int | None = None
    ) -> RolloutRecord:
        """Replace the state of rollout ``name``; with ``expected_version`` (0: none yet) only
        if the stored version still equals it, else :class:`~modelrouter.errors.Conflict`."""

    @abc.abstractmethod
    async def list_rollouts(self) -> list[RolloutRecord]:
        """Every stored rollout, by name."""

    @abc.abstractmethod
    async def try_lock(self, name: str, owner: str, ttl: float) -> bool:
        """Take or renew the lease ``name`` for ``owner`` for ``ttl`` seconds.

        True when ``owner`` holds it now: it was free, expired, or already ``owner``'s.
        """

    @abc.abstractmethod
    async def release_lock(self, name: str, owner: str) -> None:
        """Give up the lease ``name`` if ``owner`` holds it (else nothing happens)."""

    # -- repository intents (explicit load/unload, followed by every gateway) ----------------

    @abc.abstractmethod
    async def put_intent(
        self, model: str, version: str, state: IntentState, actor: str, reason: str = ""
    ) -> IntentRecord:
        """Record that ``model``/``version`` must be ``state`` on every gateway, with the next
        intent revision; the same transaction appends one ``admin`` audit record (action
        ``load`` or ``unload``), so the request is on the record once, whatever the number of
        gateways that apply it."""

    @abc.abstractmethod
    async def list_intents(self) -> list[IntentRecord]:
        """Every stored intent, by revision."""

    @abc.abstractmethod
    async def intent_revision(self) -> int:
        """The newest intent revision (0: none); cheap to poll."""

    # -- MLflow aliases (written by the one gateway holding the watch lease) -----------------

    @abc.abstractmethod
    async def move_alias(
        self,
        name: str,
        alias: str,
        version: str,
        expected: str | None,
        record: Mapping[str, Any] | None = None,
    ) -> AliasRecord | None:
        """Set ``name@alias`` to ``version`` if it still points at ``expected`` (None: not
        stored yet), with the next alias revision, and append ``record`` (the move's audit
        record) in the same transaction. None when it changed meanwhile (nothing written)."""

    @abc.abstractmethod
    async def list_aliases(self) -> list[AliasRecord]:
        """Every stored alias, by revision."""

    # -- telemetry windows (per-gateway, per-bucket rows; see modelrouter.telemetry.recorder) --

    @abc.abstractmethod
    async def append_metric_rows(self, rows: Sequence[MetricRow]) -> None:
        """Append telemetry rows in one transaction. Rows are deltas: several rows for the same
        gateway, version and bucket are all kept, and readers sum them."""

    @abc.abstractmethod
    async def query_metric_rows(
        self, model: str, version: str, since: float, until: float
    ) -> list[MetricRow]:
        """The rows of ``model``/``version`` (every gateway) whose bucket starts in
        ``[since, until)``, oldest first."""

    @abc.abstractmethod
    async def prune_metric_rows(self, before: float) -> int:
        """Delete the rows whose bucket starts before ``before``; returns how many."""


# -- helpers shared by the implementations ---------------------------------------------------


def prepare_records(records: Sequence[Mapping[str, Any]], now: float) -> list[dict[str, Any]]:
    """Normalize records for :meth:`Store.append_audit` (see :func:`chain.prepare_record`)."""
    return [prepare_record(r, now) for r in records]


def normalize_document(document: Mapping[str, Any]) -> dict[str, Any]:
    """A routing document as plain JSON data (the store does not interpret it)."""
    if not isinstance(document, Mapping):
        raise InvalidInput(f"a routing document must be a mapping, not {type(document).__name__}")
    return normalize(document)


FEEDBACK_ONCE_INDEX = "mr_audit_feedback_once"
"""The unique index that makes feedback unique per request id (every gateway, one store)."""


def feedback_once_sql(table: str) -> str:
    """The partial unique index on ``table``: at most one ``feedback`` record per request."""
    return (
        f"CREATE UNIQUE INDEX IF NOT EXISTS {FEEDBACK_ONCE_INDEX} ON {table} (request_id)"
        " WHERE kind = 'feedback'"
    )


def duplicate_feedback(detail: object) -> Conflict:
    """What :meth:`Store.append_audit` raises for a second feedback of one request."""
    return Conflict(f"request_id: feedback for this request was already given ({detail})")


def check_expected(model: str, current: int, expected: int | None) -> None:
    """Raise :class:`Conflict` when an optimistic write's ``expected`` version is stale."""
    if expected is not None and expected != current:
        raise Conflict(
            f"routing of {model} is at version {current}, not {expected}: "
            "it changed since you read it; read it again and retry"
        )


def change_record(
    model: str,
    before: RoutingRecord | None,
    after: RoutingRecord,
    reason: str,
) -> dict[str, Any]:
    """The ``change`` audit record of a :meth:`Store.put_routing`."""
    return records.routing_change(
        model=model,
        actor=after.actor,
        before=None if before is None else before.document,
        previous_routing_version=None if before is None else before.version,
        after=after.document,
        routing_version=after.version,
        reason=reason,
        time=after.updated_at,
    )


def check_intent(model: str, version: str, state: str) -> IntentState:
    if state not in INTENT_STATES:
        raise InvalidInput(f"intent state must be 'loaded' or 'unloaded', not {state!r}")
    for name, value in (("model", model), ("version", version)):
        if not isinstance(value, str) or not value:
            raise InvalidInput(f"intent {name} must be a non-empty string")
    return "loaded" if state == "loaded" else "unloaded"


def intent_audit_record(intent: IntentRecord, before: str | None) -> dict[str, Any]:
    """The ``admin`` audit record of :meth:`Store.put_intent`: ``before``/``after`` are the
    stored intents (``none`` when there was none): the record is the cluster's, written before
    any gateway applies it."""
    record = records.version_action(
        actor=intent.actor,
        action="load" if intent.state == "loaded" else "unload",
        model=intent.model,
        version=intent.version,
        before=before or "none",
        after=intent.state,
        reason=intent.reason or f"{intent.state} on every gateway",
        time=intent.updated_at,
    )
    record["what"] = f"version {intent.version} of {intent.model}"
    record["intent"] = intent.state
    record["intent_revision"] = intent.revision
    return record


def prune_record(
    deleted: int,
    anchor: ChainPoint,
    actor: str,
    max_age: float | None,
    max_count: int | None,
    now: float,
) -> dict[str, Any]:
    """The ``admin`` audit record a prune leaves behind."""
    return records.pruned(
        deleted=deleted,
        anchor_seq=anchor.seq,
        actor=actor,
        max_age=max_age,
        max_count=max_count,
        time=now,
    )


def audit_select(
    table: str,
    placeholder: str,
    model: str | None,
    version: str | None,
    rule: str | None,
    kind: str | None,
    request_id: str | None,
    since: float | None,
    until: float | None,
    limit: int | None,
    order: Order,
    after_seq: int | None,
) -> tuple[str, list[Any]]:
    """The SQL query and parameters of :meth:`Store.query_audit`, for a driver whose
    parameter placeholder is ``placeholder`` (``?`` for SQLite, ``%s`` for psycopg)."""
    check_query(limit, order)
    p = placeholder
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (
        ("model", model),
        ("version", version),
        ("rule", rule),
        ("kind", kind),
        ("request_id", request_id),
    ):
        if value is not None:
            clauses.append(f"{column} = {p}")
            params.append(value)
    if since is not None:
        clauses.append(f"time >= {p}")
        params.append(since)
    if until is not None:
        clauses.append(f"time <= {p}")
        params.append(until)
    if after_seq is not None:
        clauses.append(f"seq > {p}" if order == "asc" else f"seq < {p}")
        params.append(after_seq)
    query = f"SELECT record, prev_hash, hash FROM {table}"
    if clauses:
        query += " WHERE " + " AND ".join(clauses)
    query += f" ORDER BY seq {order.upper()}"
    if limit is not None:
        query += f" LIMIT {p}"
        params.append(limit)
    return query, params


def check_query(limit: int | None, order: str) -> None:
    if order not in ("asc", "desc"):
        raise InvalidInput(f"order must be 'asc' or 'desc', not {order!r}")
    if limit is not None and limit < 0:
        raise InvalidInput("limit must not be negative")


def check_prune(max_age: float | None, max_count: int | None) -> None:
    if max_age is not None and max_age < 0:
        raise InvalidInput("max_age must not be negative")
    if max_count is not None and max_count < 0:
        raise InvalidInput("max_count must not be negative")


def prune_cutoff(
    bounds: AuditBounds,
    max_count: int | None,
    first_young_seq: int | None,
    use_age: bool,
) -> int:
    """The seq up to which a prune deletes (``bounds.anchor.seq``: nothing).

    ``first_young_seq`` is the lowest seq whose time is within ``max_age``; the log is cut just
    before it so that the remaining records stay one unbroken chain.
    """
    cutoff = bounds.anchor.seq
    if max_count is not None:
        cutoff = max(cutoff, bounds.head.seq - max_count)
    if use_age:
        cutoff = max(cutoff, bounds.head.seq if first_young_seq is None else first_young_seq - 1)
    return min(cutoff, bounds.head.seq)


def check_rollout_expected(name: str, current: int, expected: int | None) -> None:
    """Raise :class:`RolloutConflict` when an optimistic rollout write's version is stale."""
    if expected is not None and expected != current:
        raise RolloutConflict(
            f"rollout {name} is at version {current}, not {expected}: "
            "it changed since you read it; read it again and retry"
        )


def normalize_rollout_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """A rollout state as plain JSON data."""
    if not isinstance(state, Mapping):
        raise InvalidInput(f"a rollout state must be a mapping, not {type(state).__name__}")
    return normalize(state)


def stored_rollout_state(rollout: RolloutWrite | None) -> str:
    """The JSON text a SQL store keeps for the state of a rollout written together with a
    routing document ("" when there is none), checked before the transaction starts."""
    if rollout is None:
        return ""
    return json.dumps(normalize_rollout_state(rollout.state), ensure_ascii=False)


# -- telemetry rows ---------------------------------------------------------------------------


@dataclass(slots=True)
class MetricRow:
    """What one gateway counted for one model version in one time bucket (see
    :mod:`modelrouter.telemetry.recorder`). ``latency`` maps a log-spaced latency bucket index
    to a count."""

    gateway: str
    model: str
    version: str
    start: float
    """Start of the time bucket, epoch seconds."""
    requests: int = 0
    errors: int = 0
    latency: dict[int, int] = field(default_factory=dict)
    feedback: int = 0
    correct: int = 0
    abs_error_sum: float = 0.0
    rewards: int = 0
    reward_sum: float = 0.0
    shadow_compared: int = 0
    shadow_agreeing: int = 0

    def latency_json(self) -> str:
        """The latency histogram as compact JSON text (how the SQL stores keep it)."""
        doc = {str(k): v for k, v in sorted(self.latency.items())}
        return json.dumps(doc, separators=(",", ":"))

    @staticmethod
    def parse_latency(text: str) -> dict[int, int]:
        return {int(k): int(v) for k, v in json.loads(text).items()}


METRIC_COLUMNS = (
    "gateway, model, version, start, requests, errors, latency, feedback, correct,"
    " abs_error_sum, rewards, reward_sum, shadow_compared, shadow_agreeing"
)
"""The metric-row table's columns, in :class:`MetricRow` field order (SQL stores)."""


def metric_values(r: MetricRow) -> tuple[Any, ...]:
    """A row's values for :data:`METRIC_COLUMNS` (latency as JSON)."""
    return (
        r.gateway,
        r.model,
        r.version,
        float(r.start),
        r.requests,
        r.errors,
        r.latency_json(),
        r.feedback,
        r.correct,
        float(r.abs_error_sum),
        r.rewards,
        float(r.reward_sum),
        r.shadow_compared,
        r.shadow_agreeing,
    )


def metric_row(row: Sequence[Any]) -> MetricRow:
    """The :class:`MetricRow` of a SQL row selected as :data:`METRIC_COLUMNS`."""
    values = list(row)
    values[6] = MetricRow.parse_latency(values[6])
    return MetricRow(*values)


def check_metric_rows(rows: Sequence[MetricRow]) -> list[MetricRow]:
    """Refuse rows a SQL column or a sum cannot hold (non-finite figures, negative counts)."""
    out = list(rows)
    for r in out:
        if not isinstance(r, MetricRow):
            raise InvalidInput(f"a metric row must be a MetricRow, not {type(r).__name__}")
        figures = (r.start, r.abs_error_sum, r.reward_sum)
        if not all(math.isfinite(float(x)) for x in figures):
            raise InvalidInput(f"metric row of {r.model}/{r.version}: non-finite figure")
        counts = (r.requests, r.errors, r.feedback, r.correct, r.rewards)
        if min(counts) < 0 or min((r.shadow_compared, r.shadow_agreeing)) < 0:
            raise InvalidInput(f"metric row of {r.model}/{r.version}: negative count")
    return out
