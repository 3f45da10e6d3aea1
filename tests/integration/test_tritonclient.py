"""Triton's own HTTP client, with its defaults (binary tensor data on), against the gateway.

Nobody here wrote ``tritonclient``: if it can talk to us, so can Triton users.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import joblib
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

from fixtures.models import FAILURE_MESSAGE
from modelrouter import __version__
from modelrouter.app import create_app
from support import EXAMPLE_MODELS, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

CONFIG = """\
server:
  name: triton-compatible
  store: memory://
  watchConfig: false
models:
  churn:
    versions:
      v1: {storageUri: ./churn/v1, modelFormat: sklearn}
      v2: {storageUri: ./churn/v2, modelFormat: sklearn}
  echo:
    versions:
      v1: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
  failing:
    versions:
      v1: {modelFormat: custom, implementation: "fixtures.models:FailingModel"}
"""

X = np.random.default_rng(20240601).normal(loc=2.0, scale=3.0, size=(2, 10))


def sklearn_model(version: str) -> Any:
    return joblib.load(EXAMPLE_MODELS / "churn" / version / "model.joblib")


@pytest.fixture(scope="module")
def client() -> Iterator[triton.InferenceServerClient]:
    app = create_app(loaded_from_yaml(CONFIG, EXAMPLE_MODELS))
    with running_server(app) as url:
        c = triton.InferenceServerClient(url.removeprefix("http://"))
        try:
            yield c
        finally:
            c.close()


def churn_input(x: np.ndarray = X, binary: bool = True) -> triton.InferInput:
    inp = triton.InferInput("input-0", list(x.shape), "FP64")
    inp.set_data_from_numpy(x, binary_data=binary)
    return inp


def test_health(client: triton.InferenceServerClient) -> None:
    assert client.is_server_live() is True
    assert client.is_server_ready() is True
    assert client.is_model_ready("churn") is True
    assert client.is_model_ready("churn", "v2") is True
    assert client.is_model_ready("nope") is False
    assert client.is_model_ready("churn", "v9") is False


def test_server_metadata(client: triton.InferenceServerClient) -> None:
    meta = client.get_server_metadata()
    assert meta["name"] == "triton-compatible"
    assert meta["version"] == __version__
    assert "binary_tensor_data" in meta["extensions"]


@pytest.mark.parametrize("version", ["", "v2"])
def test_model_metadata(client: triton.InferenceServerClient, version: str) -> None:
    meta = client.get_model_metadata("churn", version)
    assert meta["name"] == "churn"
    assert meta["versions"] == ["v1", "v2"]
    assert meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 10]}]
    assert [o["name"] for o in meta["outputs"]] == ["predict", "predict_proba"]


def test_repository_index(client: triton.InferenceServerClient) -> None:
    index = client.get_model_repository_index()
    assert sorted((m["name"], m["version"], m["state"]) for m in index) == [
        ("churn", "v1", "READY"),
        ("churn", "v2", "READY"),
        ("echo", "v1", "READY"),
        ("failing", "v1", "READY"),
    ]


def test_metadata_of_unknown_model(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.get_model_metadata("nope")
    assert info.value.status() == "404"
    assert info.value.message() == "model 'nope' not found"


@pytest.mark.parametrize(("version", "served"), [("", "v1"), ("v1", "v1"), ("v2", "v2")])
def test_infer_default_outputs(
    client: triton.InferenceServerClient, version: str, served: str
) -> None:
    # no outputs named: tritonclient asks for every output as binary (binary_data_output)
    result = client.infer("churn", [churn_input()], model_version=version)
    response = result.get_response()
    assert response["model_name"] == "churn"
    assert response["model_version"] == served
    assert response["outputs"] == [
        {
            "name": "predict",
            "datatype": "INT64",
            "shape": [2],
            "parameters": {"binary_data_size": 16},
        }
    ]
    predict = result.as_numpy("predict")
    assert predict.dtype == np.int64
    np.testing.assert_array_equal(predict, sklearn_model(served).predict(X))
    assert result.as_numpy("predict_proba") is None


@pytest.mark.parametrize("version", ["v1", "v2"])
@pytest.mark.parametrize("proba_binary", [True, False])
def test_infer_requested_outputs(
    client: triton.InferenceServerClient, version: str, proba_binary: bool
) -> None:
    outputs = [
        triton.InferRequestedOutput("predict"),
        triton.InferRequestedOutput("predict_proba", binary_data=proba_binary),
    ]
    result = client.infer(
        "churn", [churn_input()], model_version=version, outputs=outputs, request_id="tc-1"
    )
    response = result.get_response()
    assert response["id"] == "tc-1"
    assert response["model_version"] == version
    by_name = {o["name"]: o for o in response["outputs"]}
    assert "data" not in by_name["predict"]
    assert ("data" in by_name["predict_proba"]) is not proba_binary
    model = sklearn_model(version)
    np.testing.assert_array_equal(result.as_numpy("predict"), model.predict(X))
    proba = result.as_numpy("predict_proba")
    assert proba.shape == (2, 2)
    np.testing.assert_array_equal(proba, model.predict_proba(X))


def test_versions_answer_differently(client: triton.InferenceServerClient) -> None:
    outputs = [triton.InferRequestedOutput("predict_proba")]
    p1 = client.infer("churn", [churn_input()], "v1", outputs=outputs).as_numpy("predict_proba")
    p2 = client.infer("churn", [churn_input()], "v2", outputs=outputs).as_numpy("predict_proba")
    assert not np.allclose(p1, p2, atol=1e-3)


def test_json_input(client: triton.InferenceServerClient) -> None:
    result = client.infer("churn", [churn_input(binary=False)], model_version="v2")
    np.testing.assert_array_equal(result.as_numpy("predict"), sklearn_model("v2").predict(X))


def test_bytes_round_trip(client: triton.InferenceServerClient) -> None:
    words = np.array([["héllo".encode(), b""], [b"\x00\xff", b"x" * 300]], dtype=object)
    inp = triton.InferInput("words", [2, 2], "BYTES")
    inp.set_data_from_numpy(words)
    result = client.infer("echo", [inp], outputs=[triton.InferRequestedOutput("echo")])
    got = result.as_numpy("echo")
    assert got.shape == (2, 2)
    assert got.tolist() == words.tolist()


@pytest.mark.parametrize(
    ("datatype", "dtype"),
    [("INT8", np.int8), ("UINT64", np.uint64), ("FP16", np.float16), ("BOOL", np.bool_)],
)
def test_numeric_round_trip(
    client: triton.InferenceServerClient, datatype: str, dtype: type
) -> None:
    data = np.array([[1, 0, 1], [0, 1, 1]]).astype(dtype)
    if datatype == "UINT64":
        data[0, 0] = np.uint64(2**64 - 1)
    inp = triton.InferInput("x", [2, 3], datatype)
    inp.set_data_from_numpy(data)
    result = client.infer(
        "echo",
        [inp],
        outputs=[
            triton.InferRequestedOutput("echo"),
            triton.InferRequestedOutput("total", binary_data=False),
        ],
    )
    echoed = result.as_numpy("echo")
    assert echoed.dtype == data.dtype
    np.testing.assert_array_equal(echoed, data)
    np.testing.assert_allclose(result.as_numpy("total"), data.astype(np.float64).sum(axis=1))


def test_bad_request_raises_with_our_message(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.infer("churn", [churn_input()], outputs=[triton.InferRequestedOutput("score")])
    assert info.value.status() == "400"
    assert info.value.message() == (
        "unknown output 'score' for model 'churn' version 'v1' (outputs: predict, predict_proba)"
    )


def test_wrong_feature_count_raises(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.infer("churn", [churn_input(X[:, :7])])
    assert info.value.status() == "400"
    assert info.value.message() == "the model expects 10 features per row, got 7"


def test_unknown_version_raises(client: triton.InferenceServerClient) -> None:
    with pytest.raises(InferenceServerException) as info:
        client.infer("churn", [churn_input()], model_version="v9")
    assert info.value.status() == "404"
    assert info.value.message() == "version 'v9' of model 'churn' not found"


def test_model_failure_raises_with_its_message(client: triton.InferenceServerClient) -> None:
    inp = triton.InferInput("x", [1], "FP64")
    inp.set_data_from_numpy(np.array([1.0]))
    with pytest.raises(InferenceServerException) as info:
        client.infer("failing", [inp])
    assert info.value.status() == "500"
    assert FAILURE_MESSAGE in info.value.message()
    assert client.is_server_live()


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
def test_request_compression(client: triton.InferenceServerClient, algorithm: str) -> None:
    result = client.infer(
        "churn",
        [churn_input()],
        model_version="v2",
        outputs=[triton.InferRequestedOutput("predict_proba")],
        request_compression_algorithm=algorithm,
    )
    np.testing.assert_array_equal(
        result.as_numpy("predict_proba"), sklearn_model("v2").predict_proba(X)
    )


def test_response_compression_requested(client: triton.InferenceServerClient) -> None:
    # the gateway may answer uncompressed; tritonclient must still read it
    result = client.infer(
        "churn", [churn_input()], model_version="v1", response_compression_algorithm="gzip"
    )
    np.testing.assert_array_equal(result.as_numpy("predict"), sklearn_model("v1").predict(X))
