"""KServe InferenceServices as model versions.

The predictor (``spec.predictor.model`` or the older ``spec.predictor.sklearn`` form) becomes
a version loaded in process when modelrouter has a runtime for its format (its outputs keep
KServe's name, ``output-0``), else a remote version at the InferenceService's in-cluster
address. The named ``spec.canary`` list of newer KServe adds versions with their
``trafficPercent``; ``canaryTrafficPercent`` splits with a previous revision the manifest does
not hold, which is said, not guessed.
"""

from __future__ import annotations

from typing import Any

from modelrouter.export.draft import Source
from modelrouter.export.kserve import KSERVE_OUTPUT, OUTPUT_ZERO_FORMATS
from modelrouter.export.names import predictor_service, service_host

IN_PROCESS = ("sklearn", "xgboost", "lightgbm", "onnx", "mlflow")
OLD_STYLE = (
    "sklearn",
    "xgboost",
    "lightgbm",
    "onnx",
    "tensorflow",
    "pytorch",
    "triton",
    "pmml",
    "paddle",
    "huggingface",
)
READABLE = ("s3://", "http://", "https://", "models:/", "runs:/", "file://", "/")
"""Storage modelrouter's sources read (``gs://``, ``pvc://`` and the like it does not)."""

PREDICTOR_KEYS = {"model", "batcher", "canaryTrafficPercent", *OLD_STYLE}
MODEL_KEYS = {"modelFormat", "storageUri", "protocolVersion"}


def namespace_of(doc: dict[str, Any]) -> str:
    return str(doc.get("metadata", {}).get("namespace") or "default")


def predictor_source(
    pred: dict[str, Any], isvc: str, namespace: str, origin: str, notes: list[str]
) -> dict[str, Any]:
    """The version config of one predictor; what it leaves out goes to ``notes``."""
    body: dict[str, Any] | None = pred.get("model")
    fmt: str | None = None
    if isinstance(body, dict):
        fmt = (body.get("modelFormat") or {}).get("name")
    else:
        for key in OLD_STYLE:
            if isinstance(pred.get(key), dict):
                body, fmt = pred[key], key
                break
    body = body or {}
    for key in sorted(set(pred) - PREDICTOR_KEYS):
        notes.append(f"{origin}.{key}: not carried (the gateway's Deployment sets pods)")
    for key in sorted(set(body) - MODEL_KEYS):
        notes.append(f"{origin}.model.{key}: not carried")
    uri = body.get("storageUri")
    if fmt in IN_PROCESS and isinstance(uri, str):
        spec: dict[str, Any] = {"storageUri": uri, "modelFormat": fmt}
        if fmt in OUTPUT_ZERO_FORMATS:
            spec["outputNames"] = {"predict": KSERVE_OUTPUT}
        if not uri.startswith(READABLE):
            notes.append(
                f"{origin}.model.storageUri: modelrouter cannot read {uri.split('://')[0]}://;"
                " copy the model to s3:// or a path the gateway can read"
            )
        return spec
    host = service_host(predictor_service(isvc), namespace)
    notes.append(
        f"{origin}: modelFormat {fmt or 'unknown'} has no in-process runtime in modelrouter:"
        f" the version proxies to the InferenceService at http://{host}"
    )
    return {"endpoint": f"http://{host}", "remoteName": isvc}


def isvc_sources(doc: dict[str, Any], origin: str, notes: list[str]) -> list[Source]:
    """The versions of one InferenceService, each with its share of its traffic."""
    name = str(doc.get("metadata", {}).get("name") or "unnamed")
    ns = namespace_of(doc)
    spec = doc.get("spec") or {}
    pred = spec.get("predictor") or {}
    for part in ("transformer", "explainer"):
        if part in spec:
            notes.append(f"{origin}.spec.{part}: not carried (modelrouter runs predictors)")
    annotated = doc.get("metadata", {}).get("annotations", {}) or {}
    main = str(annotated.get("modelrouter.io/version") or "primary")
    sources = [Source(main, predictor_source(pred, name, ns, f"{origin}.spec.predictor", notes))]
    canaries = spec.get("canary") or []
    for i, c in enumerate(canaries):
        cname = "canary" if len(canaries) == 1 else f"canary-{i + 1}"
        where = f"{origin}.spec.canary.{i}"
        src = predictor_source(c.get("predictor") or {}, name, ns, f"{where}.predictor", notes)
        sources.append(Source(cname, src, int(c.get("trafficPercent", 0))))
    if canaries:
        sources[0].percent = max(0, 100 - sum(s.percent for s in sources[1:]))
    percent = pred.get("canaryTrafficPercent")
    if percent is not None and int(percent) < 100:
        notes.append(
            f"{origin}.spec.predictor.canaryTrafficPercent: {percent}% goes to this revision and"
            f" {100 - int(percent)}% to the previous one, which the manifest does not hold: the"
            " config serves this revision only; add the previous one as a version and a"
            " weighted rule"
        )
    batcher = pred.get("batcher")
    if isinstance(batcher, dict):
        for s in sources:
            s.batcher = batcher_of(batcher)
    return sources


def batcher_of(kserve_batcher: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "maxBatchSize" in kserve_batcher:
        out["maxBatchSize"] = int(kserve_batcher["maxBatchSize"])
    if "maxLatency" in kserve_batcher:
        out["maxLatency"] = f"{int(kserve_batcher['maxLatency'])}ms"
    return out
