"""Audit reads of the control plane: query, explain, verify.

Transport-neutral: the REST admin API, the CLI (through a gateway or, offline, on the store
itself) and the gRPC servicer all build an :class:`AuditFilter` from what their caller gave and
call :class:`AuditReads`, so a filter means the same everywhere and a bad one is refused the
same way (:class:`~modelrouter.errors.InvalidInput` naming the field).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelrouter.audit.explain import explain
from modelrouter.config.durations import parse_time
from modelrouter.errors import InvalidInput, NotFound
from modelrouter.store.base import Order, Store

AUDIT_KINDS = ("decision", "change", "admin", "rollout", "feedback", "gap")
"""Every kind of audit record; a query for any other kind is refused."""

MAX_LIMIT = 10_000
"""The most records one query returns (page with ``after_seq`` for more)."""

TEXT_FILTERS = ("model", "version", "rule", "kind", "request_id")
TIME_FILTERS = ("since", "until")
INT_FILTERS = ("limit", "after_seq")
FILTERS = (*TEXT_FILTERS, *TIME_FILTERS, *INT_FILTERS, "order")


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which audit records to return: every filter given must hold.

    ``since``/``until`` are epoch seconds (inclusive); ``after_seq`` is a paging cursor (see
    :meth:`Store.query_audit`). Construction validates, so no transport can pass a bad one.
    """

    model: str | None = None
    version: str | None = None
    rule: str | None = None
    kind: str | None = None
    request_id: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int = 100
    order: Order = "desc"
    after_seq: int | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in AUDIT_KINDS:
            raise InvalidInput(
                f"kind: unknown audit record kind {self.kind!r} (known: {', '.join(AUDIT_KINDS)})"
            )
        if self.order not in ("asc", "desc"):
            raise InvalidInput(f"order: must be 'asc' or 'desc', not {self.order!r}")
        if type(self.limit) is not int or not 0 <= self.limit <= MAX_LIMIT:
            raise InvalidInput(f"limit: must be an integer from 0 to {MAX_LIMIT}")
        if self.after_seq is not None and (type(self.after_seq) is not int or self.after_seq < 0):
            raise InvalidInput("after_seq: must be a non-negative integer")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise InvalidInput("since: must not be later than until")

    @classmethod
    def parse(cls, params: Mapping[str, str], now: float | None = None) -> AuditFilter:
        """A filter from text parameters (a URL query, CLI options); unknown names refused.

        Times are ISO 8601, epoch seconds or a duration ago (``10m``)."""
        unknown = sorted(set(params) - set(FILTERS))
        if unknown:
            raise InvalidInput(
                f"unknown audit filter {unknown[0]!r} (filters: {', '.join(sorted(FILTERS))})"
            )
        now = time.time() if now is None else now
        args: dict[str, Any] = {k: params[k] for k in TEXT_FILTERS if k in params}
        for k in TIME_FILTERS:
            if k in params:
                try:
                    args[k] = parse_time(params[k], now)
                except ValueError as exc:
                    raise InvalidInput(f"{k}: {exc}") from None
        for k in INT_FILTERS:
            if k in params:
                try:
                    args[k] = int(params[k])
                except ValueError:
                    raise InvalidInput(f"{k}: must be an integer, got {params[k]!r}") from None
        if "order" in params:
            args["order"] = params["order"]
        return cls(**args)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of :meth:`AuditReads.verify`. ``anchor_seq`` > 0 when older records were
    pruned (verification starts after it)."""

    ok: bool
    checked: int
    first_bad_seq: int | None
    reason: str
    anchor_seq: int

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "firstBadSeq": self.first_bad_seq,
            "reason": self.reason,
            "anchorSeq": self.anchor_seq,
        }


class AuditReads:
    """Query, explain and verify over a store; needs nothing else, so it runs offline too."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def query(self, f: AuditFilter) -> list[dict[str, Any]]:
        return await self.store.query_audit(
            model=f.model,
            version=f.version,
            rule=f.rule,
            kind=f.kind,
            request_id=f.request_id,
            since=f.since,
            until=f.until,
            limit=f.limit,
            order=f.order,
            after_seq=f.after_seq,
        )

    async def explain(self, request_id: str) -> dict[str, Any]:
        """The decision record of ``request_id`` and why, in words; NotFound when none."""
        if not request_id:
            raise InvalidInput("request_id: required")
        record = await self.store.get_decision(request_id)
        if record is None:
            raise NotFound(f"no decision recorded for request id '{request_id}'")
        return {"record": record, "explanation": explain(record)}

    async def verify(self) -> VerifyReport:
        result = await self.store.verify_audit()
        bounds = await self.store.audit_bounds()
        return VerifyReport(
            result.ok, result.checked, result.first_bad_seq, result.reason, bounds.anchor.seq
        )
