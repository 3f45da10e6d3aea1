"""A Flagger Canary as a rollout of a model whose versions the other manifests gave."""

from __future__ import annotations

import re
from typing import Any

from modelrouter.config.rollouts import WEBHOOK_TYPES
from modelrouter.export.draft import Draft, safe_name
from modelrouter.export.names import isvc_of_host

ANALYSIS_KEYS = {
    "interval",
    "threshold",
    "maxWeight",
    "stepWeight",
    "stepWeights",
    "iterations",
    "mirror",
    "mirrorWeight",
    "metrics",
    "webhooks",
}


def _metric(
    m: dict[str, Any], templates: dict[str, str], origin: str, notes: list[str]
) -> dict[str, Any] | None:
    name = str(m.get("name", ""))
    out: dict[str, Any] = {"name": name, "thresholdRange": m.get("thresholdRange") or {}}
    ref = m.get("templateRef")
    if ref is None:
        if name not in ("request-success-rate", "request-duration"):
            notes.append(f"{origin}: Flagger metric {name!r} is not one modelrouter computes")
            return None
        return out
    query = templates.get(str(ref.get("name")))
    if query is None:
        notes.append(f"{origin}: its MetricTemplate {ref.get('name')!r} is not among the files")
        return None
    if re.search(r"\{\{\s*(target|namespace|variables)", query):
        notes.append(
            f"{origin}: the query uses Flagger's {{{{ target }}}}/{{{{ namespace }}}}; modelrouter"
            " substitutes {{ model }}, {{ version }} and {{ interval }}: edit it"
        )
    return {**out, "provider": "prometheus", "query": query}


def import_canary(
    doc: dict[str, Any], origin: str, draft: Draft, templates: dict[str, str]
) -> None:
    spec = doc.get("spec") or {}
    name = safe_name(str(doc.get("metadata", {}).get("name") or "canary"))
    target = str((spec.get("targetRef") or {}).get("name", ""))
    placed = draft.where.get(isvc_of_host(target)) or draft.where.get(target)
    if placed is None:
        draft.note(
            origin,
            f"Flagger canaries new revisions of {target!r}, which no InferenceService among the"
            " files serves: add its versions and a rollout by hand",
        )
        return
    model, primary = placed
    mspec = draft.models[model]
    others = [v for v in mspec["versions"] if v != primary]
    if not others:
        draft.note(
            origin,
            f"model {model} has only {primary}: Flagger's canary is the next revision of"
            f" {target}; add it as a version, then rollouts.{name} can name it",
        )
        return
    canary = others[0]
    a = spec.get("analysis") or {}
    for key in sorted(set(a) - ANALYSIS_KEYS):
        notes_key = "match (A/B by header)" if key == "match" else key
        draft.note(origin, f"spec.analysis.{notes_key}: not carried")
    for key in sorted(set(spec) - {"targetRef", "analysis", "service", "provider"}):
        draft.note(origin, f"spec.{key}: not carried")
    analysis: dict[str, Any] = {}
    for key in ("interval", "threshold", "maxWeight", "stepWeight", "stepWeights", "iterations"):
        if key in a:
            analysis[key] = a[key]
    strategy = "canary"
    if "iterations" in a and not ("stepWeight" in a or "stepWeights" in a):
        strategy = "bluegreen"
        if a.get("mirror"):
            analysis["mirror"] = True
    metrics = []
    for i, m in enumerate(a.get("metrics") or []):
        got = _metric(m, templates, f"{origin}.spec.analysis.metrics.{i}", draft.notes)
        if got is not None:
            metrics.append(got)
    if metrics:
        analysis["metrics"] = metrics
    hooks = []
    for i, w in enumerate(a.get("webhooks") or []):
        if w.get("type") not in WEBHOOK_TYPES or "url" not in w:
            draft.note(origin, f"spec.analysis.webhooks.{i}: type {w.get('type')!r} not carried")
            continue
        hook = {k: w[k] for k in ("name", "type", "url", "timeout", "metadata") if k in w}
        hooks.append(hook)
    rule = _rule_for(mspec, primary, canary)
    rollout: dict[str, Any] = {
        "model": model,
        "rule": rule,
        "primary": primary,
        "canary": canary,
        "strategy": strategy,
        "analysis": analysis,
    }
    if hooks:
        rollout["webhooks"] = hooks
    draft.rollouts[name] = rollout


def _rule_for(mspec: dict[str, Any], primary: str, canary: str) -> str:
    """A rule routing ``primary`` (with ``canary`` at weight 0 if it is not routed yet)."""
    rules = mspec.setdefault("http", [])
    for r in rules:
        names = [d["destination"] for d in r["route"]]
        if primary in names:
            if canary not in names:
                if len(r["route"]) == 1:
                    r["route"][0]["weight"] = 100
                r["route"].append({"destination": canary, "weight": 0})
            return str(r["name"])
    rules.append(
        {
            "name": "default",
            "route": [
                {"destination": primary, "weight": 100},
                {"destination": canary, "weight": 0},
            ],
        }
    )
    return "default"
