"""Audit records in words: "why did this request get v2?", "who changed the weights?".

Decision records carry: ``request_id``, ``time``, ``model``, ``version`` (the version routing
chose), ``rule``, ``matched`` (the conditions that held, already in words, e.g.
``"header x-region exact 'eu'"``), ``bucket`` (sticky bucket, or null for a random draw),
``weights`` (version -> weight of the rule), ``shadows`` (versions mirrored to), ``fallbacks``
(versions that answered in turn after a failure: strings, or ``{"version", "error"}``),
``store_revision`` (``table_version`` in records of earlier releases), ``status``,
``latency_ms``, ``error``; optionally ``served_by`` (default: the last fallback, else
``version``), ``pinned`` (a ``/versions/{v}`` call that bypassed routing) and ``buckets`` (the
bucket space, default 10000). Records are built by :mod:`modelrouter.audit.records`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from modelrouter.audit import records

_MAX_CHANGES = 6
_BUCKETS = 10_000

_CHANGE_KNOWN = {
    "kind",
    "time",
    "seq",
    "prev_hash",
    "hash",
    "actor",
    "action",
    "what",
    "model",
    "before",
    "after",
    "previous_table_version",
    "table_version",
    "previous_routing_version",
    "routing_version",
    "reason",
}


def iso_time(t: Any) -> str:
    """``2026-11-23T10:31:02Z`` from epoch seconds; ``?`` when missing."""
    if isinstance(t, bool) or not isinstance(t, int | float):
        return "?"
    try:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        return f"{t} (epoch seconds)"


def _ms(v: Any) -> str:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return "? ms"
    return f"{v:.1f} ms" if v >= 1 else f"{v:.2f} ms"


def _num(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def _version_of(entry: Any) -> str:
    if isinstance(entry, Mapping):
        return str(entry.get("version") or entry.get("destination") or "?")
    return str(entry)


def _as_list(v: Any) -> list[Any]:
    if isinstance(v, list | tuple):
        return list(v)
    return [] if v is None or v is False or v == "" else [v]


def _and(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def explain(record: Mapping[str, Any]) -> str:
    """One paragraph saying what the record means. Never raises on a partial record."""
    kind = record.get("kind")
    try:
        if kind == "decision":
            return _explain_decision(record)
        if kind == "change":
            return _explain_change(record)
        if kind in ("admin", "rollout", "ejection"):
            return _explain_action(record)
        if kind == "gap":
            return _explain_gap(record)
    except Exception:  # a malformed record still gets listed, field by field
        pass
    return _explain_other(record)


def _explain_decision(r: Mapping[str, Any]) -> str:
    head = f"Request {r.get('request_id', '?')} at {iso_time(r.get('time'))}"
    if r.get("model") is not None:
        head += f" for model {r['model']}"
    version = r.get("version")
    pinned = bool(r.get("pinned"))
    matched = [str(m) for m in _as_list(r.get("matched"))]
    if pinned:
        head += f" asked for version {version} explicitly (routing bypassed)"
    elif r.get("rule") is not None:
        head += f" matched rule '{r['rule']}'"
        if matched:
            head += f" ({' and '.join(matched)})"
    else:
        head += " matched no rule"
    parts = [head]

    weights = r.get("weights") or {}
    if not pinned and isinstance(weights, Mapping) and len(weights) > 1:
        shares = ", ".join(f"{v}={_num(w)}" for v, w in weights.items())
        bucket = r.get("bucket")
        if bucket is not None:
            space = r.get("buckets") or _BUCKETS
            parts.append(f"sticky bucket {bucket} of {space} at weights {shares} chose {version}")
        else:
            parts.append(f"a random draw at weights {shares} chose {version}")
    elif not pinned and version is not None:
        parts.append(f"routed to {version}")

    shadows = [_version_of(s) for s in _as_list(r.get("shadows"))]
    if shadows:
        parts.append(f"mirrored to {_and(shadows)}")

    fallbacks = _as_list(r.get("fallbacks"))
    for entry in fallbacks:
        text = f"fell back to {_version_of(entry)}"
        if isinstance(entry, Mapping) and entry.get("error"):
            text += f" ({entry['error']})"
        parts.append(text)

    served = r.get("served_by") or (_version_of(fallbacks[-1]) if fallbacks else version)
    status = r.get("status")
    error = r.get("error")
    failed = (isinstance(status, int) and status >= 400) or (status is None and error)
    if failed:
        text = f"failed with status {status if status is not None else '?'}"
        if error:
            text += f" ({error})"
        parts.append(f"{text} after {_ms(r.get('latency_ms'))}")
    else:
        text = f"served by {served}"
        if status is not None:
            text += f" with status {status}"
        if r.get("latency_ms") is not None:
            text += f" in {_ms(r['latency_ms'])}"
        parts.append(text)
    revision = records.store_revision(r)
    if revision is not None:
        parts.append(f"store revision {revision}")
    return "; ".join(parts)


def _explain_change(r: Mapping[str, Any]) -> str:
    actor = r.get("actor") or "someone"
    what = r.get("what") or f"routing of {r.get('model', '?')}"
    before_v, after_v = records.previous_routing_version(r), records.routing_version(r)
    when = iso_time(r.get("time"))
    if r.get("before") is None:
        text = f"{actor} created {what}"
        if after_v is not None:
            text += f" (routing version {after_v})"
        text += f" at {when}"
    else:
        text = f"{actor} changed {what}"
        if before_v is not None and after_v is not None:
            text += f" from routing version {before_v} to {after_v}"
        text += f" at {when}"
        changes = diff(r.get("before"), r.get("after"))
        if changes:
            shown = changes[:_MAX_CHANGES]
            more = len(changes) - len(shown)
            text += ": " + ", ".join(shown)
            if more:
                text += f" (and {more} more change{'s' if more > 1 else ''})"
        else:
            text += ": no change to the document"
    extra = {k: v for k, v in r.items() if k not in _CHANGE_KNOWN}
    if extra:
        text += "; " + ", ".join(f"{k}={_short(v)}" for k, v in extra.items())
    if r.get("reason"):
        text += f"; reason: {r['reason']}"
    return text


def _explain_action(r: Mapping[str, Any]) -> str:
    kind = r.get("kind")
    actor = r.get("actor") or ("the rollout controller" if kind == "rollout" else "someone")
    action = r.get("action") or r.get("phase") or kind
    what = r.get("what") or r.get("rollout") or ""
    text = f"{actor} {action}" + (f" {what}" if what else "")
    if r.get("model") is not None and f"of {r['model']}" not in str(what):
        text += f" of model {r['model']}"
    text += f" at {iso_time(r.get('time'))}"
    if action == "prune_audit" and "deleted" in r:
        text += (
            f": deleted {r['deleted']} records; the log now starts after seq {r.get('anchor_seq')}"
        )
    skip = {
        "kind",
        "time",
        "seq",
        "prev_hash",
        "hash",
        "actor",
        "action",
        "what",
        "reason",
        "model",
        "deleted",
        "anchor_seq",
        "rollout",
        "phase",
    }
    if r.get("before") is not None or r.get("after") is not None:
        skip |= {"before", "after"}
        changes = diff(r.get("before"), r.get("after"))
        if changes:
            text += "; " + ", ".join(changes[:_MAX_CHANGES])
    extra = {k: v for k, v in r.items() if k not in skip}
    if extra:
        text += "; " + ", ".join(f"{k}={_short(v)}" for k, v in extra.items())
    if r.get("reason"):
        text += f"; reason: {r['reason']}"
    return text


def _explain_gap(r: Mapping[str, Any]) -> str:
    first, last = r.get("first_lost_seq"), r.get("last_lost_seq")
    lost = f"seq {first}" if first == last else f"seq {first}..{last}"
    who = r.get("actor") or "modelrouter"
    text = f"{who} found records {lost} lost at {iso_time(r.get('time'))}"
    text += "; the chain continues from here"
    if r.get("reason"):
        text += f"; reason: {r['reason']}"
    return text


def _explain_other(r: Mapping[str, Any]) -> str:
    skip = {"kind", "time", "seq", "prev_hash", "hash"}
    fields = ", ".join(f"{k}={_short(v)}" for k, v in r.items() if k not in skip)
    return f"{r.get('kind', 'record')} record {r.get('seq', '?')} at {iso_time(r.get('time'))}" + (
        f": {fields}" if fields else ""
    )


def summarize(record: Mapping[str, Any]) -> str:
    """One short line for listings (``audit tail``, ``audit query``)."""
    r = record
    kind = r.get("kind")
    if kind == "decision":
        bits = [f"req={r.get('request_id', '?')}", f"model={r.get('model', '?')}"]
        if r.get("rule") is not None:
            bits.append(f"rule={r['rule']}")
        fallbacks = _as_list(r.get("fallbacks"))
        served = r.get("served_by") or (
            _version_of(fallbacks[-1]) if fallbacks else r.get("version")
        )
        bits.append(f"-> {served}")
        if r.get("status") is not None:
            bits.append(str(r["status"]))
        if isinstance(r.get("latency_ms"), int | float):
            bits.append(_ms(r["latency_ms"]).replace(" ", ""))
        if r.get("error"):
            bits.append(f"error={_short(r['error'])}")
        return " ".join(bits)
    if kind == "change":
        text = f"{r.get('actor', '?')} {r.get('what', '?')}"
        version = records.routing_version(r)
        if version is not None:
            prev = records.previous_routing_version(r)
            text += f" v{prev}->v{version}" if prev else f" v{version}"
        return text + (f": {r['reason']}" if r.get("reason") else "")
    text = f"{r.get('actor', '?')} {r.get('action', '?')} {r.get('what', '')}".rstrip()
    return text + (f": {r['reason']}" if r.get("reason") else "")


def _short(v: Any, width: int = 60) -> str:
    text = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
    return text if len(text) <= width else text[: width - 3] + "..."


def diff(before: Any, after: Any, path: str = "") -> list[str]:
    """What changed between two JSON documents, as ``path old -> new`` lines.

    List items that are objects with a ``name`` (routing rules) are addressed by name, so a
    reordered or inserted rule does not show up as a change of every later rule.
    """
    if before == after:
        return []
    if isinstance(before, Mapping) and isinstance(after, Mapping):
        out: list[str] = []
        for key in list(before) + [k for k in after if k not in before]:
            sub = f"{path}.{key}" if path else str(key)
            if key not in after:
                out.append(f"{sub} removed")
            elif key not in before:
                out.append(f"{sub} added: {_short(after[key])}")
            else:
                out.extend(diff(before[key], after[key], sub))
        return out
    if isinstance(before, list) and isinstance(after, list):
        named_b, named_a = _by_name(before), _by_name(after)
        if named_b is not None and named_a is not None:
            out = []
            for name in list(named_b) + [n for n in named_a if n not in named_b]:
                sub = f"{path}['{name}']"
                if name not in named_a:
                    out.append(f"{sub} removed")
                elif name not in named_b:
                    out.append(f"{sub} added")
                else:
                    out.extend(diff(named_b[name], named_a[name], sub))
            if not out and [*named_b] != [*named_a]:
                out.append(f"{path} reordered: {', '.join(named_a)}")
            return out
        if len(before) == len(after):
            out = []
            for i, (b, a) in enumerate(zip(before, after, strict=True)):
                out.extend(diff(b, a, f"{path}[{i}]"))
            return out
    return [f"{path or 'document'} {_short(before)} -> {_short(after)}"]


def _by_name(items: list[Any]) -> dict[str, Any] | None:
    names: dict[str, Any] = {}
    for item in items:
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str):
            return None
        if item["name"] in names:
            return None
        names[item["name"]] = item
    return names
