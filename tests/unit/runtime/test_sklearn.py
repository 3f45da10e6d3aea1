"""The scikit-learn runtime skips scikit-learn's finite check only for a finite matrix."""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from modelrouter.config.schema import VersionSpec
from modelrouter.errors import InferenceFailed
from modelrouter.protocol.types import InferenceRequest, Tensor
from modelrouter.runtime.sklearn import SklearnRuntime

RNG = np.random.default_rng(7)
X = RNG.normal(size=(200, 3))
Y = (X[:, 0] > 0).astype(np.int64)


def runtime(tmp_path: Path, model: object) -> SklearnRuntime:
    joblib.dump(model, tmp_path / "model.joblib")
    r = SklearnRuntime(
        "m", "v1", VersionSpec(modelFormat="sklearn", storageUri=str(tmp_path)), tmp_path
    )
    r.load()
    return r


def predict(r: SklearnRuntime, rows: np.ndarray) -> np.ndarray:
    out = r.predict([Tensor("input-0", "FP64", list(rows.shape), rows)], ["predict"])
    return np.asarray(out[0].data)


def test_finite_rows_predict_as_the_estimator_does(tmp_path: Path) -> None:
    model = LogisticRegression().fit(X, Y)
    r = runtime(tmp_path, model)
    rows = RNG.normal(size=(5, 3))
    assert predict(r, rows).tolist() == model.predict(rows).tolist()
    ints = np.array([[1, -2, 3]], dtype=np.int64)
    assert predict(r, ints).tolist() == model.predict(ints).tolist()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_row_still_meets_scikit_learns_check(tmp_path: Path, bad: float) -> None:
    r = runtime(tmp_path, LogisticRegression().fit(X, Y))
    rows = np.array([[0.0, bad, 1.0]])
    with pytest.raises(ValueError, match="Input X contains"):
        predict(r, rows)
    # through run(), as the data plane calls it: the estimator's message, not a wrong answer
    req = InferenceRequest([Tensor("input-0", "FP64", [1, 3], rows)])
    with pytest.raises(InferenceFailed, match="Input X contains"):
        r.run(req)


def test_an_estimator_that_takes_nan_still_gets_it(tmp_path: Path) -> None:
    model = HistGradientBoostingClassifier(max_iter=5).fit(X, Y)
    r = runtime(tmp_path, model)
    rows = np.array([[np.nan, 0.5, 1.0], [1.0, np.nan, 0.0]])
    assert predict(r, rows).tolist() == model.predict(rows).tolist()
