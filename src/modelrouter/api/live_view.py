"""What the event stream (``GET /api/v1/events``) reads of the gateway, as plain JSON.

:class:`LiveView` is the one place that looks at the gateway's state on the stream's behalf:
models and versions (state, source, role in the live rules), the routing documents, rollout
statuses, per-version figures over the last minute (every gateway, from the store's windows)
and this gateway's request counts per rule and version (for the traffic-share chart). Each
method returns JSON-ready values, so the hub only compares and forwards them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from modelrouter.config.schema import VersionSpec
from modelrouter.routing.state import RoutingState
from modelrouter.runtime.repository import ModelRepository
from modelrouter.telemetry.window import VersionWindow, WindowSource

FIGURES_WINDOW = 60.0
"""Seconds of history behind the per-version figures."""

RequestCounts = Callable[[], Mapping[tuple[str, str, str, int], int]]
"""Cumulative requests by ``(model, version, rule, status)`` (``Metrics.request_stats.counts``)."""


class RolloutSource(Protocol):
    """The rollouts a gateway runs (a :class:`~modelrouter.rollout.controller.RolloutManager`)."""

    @property
    def controllers(self) -> Mapping[str, Any]: ...


def version_source(spec: VersionSpec) -> str:
    """Where a version comes from, in one line (admins only see this)."""
    if spec.endpoint is not None:
        remote = spec.remoteName or ""
        return f"{spec.endpoint} ({remote})" if remote else spec.endpoint
    return spec.storageUri or ""


def roles(document: Mapping[str, Any], default: str | None = None) -> dict[str, dict[str, Any]]:
    """Per version: the rules routing to it with their weights, mirroring to it, falling back
    to it; and one word for its role: ``routed``, ``mirrored``, ``fallback``, ``default`` (the
    ``default`` version, which answers requests no rule matches) or ``idle``."""
    out: dict[str, dict[str, Any]] = {}

    def entry(version: str) -> dict[str, Any]:
        return out.setdefault(version, {"weights": {}, "mirroredBy": [], "fallbackOf": []})

    for i, rule in enumerate(document.get("http") or []):
        name = rule.get("name") or f"rule-{i}"
        route = rule.get("route") or []
        for d in route:
            weight = d.get("weight")
            entry(d["destination"])["weights"][name] = 100 if weight is None else weight
        mirror = (rule.get("mirror") or {}).get("destination")
        percent = (rule.get("mirrorPercentage") or {}).get("value", 100)
        if mirror and percent:
            entry(mirror)["mirroredBy"].append(name)
        for f in rule.get("fallback") or []:
            entry(f)["fallbackOf"].append(name)
    if default is not None:
        entry(default)
    for version, e in out.items():
        if any(w > 0 for w in e["weights"].values()):
            e["role"] = "routed"
        elif e["mirroredBy"]:
            e["role"] = "mirrored"
        elif e["fallbackOf"]:
            e["role"] = "fallback"
        elif version == default:
            e["role"] = "default"
        else:
            e["role"] = "idle"
    return out


def window_json(w: VersionWindow) -> dict[str, Any]:
    return {
        "requests": w.requests,
        "errors": w.errors,
        "errorRate": None if not w.requests else w.errors / w.requests,
        "p50": w.latency_p50_ms,
        "p99": w.latency_p99_ms,
        "feedback": w.feedback,
        "accuracy": w.accuracy,
        "meanReward": w.mean_reward,
        "shadowCompared": w.shadow_compared,
        "shadowAgreement": w.shadow_agreement,
    }


class LiveView:
    def __init__(
        self,
        repository: ModelRepository,
        routing: RoutingState,
        rollouts: RolloutSource | None,
        windows: WindowSource,
        request_counts: RequestCounts,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repository = repository
        self.routing = routing
        self.rollouts = rollouts
        self.windows = windows
        self.request_counts = request_counts
        self.clock = clock
        self._last_counts: dict[tuple[str, str, str], int] = {}

    def revision(self) -> int:
        """The routing table's store revision: it moves on every routing change."""
        return self.routing.table.version

    def models(self) -> list[dict[str, Any]]:
        out = []
        for name, versions in self.repository.models.items():
            doc = self.routing.document(name)
            role = roles(doc, self.routing.specs[name].default_version)
            out.append(
                {
                    "name": name,
                    "routingVersion": doc["version"],
                    "versions": [
                        {
                            "name": v,
                            "state": e.state.value,
                            "error": e.error,
                            "format": e.spec.format,
                            "source": version_source(e.spec),
                            "loadSeconds": e.load_seconds,
                            **role.get(
                                v,
                                {"role": "idle", "weights": {}, "mirroredBy": [], "fallbackOf": []},
                            ),
                        }
                        for v, e in versions.items()
                    ],
                }
            )
        return out

    def routing_documents(self) -> dict[str, dict[str, Any]]:
        return {name: self.routing.document(name) for name in self.repository.models}

    async def rollout_statuses(self) -> list[dict[str, Any]]:
        if self.rollouts is None:
            return []
        return [await c.status() for c in self.rollouts.controllers.values()]

    async def figures(self) -> dict[str, dict[str, dict[str, Any]]]:
        """Per model and version, the last :data:`FIGURES_WINDOW` seconds of every gateway."""
        now = self.clock()
        since = now - FIGURES_WINDOW
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for model, versions in self.repository.models.items():
            out[model] = {
                v: window_json(await self.windows.window(model, v, since, now + 1.0))
                for v in versions
            }
        return out

    def traffic(self) -> dict[str, dict[str, dict[str, int]]]:
        """Requests this gateway answered since the previous call, per model, rule and
        version (``""`` is a call pinned to a version or to a model without rules)."""
        totals: dict[tuple[str, str, str], int] = {}
        for (model, version, rule, _status), n in list(self.request_counts().items()):
            key = (model, rule, version)
            totals[key] = totals.get(key, 0) + n
        out: dict[str, dict[str, dict[str, int]]] = {}
        for (model, rule, version), n in totals.items():
            delta = n - self._last_counts.get((model, rule, version), 0)
            if delta > 0:
                out.setdefault(model, {}).setdefault(rule, {})[version] = delta
        self._last_counts = totals
        return out
