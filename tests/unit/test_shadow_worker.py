"""The worker side of process shadows: stacked rows give each call its own answer."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest

from modelrouter.config.schema import VersionSpec
from modelrouter.protocol.types import InferenceRequest, Tensor
from modelrouter.shadow import worker
from modelrouter.shadow.worker import Job, predict_many
from support import EXAMPLE_MODELS

V1 = EXAMPLE_MODELS / "churn" / "v1"
SPEC = VersionSpec(storageUri=str(V1), modelFormat="sklearn")


def job(rows: np.ndarray, version: str = "v1") -> Job:
    t = Tensor("input-0", "FP64", list(rows.shape), rows)
    return ("churn", version, SPEC, str(Path.cwd()), str(V1), InferenceRequest([t]))


def test_stacked_jobs_get_their_own_predictions() -> None:
    rng = np.random.default_rng(5)
    batches = [rng.uniform(0, 60, size=(n, 10)) for n in (1, 3, 2)]
    results = predict_many([job(b) for b in batches])
    model = joblib.load(V1 / "model.joblib")
    assert [status for status, _ in results] == ["ok", "ok", "ok"]
    for rows, (_, outputs) in zip(batches, results, strict=True):
        np.testing.assert_array_equal(outputs[0].data, model.predict(rows))


def test_a_bad_job_fails_alone() -> None:
    good = np.ones((1, 10))
    bad = np.ones((1, 7))  # the model wants 10 features
    results = predict_many([job(good), job(bad), job(good * 2)])
    assert [status for status, _ in results] == ["ok", "error", "ok"]
    assert "10 features" in results[1][1]


def test_a_version_that_cannot_be_built_is_refused() -> None:
    spec = VersionSpec(modelFormat="custom", implementation="nowhere.at_all:Model")
    t = Tensor("x", "FP64", [1, 1], np.ones((1, 1)))
    refused = predict_many([("m", "v", spec, ".", None, InferenceRequest([t]))])
    assert refused[0][0] == "refused"  # the gateway then runs it in a thread
    assert "nowhere" in refused[0][1]


def test_a_version_that_needs_a_hidden_package_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A built-in version that imports pandas after all (the worker hid it) runs in the
    gateway's thread instead of failing as a shadow error."""

    class NeedsPandas:
        def run(self, request: InferenceRequest) -> list[Tensor]:
            try:
                raise ModuleNotFoundError("import of pandas halted", name="pandas")
            except ImportError as exc:
                raise ValueError("this estimator needs pandas") from exc

    monkeypatch.setattr(worker, "_HIDDEN", frozenset({"pandas"}))
    monkeypatch.setattr(worker, "_runtime", lambda *args: NeedsPandas())
    (result,) = predict_many([job(np.ones((1, 10)))])
    assert result[0] == "refused"
    assert "needs pandas" in result[1]
    monkeypatch.setattr(worker, "_HIDDEN", frozenset())
    (result,) = predict_many([job(np.ones((1, 10)))])
    assert result[0] == "error"  # nothing hidden: a real failure of the shadow
