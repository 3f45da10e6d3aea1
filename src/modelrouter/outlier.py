"""Outlier ejection per version, after Istio's ``outlierDetection`` (Envoy's consecutive-errors
detector).

A version with ``outlierDetection`` counts its failures in a row (errors and timeouts of routed
calls; a bad request is the client's fault and does not count). At ``consecutiveErrors`` it is
**ejected**: routed requests skip it and go straight to the rule's fallback versions, without
waiting for its timeout. The n-th ejection in a row lasts ``n x baseEjectionTime``, and the
version returns at the first ``interval`` sweep after that (counted from the ejection); one
success then clears its streak and its ejection count. At most ``maxEjectionPercent`` of a
model's versions are ejected at once (at least one may be), so a bad night cannot eject them all.

The detector holds only counters and deadlines; it reads the clock it is given, and tells a
listener of each ejection and return (metrics, audit records: see ``app.build_services``).
Pinned calls (``/versions/{v}/infer``) and shadow calls neither count nor are ejected.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from modelrouter.audit import records
from modelrouter.config.schema import Config, OutlierDetection


@dataclass(slots=True, frozen=True)
class EjectionEvent:
    """A version was ejected (``until`` is on the detector's clock) or returned to service."""

    action: Literal["ejected", "returned"]
    model: str
    version: str
    consecutive_errors: int
    ejections: int
    seconds: float
    """How long the ejection lasts (ejected), or lasted (returned)."""
    reason: str

    def audit_record(self) -> dict[str, Any]:
        """The audit record of this event (kind ``ejection``)."""
        return records.ejection(
            time=time.time(),
            action=self.action,
            model=self.model,
            version=self.version,
            consecutive_errors=self.consecutive_errors,
            ejections=self.ejections,
            seconds=self.seconds,
            reason=self.reason,
        )


@dataclass(slots=True)
class _State:
    spec: OutlierDetection
    errors: int = 0
    ejections: int = 0
    ejected_at: float = 0.0
    ejected_until: float | None = None
    last_error: str = ""


Listener = Callable[[EjectionEvent], None]


class OutlierDetector:
    def __init__(self, config: Config, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.listener: Listener | None = None
        self._states: dict[tuple[str, str], _State] = {}
        self._sizes: dict[str, int] = {}
        for model, spec in config.models.items():
            self._sizes[model] = len(spec.versions)
            for version, vspec in spec.versions.items():
                if vspec.outlierDetection is not None:
                    self._states[(model, version)] = _State(vspec.outlierDetection)
        self.enabled = bool(self._states)
        """False when no version has ``outlierDetection``: the data plane skips every call."""

    def ejected_for(self, model: str, version: str) -> float | None:
        """Seconds the version stays ejected, or None when it serves (returning it when its
        time is up)."""
        s = self._states.get((model, version))
        if s is None or s.ejected_until is None:
            return None
        now = self.clock()
        if now < s.ejected_until:
            return s.ejected_until - now
        lasted = now - s.ejected_at
        s.ejected_until = None
        s.errors = 0
        self._tell("returned", model, version, s, lasted, "ejection time is up")
        return None

    def ejected_versions(self, model: str) -> list[str]:
        return [v for (m, v), s in self._states.items() if m == model and s.ejected_until]

    def success(self, model: str, version: str) -> None:
        s = self._states.get((model, version))
        if s is not None and (s.errors or s.ejections) and s.ejected_until is None:
            s.errors = 0
            s.ejections = 0

    def failure(self, model: str, version: str, reason: str) -> None:
        s = self._states.get((model, version))
        if s is None or s.ejected_until is not None:
            return
        s.errors += 1
        s.last_error = reason
        if s.errors < s.spec.consecutiveErrors or not self._may_eject(model, s.spec):
            return
        s.ejections += 1
        base = s.spec.baseEjectionTime * s.ejections
        sweep = s.spec.interval
        seconds = math.ceil(base / sweep - 1e-9) * sweep
        s.ejected_at = self.clock()
        s.ejected_until = s.ejected_at + seconds
        self._tell(
            "ejected",
            model,
            version,
            s,
            seconds,
            f"{s.errors} consecutive errors, the last: {reason}",
        )

    def _may_eject(self, model: str, spec: OutlierDetection) -> bool:
        already = len(self.ejected_versions(model))
        allowed = max(1, math.floor(self._sizes[model] * spec.maxEjectionPercent / 100))
        return already < allowed

    def _tell(
        self,
        action: Literal["ejected", "returned"],
        model: str,
        version: str,
        s: _State,
        seconds: float,
        reason: str,
    ) -> None:
        if self.listener is not None:
            event = EjectionEvent(action, model, version, s.errors, s.ejections, seconds, reason)
            self.listener(event)
