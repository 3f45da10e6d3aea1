"""Per-version figures of a model, from the store's windows (the traffic of every gateway).

What ``GET /api/v1/models/{model}/versions`` answers: for each version its state, its weight
in each rule of the live table (and the rules that mirror to it), and over the last window its
requests, error rate, latency p50/p99, accuracy from feedback and shadow agreement.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from modelrouter.errors import InvalidInput
from modelrouter.routing.state import RoutingState
from modelrouter.runtime.repository import ModelRepository
from modelrouter.telemetry.window import VersionWindow, WindowSource

MAX_WINDOW = 7 * 24 * 3600.0


def rule_name(rule: Mapping[str, Any], index: int) -> str:
    """How figures key a rule: its name, or ``#index`` (its place in the table) when unnamed."""
    return str(rule.get("name") or f"#{index}")


def rule_weights(rules: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{rule: {version: weight percent}}`` of a routing document's rules: every destination
    of a rule, weight 0 included (a destination without a weight is the rule's only one, so it
    takes 100)."""
    out: dict[str, dict[str, float]] = {}
    for i, rule in enumerate(rules):
        name = rule_name(rule, i)
        route = rule.get("route") or []
        total = sum(float(d.get("weight") or 0) for d in route) if len(route) > 1 else 0.0
        weights: dict[str, float] = {}
        for d in route:
            dest = str(d["destination"])
            if len(route) == 1:
                weights[dest] = 100.0
            else:
                w = float(d.get("weight") or 0)
                weights[dest] = round(100.0 * w / total, 6) if total else 0.0
        out[name] = weights
    return out


def rule_mirrors(rules: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{rule: {version: mirrored percent}}``: the shadow copies each rule sends."""
    out: dict[str, dict[str, float]] = {}
    for i, rule in enumerate(rules):
        name = rule_name(rule, i)
        mirrors: dict[str, float] = {}
        single = rule.get("mirror")
        if isinstance(single, dict) and single.get("destination"):
            pct = (rule.get("mirrorPercentage") or {}).get("value", 100)
            mirrors[str(single["destination"])] = float(pct)
        for m in rule.get("mirrors") or []:
            if isinstance(m, dict) and m.get("destination"):
                pct = (m.get("percentage") or {}).get("value", 100)
                mirrors[str(m["destination"])] = float(pct)
        if mirrors:
            out[name] = mirrors
    return out


def version_roles(
    rules: list[dict[str, Any]], figures: Mapping[str, Mapping[str, Any]], default: str | None
) -> dict[str, dict[str, Any]]:
    """Per version: its weight in each rule that routes to it, the rules mirroring to it and
    falling back to it, and one word for its role: ``routed``, ``mirrored``, ``fallback``,
    ``default`` (the first version, which answers requests no rule matches) or ``idle``.

    ``figures`` maps each version to its :meth:`FigureReader.versions` entry (``weights`` in
    every rule, ``mirrored`` percentages)."""
    routes = rule_weights(rules)
    out: dict[str, dict[str, Any]] = {}
    for v, f in figures.items():
        weights = f.get("weights") or {}
        mine = {r: w for r, w in weights.items() if v in routes.get(r, ())}
        mirrored = [r for r, pct in (f.get("mirrored") or {}).items() if pct]
        fallback = [rule_name(r, i) for i, r in enumerate(rules) if v in (r.get("fallback") or [])]
        if any(w > 0 for w in mine.values()):
            role = "routed"
        elif mirrored:
            role = "mirrored"
        elif fallback:
            role = "fallback"
        elif v == default:
            role = "default"
        else:
            role = "idle"
        out[v] = {"role": role, "weights": mine, "mirroredBy": mirrored, "fallbackOf": fallback}
    return out


def window_json(w: VersionWindow) -> dict[str, Any]:
    return {
        "requests": w.requests,
        "errors": w.errors,
        "errorRate": None if not w.requests else w.errors / w.requests,
        "latencyP50Ms": w.latency_p50_ms,
        "latencyP99Ms": w.latency_p99_ms,
        "feedback": w.feedback,
        "accuracy": w.accuracy,
        "meanAbsError": w.mean_abs_error,
        "rewards": w.rewards,
        "meanReward": w.mean_reward,
        "shadowCompared": w.shadow_compared,
        "shadowAgreement": w.shadow_agreement,
    }


class FigureReader:
    def __init__(
        self,
        routing: RoutingState,
        repository: ModelRepository,
        windows: WindowSource | None,
        window_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.routing = routing
        self.repository = repository
        self.windows = windows
        self.window_seconds = window_seconds
        self.clock = clock

    def _span(self, window: float | None) -> tuple[float, float]:
        seconds = self.window_seconds if window is None else window
        if not 0 < seconds <= MAX_WINDOW:
            raise InvalidInput(f"window: must be more than 0 and at most {MAX_WINDOW:g} seconds")
        now = self.clock()
        return now - seconds, now

    async def _window(self, model: str, version: str, since: float, until: float) -> VersionWindow:
        if self.windows is None:
            return VersionWindow(model, version, since, until)
        return await self.windows.window(model, version, since, until)

    async def versions(self, model: str, window: float | None = None) -> dict[str, Any]:
        entries = self.repository.versions(model)
        since, until = self._span(window)
        rules = self.routing.document(model)["http"]
        weights, mirrors = rule_weights(rules), rule_mirrors(rules)
        windows = await asyncio.gather(*(self._window(model, v, since, until) for v in entries))
        out = []
        for (name, e), w in zip(entries.items(), windows, strict=True):
            out.append(
                {
                    "name": name,
                    "state": e.state.value,
                    "reason": e.error,
                    "weights": {r: ws.get(name, 0.0) for r, ws in weights.items()},
                    "mirrored": {r: ms[name] for r, ms in mirrors.items() if name in ms},
                    **window_json(w),
                }
            )
        return {"model": model, "since": since, "until": until, "versions": out}

    async def shadows(self, model: str, window: float | None = None) -> dict[str, Any]:
        """Agreement of each version some rule mirrors to, summed over every gateway."""
        self.repository.versions(model)
        since, until = self._span(window)
        mirrors = rule_mirrors(self.routing.document(model)["http"])
        shadowed = sorted({v for ms in mirrors.values() for v in ms})
        windows = await asyncio.gather(*(self._window(model, v, since, until) for v in shadowed))
        return {
            "model": model,
            "since": since,
            "until": until,
            "shadows": [
                {
                    "shadow": w.version,
                    "compared": w.shadow_compared,
                    "agreeing": w.shadow_agreeing,
                    "agreement": w.shadow_agreement,
                }
                for w in windows
            ],
        }
