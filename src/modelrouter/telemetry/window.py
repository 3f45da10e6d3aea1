"""What a rollout controller reads about one version over a time window.

The gateway records every request, shadow comparison and feedback into per-version rolling
windows, in memory and (aggregated every few seconds) in the shared store, so a controller on
any gateway sees the traffic of all of them. Metric providers turn a window into the figures
the analysis compares with its thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class VersionWindow:
    """Aggregates of one model version between ``since`` and ``until`` (epoch seconds)."""

    model: str
    version: str
    since: float
    until: float
    requests: int = 0
    errors: int = 0
    """Requests answered with a 5xx (client errors are not the version's fault)."""
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None
    feedback: int = 0
    """Predictions with ground truth joined (label or value)."""
    correct: int = 0
    """Of ``feedback``: label predictions that matched the ground truth."""
    abs_error_sum: float = 0.0
    """Of ``feedback``: sum of |prediction - truth| for regressions."""
    rewards: int = 0
    reward_sum: float = 0.0
    shadow_compared: int = 0
    shadow_agreeing: int = 0

    @property
    def success_rate(self) -> float | None:
        """Percent of requests that did not fail, as Flagger's request-success-rate."""
        return None if not self.requests else 100.0 * (self.requests - self.errors) / self.requests

    @property
    def accuracy(self) -> float | None:
        return None if not self.feedback else self.correct / self.feedback

    @property
    def mean_abs_error(self) -> float | None:
        return None if not self.feedback else self.abs_error_sum / self.feedback

    @property
    def mean_reward(self) -> float | None:
        return None if not self.rewards else self.reward_sum / self.rewards

    @property
    def shadow_agreement(self) -> float | None:
        return None if not self.shadow_compared else self.shadow_agreeing / self.shadow_compared


class WindowSource(Protocol):
    """Reads windows; the telemetry package implements it over the store (all gateways)."""

    async def window(
        self, model: str, version: str, since: float, until: float
    ) -> VersionWindow: ...
