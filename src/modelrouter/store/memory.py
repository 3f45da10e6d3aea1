"""An in-process store for unit tests (``memory://``): same semantics, nothing shared."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Mapping, Sequence
from typing import Any

from modelrouter.audit.chain import GENESIS, ChainPoint, seal
from modelrouter.store.base import (
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
    Watch,
    change_record,
    check_expected,
    check_intent,
    check_metric_rows,
    check_prune,
    check_query,
    check_rollout_expected,
    duplicate_feedback,
    intent_audit_record,
    normalize_document,
    normalize_rollout_state,
    prepare_records,
    prune_cutoff,
    prune_record,
)


class MemoryStore(Store):
    """Everything in dicts and lists, guarded by one asyncio lock. Records are copied in and out,
    so a caller cannot edit the log by mutating what it got back."""

    def __init__(self, clock: Clock = time.time) -> None:
        super().__init__(clock)
        self.url = "memory://"
        self._lock = asyncio.Lock()
        self._routing: dict[str, RoutingRecord] = {}
        self._revision = 0
        self._audit: list[dict[str, Any]] = []
        self._feedback: set[Any] = set()
        """Request ids with a feedback record: at most one each (as the SQL stores' index)."""
        self._head = GENESIS
        self._anchor = GENESIS
        self._metric_rows: list[MetricRow] = []
        self._rollouts: dict[str, RolloutRecord] = {}
        self._locks: dict[str, tuple[str, float]] = {}
        self._intents: dict[tuple[str, str], IntentRecord] = {}
        self._aliases: dict[tuple[str, str], AliasRecord] = {}

    # -- routing -------------------------------------------------------------------------

    async def get_routing(self) -> dict[str, RoutingRecord]:
        return {m: _copy_routing(r) for m, r in self._routing.items()}

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
        async with self._lock:
            before = self._routing.get(model)
            check_expected(model, before.version if before else 0, expected_version)
            after = RoutingRecord(
                model, (before.version if before else 0) + 1, doc, self._clock(), actor
            )
            if rollout is not None:  # checked and normalized before anything changes
                state = normalize_rollout_state(rollout.state)
                self._put_rollout_locked(rollout.name, state, rollout.expected_version)
            self._append_locked(
                prepare_records([change_record(model, before, after, reason)], after.updated_at)
            )
            self._routing[model] = after
            self._revision += 1
        for w in self._watches:
            w.notify()
        return _copy_routing(after)

    async def revision(self) -> int:
        return self._revision

    async def _arm(self, watch: Watch, poll_interval: float) -> None:
        """Nothing to start: :meth:`put_routing` notifies the watches of this process directly."""

    # -- audit ---------------------------------------------------------------------------

    def _append_locked(self, prepared: list[dict[str, Any]]) -> list[int]:
        fresh = [d["request_id"] for d in prepared if d.get("kind") == "feedback"]
        fresh = [rid for rid in fresh if rid is not None]
        taken = self._feedback.intersection(fresh)
        if taken or len(set(fresh)) < len(fresh):
            raise duplicate_feedback(sorted(taken or fresh)[0])
        seqs = []
        head = self._head
        for data in prepared:
            sealed = seal(data, head.seq + 1, head.hash)
            self._audit.append(sealed)
            head = ChainPoint(sealed["seq"], sealed["hash"])
            seqs.append(head.seq)
        self._head = head
        self._feedback.update(fresh)
        return seqs

    async def append_audit(self, records: Sequence[Mapping[str, Any]]) -> list[int]:
        prepared = prepare_records(records, self._clock())
        if not prepared:
            return []
        async with self._lock:
            return self._append_locked(prepared)

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
        check_query(limit, order)
        wanted = {
            "model": model,
            "version": version,
            "rule": rule,
            "kind": kind,
            "request_id": request_id,
        }
        wanted = {k: v for k, v in wanted.items() if v is not None}
        records = self._audit if order == "asc" else reversed(self._audit)
        out: list[dict[str, Any]] = []
        for r in records:
            if limit is not None and len(out) >= limit:
                break
            if after_seq is not None and (
                r["seq"] <= after_seq if order == "asc" else r["seq"] >= after_seq
            ):
                continue
            if any(_text(r.get(k)) != v for k, v in wanted.items()):
                continue
            if since is not None and r["time"] < since:
                continue
            if until is not None and r["time"] > until:
                continue
            out.append(copy.deepcopy(r))
        return out

    async def prune_audit(
        self,
        max_age: float | None = None,
        max_count: int | None = None,
        actor: str = "modelrouter",
    ) -> int:
        check_prune(max_age, max_count)
        async with self._lock:
            now = self._clock()
            first_young = None
            if max_age is not None:
                young = [r["seq"] for r in self._audit if r["time"] >= now - max_age]
                first_young = min(young) if young else None
            bounds = AuditBounds(self._anchor, self._head)
            cutoff = prune_cutoff(bounds, max_count, first_young, max_age is not None)
            if cutoff <= self._anchor.seq:
                return 0
            kept = [r for r in self._audit if r["seq"] > cutoff]
            gone = [r for r in self._audit if r["seq"] <= cutoff]
            self._audit = kept
            last = next((r for r in gone if r["seq"] == cutoff), None)
            self._anchor = ChainPoint(cutoff, last["hash"] if last else self._head.hash)
            deleted = len(gone)
            self._append_locked(
                prepare_records(
                    [prune_record(deleted, self._anchor, actor, max_age, max_count, now)], now
                )
            )
            return deleted

    async def audit_bounds(self) -> AuditBounds:
        return AuditBounds(self._anchor, self._head)

    def tamper(self, seq: int, **changes: Any) -> None:
        """Edit a stored record behind the chain's back (for tests of verification)."""
        for r in self._audit:
            if r["seq"] == seq:
                r.update(changes)

    def delete_raw(self, seq: int) -> None:
        """Delete a stored record behind the chain's back (for tests of verification)."""
        self._audit = [r for r in self._audit if r["seq"] != seq]

    # -- rollouts ------------------------------------------------------------------------

    async def get_rollout(self, name: str) -> RolloutRecord | None:
        r = self._rollouts.get(name)
        return None if r is None else _copy_rollout(r)

    async def put_rollout(
        self, name: str, state: Mapping[str, Any], expected_version: int | None = None
    ) -> RolloutRecord:
        data = normalize_rollout_state(state)
        async with self._lock:
            after = self._put_rollout_locked(name, data, expected_version)
        return _copy_rollout(after)

    def _put_rollout_locked(
        self, name: str, data: dict[str, Any], expected_version: int | None
    ) -> RolloutRecord:
        before = self._rollouts.get(name)
        current = before.version if before else 0
        check_rollout_expected(name, current, expected_version)
        after = RolloutRecord(name, current + 1, data, self._clock())
        self._rollouts[name] = after
        return after

    async def list_rollouts(self) -> list[RolloutRecord]:
        return [_copy_rollout(self._rollouts[n]) for n in sorted(self._rollouts)]

    async def try_lock(self, name: str, owner: str, ttl: float) -> bool:
        now = self._clock()
        held = self._locks.get(name)
        if held is not None and held[0] != owner and held[1] > now:
            return False
        self._locks[name] = (owner, now + ttl)
        return True

    async def release_lock(self, name: str, owner: str) -> None:
        held = self._locks.get(name)
        if held is not None and held[0] == owner:
            del self._locks[name]

    # -- telemetry windows ---------------------------------------------------------------

    async def put_intent(
        self, model: str, version: str, state: IntentState, actor: str, reason: str = ""
    ) -> IntentRecord:
        state = check_intent(model, version, state)
        async with self._lock:
            revision = max((i.revision for i in self._intents.values()), default=0) + 1
            intent = IntentRecord(model, version, state, actor, reason, revision, self._clock())
            old = self._intents.get((model, version))
            record = intent_audit_record(intent, old.state if old else None)
            self._append_locked(prepare_records([record], intent.updated_at))
            self._intents[(model, version)] = intent
        return intent

    async def list_intents(self) -> list[IntentRecord]:
        return sorted(self._intents.values(), key=lambda i: i.revision)

    async def intent_revision(self) -> int:
        return max((i.revision for i in self._intents.values()), default=0)

    async def move_alias(
        self,
        name: str,
        alias: str,
        version: str,
        expected: str | None,
        record: Mapping[str, Any] | None = None,
    ) -> AliasRecord | None:
        async with self._lock:
            current = self._aliases.get((name, alias))
            if (current.version if current else None) != expected:
                return None
            revision = max((a.revision for a in self._aliases.values()), default=0) + 1
            moved = AliasRecord(name, alias, str(version), revision, self._clock())
            if record is not None:
                self._append_locked(prepare_records([record], moved.updated_at))
            self._aliases[(name, alias)] = moved
        return moved

    async def list_aliases(self) -> list[AliasRecord]:
        return sorted(self._aliases.values(), key=lambda a: a.revision)

    async def append_metric_rows(self, rows: Sequence[MetricRow]) -> None:
        checked = check_metric_rows(rows)
        self._metric_rows.extend(copy.deepcopy(r) for r in checked)

    async def query_metric_rows(
        self, model: str, version: str, since: float, until: float
    ) -> list[MetricRow]:
        found = [
            copy.deepcopy(r)
            for r in self._metric_rows
            if r.model == model and r.version == version and since <= r.start < until
        ]
        found.sort(key=lambda r: r.start)
        return found

    async def prune_metric_rows(self, before: float) -> int:
        kept = [r for r in self._metric_rows if r.start >= before]
        deleted = len(self._metric_rows) - len(kept)
        self._metric_rows = kept
        return deleted


def _text(v: Any) -> str | None:
    return None if v is None else str(v)


def _copy_routing(r: RoutingRecord) -> RoutingRecord:
    return RoutingRecord(r.model, r.version, copy.deepcopy(r.document), r.updated_at, r.actor)


def _copy_rollout(r: RolloutRecord) -> RolloutRecord:
    return RolloutRecord(r.name, r.version, copy.deepcopy(r.state), r.updated_at)
