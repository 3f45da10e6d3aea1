"""Every audit record is built here: one constructor per kind, and the list of kinds.

Producers (the data plane, the store, the admin and repository APIs, the rollout controller,
the alias watcher, feedback) call these instead of writing dicts, so a field has one name
everywhere and ``audit query --kind`` can tell a kind that does not exist from one that has no
records.

Two counters had one name and two meanings; they are now apart:

- ``store_revision`` (decision records): the store's routing revision (bumped by any routing
  change of any model) that the gateway had applied when it decided.
- ``routing_version`` / ``previous_routing_version`` (change records): the version of the one
  model's routing document, as ``GET /api/v1/models/{name}/routing`` shows it.

Records written before the split carry ``table_version`` (and ``previous_table_version``) for
both; :func:`store_revision` and :func:`routing_version` read either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, Literal

from modelrouter.audit.chain import PlainRecord, is_plain

Record = dict[str, Any]

DECISION: Final = "decision"
CHANGE: Final = "change"
ADMIN: Final = "admin"
ROLLOUT: Final = "rollout"
FEEDBACK: Final = "feedback"
GAP: Final = "gap"
EJECTION: Final = "ejection"

KINDS: Final = frozenset({DECISION, CHANGE, ADMIN, ROLLOUT, FEEDBACK, GAP, EJECTION})
"""Every kind a record can have; a query for any other kind is refused."""

ALIAS_WATCH_ACTOR: Final = "mlflow-alias-watch"


def _with_time(record: Record, time: float | None) -> Record:
    """``time`` is set only when given: the store stamps the others when it writes them."""
    if time is not None:
        record["time"] = time
    return record


def decision(
    *,
    request_id: str | None,
    model: str,
    version: str,
    served_by: str | None,
    pinned: bool,
    rule: str | None,
    matched: Iterable[str],
    bucket: int | None,
    sticky: bool,
    weights: Mapping[str, float],
    shadows: Iterable[str],
    fallbacks: Sequence[Any],
    store_revision: int,
    status: int,
    latency_ms: float,
    time: float | None = None,
    prediction: Any = None,
    error: str | None = None,
) -> Record:
    """Why one request went where it went (see :mod:`modelrouter.audit.explain`).

    ``bucket`` is kept only for a sticky key: a key-less draw is not a bucket a user keeps.

    This runs once per request. When every value is plain JSON (what the data plane passes),
    the record is a :class:`~modelrouter.audit.chain.PlainRecord`, which the store seals
    without the normalizing round trip; otherwise (numpy values, NaN, ...) a dict, normalized
    or refused by the store as any other record.
    """
    record: Record = {
        "kind": DECISION,
        "request_id": request_id,
        "model": model,
        "version": version,
        "served_by": served_by,
        "pinned": pinned,
        "rule": rule,
        "matched": list(matched),
        "bucket": bucket if sticky else None,
        "sticky": sticky,
        "weights": dict(weights),
        "shadows": list(shadows),
        "fallbacks": list(fallbacks),
        "store_revision": store_revision,
        "status": status,
        "latency_ms": latency_ms,
    }
    if time is not None:  # inline rather than _with_time: this runs once per request
        record["time"] = time
    if prediction is not None:
        record["prediction"] = prediction
    if error is not None:
        record["error"] = error
    kept_bucket = record["bucket"]
    if (  # the types of the signature (the data plane's values): plain JSON, checked cheaply
        type(model) is str
        and type(version) is str
        and (request_id is None or type(request_id) is str)
        and (served_by is None or type(served_by) is str)
        and (rule is None or type(rule) is str)
        and (error is None or type(error) is str)
        and type(pinned) is bool
        and type(sticky) is bool
        and type(status) is int
        and _I64 <= status <= _U64
        and type(store_revision) is int
        and _I64 <= store_revision <= _U64
        and (kept_bucket is None or _number(kept_bucket))
        and type(latency_ms) is float
        and latency_ms - latency_ms == 0.0  # NaN and infinity give NaN
        and (time is None or (type(time) is float and time - time == 0.0))
        and _plain_parts(record)
    ):
        return PlainRecord(record)
    return record


_I64 = -(2**63)
_U64 = 2**64 - 1
"""The integers orjson writes."""


def _number(v: Any) -> bool:
    """``v`` is an int orjson writes or a finite float (exact types)."""
    t = type(v)
    if t is float:
        return bool(v - v == 0.0)  # NaN and infinity give NaN
    return t is int and _I64 <= v <= _U64


def _plain_parts(r: Record) -> bool:
    """The containers of a decision are plain JSON (see
    :func:`~modelrouter.audit.chain.is_plain`); the usual shapes are checked inline."""
    for k, w in r["weights"].items():
        if type(k) is not str or not _number(w):
            return False
    for name in r["matched"]:
        if type(name) is not str:
            return False
    for name in r["shadows"]:
        if type(name) is not str:
            return False
    if r["fallbacks"] and not is_plain(r["fallbacks"]):
        return False
    prediction = r.get("prediction")
    if prediction is not None:
        for v in prediction if type(prediction) is list else (prediction,):
            if not (type(v) is str or type(v) is bool or _number(v) or is_plain(v)):
                return False
    return True


def routing_change(
    *,
    model: str,
    actor: str,
    before: Mapping[str, Any] | None,
    previous_routing_version: int | None,
    after: Mapping[str, Any],
    routing_version: int,
    reason: str,
    time: float | None = None,
) -> Record:
    """A model's routing document replaced (admin API, config file, rollout)."""
    return _with_time(
        {
            "kind": CHANGE,
            "actor": actor,
            "action": "create" if before is None else "update",
            "what": f"routing of {model}",
            "model": model,
            "before": None if before is None else dict(before),
            "after": dict(after),
            "previous_routing_version": previous_routing_version,
            "routing_version": routing_version,
            "reason": reason,
        },
        time,
    )


def version_action(
    *,
    actor: str,
    action: Literal["load", "unload"],
    model: str,
    version: str,
    before: str,
    after: str,
    reason: str = "",
    time: float | None = None,
) -> Record:
    """A model version loaded or unloaded on request; ``before``/``after`` are its states."""
    return _with_time(
        {
            "kind": ADMIN,
            "actor": actor,
            "action": action,
            "model": model,
            "version": version,
            "before": before,
            "after": after,
            "reason": reason,
        },
        time,
    )


def config_import(
    *,
    actor: str,
    model: str,
    file_rules: str,
    left_alone: Sequence[Mapping[str, Any]],
    reason: str,
    time: float | None = None,
) -> Record:
    """A config-file edit of ``model`` that left rules to their other owners (an admin actor,
    a rollout); ``file_rules`` is the content hash of the file's rules, once per cluster."""
    return _with_time(
        {
            "kind": ADMIN,
            "actor": actor,
            "action": "config-import",
            "model": model,
            "fileRules": file_rules,
            "leftAlone": [dict(x) for x in left_alone],
            "reason": reason,
        },
        time,
    )


def alias_moved(
    *,
    model: str,
    version: str,
    registered_model: str,
    alias: str,
    before: str | None,
    after: str,
    error: str | None = None,
    actor: str = ALIAS_WATCH_ACTOR,
    time: float | None = None,
) -> Record:
    """An MLflow alias moved and the gateway swapped (or could not swap) the version in."""
    outcome = f"; not swapped: {error}" if error else "; swapped in"
    return _with_time(
        {
            "kind": ADMIN,
            "actor": actor,
            "action": "alias-moved",
            "model": model,
            "version": version,
            "before": before,
            "after": after,
            "reason": f"{registered_model}@{alias} moved to version {after}{outcome}",
        },
        time,
    )


def pruned(
    *,
    deleted: int,
    anchor_seq: int,
    actor: str,
    max_age: float | None,
    max_count: int | None,
    time: float | None = None,
) -> Record:
    """What a retention prune leaves behind: how many records went, where the log starts."""
    rules = []
    if max_age is not None:
        rules.append(f"max_age={max_age:g}s")
    if max_count is not None:
        rules.append(f"max_count={max_count}")
    return _with_time(
        {
            "kind": ADMIN,
            "actor": actor,
            "action": "prune_audit",
            "what": "audit log",
            "deleted": deleted,
            "anchor_seq": anchor_seq,
            "reason": "retention: " + ", ".join(rules),
        },
        time,
    )


def rollout_step(
    *,
    actor: str,
    rollout: str,
    model: str,
    rule: str,
    canary: str,
    strategy: str,
    action: str,
    phase_before: str,
    phase: str,
    weights: Mapping[str, Any],
    failed_checks: int,
    iterations: int,
    reason: str,
    checks: Sequence[Mapping[str, Any]] = (),
    figures: Mapping[str, Any] | None = None,
    webhooks: Sequence[Mapping[str, Any]] = (),
    result: Mapping[str, Any] | None = None,
    time: float | None = None,
) -> Record:
    """One step of a rollout: its phase and weights after the step, and why."""
    return _with_time(
        {
            "kind": ROLLOUT,
            "actor": actor,
            "rollout": rollout,
            "model": model,
            "rule": rule,
            "version": canary,
            "strategy": strategy,
            "action": action,
            "phaseBefore": phase_before,
            "phase": phase,
            "weights": dict(weights),
            "failedChecks": failed_checks,
            "iterations": iterations,
            "reason": reason,
            "checks": [dict(c) for c in checks],
            "figures": dict(figures or {}),
            "webhooks": [dict(h) for h in webhooks],
            "result": None if result is None else dict(result),
        },
        time,
    )


def rollout_config(
    *,
    actor: str,
    rollout: str,
    model: str | None,
    rule: str | None,
    canary: str | None,
    strategy: str | None,
    action: str,
    phase_before: str,
    phase: str,
    reason: str,
    weights: Mapping[str, int] | None = None,
    time: float | None = None,
) -> Record:
    """A rollout started, restarted or stopped because the config file's ``rollouts:`` changed.
    ``model`` and the rest are None for a rollout the file no longer describes; ``weights``
    are the live weights it stopped at."""
    record: Record = {
        "kind": ROLLOUT,
        "actor": actor,
        "rollout": rollout,
        "model": model,
        "rule": rule,
        "version": canary,
        "strategy": strategy,
        "action": action,
        "phaseBefore": phase_before,
        "phase": phase,
        "reason": reason,
    }
    if weights is not None:
        record["weights"] = dict(weights)
    return _with_time(record, time)


def rollout_alias(
    *,
    actor: str,
    rollout: str,
    model: str,
    canary: str,
    phase: str,
    ok: bool,
    reason: str,
    time: float | None = None,
) -> Record:
    """A promoted rollout moving (or failing to move) the MLflow alias to its canary."""
    return _with_time(
        {
            "kind": ROLLOUT,
            "actor": actor,
            "rollout": rollout,
            "model": model,
            "version": canary,
            "action": "mlflow-alias",
            "ok": ok,
            "phase": phase,
            "reason": reason,
        },
        time,
    )


def feedback(
    *,
    actor: str,
    request_id: str,
    model: str,
    version: str,
    truth: Any,
    reward: float | None,
    labels: Any = None,
    correct: Any = None,
    values: Any = None,
    abs_error: Any = None,
    scored: bool = False,
    time: float | None = None,
) -> Record:
    """Ground truth or a reward for an answered request; score fields when truth was scored."""
    record: Record = {
        "kind": FEEDBACK,
        "actor": actor,
        "request_id": request_id,
        "model": model,
        "version": version,
        "truth": truth,
        "reward": reward,
    }
    if scored:
        record.update(labels=labels, correct=correct, values=values, abs_error=abs_error)
    return _with_time(record, time)


def ejection(
    *,
    action: Literal["ejected", "returned"],
    model: str,
    version: str,
    consecutive_errors: int,
    ejections: int,
    seconds: float,
    reason: str,
    actor: str = "outlier-detection",
    time: float | None = None,
) -> Record:
    """Outlier detection ejected a version from its rules' routes, or returned it."""
    return _with_time(
        {
            "kind": EJECTION,
            "actor": actor,
            "action": action,
            "model": model,
            "version": version,
            "consecutive_errors": consecutive_errors,
            "ejections": ejections,
            "seconds": round(seconds, 3),
            "reason": reason,
        },
        time,
    )


def gap(
    *,
    first_lost_seq: int,
    last_lost_seq: int,
    reason: str,
    actor: str = "modelrouter",
    time: float | None = None,
    **detail: Any,
) -> Record:
    """The chain continued after records ``first_lost_seq..last_lost_seq`` were lost (a store
    that came back empty or restored from an older backup). ``detail``: what the gateway that
    noticed knows (``cause``, ``seen_seq``/``seen_hash``, ``found_seq``/``found_hash``,
    ``previous_epoch``/``epoch``, ``gateway``; see :mod:`modelrouter.audit.gaps`)."""
    return _with_time(
        {
            "kind": GAP,
            "actor": actor,
            "first_lost_seq": first_lost_seq,
            "last_lost_seq": last_lost_seq,
            "reason": reason,
            **detail,
        },
        time,
    )


# -- reading counters of old and new records ------------------------------------------------


def store_revision(record: Mapping[str, Any]) -> Any:
    """The store revision a decision was made at (``table_version`` in old records)."""
    value = record.get("store_revision")
    return record.get("table_version") if value is None else value


def routing_version(record: Mapping[str, Any]) -> Any:
    """The model's routing version a change produced (``table_version`` in old records)."""
    value = record.get("routing_version")
    return record.get("table_version") if value is None else value


def previous_routing_version(record: Mapping[str, Any]) -> Any:
    """The routing version a change replaced (``previous_table_version`` in old records)."""
    value = record.get("previous_routing_version")
    return record.get("previous_table_version") if value is None else value
