"""The MLflow runtime: local pyfunc models, column schemas, params, errors, signature."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import mlflow.sklearn
import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
from mlflow.models import infer_signature
from sklearn.linear_model import LinearRegression, LogisticRegression

from modelrouter.config.schema import VersionSpec
from modelrouter.errors import InvalidInput, ModelLoadError, UnknownOutput
from modelrouter.protocol.types import InferenceRequest, RequestedOutput, Tensor
from modelrouter.runtime.base import ModelRuntime
from modelrouter.runtime.mlflow import MLflowRuntime
from modelrouter.runtime.registry import create_runtime

COLUMNS = ["tenure", "charges", "calls"]
NO_REQS: list[str] = []
"""Skips MLflow's requirement inference, which re-imports the model in a subprocess (seconds)."""


def frame(n: int = 60, seed: int = 3) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "tenure": rng.normal(30, 10, n),
            "charges": rng.normal(70, 20, n),
            "calls": rng.integers(0, 6, n).astype(np.int64),
        }
    )
    y = (0.05 * df["calls"] - 0.02 * df["tenure"] + 0.01 * df["charges"] > 0.2).astype(int)
    return df, y.to_numpy()


@pytest.fixture(scope="module")
def column_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, LogisticRegression]:
    df, y = frame()
    clf = LogisticRegression(max_iter=500).fit(df, y)
    path = tmp_path_factory.mktemp("mlflow") / "churn"
    signature = infer_signature(df, clf.predict(df))
    mlflow.sklearn.save_model(clf, str(path), signature=signature, pip_requirements=NO_REQS)
    return path, clf


def load(tmp_path: Path, uri: Path) -> ModelRuntime:
    runtime = create_runtime(
        "m", "v1", VersionSpec(storageUri=str(uri), modelFormat="mlflow"), tmp_path
    )
    runtime.load()
    return runtime


def infer(
    runtime: ModelRuntime,
    inputs: list[Tensor],
    *outputs: str,
    parameters: dict[str, Any] | None = None,
) -> np.ndarray:
    request = InferenceRequest(
        inputs,
        parameters=parameters,
        outputs=[RequestedOutput(o) for o in outputs] if outputs else None,
    )
    result = asyncio.run(runtime.infer(request))
    assert [t.name for t in result] == ["predict"]
    return result[0].data


def test_matrix_input_becomes_the_schema_columns(
    tmp_path: Path, column_model: tuple[Path, LogisticRegression]
) -> None:
    path, clf = column_model
    runtime = load(tmp_path, path)
    assert isinstance(runtime, MLflowRuntime)
    df, _ = frame(10, seed=9)
    # one FP64 matrix: the whole floats of the long column "calls" are cast losslessly
    got = infer(runtime, [Tensor.from_array("input-0", df.to_numpy(dtype=np.float64))])
    np.testing.assert_array_equal(got, clf.predict(df))
    assert isinstance(got, np.ndarray)


def test_named_columns_in_any_order(
    tmp_path: Path, column_model: tuple[Path, LogisticRegression]
) -> None:
    path, clf = column_model
    runtime = load(tmp_path, path)
    df, _ = frame(8, seed=4)
    inputs = [Tensor.from_array(c, df[c].to_numpy()) for c in reversed(COLUMNS)]
    np.testing.assert_array_equal(infer(runtime, inputs, "predict"), clf.predict(df))
    with pytest.raises(InvalidInput, match=r"missing column input\(s\): calls"):
        infer(runtime, inputs[1:])
    with pytest.raises(InvalidInput, match=r"unknown input\(s\) age: .*tenure, charges, calls"):
        infer(runtime, [*inputs, Tensor.from_array("age", np.ones(8))])


def test_wrong_column_count_and_lossy_cast(
    tmp_path: Path, column_model: tuple[Path, LogisticRegression]
) -> None:
    path, _ = column_model
    runtime = load(tmp_path, path)
    with pytest.raises(InvalidInput, match=r"expects 3 columns per row .* got 4") as err:
        infer(runtime, [Tensor.from_array("input-0", np.ones((2, 4)))])
    assert err.value.status.http == 400
    # 1.5 calls cannot be a long: MLflow's schema enforcement refuses, as a 400
    with pytest.raises(InvalidInput, match=r"MLflow model refused the input: .*calls"):
        infer(runtime, [Tensor.from_array("input-0", np.array([[30.0, 70.0, 1.5]]))])


def test_unknown_output(tmp_path: Path, column_model: tuple[Path, LogisticRegression]) -> None:
    path, _ = column_model
    with pytest.raises(UnknownOutput, match="unknown output 'predict_proba'"):
        infer(
            load(tmp_path, path), [Tensor.from_array("input-0", np.ones((1, 3)))], "predict_proba"
        )


def test_signature_from_the_mlflow_signature(
    tmp_path: Path, column_model: tuple[Path, LogisticRegression]
) -> None:
    path, _ = column_model
    sig = load(tmp_path, path).signature()
    assert sig.platform == "mlflow_sklearn"
    assert [(s.name, s.datatype, s.shape) for s in sig.inputs] == [
        ("tenure", "FP64", (-1,)),
        ("charges", "FP64", (-1,)),
        ("calls", "INT64", (-1,)),
    ]
    assert [(s.name, s.datatype, s.shape) for s in sig.outputs] == [("predict", "INT64", (-1,))]


def test_model_without_signature_takes_the_array(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(40, 2))
    reg = LinearRegression().fit(x, x @ np.array([3.0, -1.0]) + 0.5)
    mlflow.sklearn.save_model(reg, str(tmp_path / "reg"), pip_requirements=NO_REQS)
    runtime = load(tmp_path, tmp_path / "reg")
    np.testing.assert_allclose(infer(runtime, [Tensor.from_array("x", x[:4])]), reg.predict(x[:4]))
    sig = runtime.signature()
    assert sig.inputs == ()
    assert [s.name for s in sig.outputs] == ["predict"]


class Scaled(mlflow.pyfunc.PythonModel):  # type: ignore[misc,name-defined]
    def predict(self, context: Any, model_input: pd.DataFrame, params: Any = None) -> Any:
        scale = (params or {}).get("scale", 1.0)
        return model_input["a"].to_numpy() * scale


def test_parameters_declared_by_the_model_are_passed(tmp_path: Path) -> None:
    df = pd.DataFrame({"a": [1.0, 2.0]})
    signature = infer_signature(df, np.array([1.0, 2.0]), params={"scale": 1.0})
    mlflow.pyfunc.save_model(
        str(tmp_path / "py"), python_model=Scaled(), signature=signature, pip_requirements=NO_REQS
    )
    runtime = load(tmp_path, tmp_path / "py")
    a = Tensor.from_array("a", np.array([1.0, 2.0]))
    np.testing.assert_array_equal(infer(runtime, [a]), [1.0, 2.0])
    got = infer(runtime, [a], parameters={"scale": 10.0, "unrelated": "x"})
    np.testing.assert_array_equal(got, [10.0, 20.0])


def test_missing_or_broken_model_fails_load(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist: an MLflow model is a directory"):
        load(tmp_path, tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(ModelLoadError, match="has no MLmodel file"):
        load(tmp_path, tmp_path / "plain")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "MLmodel").write_text("flavors: {}\n")
    with pytest.raises(
        ModelLoadError, match=r"cannot load MLflow model .*broken: .*python_function"
    ):
        load(tmp_path, broken)
