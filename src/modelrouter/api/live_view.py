"""What the event stream (``GET /api/v1/events``) reads of the gateway, as plain JSON.

Everything but the traffic counters comes from the control plane
(:class:`~modelrouter.control.service.ControlPlane`), the same reads the admin API answers:
models and versions, routing documents, rollout statuses and the per-version figures of the
last minute (every gateway, from the store's windows). The traffic-share chart needs requests
per rule and version second by second, which only this gateway's request counters have
(``Metrics.request_stats``); :meth:`LiveView.traffic` turns them into per-tick deltas.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from modelrouter.control.figures import version_roles

FIGURES_WINDOW = 60.0
"""Seconds of history behind the per-version figures."""

NOT_FIGURES = frozenset({"name", "state", "reason", "weights", "mirrored"})
"""Fields of a ``version_figures`` entry the ``models`` event carries instead."""

RequestCounts = Callable[[], Mapping[tuple[str, str, str, int], int]]
"""Cumulative requests by ``(model, version, rule, status)`` (``Metrics.request_stats.counts``)."""


class ControlReads(Protocol):
    """The control-plane reads the stream uses (a ``ControlPlane`` has them)."""

    async def models(self) -> dict[str, Any]: ...

    async def get_routing(self, model: str) -> dict[str, Any]: ...

    async def list_rollouts(self) -> list[dict[str, Any]]: ...

    async def version_figures(self, model: str, window: float | None = None) -> dict[str, Any]: ...


class LiveView:
    def __init__(self, control: ControlReads, request_counts: RequestCounts) -> None:
        self.control = control
        self.request_counts = request_counts
        self._last_counts: dict[tuple[str, str, str], int] = {}

    async def snapshot(self) -> dict[str, Any]:
        """``models``, ``routing``, ``rollouts`` and ``figures`` as the stream sends them."""
        listed = await self.control.models()
        models, documents, figures = [], {}, {}
        for m in listed["models"]:
            name = m["name"]
            doc = documents[name] = await self.control.get_routing(name)
            by_version = {
                f["name"]: f
                for f in (await self.control.version_figures(name, FIGURES_WINDOW))["versions"]
            }
            default = m["versions"][0]["name"] if m["versions"] else None
            role = version_roles(list(doc.get("http") or []), by_version, default)
            models.append(
                {
                    "name": name,
                    "routingVersion": m["routingVersion"],
                    "versions": [
                        {
                            "name": v["name"],
                            "state": v["state"],
                            "error": v["reason"],
                            "format": v["format"],
                            "source": v.get("source", ""),
                            "loadSeconds": v["loadSeconds"],
                            **role[v["name"]],
                        }
                        for v in m["versions"]
                    ],
                }
            )
            figures[name] = {
                v: {
                    k: x
                    for k, x in f.items()
                    if k not in ("name", "state", "reason", "weights", "mirrored")
                }
                for v, f in by_version.items()
            }
        return {
            "models": models,
            "routing": {"revision": listed["tableVersion"], "documents": documents},
            "rollouts": await self.control.list_rollouts(),
            "figures": figures,
        }

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
