from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import numpy as np
import pytest

from modelrouter.config.schema import BatcherSpec, VersionSpec
from modelrouter.errors import InferenceFailed, ModelRouterError
from modelrouter.protocol.types import InferenceRequest, ModelSignature, RequestedOutput, Tensor
from modelrouter.runtime.base import LocalRuntime
from modelrouter.runtime.batcher import Batcher, batched


class Doubler(LocalRuntime):
    """predict = 2x; sum = one value per batch (not row-aligned); rows with -1 raise."""

    format = "test"

    def __init__(self) -> None:
        super().__init__("m", "v1", VersionSpec(modelFormat="custom", implementation="x:Y"), None)
        self.calls: list[int] = []

    def load(self) -> None:
        pass

    def signature(self) -> ModelSignature:
        return ModelSignature()

    def output_names(self) -> Sequence[str]:
        return ("predict", "sum")

    def predict(self, inputs: list[Tensor], outputs: Sequence[str]) -> list[Tensor]:
        x = inputs[0].data
        self.calls.append(x.shape[0])
        if (x == -1).any():
            raise ValueError("row with -1")
        out = []
        for name in outputs:
            arr = x * 2 if name == "predict" else np.asarray([x.sum()])
            out.append(Tensor.from_array(name, arr))
        return out


class Slow(Doubler):
    """A predict that takes ``delay`` seconds, in a worker thread (``executor: thread``)."""

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.spec = VersionSpec(modelFormat="custom", implementation="x:Y", executor="thread")
        self.delay = delay

    def predict(self, inputs: list[Tensor], outputs: Sequence[str]) -> list[Tensor]:
        time.sleep(self.delay)
        return super().predict(inputs, outputs)


def req(rows: np.ndarray, outputs: list[str] | None = None) -> InferenceRequest:
    t = Tensor("input-0", "FP64", list(rows.shape), rows)
    return InferenceRequest([t], None, None, [RequestedOutput(o) for o in outputs or []] or None)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_concurrent_requests_share_one_predict_and_get_their_own_rows() -> None:
    rt = Doubler()
    b = Batcher(rt, BatcherSpec(maxBatchSize=64, maxLatency=0.02))

    async def main() -> list[list[Tensor]]:
        return await asyncio.gather(*(b.infer(req(np.full((1, 3), float(i)))) for i in range(10)))

    results = run(main())
    # the first finds the batcher idle and leads; the nine ready in the same loop tick join it
    assert rt.calls == [10]
    for i, outs in enumerate(results):  # type: ignore[arg-type]
        assert outs[0].name == "predict"
        assert outs[0].shape == [1, 3]
        np.testing.assert_array_equal(outs[0].data, np.full((1, 3), 2.0 * i))
    assert b.batches == 1
    assert b.batched_requests == 10
    assert (b.counts.predicts, b.counts.requests) == (1, 10)
    assert b._lanes == {}  # an idle batcher keeps nothing


def test_a_lone_request_never_waits_for_the_window() -> None:
    rt = Doubler()
    b = Batcher(rt, BatcherSpec(maxBatchSize=64, maxLatency=30))

    async def main() -> None:
        for i in range(3):  # one after the other: each finds the batcher idle
            out = await asyncio.wait_for(b.infer(req(np.full((1, 2), float(i)))), 2)
            np.testing.assert_array_equal(out[0].data, np.full((1, 2), 2.0 * i))

    run(main())
    assert rt.calls == [1, 1, 1]
    assert b.batches == 0
    assert (b.counts.predicts, b.counts.requests) == (3, 3)  # what the metrics show


async def one_per_turn(b: Batcher, n: int, value: float) -> list[list[Tensor]]:
    """``n`` requests, one started in each loop turn (as requests arriving one poll apart)."""
    calls = []
    for _ in range(n):
        calls.append(asyncio.ensure_future(b.infer(req(np.full((1, 2), value)))))
        await asyncio.sleep(0)
    return await asyncio.wait_for(asyncio.gather(*calls), 5)


def test_under_load_a_batch_gathers_while_each_loop_turn_brings_more() -> None:
    rt = Doubler()
    b = Batcher(rt, BatcherSpec(maxBatchSize=64, maxLatency=30))

    async def main() -> None:
        # idle: one per turn, no sign of load, so the first starts at once, alone
        await one_per_turn(b, 4, 1.0)
        first = list(rt.calls)
        # the last predict served several requests: a batch now waits while requests keep
        # coming, one a turn, and starts at the first turn that brings none
        await asyncio.gather(*(b.infer(req(np.ones((1, 2)))) for _ in range(3)))
        rt.calls.clear()
        results = await one_per_turn(b, 6, 2.0)
        assert rt.calls == [6]
        for outs in results:
            np.testing.assert_array_equal(outs[0].data, np.full((1, 2), 4.0))
        assert first[0] == 1

    run(main())


def test_after_a_burst_a_lone_request_looks_once_and_starts() -> None:
    rt = Doubler()
    b = Batcher(rt, BatcherSpec(maxBatchSize=64, maxLatency=30))

    async def main() -> None:
        await asyncio.gather(*(b.infer(req(np.ones((1, 2)))) for _ in range(5)))
        for _ in range(3):  # one after the other
            await asyncio.wait_for(b.infer(req(np.ones((1, 2)))), 2)

    run(main())
    assert rt.calls == [5, 1, 1, 1]
    assert b.last_batch == 1


def test_gathering_ends_at_max_latency_or_max_batch_size() -> None:
    rt = Doubler()
    b = Batcher(rt, BatcherSpec(maxBatchSize=64, maxLatency=0.02))

    async def trickle(until: float) -> None:
        """A request every loop turn, with 1 ms of work between, until ``until``."""
        calls = []
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            calls.append(asyncio.ensure_future(b.infer(req(np.ones((1, 2))))))
            time.sleep(0.001)  # noqa: ASYNC251 - the loop busy with other work, on purpose
            await asyncio.sleep(0)
        await asyncio.wait_for(asyncio.gather(*calls), 5)

    async def main() -> None:
        await asyncio.gather(*(b.infer(req(np.ones((1, 2)))) for _ in range(2)))
        rt.calls.clear()
        await trickle(asyncio.get_running_loop().time() + 0.2)

    run(main())
    # about 200 requests over 200 ms: each batch gathered at most 20 ms of them, never all
    assert sum(rt.calls) > 50
    assert len(rt.calls) >= 5
    assert max(rt.calls) <= 30

    rt2 = Doubler()
    small = Batcher(rt2, BatcherSpec(maxBatchSize=4, maxLatency=30))

    async def full() -> None:
        await asyncio.gather(*(small.infer(req(np.ones((1, 2)))) for _ in range(2)))
        rt2.calls.clear()
        await one_per_turn(small, 10, 1.0)

    run(full())
    assert max(rt2.calls) <= 4
    assert sum(rt2.calls) == 10


def test_requests_queue_only_behind_a_running_predict_and_start_when_it_ends() -> None:
    rt = Slow(0.05)
    b = Batcher(rt, BatcherSpec(maxBatchSize=64, maxLatency=30))

    async def main() -> None:
        first = asyncio.ensure_future(b.infer(req(np.ones((1, 2)))))
        await asyncio.sleep(0.01)  # the first predict is running
        rest = [b.infer(req(np.full((1, 2), 3.0))) for _ in range(5)]
        # the 30 s bound is never reached: the queue starts when the running predict ends
        await asyncio.wait_for(asyncio.gather(first, *rest), 2)

    run(main())
    assert rt.calls == [1, 5]


def test_max_latency_bounds_the_wait_behind_a_slow_predict() -> None:
    rt = Slow(0.5)
    b = Batcher(rt, BatcherSpec(maxBatchSize=64, maxLatency=0.02))

    async def main() -> float:
        first = asyncio.ensure_future(b.infer(req(np.ones((1, 2)))))
        await asyncio.sleep(0.01)
        started = time.monotonic()
        await asyncio.gather(*(b.infer(req(np.ones((1, 2)))) for _ in range(3)))
        waited = time.monotonic() - started
        await first
        return waited

    waited = run(main())
    assert rt.calls == [1, 3]
    # the three started 20 ms after queueing, beside the slow one, not after it
    assert waited < 0.9  # type: ignore[operator]


def test_a_full_batch_runs_without_waiting() -> None:
    rt = Doubler()
    b = Batcher(rt, BatcherSpec(maxBatchSize=4, maxLatency=30))

    async def main() -> None:
        await asyncio.wait_for(
            asyncio.gather(*(b.infer(req(np.ones((1, 2)))) for _ in range(8))), 5
        )

    run(main())
    assert rt.calls == [4, 4]


def test_in_a_thread_requests_queue_behind_a_full_batch_and_start_when_it_ends() -> None:
    rt = Slow(0.05)
    b = Batcher(rt, BatcherSpec(maxBatchSize=4, maxLatency=30))

    async def main() -> None:
        await asyncio.wait_for(
            asyncio.gather(*(b.infer(req(np.ones((1, 2)))) for _ in range(7))), 5
        )

    run(main())
    # four fill a batch and start at once; the three left start when it ends, without
    # waiting out the 30 s bound
    assert rt.calls == [4, 3]


def test_one_bad_request_does_not_fail_the_others() -> None:
    rt = Doubler()
    b = Batcher(rt, BatcherSpec(maxBatchSize=64, maxLatency=0.01))

    async def main() -> list[object]:
        rows = [np.ones((1, 2)), np.full((1, 2), -1.0), np.full((2, 2), 3.0)]
        return await asyncio.gather(*(b.infer(req(r)) for r in rows), return_exceptions=True)

    good, bad, other = run(main())  # type: ignore[misc]
    assert isinstance(bad, InferenceFailed)
    assert "row with -1" in bad.message
    np.testing.assert_array_equal(good[0].data, np.full((1, 2), 2.0))  # type: ignore[index]
    np.testing.assert_array_equal(other[0].data, np.full((2, 2), 6.0))  # type: ignore[index]


def test_outputs_that_are_not_per_row_are_computed_per_request() -> None:
    rt = Doubler()
    b = Batcher(rt, BatcherSpec(maxBatchSize=64, maxLatency=0.01))

    async def main() -> list[list[Tensor]]:
        return await asyncio.gather(
            b.infer(req(np.ones((1, 2)), ["sum"])), b.infer(req(np.full((1, 2), 5.0), ["sum"]))
        )

    a, c = run(main())  # type: ignore[misc]
    assert a[0].data.tolist() == [2.0]
    assert c[0].data.tolist() == [10.0]


def test_different_outputs_or_shapes_are_not_mixed() -> None:
    rt = Doubler()
    b = Batcher(rt, BatcherSpec(maxBatchSize=64, maxLatency=0.01))

    async def main() -> None:
        await asyncio.gather(
            b.infer(req(np.ones((1, 2)))),
            b.infer(req(np.ones((1, 3)))),
            b.infer(req(np.ones((1, 2)), ["predict", "sum"])),
            b.infer(req(np.ones(2))),  # 1-D: never batched
        )

    run(main())
    assert sorted(rt.calls) == [1, 1, 1, 2]  # four separate predicts (the 1-D one has 2 values)


def test_model_errors_keep_their_type() -> None:
    rt = Doubler()
    b = Batcher(rt, BatcherSpec(maxBatchSize=64, maxLatency=0.001))
    with pytest.raises(ModelRouterError):
        run(b.infer(req(np.full((1, 2), -1.0))))


class Custom(Doubler):
    format = "custom"


class RowWise(Doubler):
    row_independent = True


@pytest.mark.parametrize(
    ("runtime", "given", "expected"),
    [
        (RowWise, None, True),  # built-in row-independent runtimes: on by default
        (RowWise, {"enabled": False}, False),
        (Custom, None, False),  # a custom class opts in
        (Custom, {"enabled": True}, True),
        (Custom, {"maxBatchSize": 8}, True),  # an explicit batcher block is an opt-in
        (Custom, {"maxBatchSize": 8, "enabled": False}, False),
    ],
)
def test_which_runtimes_are_batched(
    runtime: type[Doubler], given: dict[str, object] | None, expected: bool
) -> None:
    spec = BatcherSpec.model_validate(given) if given is not None else BatcherSpec()
    assert batched(spec, runtime()) is expected


def test_the_built_in_row_independent_runtimes() -> None:
    from modelrouter.runtime.lightgbm import LightGBMRuntime
    from modelrouter.runtime.mlflow import MLflowRuntime
    from modelrouter.runtime.onnx import OnnxRuntime
    from modelrouter.runtime.sklearn import SklearnRuntime
    from modelrouter.runtime.xgboost import XGBoostRuntime

    assert all(
        r.row_independent for r in (SklearnRuntime, XGBoostRuntime, LightGBMRuntime, OnnxRuntime)
    )
    assert not MLflowRuntime.row_independent  # pyfunc models may use request parameters


def test_split_gives_each_request_its_rows_of_every_output() -> None:
    from modelrouter.runtime.batcher import split, stack

    def request(rows: int, start: float) -> InferenceRequest:
        data = np.arange(start, start + rows * 3, dtype=np.float64).reshape(rows, 3)
        return InferenceRequest([Tensor("x", "FP64", [rows, 3], data)])

    requests = [request(1, 0), request(3, 100), request(2, 200)]
    x = stack(requests).inputs[0].data
    labels = Tensor("predict", "INT64", [6], x[:, 0].astype(np.int64))
    proba = Tensor("proba", "FP64", [6, 2], np.stack([x[:, 1], x[:, 2]], axis=1), {"p": 1})
    parts = split([labels, proba], requests)
    assert len(parts) == 3
    for req, (lab, pro) in zip(requests, parts, strict=True):
        rows = req.inputs[0].data
        assert (lab.name, lab.datatype, lab.shape) == ("predict", "INT64", [rows.shape[0]])
        assert np.array_equal(lab.data, rows[:, 0].astype(np.int64))
        assert (pro.shape, pro.parameters) == ([rows.shape[0], 2], {"p": 1})
        assert np.array_equal(pro.data, rows[:, 1:])
    with pytest.raises(ValueError, match="one row per input row"):
        split([Tensor("sum", "FP64", [1], np.array([1.0]))], requests)
    with pytest.raises(ValueError, match="one row per input row"):
        split([Tensor("scalar", "FP64", [], np.array(1.0))], requests)
