"""Feedback: parsing, scoring, the compact prediction, and the join through the store."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest

from modelrouter.errors import Conflict, InvalidInput, NotFound
from modelrouter.protocol.types import Tensor
from modelrouter.store.memory import MemoryStore
from modelrouter.telemetry.feedback import (
    FeedbackService,
    Score,
    compact_prediction,
    parse_feedback,
    score,
)
from modelrouter.telemetry.service import Telemetry


def tensor(data: np.ndarray) -> Tensor:
    return Tensor.from_array("out", data)


def test_compact_prediction() -> None:
    assert compact_prediction([tensor(np.array([[1], [0]], dtype=np.int64))]) == [1, 0]
    assert compact_prediction([tensor(np.array([0.5, 1.5]))]) == [0.5, 1.5]
    assert compact_prediction([tensor(np.array([b"high", b"low"], dtype=object))]) == [
        "high",
        "low",
    ]
    assert compact_prediction([tensor(np.zeros(17))]) is None  # too big for the audit record
    assert compact_prediction([tensor(np.array([np.nan]))]) is None  # the audit refuses NaN
    assert compact_prediction([]) is None


def test_score_labels_values_and_shapes() -> None:
    assert score([1], 1) == Score(labels=1, correct=1)
    assert score([1, 0, 1], [1, 1, 1]) == Score(labels=3, correct=2)
    assert score([1, 0], [[1], [0]]) == Score(labels=2, correct=2)
    assert score(["high"], "high") == Score(labels=1, correct=1)
    assert score([1], "1") == Score(labels=1, correct=1)
    assert score([2.5], 4) == Score(values=1, abs_error=1.5)
    with pytest.raises(InvalidInput, match="truth: 2 value"):
        score([1], [1, 0])
    with pytest.raises(InvalidInput, match="truth: the prediction is numeric"):
        score([2.5], "high")


def test_parse_names_the_bad_field() -> None:
    assert parse_feedback({"request_id": "r", "reward": 1}).reward == 1.0
    cases = [
        ({}, "request_id"),
        ({"request_id": " ", "truth": 1}, "request_id"),
        ({"request_id": "r"}, "truth or reward"),
        ({"request_id": "r", "truth": None}, "truth or reward"),
        ({"request_id": "r", "truth": [1, None]}, "truth"),
        ({"request_id": "r", "reward": True}, "reward"),
        ({"request_id": "r", "reward": 1, "extra": 2}, "extra"),
        ("r", "JSON object"),
    ]
    for doc, field in cases:
        with pytest.raises(InvalidInput, match=field):
            parse_feedback(doc)


def test_join_through_the_store_waits_for_the_decision_record() -> None:
    async def main() -> None:
        store = MemoryStore()
        telemetry = Telemetry(store)
        service = FeedbackService(store, telemetry, wait=1.0, poll=0.01)

        async def late_record() -> None:
            await asyncio.sleep(0.1)  # the audit writer batches
            await store.append_audit(
                [
                    {
                        "kind": "decision",
                        "request_id": "r1",
                        "model": "m",
                        "version": "v2",
                        "served_by": "v1",
                        "status": 200,
                        "prediction": [1],
                    }
                ]
            )

        task = asyncio.create_task(late_record())
        result = await service.submit({"request_id": "r1", "truth": 0})
        await task
        assert (result.model, result.version, result.score) == ("m", "v1", Score(1, 0))
        with pytest.raises(Conflict):
            await service.submit({"request_id": "r1", "truth": 1})
        service.wait = 0.05
        with pytest.raises(NotFound, match="request_id"):
            await service.submit({"request_id": "nope", "truth": 1})
        await store.append_audit(
            [
                {
                    "kind": "decision",
                    "request_id": "r2",
                    "model": "m",
                    "served_by": None,
                    "status": 500,
                }
            ]
        )
        with pytest.raises(InvalidInput, match="failed"):
            await service.submit({"request_id": "r2", "reward": 1})
        w = await telemetry.recorder.window("m", "v1", 0, 1e12)
        assert (w.feedback, w.correct) == (1, 0)

    asyncio.run(main())


def test_truth_without_a_recorded_prediction_is_400_but_a_reward_is_fine() -> None:
    async def main() -> None:
        store = MemoryStore()
        telemetry = Telemetry(store)
        telemetry.recorder.remember("big", "m", "v1", None)
        with pytest.raises(InvalidInput, match="truth: the prediction"):
            await telemetry.feedback_service.submit({"request_id": "big", "truth": 1})
        result = await telemetry.feedback_service.submit({"request_id": "big", "reward": 0.5})
        assert result.reward == 0.5

    asyncio.run(main())


# --------------------------------------------------------------------------- bounds


def test_truth_depth_and_size_are_bounded() -> None:
    from modelrouter.errors import InvalidInput
    from modelrouter.telemetry.feedback import MAX_TRUTH_DEPTH, MAX_TRUTH_ELEMENTS, parse_feedback

    deep: Any = 1
    for _ in range(1000):
        deep = [deep]
    with pytest.raises(InvalidInput, match=r"^truth: lists nested more than 8 deep"):
        parse_feedback({"request_id": "r", "truth": deep})
    ok: Any = 1
    for _ in range(MAX_TRUTH_DEPTH):
        ok = [ok]
    assert parse_feedback({"request_id": "r", "truth": ok}).truth == ok
    with pytest.raises(InvalidInput, match=r"^truth: more than 1024 values"):
        parse_feedback({"request_id": "r", "truth": [1] * (MAX_TRUTH_ELEMENTS + 1)})
    with pytest.raises(InvalidInput, match=r"^truth: more than 1024 values"):
        parse_feedback({"request_id": "r", "truth": [[1] * 600, [2] * 600]})
    with pytest.raises(InvalidInput, match=r"^truth: a label of 5000 characters"):
        parse_feedback({"request_id": "r", "truth": "x" * 5000})
    with pytest.raises(InvalidInput, match=r"^request_id: 200 characters"):
        parse_feedback({"request_id": "r" * 200, "truth": 1})
    with pytest.raises(InvalidInput, match=r"^reward: must be a finite number"):
        parse_feedback({"request_id": "r", "reward": [[1]] * 1000})
