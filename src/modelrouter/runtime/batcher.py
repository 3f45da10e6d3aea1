"""Adaptive batching: concurrent requests to one version stacked into one ``predict``.

A scikit-learn ``predict`` costs about the same for 1 row as for 64 (its time is input
validation), so under concurrency stacking rows multiplies throughput. As in KServe's batcher
and Triton's dynamic batcher, a request waits at most ``maxLatency`` for others to join, and a
batch that reaches ``maxBatchSize`` rows runs at once. Only requests with one 2-D input and the
same outputs are stacked; anything else runs alone. When a batch fails, its requests run one
by one, so one bad request cannot fail the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelrouter.config.schema import BatcherSpec
from modelrouter.protocol.types import InferenceRequest, Tensor
from modelrouter.runtime.base import LocalRuntime

BatchKey = tuple[str, str, int, tuple[str, ...] | None]


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
    rows = [r.inputs[0].data.shape[0] for r in requests]
    total = sum(rows)
    if any(o.data.ndim == 0 or o.data.shape[0] != total for o in outputs):
        raise ValueError("an output is not one row per input row")
    cuts = np.cumsum(rows)[:-1]
    parts = [np.split(o.data, cuts) for o in outputs]
    return [
        [
            Tensor(o.name, o.datatype, list(p[i].shape), p[i], o.parameters)
            for o, p in zip(outputs, parts, strict=True)
        ]
        for i in range(len(requests))
    ]


@dataclass(slots=True)
class _Pending:
    items: list[tuple[InferenceRequest, asyncio.Future[list[Tensor]]]] = field(default_factory=list)
    rows: int = 0
    timer: asyncio.TimerHandle | None = None


class Batcher:
    def __init__(self, runtime: LocalRuntime, spec: BatcherSpec) -> None:
        self.runtime = runtime
        self.max_rows = spec.maxBatchSize
        self.max_latency = spec.maxLatency
        self._pending: dict[BatchKey, _Pending] = {}
        self.batches = 0
        self.batched_requests = 0

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
        rows = request.inputs[0].data.shape[0] if key is not None else 0
        if key is None or rows >= self.max_rows:
            return await self.runtime.infer(request)
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[Tensor]] = loop.create_future()
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
            pending.timer = loop.call_later(self.max_latency, self._flush, key)
        pending.items.append((request, fut))
        pending.rows += rows
        if pending.rows >= self.max_rows:
            self._flush(key)
        return await fut

    def _flush(self, key: BatchKey) -> None:
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        asyncio.get_running_loop().create_task(self._run(pending.items))

    async def _run(self, items: Sequence[tuple[InferenceRequest, asyncio.Future[Any]]]) -> None:
        if len(items) == 1:
            request, fut = items[0]
            await self._run_alone(request, fut)
            return
        requests = [r for r, _ in items]
        try:
            answers = split(await self.runtime.infer(stack(requests)), requests)
        except Exception:
            for request, fut in items:  # isolate the request that broke the batch
                await self._run_alone(request, fut)
            return
        self.batches += 1
        self.batched_requests += len(items)
        for (_, fut), answer in zip(items, answers, strict=True):
            if not fut.done():
                fut.set_result(answer)

    async def _run_alone(self, request: InferenceRequest, fut: asyncio.Future[Any]) -> None:
        try:
            result = await self.runtime.infer(request)
        except Exception as exc:
            if not fut.done():
                fut.set_exception(exc)
            return
        if not fut.done():
            fut.set_result(result)
