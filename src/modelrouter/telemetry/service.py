"""One object the data plane, the shadow runner and the feedback API report to.

:class:`Telemetry` fans each event out to the Prometheus :class:`~.metrics.Metrics` and to the
per-version windows of the :class:`~.recorder.Recorder`, flushes those windows to the store in
the background, and offers :attr:`windows` (every gateway's figures, read from the store) to a
rollout controller.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry

from modelrouter.config.schema import TelemetrySettings
from modelrouter.shadow.comparison import Comparison
from modelrouter.store.base import Store
from modelrouter.telemetry.feedback import FeedbackService, Joined, Score
from modelrouter.telemetry.metrics import Metrics
from modelrouter.telemetry.recorder import Clock, Recorder, StoreWindows


def default_gateway_id() -> str:
    """``host:pid``: unique among the processes sharing a store."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Telemetry:
    def __init__(
        self,
        store: Store,
        settings: TelemetrySettings | None = None,
        registry: CollectorRegistry | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings = settings or TelemetrySettings()
        self.store = store
        self.metrics = Metrics(registry if registry is not None else CollectorRegistry())
        kwargs: dict[str, Any] = {"window": settings.window}
        if clock is not None:
            kwargs["clock"] = clock
        self.recorder = Recorder(settings.gatewayId or default_gateway_id(), **kwargs)
        self.windows = StoreWindows(store)
        self.feedback_service = FeedbackService(store, self)

    @property
    def registry(self) -> CollectorRegistry:
        return self.metrics.registry

    # ------------------------------------------------------------------ data plane

    def request(
        self,
        model: str,
        version: str,
        rule: str | None,
        status: int,
        seconds: float,
        request_id: str | None = None,
        prediction: list[Any] | None = None,
        fallbacks: Sequence[dict[str, str]] = (),
    ) -> None:
        """One inference: ``version`` is the one that answered (or was chosen, on failure)."""
        self.metrics.request(model, version, rule, status, seconds)
        self.recorder.request(model, version, status, seconds)
        for f in fallbacks:
            self.metrics.fallback(model, f["from"], f["version"])
        if request_id is not None and status < 400:
            self.recorder.remember(request_id, model, version, prediction, status)

    # ------------------------------------------------------------------ shadow observer

    def shadow_compared(self, model: str, primary: str, shadow: str, c: Comparison) -> None:
        self.metrics.shadow_result(model, primary, shadow, c.elements, c.agreeing, c.abs_diff_sum)
        self.recorder.shadow(model, shadow, c.elements, c.agreeing)

    def shadow_failed(self, model: str, primary: str, shadow: str) -> None:
        self.metrics.shadow_error(model, primary, shadow)

    def shadow_dropped(self, model: str, primary: str, shadow: str) -> None:
        self.metrics.shadow_drop(model, primary, shadow)

    # ------------------------------------------------------------------ feedback sink

    def recent_prediction(self, request_id: str) -> Joined | None:
        found = self.recorder.recent(request_id)
        if found is None:
            return None
        return Joined(found.model, found.version, found.prediction, found.status)

    def feedback(self, model: str, version: str, score: Score | None, reward: float | None) -> None:
        s = score or Score()
        self.metrics.feedback_result(
            model, version, s.labels, s.correct, s.values, s.abs_error, reward
        )
        self.recorder.feedback(model, version, s.labels, s.correct, s.values, s.abs_error, reward)

    # ------------------------------------------------------------------ background

    async def run(self) -> None:
        """Flush the windows to the store every ``flushInterval`` until cancelled."""
        await self.recorder.run(
            self.store,
            self.settings.flushInterval,
            self.settings.retention,
            self.metrics.flush_failures.inc,
        )

    async def flush(self) -> int:
        return await self.recorder.flush(self.store)
