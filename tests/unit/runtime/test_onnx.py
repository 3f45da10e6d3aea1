"""The ONNX runtime: input matching and casting, outputs, ZipMap, errors, signature."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from skl2onnx import to_onnx
from sklearn.linear_model import LogisticRegression

from modelrouter.config.schema import VersionSpec
from modelrouter.errors import InvalidInput, ModelLoadError, UnknownOutput
from modelrouter.protocol.types import InferenceRequest, RequestedOutput, Tensor
from modelrouter.runtime.base import ModelRuntime
from modelrouter.runtime.onnx import OnnxRuntime
from modelrouter.runtime.registry import create_runtime


def data(n: int = 60, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4))
    y = (x[:, 0] - x[:, 2] > 0).astype(int)
    return x, y


def classifier(tmp_path: Path, zipmap: bool) -> LogisticRegression:
    x, y = data()
    clf = LogisticRegression().fit(x, y)
    model = to_onnx(clf, x[:1].astype(np.float32), options={"zipmap": zipmap})
    (tmp_path / "model.onnx").write_bytes(model.SerializeToString())
    return clf


def save(model: onnx.ModelProto, path: Path) -> None:
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def graph_model(
    nodes: list[onnx.NodeProto],
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)


def load(tmp_path: Path, uri: str | Path | None = None) -> ModelRuntime:
    spec = VersionSpec(storageUri=str(uri or tmp_path), modelFormat="onnx")
    runtime = create_runtime("m", "v1", spec, tmp_path)
    runtime.load()
    return runtime


def infer(runtime: ModelRuntime, inputs: list[Tensor], *outputs: str) -> dict[str, np.ndarray]:
    request = InferenceRequest(
        inputs, outputs=[RequestedOutput(o) for o in outputs] if outputs else None
    )
    return {t.name: t.data for t in asyncio.run(runtime.infer(request))}


def test_classifier_outputs_match_sklearn(tmp_path: Path) -> None:
    clf = classifier(tmp_path, zipmap=False)
    runtime = load(tmp_path)
    assert isinstance(runtime, OnnxRuntime)
    x, _ = data()
    # FP64 from the client, cast to the model's float; the name does not match "X": positional
    out = infer(runtime, [Tensor.from_array("input-0", x)])
    assert list(out) == ["label", "probabilities"]
    np.testing.assert_array_equal(out["label"], clf.predict(x))
    np.testing.assert_allclose(out["probabilities"], clf.predict_proba(x), atol=1e-5)
    assert out["probabilities"].dtype == np.float32

    only = infer(runtime, [Tensor.from_array("X", x[:3])], "probabilities")
    assert list(only) == ["probabilities"]
    assert only["probabilities"].shape == (3, 2)


def test_zipmap_output_becomes_a_matrix(tmp_path: Path) -> None:
    clf = classifier(tmp_path, zipmap=True)
    runtime = load(tmp_path)
    x, _ = data()
    out = infer(runtime, [Tensor.from_array("X", x[:5])])
    assert list(out) == ["output_label", "output_probability"]
    np.testing.assert_allclose(out["output_probability"], clf.predict_proba(x[:5]), atol=1e-5)
    sig = runtime.signature()
    assert [(s.name, s.datatype, s.shape) for s in sig.outputs] == [
        ("output_label", "INT64", (-1,)),
        ("output_probability", "FP32", (-1, -1)),
    ]


def test_one_row_without_batch_dimension(tmp_path: Path) -> None:
    clf = classifier(tmp_path, zipmap=False)
    x, _ = data()
    out = infer(load(tmp_path), [Tensor.from_array("X", x[3])], "label")
    np.testing.assert_array_equal(out["label"], clf.predict(x[3:4]))


def test_inputs_matched_by_name_and_cast(tmp_path: Path) -> None:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N", 2])
    b = helper.make_tensor_value_info("b", TensorProto.INT64, ["N", 2])
    y = helper.make_tensor_value_info("diff", TensorProto.FLOAT, ["N", 2])
    nodes = [
        helper.make_node("Cast", ["b"], ["bf"], to=TensorProto.FLOAT),
        helper.make_node("Sub", ["a", "bf"], ["diff"]),
    ]
    save(graph_model(nodes, [a, b], [y]), tmp_path / "model.onnx")
    runtime = load(tmp_path)
    av = np.array([[1.5, 2.0], [3.0, 4.0]])
    bv = np.array([[1, 1], [2, 5]], dtype=np.int32)
    # sent in the other order: names decide
    out = infer(runtime, [Tensor.from_array("b", bv), Tensor.from_array("a", av)])
    np.testing.assert_array_equal(out["diff"], np.array([[0.5, 1.0], [1.0, -1.0]], np.float32))
    # names that do not match and the same count: positional
    out = infer(runtime, [Tensor.from_array("x", av), Tensor.from_array("y", bv)])
    np.testing.assert_array_equal(out["diff"], np.array([[0.5, 1.0], [1.0, -1.0]], np.float32))

    # whole floats are fine for the INT64 input, 2.5 is not; 1e39 does not fit FP32
    whole = infer(runtime, [Tensor.from_array("a", av), Tensor.from_array("b", bv * 1.0)])
    np.testing.assert_array_equal(whole["diff"], out["diff"])
    with pytest.raises(InvalidInput, match="b takes INT64, and some values"):
        infer(runtime, [Tensor.from_array("a", av), Tensor.from_array("b", bv + 0.5)])
    with pytest.raises(InvalidInput, match="a value is out of range for FP32"):
        infer(runtime, [Tensor.from_array("a", av * 1e39), Tensor.from_array("b", bv)])
    with pytest.raises(InvalidInput, match=r"missing input\(s\) b"):
        infer(runtime, [Tensor.from_array("a", av)])
    with pytest.raises(InvalidInput, match=r"takes 2 input\(s\) \(a, b\), the request has 1"):
        infer(runtime, [Tensor.from_array("x", av)])
    sig = runtime.signature()
    assert [(s.name, s.datatype, s.shape) for s in sig.inputs] == [
        ("a", "FP32", (-1, 2)),
        ("b", "INT64", (-1, 2)),
    ]
    assert sig.platform == "onnxruntime_onnx"


def test_unknown_output(tmp_path: Path) -> None:
    classifier(tmp_path, zipmap=False)
    x, _ = data()
    with pytest.raises(UnknownOutput, match=r"unknown output 'predict'.*label, probabilities"):
        infer(load(tmp_path), [Tensor.from_array("X", x)], "predict")


def test_wrong_feature_count_is_invalid_input(tmp_path: Path) -> None:
    classifier(tmp_path, zipmap=False)
    runtime = load(tmp_path)
    with pytest.raises(InvalidInput, match=r"shape \[2, 3\], the model's X takes \[-1, 4\]") as e:
        infer(runtime, [Tensor.from_array("X", np.ones((2, 3)))])
    assert e.value.status.http == 400
    strings = np.array([b"a", b"b", b"c", b"d"], dtype=object)
    with pytest.raises(InvalidInput, match="is BYTES but X takes FP32"):
        infer(runtime, [Tensor("X", "BYTES", [1, 4], strings.reshape(1, 4))])


def test_sequence_output_is_refused_at_load(tmp_path: Path) -> None:
    a = helper.make_tensor_value_info("a", TensorProto.FLOAT, ["N"])
    seq = helper.make_tensor_sequence_value_info("s", TensorProto.FLOAT, ["N"])
    nodes = [helper.make_node("SequenceConstruct", ["a", "a"], ["s"])]
    save(graph_model(nodes, [a], [seq]), tmp_path / "model.onnx")
    with pytest.raises(ModelLoadError, match=r"output 's' has type seq\(tensor\(float\)\).*zipmap"):
        load(tmp_path)


def test_corrupt_or_missing_model_fails_load(tmp_path: Path) -> None:
    (tmp_path / "model.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ModelLoadError, match=r"cannot load ONNX model .*model\.onnx: .*Protobuf"):
        load(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load(tmp_path, tmp_path / "missing")


def test_signature(tmp_path: Path) -> None:
    classifier(tmp_path, zipmap=False)
    sig = load(tmp_path).signature()
    assert [(s.name, s.datatype, s.shape) for s in sig.inputs] == [("X", "FP32", (-1, 4))]
    assert [(s.name, s.datatype, s.shape) for s in sig.outputs] == [
        ("label", "INT64", (-1,)),
        ("probabilities", "FP32", (-1, 2)),
    ]
