"""Seldon Core 2: an Experiment (weighted candidates and a mirror) as one model's rule; its
Models as the versions' sources when they are among the files."""

from __future__ import annotations

from typing import Any

from modelrouter.export.draft import Draft, safe_name
from modelrouter.export.kserve import KSERVE_OUTPUT

FORMATS = {
    "sklearn": "sklearn",
    "xgboost": "xgboost",
    "lightgbm": "lightgbm",
    "onnx": "onnx",
    "mlflow": "mlflow",
}


def seldon_model_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """A Seldon ``Model``'s storage and format, when modelrouter has its runtime."""
    spec = doc.get("spec") or {}
    fmt = next((FORMATS[r] for r in spec.get("requirements") or [] if r in FORMATS), None)
    uri = spec.get("storageUri")
    if fmt is None or not isinstance(uri, str):
        return None
    out: dict[str, Any] = {"storageUri": uri, "modelFormat": fmt}
    if fmt in ("sklearn", "xgboost", "lightgbm"):
        out["outputNames"] = {"predict": KSERVE_OUTPUT}  # MLServer's name for the prediction
    return out


def import_experiment(
    doc: dict[str, Any], origin: str, draft: Draft, models: dict[str, dict[str, Any]]
) -> None:
    spec = doc.get("spec") or {}
    if spec.get("resourceType", "model") != "model":
        draft.note(origin, "an Experiment over pipelines is not carried")
        return
    candidates = spec.get("candidates") or []
    if not candidates:
        draft.note(origin, "an Experiment without candidates: nothing to import")
        return
    name = safe_name(str(spec.get("default") or doc.get("metadata", {}).get("name")))
    ns = str(doc.get("metadata", {}).get("namespace") or "default")
    route = []

    def version_of(seldon_name: str) -> str:
        src = models.get(seldon_name)
        if src is None:
            draft.note(
                origin,
                f"model {seldon_name!r} is not among the files: proxied to Seldon's mesh,"
                f" which routes on the seldon-model header (check it answers"
                f" /v2/models/{seldon_name}/infer)",
            )
            src = {
                "endpoint": f"http://seldon-mesh.{ns}.svc.cluster.local",
                "remoteName": seldon_name,
            }
        return draft.place(name, safe_name(seldon_name), dict(src), None)

    for c in candidates:
        route.append({"destination": version_of(str(c["name"])), "weight": int(c.get("weight", 0))})
    rule: dict[str, Any] = {"name": "experiment", "route": route}
    mirror = spec.get("mirror")
    if isinstance(mirror, dict) and "name" in mirror:
        rule["mirror"] = {"destination": version_of(str(mirror["name"]))}
        rule["mirrorPercentage"] = {"value": float(mirror.get("percent", 100))}
    if len(route) == 1:
        route[0].pop("weight")
    draft.model(name).setdefault("http", []).append(rule)
    for key in sorted(set(spec) - {"default", "candidates", "mirror", "resourceType"}):
        draft.note(origin, f"spec.{key}: not carried")
