"""Recognising a file that is some other project's manifest, not a modelrouter config, so that
``validate`` and ``serve`` can say what it is instead of ``apiVersion: unknown field``."""

from __future__ import annotations

from typing import Any

import yaml

_KNOWN = {
    ("serving.kserve.io", "InferenceService"): "a KServe InferenceService",
    ("networking.istio.io", "VirtualService"): "an Istio VirtualService",
    ("networking.istio.io", "DestinationRule"): "an Istio DestinationRule",
    ("flagger.app", "Canary"): "a Flagger Canary",
    ("mlops.seldon.io", "Experiment"): "a Seldon Core 2 Experiment",
    ("mlops.seldon.io", "Model"): "a Seldon Core 2 Model",
}


def describe_manifest(doc: Any) -> str | None:
    """``a KServe InferenceService`` (or ``a Kubernetes Deployment``) when ``doc`` is a
    Kubernetes object; None otherwise."""
    if not isinstance(doc, dict) or "apiVersion" not in doc or "kind" not in doc:
        return None
    group = str(doc["apiVersion"]).split("/", 1)[0]
    return _KNOWN.get((group, str(doc["kind"])), f"a Kubernetes {doc['kind']}")


def foreign_message(text: str) -> str | None:
    """The message for YAML ``text`` whose first document is a Kubernetes object."""
    try:
        first = next(iter(yaml.safe_load_all(text)), None)
    except yaml.YAMLError:
        return None
    what = describe_manifest(first)
    if what is None:
        return None
    if what.startswith("a Kubernetes "):
        return f"this is {what}, not a modelrouter config"
    return (
        f"this is {what}, not a modelrouter config: run `modelrouter import FILE...` to turn it"
        " into one"
    )
