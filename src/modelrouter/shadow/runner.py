"""Shadow traffic: mirrored requests run after the primary answered, off the response path.

Work goes into a bounded queue; a full queue drops the shadow call and counts it, so mirroring
never delays or fails the primary. Each shadow answer is compared with the primary's first
output (:mod:`.comparison`) into per-pair statistics (agreement of labels, mean absolute
difference, latency).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from modelrouter.protocol.types import InferenceRequest, Tensor
from modelrouter.shadow.comparison import Comparison, compare

log = logging.getLogger(__name__)

ShadowCall = Callable[[str, str, InferenceRequest], Awaitable[list[Tensor]]]
"""(model, version, request) -> outputs: how the runner reaches a version."""


@dataclass(slots=True)
class PairStats:
    """Running figures for one (model, primary version, shadow version) pair."""

    model: str
    primary: str
    shadow: str
    count: int = 0
    errors: int = 0
    dropped: int = 0
    compared_elements: int = 0
    agreeing_elements: int = 0
    abs_diff_sum: float = 0.0
    latency_sum: float = 0.0

    @property
    def agreement(self) -> float | None:
        if not self.compared_elements:
            return None
        return self.agreeing_elements / self.compared_elements

    @property
    def mean_abs_diff(self) -> float | None:
        return self.abs_diff_sum / self.compared_elements if self.compared_elements else None

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "primary": self.primary,
            "shadow": self.shadow,
            "count": self.count,
            "errors": self.errors,
            "dropped": self.dropped,
            "agreement": self.agreement,
            "meanAbsDiff": self.mean_abs_diff,
            "meanLatencyMs": (self.latency_sum / self.count * 1000) if self.count else None,
        }


class ShadowObserver(Protocol):
    """Told of every shadow outcome (the telemetry: metrics and windows)."""

    def shadow_compared(self, model: str, primary: str, shadow: str, c: Comparison) -> None: ...

    def shadow_failed(self, model: str, primary: str, shadow: str) -> None: ...

    def shadow_dropped(self, model: str, primary: str, shadow: str) -> None: ...


@dataclass(slots=True)
class _Job:
    model: str
    primary: str
    shadows: tuple[str, ...]
    request: InferenceRequest
    outputs: list[Tensor]


class ShadowRunner:
    def __init__(
        self,
        call: ShadowCall,
        max_queue: int = 1000,
        workers: int = 2,
        observer: ShadowObserver | None = None,
    ) -> None:
        self._call = call
        self.observer = observer
        self._queue: asyncio.Queue[_Job] = asyncio.Queue(max_queue)
        self._workers = workers
        self._tasks: list[asyncio.Task[None]] = []
        self.stats: dict[tuple[str, str, str], PairStats] = {}
        self.dropped = 0

    def _pair(self, model: str, primary: str, shadow: str) -> PairStats:
        key = (model, primary, shadow)
        found = self.stats.get(key)
        if found is None:
            found = self.stats[key] = PairStats(model, primary, shadow)
        return found

    def submit(
        self,
        model: str,
        primary: str,
        shadows: tuple[str, ...],
        request: InferenceRequest,
        outputs: list[Tensor],
    ) -> None:
        """Queue shadow calls for a request the primary answered; never blocks."""
        try:
            self._queue.put_nowait(_Job(model, primary, shadows, request, outputs))
        except asyncio.QueueFull:
            self.dropped += len(shadows)
            for s in shadows:
                self._pair(model, primary, s).dropped += 1
                if self.observer is not None:
                    self.observer.shadow_dropped(model, primary, s)

    def start(self) -> None:
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._work()) for _ in range(self._workers)]

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._tasks = []

    async def drain(self) -> None:
        """Wait until every queued shadow call has run (tests, shutdown)."""
        await self._queue.join()

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            try:
                # let the primary's response go out before the shadow takes the loop
                await asyncio.sleep(0)
                for shadow in job.shadows:
                    await self._run_one(job, shadow)
            finally:
                self._queue.task_done()

    async def _run_one(self, job: _Job, shadow: str) -> None:
        stats = self._pair(job.model, job.primary, shadow)
        start = time.perf_counter()
        try:
            outputs = await self._call(job.model, shadow, job.request)
        except Exception as exc:
            stats.errors += 1
            log.debug("shadow %s/%s failed: %s", job.model, shadow, exc)
            if self.observer is not None:
                self.observer.shadow_failed(job.model, job.primary, shadow)
            return
        stats.latency_sum += time.perf_counter() - start
        stats.count += 1
        c = Comparison(0, 0, 0.0)
        if outputs and job.outputs:
            by_name = {t.name: t for t in outputs}
            theirs = by_name.get(job.outputs[0].name, outputs[0])
            c = compare(job.outputs[0], theirs)
            stats.compared_elements += c.elements
            stats.agreeing_elements += c.agreeing
            stats.abs_diff_sum += c.abs_diff_sum
        if self.observer is not None:
            self.observer.shadow_compared(job.model, job.primary, shadow, c)
