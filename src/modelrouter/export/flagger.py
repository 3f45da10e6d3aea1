"""Flagger Canaries (and MetricTemplates for PromQL checks) for the rollouts the mesh can run.

Flagger canaries a Deployment: it watches the target, and when its pod spec changes it shifts
Istio weights to the new pods step by step while its checks pass. The target here is the
predictor Deployment of the primary's InferenceService (RawDeployment mode); the rollout starts
when that InferenceService's ``storageUri`` is set to the canary's. What Flagger cannot judge
is refused rollout by rollout, with the reason: model-quality checks (accuracy, shadow
agreement) and checks relative to the primary need the gateway, and ``abtest`` (a sequential
test) and ``bandit`` have no Flagger strategy.
"""

from __future__ import annotations

import re
from typing import Any

from modelrouter.config.rollouts import RolloutSpec
from modelrouter.config.schema import ModelSpec
from modelrouter.export.durations import flagger_interval, seconds_text
from modelrouter.export.names import dns_label, predictor_service
from modelrouter.export.yamlio import Manifest

FLAGGER_BUILTINS = ("request-success-rate", "request-duration")
"""The checks Flagger computes itself from the mesh's metrics (same names, same units)."""


def cannot(name: str, spec: RolloutSpec) -> list[str]:
    """Why Flagger cannot run rollout ``name`` (empty: it can)."""
    why = []
    if spec.strategy in ("abtest", "bandit"):
        why.append(f"strategy {spec.strategy} has no Flagger equivalent")
    for m in spec.analysis.metrics:
        if m.provider == "builtin" and m.name not in FLAGGER_BUILTINS:
            why.append(f"check {m.name} is computed by the gateway from feedback and shadows")
        if m.relativeTo is not None:
            why.append(f"check {m.name} compares the canary with the primary")
    return why


def _render(query: str, model: str, version: str) -> str:
    """Our PromQL placeholders in Flagger's: ``{{ interval }}`` is Flagger's own."""
    query = re.sub(r"\{\{\s*model\s*\}\}", model, query)
    return re.sub(r"\{\{\s*version\s*\}\}", version, query)


def canary_manifests(
    name: str,
    spec: RolloutSpec,
    model: ModelSpec,
    primary_isvc: str,
    namespace: str,
    prometheus_url: str | None,
) -> tuple[list[Manifest], list[str]]:
    """The Canary of rollout ``name`` and its MetricTemplates; and what it leaves out."""
    notes: list[str] = []
    where = f"rollouts.{name}"
    a = spec.analysis
    analysis: dict[str, Any] = {
        "interval": flagger_interval(a.interval),
        "threshold": a.threshold,
    }
    if spec.strategy == "bluegreen":
        analysis["iterations"] = a.iterations or 3
        if a.mirror:
            analysis["mirror"] = True
            analysis["mirrorWeight"] = 100
    elif a.stepWeights:
        analysis["stepWeights"] = list(a.steps())
    else:
        analysis["stepWeight"] = a.stepWeight or 10
        analysis["maxWeight"] = a.max_weight
    templates: list[Manifest] = []
    metrics = []
    for m in a.metrics:
        item: dict[str, Any] = {
            "name": m.name,
            "thresholdRange": m.thresholdRange.model_dump(exclude_none=True),
            "interval": flagger_interval(max(60.0, a.interval)),
        }
        if m.provider == "prometheus" and m.query is not None:
            template = dns_label(name, m.name)
            provider: dict[str, Any] = {"type": "prometheus"}
            if prometheus_url:
                provider["address"] = prometheus_url
            templates.append(
                Manifest(
                    {
                        "apiVersion": "flagger.app/v1beta1",
                        "kind": "MetricTemplate",
                        "metadata": {"name": template, "namespace": namespace},
                        "spec": {
                            "provider": provider,
                            "query": _render(m.query, spec.model, spec.canary),
                        },
                    },
                    f"rollout {name}, check {m.name}. The query reads the gateway's metrics as"
                    " written in the\nconfig: with no gateway in front, rewrite it over Istio's"
                    " istio_requests_total.",
                )
            )
            item["templateRef"] = {"name": template, "namespace": namespace}
        if m.minSamples > 1:
            notes.append(f"{where}.analysis.metrics.{m.name}.minSamples: Flagger has no minimum")
        metrics.append(item)
    analysis["metrics"] = metrics
    if spec.webhooks:
        analysis["webhooks"] = [
            {
                "name": w.name or f"{w.type}-{i}",
                "type": w.type,
                "url": w.url,
                "timeout": seconds_text(w.timeout),
                **({"metadata": dict(w.metadata)} if w.metadata else {}),
            }
            for i, w in enumerate(spec.webhooks)
        ]
    service: dict[str, Any] = {"port": 80, "targetPort": 8080}
    rule = next((r for r in model.http if r.name == spec.rule), None)
    if rule is not None:
        if rule.timeout is not None:
            service["timeout"] = seconds_text(rule.timeout)
        if rule.retries is not None:
            service["retries"] = {"attempts": rule.retries.attempts}
            if rule.retries.perTryTimeout is not None:
                service["retries"]["perTryTimeout"] = seconds_text(rule.retries.perTryTimeout)
        if rule.sticky is not None:
            notes.append(f"{where}: Flagger's weights are per request; sticky users move")
    if spec.promotion.mlflowAlias:
        notes.append(
            f"{where}.promotion.mlflowAlias: Flagger does not move MLflow aliases; a"
            " post-rollout webhook can"
        )
    others = [r.name for r in model.http if r.name != spec.rule]
    if others:
        notes.append(
            f"{where}: Flagger writes the VirtualService of {spec.model} itself; its other rules"
            f" ({', '.join(others)}) are not in it"
        )
    canary = Manifest(
        {
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": dns_label(name), "namespace": namespace},
            "spec": {
                "provider": "istio",
                "targetRef": {
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "name": predictor_service(primary_isvc),
                },
                "progressDeadlineSeconds": 600,
                "service": service,
                "analysis": analysis,
            },
        },
        f"rollout {name}: {spec.model} {spec.primary} -> {spec.canary}. Start it by setting"
        f" the storageUri\nof InferenceService {primary_isvc} to {spec.canary}'s.",
    )
    return [canary, *templates], notes
