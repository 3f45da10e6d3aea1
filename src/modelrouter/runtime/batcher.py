"""Batching with no idle cost: concurrent requests to one version share one ``predict``.

A scikit-learn ``predict`` costs about the same for 1 row as for 64 (its time is input
validation), so stacking rows multiplies throughput under concurrency. Unlike a batcher that
holds every request for a fixed window (KServe's, Triton's dynamic batcher with a queue delay),
this one never makes a lone request wait:

- a request that finds no predict running and nothing queued starts at once, with the requests
  that are ready in the same event-loop tick;
- under load (the version's last predict served several requests), a batch that finds the
  version idle gathers for as long as each loop turn brings it more requests: the loop's next
  poll for data has no timeout, so the turn costs the wait of the work it does, and the
  gathering ends at the first turn that brings none, at ``maxBatchSize`` rows, or after
  ``maxLatency``. A request that comes alone after a burst looks once and starts;
- requests that arrive while a predict is running queue up, and the queue starts as one batch
  the moment that predict ends, or as soon as it holds ``maxBatchSize`` rows, or after
  ``maxLatency`` (a bound on the wait behind a slow predict, not a window every request pays).

Predicts run in a worker thread, so the event loop keeps reading requests (and forming the next
batch) while one runs. Only requests with one 2-D input and the same outputs are stacked;
anything else runs alone. When a batch fails, its requests run one by one, so one bad request
cannot fail the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise

import numpy as np

from modelrouter.config.schema import BatcherSpec
from modelrouter.protocol.types import InferenceRequest, Tensor
from modelrouter.runtime.base import LocalRuntime

BatchKey = tuple[str, str, int, tuple[str, ...] | None]
_Item = tuple[InferenceRequest, "asyncio.Future[list[Tensor]]"]


def stack(requests: Sequence[InferenceRequest]) -> InferenceRequest:
    """One request whose single 2-D input holds the rows of ``requests`` (which share a
    :meth:`Batcher.key`), in order."""
    first = requests[0]
    t0 = first.inputs[0]
    stacked = np.concatenate([r.inputs[0].data for r in requests])
    return InferenceRequest(
        [Tensor(t0.name, t0.datatype, list(stacked.shape), stacked)],
        first.id,
        first.parameters,
        first.outputs,
    )


def split(outputs: Sequence[Tensor], requests: Sequence[InferenceRequest]) -> list[list[Tensor]]:
    """Each request's rows of the stacked ``outputs``; ``ValueError`` when an output is not
    one row per input row (then each request must run alone)."""
    bounds = list(accumulate((r.inputs[0].data.shape[0] for r in requests), initial=0))
    total = bounds[-1]
    if any(o.data.ndim == 0 or o.data.shape[0] != total for o in outputs):
        raise ValueError("an output is not one row per input row")
    # slices, not np.split: its Python-level bookkeeping was most of this function's time
    inner = [list(o.data.shape[1:]) for o in outputs]
    return [
        [
            Tensor(o.name, o.datatype, [end - start, *rest], o.data[start:end], o.parameters)
            for o, rest in zip(outputs, inner, strict=True)
        ]
        for start, end in pairwise(bounds)
    ]


Outcome = list[Tensor] | Exception


def run_together(
    run: Callable[[InferenceRequest], list[Tensor]], requests: Sequence[InferenceRequest]
) -> list[Outcome]:
    """Each request's outputs or error: one predict of the :func:`stack` of ``requests``
    (which share a :meth:`Batcher.key`), cut by :func:`split`; one by one when that fails, so
    the request that broke the batch fails alone. The batcher and the shadow worker process
    (:mod:`modelrouter.shadow.worker`) both run their groups through here."""
    if len(requests) > 1:
        try:
            return list(split(run(stack(requests)), requests))
        except Exception:
            pass
    outcomes: list[Outcome] = []
    for r in requests:
        try:
            outcomes.append(run(r))
        except Exception as exc:
            outcomes.append(exc)
    return outcomes


def batched(spec: BatcherSpec, runtime: LocalRuntime) -> bool:
    """Whether ``runtime``'s requests go through a :class:`Batcher`: as ``spec.enabled`` says,
    else when the runtime is row-independent or the config gave a ``batcher`` block
    explicitly (how a custom class opts in)."""
    if spec.enabled is not None:
        return spec.enabled
    return runtime.row_independent or bool(spec.model_fields_set)


@dataclass(slots=True)
class BatchCounts:
    """What one version's batcher did: the predicts it started and the requests they served
    (``modelrouter_batcher_predicts_total`` and ``..._requests_total``). Kept by the data
    plane per version, so that a reload of the version does not set them back."""

    predicts: int = 0
    requests: int = 0


@dataclass(slots=True)
class _Lane:
    """The requests of one :data:`BatchKey`: how many predicts run, and who waits."""

    running: int = 0
    queue: list[_Item] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None
    seen: int = 0
    """Requests queued when the lane last looked whether more were on their way."""
    since: float = 0.0
    """Loop time at which the lane began gathering (the ``maxLatency`` bound)."""


class Batcher:
    """Batches the calls of one in-process runtime (see the module docstring).

    The predict runs where the version's ``executor`` says: ``inline`` on the event loop (the
    default, as unbatched), or ``thread`` in a worker thread, while the loop goes on reading
    requests that queue for the next batch.
    """

    def __init__(
        self, runtime: LocalRuntime, spec: BatcherSpec, counts: BatchCounts | None = None
    ) -> None:
        self.runtime = runtime
        self.counts = counts if counts is not None else BatchCounts()
        self.max_rows = spec.maxBatchSize
        self.max_latency = spec.maxLatency
        self.inline = runtime.spec.executor == "inline"
        self._lanes: dict[BatchKey, _Lane] = {}
        self.batches = 0
        """Predicts that served more than one request."""
        self.batched_requests = 0
        """Requests answered by those predicts."""
        self.last_batch = 0
        """Requests served by the last predict started (of any lane): the sign of load."""

    @staticmethod
    def key(request: InferenceRequest) -> BatchKey | None:
        if len(request.inputs) != 1:
            return None
        t = request.inputs[0]
        if t.data.ndim != 2 or t.datatype == "BYTES":
            return None
        asked = request.output_names
        names = tuple(asked) if asked is not None else None
        return (t.name, t.datatype, t.data.shape[1], names)

    async def infer(self, request: InferenceRequest) -> list[Tensor]:
        key = self.key(request)
        if key is None:
            return await self.runtime.infer(request)
        rows = request.inputs[0].data.shape[0]
        if rows >= self.max_rows:
            return await self.runtime.infer(request)
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Tensor]] = loop.create_future()
        lane.queue.append((request, fut))
        lane.rows += rows
        if lane.rows >= self.max_rows:
            self._start(key, lane)
        elif lane.running == 0 and len(lane.queue) == 1:
            # idle: this request leads and starts at the end of this loop tick, together
            # with the requests that are ready to run in the same tick (no timer, no wait)
            loop.call_soon(self._start_if_idle, key, lane)
        elif lane.running and lane.timer is None:
            lane.timer = loop.call_later(self.max_latency, self._start, key, lane)
        return await fut

    def _start_if_idle(self, key: BatchKey, lane: _Lane) -> None:
        if not lane.queue:
            return
        if lane.running == 0:
            if self._gathering(lane):
                asyncio.get_running_loop().call_soon(self._start_if_idle, key, lane)
            else:
                self._start(key, lane)
        elif lane.timer is None:
            lane.timer = asyncio.get_running_loop().call_later(
                self.max_latency, self._start, key, lane
            )

    def _gathering(self, lane: _Lane) -> bool:
        """Whether ``lane``'s batch waits one more loop turn for the requests on their way:
        only under load, while the last turn brought more, and within ``maxLatency``."""
        queued = len(lane.queue)
        if self.last_batch < 2 or queued <= lane.seen:
            return False
        now = asyncio.get_running_loop().time()
        if lane.seen == 0:
            lane.since = now
        elif now - lane.since >= self.max_latency:
            return False
        lane.seen = queued
        return True

    def _next(self, key: BatchKey, lane: _Lane) -> None:
        """A predict of ``lane`` ended: start what queued behind it, or forget the idle lane."""
        if lane.queue:
            if lane.running == 0:
                self._start(key, lane)
        elif lane.running == 0 and self._lanes.get(key) is lane:
            del self._lanes[key]

    def _start(self, key: BatchKey, lane: _Lane) -> None:
        items, lane.queue, lane.rows, lane.seen = lane.queue, [], 0, 0
        if lane.timer is not None:
            lane.timer.cancel()
            lane.timer = None
        if not items:
            return
        lane.running += 1
        self.last_batch = len(items)
        counts = self.counts
        counts.predicts += 1
        counts.requests += len(items)
        requests = [r for r, _ in items]
        if self.inline:
            try:
                self._deliver(items, self._outcomes(requests))
            finally:
                lane.running -= 1
                self._next(key, lane)
            return
        work = asyncio.get_running_loop().run_in_executor(None, self._outcomes, requests)

        def done(work: asyncio.Future[list[Outcome]]) -> None:
            lane.running -= 1
            error = work.exception()
            self._deliver(items, [error] * len(items) if error else work.result())  # type: ignore[list-item]
            self._next(key, lane)

        work.add_done_callback(done)

    def _outcomes(self, requests: Sequence[InferenceRequest]) -> list[Outcome]:
        """Runs on the loop or in a thread: see :func:`run_together`."""
        return run_together(self.runtime.run, requests)

    def _deliver(self, items: Sequence[_Item], outcomes: Sequence[Outcome]) -> None:
        if len(items) > 1 and not any(isinstance(o, Exception) for o in outcomes):
            self.batches += 1
            self.batched_requests += len(items)
        for (_, fut), outcome in zip(items, outcomes, strict=True):
            if fut.done():
                continue
            if isinstance(outcome, Exception):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)
