"""The mesh-only shape: a VirtualService and DestinationRules that route between the versions'
InferenceServices with what Istio can express.

Each rule becomes an HTTPRoute (header and query matches, weights, mirror and
mirrorPercentage, timeout, retries, fault); the comment above the VirtualService lists, rule by
rule, what only the gateway does. The DestinationRule of each version carries what Istio does
per host: a consistent hash for sticky rules (it pins a user to a pod of the version Istio's
per-request draw chose, not to a version) and outlier detection.
"""

from __future__ import annotations

from typing import Any

from modelrouter.config.schema import MatchBlock, ModelSpec, RouteRule, StickySpec, StringMatch
from modelrouter.export.durations import seconds_text
from modelrouter.export.names import dns_label
from modelrouter.export.yamlio import Manifest


def _string_match(m: StringMatch) -> dict[str, str]:
    return {k: v for k, v in (("exact", m.exact), ("prefix", m.prefix), ("regex", m.regex)) if v}


def _match(block: MatchBlock) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if block.headers:
        out["headers"] = {k: _string_match(v) for k, v in block.headers.items()}
    if block.queryParams:
        out["queryParams"] = {k: _string_match(v) for k, v in block.queryParams.items()}
    if block.withoutHeaders:
        out["withoutHeaders"] = {k: _string_match(v) for k, v in block.withoutHeaders.items()}
    return out


def percentages(weights: list[int]) -> list[int]:
    """Integer weights summing to 100 in the same proportions (largest remainders)."""
    total = sum(weights)
    exact = [w * 100 / total for w in weights]
    out = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: exact[i] - out[i], reverse=True)
    for i in order[: 100 - sum(out)]:
        out[i] += 1
    return out


def _destination(host: str) -> dict[str, Any]:
    """``host`` or ``host:port`` (a remote endpoint's) as an Istio destination (port 80 when
    none is given: KServe's predictor Services)."""
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit():
        return {"host": name, "port": {"number": int(port)}}
    return {"host": host, "port": {"number": 80}}


def gateway_only(rule: RouteRule) -> list[str]:
    """What of ``rule`` the mesh cannot do."""
    lost = []
    if rule.sticky is not None and len(rule.route) > 1:
        lost.append(
            "monotone sticky cohorts (Istio draws a version per request; its consistentHash"
            " pins pods, not versions)"
        )
    if any(b.body for b in rule.match):
        lost.append("matches on fields of the request body (those match blocks are left out)")
    if rule.mirror is not None or rule.mirrors:
        lost.append("compared shadows (Istio discards the mirror's answer)")
    if rule.fallback:
        lost.append(f"the fallback chain ({', '.join(rule.fallback)})")
    return lost


def http_route(
    rule: RouteRule, hosts: dict[str, str], model: str
) -> tuple[dict[str, Any] | None, list[str]]:
    """The HTTPRoute of ``rule`` (None when every match block needs the body), and what of it
    only the gateway does."""
    lost = gateway_only(rule)
    out: dict[str, Any] = {"name": rule.name}
    if rule.match:
        blocks = [_match(b) for b in rule.match if not b.body]
        if not blocks:
            return None, [*lost, "the whole rule: every match block reads the body"]
        out["match"] = blocks
    weights = percentages([d.weight if d.weight is not None else 1 for d in rule.route])
    route = []
    for d, w in zip(rule.route, weights, strict=True):
        item: dict[str, Any] = {"destination": _destination(hosts[d.destination])}
        if len(rule.route) > 1:
            item["weight"] = w
        # clients keep reading which version answered
        item["headers"] = {"response": {"set": {"x-model-version": d.destination}}}
        route.append(item)
    out["route"] = route
    if rule.mirror is not None:
        out["mirror"] = _destination(hosts[rule.mirror.destination])
        if rule.mirrorPercentage is not None:
            out["mirrorPercentage"] = {"value": rule.mirrorPercentage.value}
    if rule.mirrors:
        out["mirrors"] = [
            {
                "destination": _destination(hosts[m.destination]),
                "percentage": {"value": m.percentage.value},
            }
            for m in rule.mirrors
        ]
    if rule.timeout is not None:
        out["timeout"] = seconds_text(rule.timeout)
    if rule.retries is not None:
        retries: dict[str, Any] = {
            "attempts": rule.retries.attempts,
            "retryOn": "5xx,connect-failure,reset",
        }
        if rule.retries.perTryTimeout is not None:
            retries["perTryTimeout"] = seconds_text(rule.retries.perTryTimeout)
        out["retries"] = retries
    if rule.fault is not None:
        fault: dict[str, Any] = {}
        if rule.fault.delay is not None:
            fault["delay"] = {
                "fixedDelay": seconds_text(rule.fault.delay.fixedDelay),
                "percentage": {"value": rule.fault.delay.percentage.value},
            }
        if rule.fault.abort is not None:
            fault["abort"] = {
                "httpStatus": rule.fault.abort.httpStatus,
                "percentage": {"value": rule.fault.abort.percentage.value},
            }
        out["fault"] = fault
    return out, lost


def _sticky(model: ModelSpec) -> StickySpec | None:
    for rule in model.http:
        if rule.sticky is not None and len(rule.route) > 1:
            return rule.sticky
    return None


def _consistent_hash(sticky: StickySpec) -> dict[str, Any] | None:
    if sticky.header:
        return {"httpHeaderName": sticky.header}
    if sticky.cookie:
        return {"httpCookie": {"name": sticky.cookie, "ttl": "0s"}}
    if sticky.queryParam:
        return {"httpQueryParameterName": sticky.queryParam}
    return None


def mesh_manifests(
    model: str, spec: ModelSpec, hosts: dict[str, str], namespace: str
) -> tuple[list[Manifest], list[str]]:
    """A host Service, the VirtualService and one DestinationRule per version of ``model``;
    and the notes for what the mesh cannot carry."""
    name = dns_label(model)
    notes: list[str] = []
    comment = [
        f"Model {model}: clients call http://{name}.{namespace}/v2/models/{model}/infer.",
        "What only the modelrouter gateway does, rule by rule:",
    ]
    routes = []
    for rule in spec.http:
        route, lost = http_route(rule, hosts, model)
        if route is not None:
            routes.append(route)
        for item in lost:
            notes.append(f"models.{model}.http.{rule.name}: the mesh cannot do {item}")
        comment.append(f"  {rule.name}: {'; '.join(lost) if lost else 'nothing: Istio does all'}")
    if not spec.http or spec.http[-1].match:
        # modelrouter sends what no rule matches to the first version; Istio would answer 404
        first = spec.default_version
        routes.append(
            {
                "name": "default-version",
                "route": [
                    {
                        "destination": _destination(hosts[first]),
                        "headers": {"response": {"set": {"x-model-version": first}}},
                    }
                ],
            }
        )
    comment.append("  always: rollout statistics (accuracy, shadow agreement, sequential tests),")
    comment.append("  the per-request decision audit, and per-version figures from feedback.")
    host_service = Manifest(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            # no selector: the address clients call; the VirtualService sends it on
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]},
        },
        f"The address of model {model}; its VirtualService routes it to the versions.",
    )
    vs = Manifest(
        {
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"hosts": [name], "http": routes},
        },
        "\n".join(comment),
    )
    out = [host_service, vs]
    sticky = _sticky(spec)
    for version, host in hosts.items():
        dest = _destination(host)
        policy: dict[str, Any] = {
            "outlierDetection": {
                "consecutive5xxErrors": 5,
                "interval": "10s",
                "baseEjectionTime": "30s",
            }
        }
        comment_dr = f"model {model} version {version}: ejects a pod after five 5xx in a row."
        if sticky is not None:
            ch = _consistent_hash(sticky)
            if ch is not None:
                policy["loadBalancer"] = {"consistentHash": ch}
                comment_dr += "\nThe consistent hash keeps a user on one pod of this version only."
        out.append(
            Manifest(
                {
                    "apiVersion": "networking.istio.io/v1",
                    "kind": "DestinationRule",
                    "metadata": {
                        "name": dns_label(dest["host"].split(".", 1)[0]),
                        "namespace": namespace,
                    },
                    "spec": {"host": dest["host"], "trafficPolicy": policy},
                },
                comment_dr,
            )
        )
    if sticky is not None and sticky.body:
        notes.append(f"models.{model}: a sticky key from the body has no Istio hash")
    return out, notes
