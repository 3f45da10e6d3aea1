"""The LightGBM runtime answers ``booster.predict``, as KServe's lgbserver does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pytest

from modelrouter.config.schema import VersionSpec
from modelrouter.errors import InvalidInput, ModelLoadError, UnknownOutput
from modelrouter.protocol.types import InferenceRequest, RequestedOutput, Tensor
from modelrouter.runtime.base import ModelRuntime
from modelrouter.runtime.lightgbm import LightGBMRuntime
from modelrouter.runtime.registry import create_runtime

N_FEATURES = 5


def data(n: int = 120, seed: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    binary = (x[:, 0] - x[:, 3] > 0).astype(int)
    three = binary + (x[:, 1] > 0.5).astype(int)
    return x, binary, three


def train(x: np.ndarray, y: np.ndarray, **params: object) -> lgb.Booster:
    base = {"verbose": -1, "num_leaves": 7, "min_data_in_leaf": 5, "seed": 0, "deterministic": True}
    return lgb.train({**base, **params}, lgb.Dataset(x, label=y), num_boost_round=8)


def load(tmp_path: Path, uri: str | Path, **parameters: object) -> ModelRuntime:
    spec = VersionSpec(storageUri=str(uri), modelFormat="lightgbm", parameters=parameters)
    runtime = create_runtime("m", "v1", spec, tmp_path)
    runtime.load()
    return runtime


def infer(runtime: ModelRuntime, x: np.ndarray, *outputs: str) -> dict[str, np.ndarray]:
    request = InferenceRequest(
        [Tensor.from_array("input-0", x)],
        outputs=[RequestedOutput(o) for o in outputs] if outputs else None,
    )
    return {t.name: t.data for t in asyncio.run(runtime.infer(request))}


def test_binary_predict_equals_booster_predict(tmp_path: Path) -> None:
    x, y, _ = data()
    booster = train(x, y, objective="binary")
    booster.save_model(str(tmp_path / "model.txt"))
    runtime = load(tmp_path, tmp_path)
    assert isinstance(runtime, LightGBMRuntime)
    out = infer(runtime, x[:20])
    assert list(out) == ["predict"]
    np.testing.assert_array_equal(out["predict"], booster.predict(x[:20]))
    assert out["predict"].shape == (20,)
    assert ((out["predict"] > 0) & (out["predict"] < 1)).all()


def test_multiclass_gives_one_column_per_class(tmp_path: Path) -> None:
    x, _, y = data()
    booster = train(x, y, objective="multiclass", num_class=3)
    booster.save_model(str(tmp_path / "model.bst"))
    runtime = load(tmp_path, tmp_path)
    out = infer(runtime, x, "predict")
    np.testing.assert_array_equal(out["predict"], booster.predict(x))
    assert out["predict"].shape == (len(x), 3)
    sig = runtime.signature()
    assert [(s.name, s.datatype, s.shape) for s in sig.outputs] == [("predict", "FP64", (-1, 3))]
    assert sig.extra == {"objective": "multiclass"}


def test_regression_and_column_inputs(tmp_path: Path) -> None:
    x, _, _ = data()
    target = x @ np.array([2.0, -1.0, 0.0, 0.5, 1.5])
    booster = train(x, target, objective="regression")
    booster.save_model(str(tmp_path / "model.txt"))
    runtime = load(tmp_path, tmp_path / "model.txt", nthread=1)
    columns = [Tensor.from_array(f"c{i}", x[:4, i]) for i in range(N_FEATURES)]
    got = asyncio.run(runtime.infer(InferenceRequest(columns)))
    np.testing.assert_allclose(got[0].data, booster.predict(x[:4]))
    assert got[0].datatype == "FP64"


def test_unknown_output(tmp_path: Path) -> None:
    x, y, _ = data()
    train(x, y, objective="binary").save_model(str(tmp_path / "model.txt"))
    runtime = load(tmp_path, tmp_path)
    with pytest.raises(
        UnknownOutput, match=r"unknown output 'predict_proba'.*\(outputs: predict\)"
    ):
        infer(runtime, x[:2], "predict_proba")


def test_wrong_feature_count_is_invalid_input(tmp_path: Path) -> None:
    x, y, _ = data()
    train(x, y, objective="binary").save_model(str(tmp_path / "model.txt"))
    runtime = load(tmp_path, tmp_path)
    with pytest.raises(InvalidInput, match="expects 5 features per row, got 6") as err:
        infer(runtime, np.ones((2, 6)))
    assert err.value.status.http == 400


def test_corrupt_or_missing_model_fails_load(tmp_path: Path) -> None:
    (tmp_path / "model.txt").write_text("garbage\n")
    with pytest.raises(ModelLoadError, match=r"cannot load LightGBM model .*model\.txt: .*format"):
        load(tmp_path, tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match=r"no LightGBM model file \(\.txt, \.bst\)"):
        load(tmp_path, empty)


def test_bad_nthread(tmp_path: Path) -> None:
    x, y, _ = data()
    train(x, y, objective="binary").save_model(str(tmp_path / "model.txt"))
    with pytest.raises(ModelLoadError, match="nthread must be a positive integer: 0"):
        load(tmp_path, tmp_path, nthread=0)


def test_signature(tmp_path: Path) -> None:
    x, y, _ = data()
    train(x, y, objective="binary").save_model(str(tmp_path / "model.txt"))
    sig = load(tmp_path, tmp_path).signature()
    assert sig.platform == "lightgbm"
    assert [(s.name, s.datatype, s.shape) for s in sig.inputs] == [("input-0", "FP64", (-1, 5))]
    assert [(s.name, s.datatype, s.shape) for s in sig.outputs] == [("predict", "FP64", (-1,))]
