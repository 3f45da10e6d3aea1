"""One KServe InferenceService per model version, and the remote version the gateway uses in
its place.

KServe's own servers for scikit-learn, XGBoost and LightGBM name their single output
``output-0``, where modelrouter's in-process runtimes say ``predict``: the remote version the
gateway gets maps ``output-0`` back to the name its clients know (``outputNames``), so moving a
model into KServe changes nothing for them.
"""

from __future__ import annotations

from typing import Any

from modelrouter.config.schema import BatcherSpec, VersionSpec
from modelrouter.export.names import dns_label, predictor_service, service_host
from modelrouter.export.yamlio import Manifest

KSERVE_FORMATS = ("sklearn", "xgboost", "lightgbm", "onnx", "mlflow")
"""``modelFormat`` names KServe's ClusterServingRuntimes serve."""

OUTPUT_ZERO_FORMATS = ("sklearn", "xgboost", "lightgbm")
"""KServe servers that answer with one output named ``output-0`` (the prediction)."""

KSERVE_OUTPUT = "output-0"


ISVC_NAME_LIMIT = 45
"""KServe derives longer names from an InferenceService's (``-predictor-00001-deployment``),
which must stay DNS labels of at most 63 characters."""


def isvc_name(model: str, version: str) -> str:
    return dns_label(model, version, limit=ISVC_NAME_LIMIT)


def isvc_url(name: str, namespace: str) -> str:
    return f"http://{service_host(predictor_service(name), namespace)}"


def inference_service(
    model: str,
    version: str,
    spec: VersionSpec,
    storage_uri: str,
    namespace: str,
    batcher: BatcherSpec | None = None,
    raw_deployment: bool = False,
    served_name: str | None = None,
) -> Manifest:
    """The InferenceService of one version. ``served_name`` makes its server answer under that
    model name instead of the InferenceService's (what a mesh split between versions needs)."""
    name = isvc_name(model, version)
    predictor_model: dict[str, Any] = {
        "modelFormat": {"name": spec.format},
        "protocolVersion": "v2",
        "storageUri": storage_uri,
    }
    if served_name is not None:
        predictor_model["args"] = [f"--model_name={served_name}"]
    predictor: dict[str, Any] = {"model": predictor_model}
    if batcher is not None:
        predictor["batcher"] = {
            "maxBatchSize": batcher.maxBatchSize,
            "maxLatency": max(1, round(batcher.maxLatency * 1000)),
        }
    if spec.timeout is not None:
        predictor["timeout"] = max(1, round(spec.timeout))
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/part-of": "modelrouter",
            "modelrouter.io/model": dns_label(model),
            "modelrouter.io/version": dns_label(version),
        },
        "annotations": {"modelrouter.io/model": model, "modelrouter.io/version": version},
    }
    if raw_deployment:
        metadata["annotations"]["serving.kserve.io/deploymentMode"] = "RawDeployment"
    return Manifest(
        {
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": metadata,
            "spec": {"predictor": predictor},
        },
        f"model {model} version {version}: {isvc_url(name, namespace)}",
    )


def remote_version(
    model: str, version: str, spec: VersionSpec, namespace: str
) -> tuple[dict[str, Any], list[str]]:
    """The gateway's config for a version served by its InferenceService, and what of the
    version's settings does not carry over."""
    name = isvc_name(model, version)
    out: dict[str, Any] = {"endpoint": isvc_url(name, namespace), "remoteName": name}
    if spec.timeout is not None:
        out["timeout"] = spec.timeout
    notes: list[str] = []
    where = f"models.{model}.versions.{version}"
    if spec.format in OUTPUT_ZERO_FORMATS:
        client = spec.outputNames.get("predict", "predict")
        out["outputNames"] = {KSERVE_OUTPUT: client}
        others = sorted(set(spec.outputNames) - {"predict"})
        if others:
            notes.append(
                f"{where}.outputNames: KServe's {spec.format} server returns only the"
                f" prediction (output-0); the names given to {', '.join(others)} do not apply"
            )
    if spec.parameters:
        notes.append(
            f"{where}.parameters: runtime parameters do not reach KServe's server "
            f"({', '.join(sorted(spec.parameters))}); set them in the InferenceService"
        )
    if spec.executor != "inline":
        notes.append(f"{where}.executor: not used once the model runs in KServe")
    return out, notes
