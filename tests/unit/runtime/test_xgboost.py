"""The XGBoost runtime answers as XGBoost's own scikit-learn wrappers do."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
import xgboost as xgb

from modelrouter.config.schema import VersionSpec
from modelrouter.errors import InvalidInput, ModelLoadError, UnknownOutput
from modelrouter.protocol.types import InferenceRequest, RequestedOutput, Tensor
from modelrouter.runtime.base import ModelRuntime
from modelrouter.runtime.registry import create_runtime
from modelrouter.runtime.xgboost import XGBoostRuntime

N_FEATURES = 4


def data(n: int = 80, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    binary = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int)
    three = binary + (x[:, 2] > 0.7).astype(int)
    return x, binary, three


def load(tmp_path: Path, uri: str | Path, **parameters: object) -> ModelRuntime:
    spec = VersionSpec(storageUri=str(uri), modelFormat="xgboost", parameters=parameters)
    runtime = create_runtime("m", "v1", spec, tmp_path)
    runtime.load()
    return runtime


def infer(runtime: ModelRuntime, x: np.ndarray, *outputs: str) -> dict[str, np.ndarray]:
    request = InferenceRequest(
        [Tensor.from_array("input-0", x)],
        outputs=[RequestedOutput(o) for o in outputs] if outputs else None,
    )
    return {t.name: t.data for t in asyncio.run(runtime.infer(request))}


def test_binary_classifier_matches_xgbclassifier(tmp_path: Path) -> None:
    x, y, _ = data()
    clf = xgb.XGBClassifier(n_estimators=8, max_depth=3, random_state=0).fit(x, y)
    clf.save_model(tmp_path / "model.json")
    runtime = load(tmp_path, tmp_path)
    assert isinstance(runtime, XGBoostRuntime)

    default = infer(runtime, x[:10])
    assert list(default) == ["predict"]
    np.testing.assert_array_equal(default["predict"], clf.predict(x[:10]))
    assert default["predict"].dtype == np.int64
    assert set(default["predict"]) == {0, 1}

    both = infer(runtime, x[:10], "predict_proba", "predict")
    assert list(both) == ["predict_proba", "predict"]
    np.testing.assert_allclose(both["predict_proba"], clf.predict_proba(x[:10]), rtol=1e-6)
    assert both["predict_proba"].shape == (10, 2)


def test_multiclass_softprob_from_ubj(tmp_path: Path) -> None:
    x, _, y = data()
    clf = xgb.XGBClassifier(n_estimators=6, max_depth=3, random_state=0).fit(x, y)
    clf.get_booster().save_model(tmp_path / "model.ubj")
    runtime = load(tmp_path, tmp_path)
    out = infer(runtime, x, "predict", "predict_proba")
    np.testing.assert_array_equal(out["predict"], clf.predict(x))
    np.testing.assert_allclose(out["predict_proba"], clf.predict_proba(x), rtol=1e-6)
    assert out["predict_proba"].shape == (len(x), 3)


def test_multi_softmax_labels_and_probabilities(tmp_path: Path) -> None:
    x, _, y = data()
    params = {"objective": "multi:softmax", "num_class": 3, "max_depth": 3, "seed": 0}
    booster = xgb.train(params, xgb.DMatrix(x, label=y), num_boost_round=5)
    booster.save_model(tmp_path / "model.json")
    runtime = load(tmp_path, tmp_path / "model.json")
    out = infer(runtime, x, "predict", "predict_proba")
    expected = booster.predict(xgb.DMatrix(x))
    np.testing.assert_array_equal(out["predict"], expected.astype(np.int64))
    proba = out["predict_proba"]
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(proba.argmax(axis=1), expected)


def test_regressor_has_predict_only(tmp_path: Path) -> None:
    x, _, _ = data()
    target = x @ np.array([1.0, -2.0, 0.5, 3.0])
    reg = xgb.XGBRegressor(n_estimators=10, max_depth=3, random_state=0).fit(x, target)
    reg.save_model(tmp_path / "model.json")
    runtime = load(tmp_path, tmp_path)
    out = infer(runtime, x[:5])
    np.testing.assert_allclose(out["predict"], reg.predict(x[:5]), rtol=1e-6)
    with pytest.raises(UnknownOutput, match="unknown output 'predict_proba'") as err:
        infer(runtime, x[:5], "predict_proba")
    assert err.value.status.http == 400
    sig = runtime.signature()
    assert [(s.name, s.datatype, s.shape) for s in sig.outputs] == [("predict", "FP32", (-1,))]


def test_columns_and_single_row(tmp_path: Path) -> None:
    x, y, _ = data()
    clf = xgb.XGBClassifier(n_estimators=4, random_state=0).fit(x, y)
    clf.save_model(tmp_path / "model.json")
    runtime = load(tmp_path, tmp_path)
    columns = [Tensor.from_array(f"f{i}", x[:3, i]) for i in range(N_FEATURES)]
    got = asyncio.run(runtime.infer(InferenceRequest(columns)))
    np.testing.assert_array_equal(got[0].data, clf.predict(x[:3]))
    one_row = infer(runtime, x[7])
    np.testing.assert_array_equal(one_row["predict"], clf.predict(x[7:8]))


def test_wrong_feature_count_is_invalid_input(tmp_path: Path) -> None:
    x, y, _ = data()
    xgb.XGBClassifier(n_estimators=2).fit(x, y).save_model(tmp_path / "model.json")
    runtime = load(tmp_path, tmp_path)
    with pytest.raises(InvalidInput, match="expects 4 features per row, got 3") as err:
        infer(runtime, x[:2, :3])
    assert err.value.status.http == 400


def test_corrupt_model_fails_load_with_a_clear_message(tmp_path: Path) -> None:
    (tmp_path / "model.json").write_text("this is not a model")
    with pytest.raises(ModelLoadError, match=r"cannot load XGBoost model .*model\.json: ") as err:
        load(tmp_path, tmp_path)
    assert "Stack trace" not in err.value.message
    assert "\n" not in err.value.message


def test_missing_model_file_fails_load(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no XGBoost model file \(\.json, \.ubj, \.bst\)"):
        load(tmp_path, tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(tmp_path, tmp_path / "nowhere")


def test_bad_nthread_parameter(tmp_path: Path) -> None:
    x, y, _ = data()
    xgb.XGBClassifier(n_estimators=2).fit(x, y).save_model(tmp_path / "model.json")
    with pytest.raises(ModelLoadError, match="nthread must be a positive integer"):
        load(tmp_path, tmp_path, nthread="four")
    runtime = load(tmp_path, tmp_path, nthread=1)
    assert infer(runtime, x[:2])["predict"].shape == (2,)


def test_signature(tmp_path: Path) -> None:
    x, _, y = data()
    xgb.XGBClassifier(n_estimators=2).fit(x, y).save_model(tmp_path / "model.json")
    sig = load(tmp_path, tmp_path).signature()
    assert sig.platform == "xgboost"
    assert [(s.name, s.datatype, s.shape) for s in sig.inputs] == [("input-0", "FP32", (-1, 4))]
    assert [(s.name, s.datatype, s.shape) for s in sig.outputs] == [
        ("predict", "INT64", (-1,)),
        ("predict_proba", "FP32", (-1, 3)),
    ]
    assert sig.extra == {"objective": "multi:softprob"}
