"""Reading the audit log, independent of any transport: a validated query filter, and every
record of one request id explained.

The admin REST API, the CLI and the control-plane service build an :class:`AuditQuery` (from
parsed values or, for query strings, with :meth:`AuditQuery.from_params`) and call
:func:`run_query`; :func:`explain_request` answers "why did this request go there?".
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from modelrouter.audit import records
from modelrouter.audit.explain import explain
from modelrouter.config.durations import parse_time
from modelrouter.errors import InvalidInput

if TYPE_CHECKING:
    from modelrouter.store.base import Store

Order = Literal["asc", "desc"]

MAX_PAGE = 10_000
"""The most records one query string may ask for; page on with ``after_seq``."""

MAX_EXPLAINED = 100
"""The most records of one request id that an explanation lists (the newest)."""

_TEXT_FILTERS = ("model", "version", "rule", "kind", "request_id")
PARAMS = frozenset({*_TEXT_FILTERS, "since", "until", "limit", "order", "after_seq"})
"""The query-string parameters :meth:`AuditQuery.from_params` understands."""


def check_kind(kind: str) -> str:
    """``kind`` if records of that kind exist, else :class:`InvalidInput` naming ``kind``."""
    if kind not in records.KINDS:
        raise InvalidInput(
            f"kind: unknown audit record kind {kind!r} (known: {', '.join(sorted(records.KINDS))})"
        )
    return kind


@dataclass(frozen=True, slots=True)
class AuditQuery:
    """Records matching every filter given (see :meth:`Store.query_audit`); checked when made.

    ``since``/``until`` are epoch seconds, both inclusive; ``after_seq`` is a paging cursor.
    """

    model: str | None = None
    version: str | None = None
    rule: str | None = None
    kind: str | None = None
    request_id: str | None = None
    since: float | None = None
    until: float | None = None
    limit: int | None = 100
    order: Order = "desc"
    after_seq: int | None = None

    def __post_init__(self) -> None:
        if self.kind is not None:
            check_kind(self.kind)
        if self.order not in ("asc", "desc"):
            raise InvalidInput(f"order: must be 'asc' or 'desc', not {self.order!r}")
        if self.limit is not None and self.limit < 0:
            raise InvalidInput("limit: must not be negative")
        if self.after_seq is not None and self.after_seq < 0:
            raise InvalidInput("after_seq: must not be negative")
        if self.since is not None and self.until is not None and self.since > self.until:
            raise InvalidInput("since: must not be later than until")

    @classmethod
    def from_params(cls, params: Mapping[str, str], now: float) -> AuditQuery:
        """A query from text parameters (a URL query string): names as in :data:`PARAMS`,
        times as ISO, epoch seconds or a duration ago, ``limit`` at most :data:`MAX_PAGE`."""
        unknown = set(params) - PARAMS
        if unknown:
            raise InvalidInput(
                f"unknown audit filter {sorted(unknown)[0]!r} "
                f"(filters: {', '.join(sorted(PARAMS))})"
            )
        args: dict[str, Any] = {k: params[k] for k in _TEXT_FILTERS if k in params}
        for k in ("since", "until"):
            if k in params:
                try:
                    args[k] = parse_time(params[k], now)
                except ValueError as exc:
                    raise InvalidInput(f"{k}: {exc}") from None
        for k in ("limit", "after_seq"):
            if k in params:
                try:
                    args[k] = int(params[k])
                except ValueError:
                    raise InvalidInput(f"{k}: must be an integer, not {params[k]!r}") from None
        if args.get("limit") is not None and args["limit"] > MAX_PAGE:
            raise InvalidInput(
                f"limit: must be an integer from 0 to {MAX_PAGE} (page on with after_seq)"
            )
        if "order" in params:
            args["order"] = params["order"]
        return cls(**args)

    @classmethod
    def parse(cls, params: Mapping[str, str], now: float | None = None) -> AuditQuery:
        """:meth:`from_params` at ``now`` (default: the current time)."""
        return cls.from_params(params, time.time() if now is None else now)


async def run_query(store: Store, query: AuditQuery) -> list[dict[str, Any]]:
    """The records ``query`` selects, in its order."""
    return await store.query_audit(**asdict(query))


@dataclass(frozen=True, slots=True)
class RequestExplanation:
    """Every record carrying one request id, oldest first, each with its explanation.

    A client may send the same ``x-request-id`` with several requests: then there are several
    decision records, and all are shown rather than the newest hiding the others.
    """

    request_id: str
    records: list[dict[str, Any]]
    explanations: list[str]
    truncated: bool = False
    """More records carry this id than are listed (the newest :data:`MAX_EXPLAINED` are)."""
    decisions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def duplicated(self) -> bool:
        """Several requests were decided under this id."""
        return len(self.decisions) > 1

    @property
    def decision(self) -> dict[str, Any] | None:
        """The newest decision record of the id."""
        return self.decisions[-1] if self.decisions else None

    @property
    def note(self) -> str:
        """What the listing means when it is more than one decision; empty otherwise."""
        parts = []
        if self.duplicated:
            seqs = ", ".join(str(d.get("seq", "?")) for d in self.decisions)
            parts.append(
                f"request id {self.request_id!r} was used by {len(self.decisions)} requests "
                f"(decision records seq {seqs}): a client sent the same x-request-id more than "
                "once; every record with this id is shown, oldest first"
            )
        if self.truncated:
            parts.append(f"only the newest {len(self.records)} records with this id are shown")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        """The REST form: the newest decision and its explanation (as before), then all."""
        decision = self.decision
        return {
            "record": decision,
            "explanation": None if decision is None else explain(decision),
            "records": self.records,
            "explanations": self.explanations,
            "duplicated": self.duplicated,
            "truncated": self.truncated,
            "note": self.note,
        }


async def explain_request(
    store: Store, request_id: str, limit: int = MAX_EXPLAINED
) -> RequestExplanation | None:
    """Every record with ``request_id`` explained, or None when it has no decision record."""
    if not request_id:
        raise InvalidInput("request_id: must not be empty")
    newest = await store.query_audit(request_id=request_id, limit=limit + 1, order="desc")
    truncated = len(newest) > limit
    found = list(reversed(newest[:limit]))
    decisions = [r for r in found if r.get("kind") == records.DECISION]
    if not decisions:
        older = await store.query_audit(request_id=request_id, kind=records.DECISION, limit=1)
        if not older:
            return None
        decisions = older  # beyond the newest ``limit`` records: still the one to explain
        found = older + found
    return RequestExplanation(request_id, found, [explain(r) for r in found], truncated, decisions)
