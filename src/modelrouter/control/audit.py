"""Audit reads of the control plane: query, explain, verify.

Transport-neutral: the REST admin API, the CLI (through a gateway or, offline, on the store
itself) and the gRPC servicer all build an :class:`AuditFilter` from what their caller gave and
call :class:`AuditReads`, so a filter means the same everywhere and a bad one is refused the
same way (:class:`~modelrouter.errors.InvalidInput` naming the field).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelrouter.audit import records
from modelrouter.audit.gaps import gap_summaries
from modelrouter.audit.query import AuditQuery, explain_request, run_query
from modelrouter.errors import NotFound
from modelrouter.store.base import Store

AUDIT_KINDS = tuple(sorted(records.KINDS))
"""Every kind of audit record; a query for any other kind is refused."""

AuditFilter = AuditQuery
"""Which audit records to return (:class:`~modelrouter.audit.query.AuditQuery`): built from
values, or from text with :meth:`AuditQuery.parse`; construction validates."""


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """The outcome of :meth:`AuditReads.verify`. ``anchor_seq`` > 0 when older records were
    pruned (verification starts after it)."""

    ok: bool
    checked: int
    first_bad_seq: int | None
    reason: str
    anchor_seq: int
    gaps: list[dict[str, Any]] = field(default_factory=list)
    """Every gap record (records a store fault lost), explained (:mod:`modelrouter.audit.gaps`)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "checked": self.checked,
            "firstBadSeq": self.first_bad_seq,
            "reason": self.reason,
            "anchorSeq": self.anchor_seq,
            "gaps": self.gaps,
        }


class AuditReads:
    """Query, explain and verify over a store; needs nothing else, so it runs offline too."""

    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def query(self, f: AuditFilter) -> list[dict[str, Any]]:
        return await run_query(self.store, f)

    async def explain(self, request_id: str) -> dict[str, Any]:
        """Every record of ``request_id`` and why, in words (see
        :class:`~modelrouter.audit.query.RequestExplanation`); NotFound when it has no decision."""
        found = await explain_request(self.store, request_id)
        if found is None:
            raise NotFound(f"no decision recorded for request id '{request_id}'")
        return found.to_json()

    async def verify(self) -> VerifyReport:
        result = await self.store.verify_audit()
        bounds = await self.store.audit_bounds()
        gaps = gap_summaries(await self.store.audit_gaps())
        return VerifyReport(
            result.ok, result.checked, result.first_bad_seq, result.reason, bounds.anchor.seq, gaps
        )
