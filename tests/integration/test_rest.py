"""The real app over real HTTP: every Open Inference Protocol v2 endpoint, KServe v1, errors.

Two servers: ``gateway`` where every version loads, and ``degraded`` where one version's file
is missing. Responses are checked against the OIP v2 REST spec's schemas.
"""

from __future__ import annotations

import gzip
import pickle
import re
import struct
import zlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import joblib
import jsonschema
import numpy as np
import orjson
import pytest
import yaml
from sklearn.linear_model import LogisticRegression
from tritonclient.utils import deserialize_bytes_tensor

from fixtures.models import FAILURE_MESSAGE
from modelrouter import __version__
from modelrouter.app import create_app
from support import EXAMPLE_MODELS, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

SPEC = Path("/work/shared/specs/open-inference-protocol-v2.rest.yaml")
LIMIT = 64 * 1024

CONFIG = f"""\
server:
  name: gateway-under-test
  http: {{maxRequestSize: {LIMIT}}}
  store: memory://
  watchConfig: false
models:
  churn:
    versions:
      v1: {{storageUri: ./churn/v1, modelFormat: sklearn}}
      v2: {{storageUri: ./churn/v2, modelFormat: sklearn}}
    http:
      - name: default
        route: [{{destination: v2}}]
  ltv:
    versions:
      v1: {{storageUri: ./ltv/v1, modelFormat: sklearn}}
  echo:
    versions:
      v1:
        modelFormat: custom
        implementation: fixtures.models:EchoModel
        parameters: {{scale: 2}}
  failing:
    versions:
      v1: {{modelFormat: custom, implementation: "fixtures.models:FailingModel"}}
  label:
    versions:
      v1:
        modelFormat: custom
        implementation: fixtures.models:LabelModel
        parameters: {{threshold: 10}}
  pickled:
    versions:
      joblib-as-pkl: {{storageUri: "EXTRA/joblib-as-pkl/model.pkl", modelFormat: sklearn}}
      plain: {{storageUri: "EXTRA/plain", modelFormat: sklearn}}
      labels: {{storageUri: "EXTRA/labels", modelFormat: sklearn, executor: thread}}
"""

DEGRADED = """\
server:
  store: memory://
  watchConfig: false
models:
  churn:
    versions:
      v1: {storageUri: ./churn/v1, modelFormat: sklearn}
  broken:
    versions:
      v1: {storageUri: ./churn/v1, modelFormat: sklearn}
      v2: {storageUri: ./no/such/dir, modelFormat: sklearn}
"""

ROWS_FOR_LABELS = np.random.default_rng(5).normal(loc=3, scale=20, size=(200, 10))
ROWS = np.array(
    [
        [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2],
        [60, 45.0, 0, 0, 0, 0, 58, 4, 0, 5],
        [3, 120.25, 5, 1, 1, 0, 22, 1, 3, 1],
    ],
    dtype=np.float64,
)


@cache
def sklearn_model(name: str, version: str) -> Any:
    return joblib.load(EXAMPLE_MODELS / name / version / "model.joblib")


@cache
def spec_components() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(SPEC.read_text())
    return doc["components"]


def assert_spec(doc: Any, schema: str) -> None:
    """``doc`` is valid for the spec's ``components/schemas/<schema>``."""
    jsonschema.validate(
        doc, {"$ref": f"#/components/schemas/{schema}", "components": spec_components()}
    )


def save_extra_models(folder: Path) -> None:
    """The churn v1 estimator dumped by joblib as ``.pkl``, and pickled plainly; and a
    classifier whose labels are strings."""
    for sub in ("joblib-as-pkl", "plain", "labels"):
        (folder / sub).mkdir()
    estimator = sklearn_model("churn", "v1")
    joblib.dump(estimator, folder / "joblib-as-pkl" / "model.pkl")
    with (folder / "plain" / "model.pickle").open("wb") as fh:
        pickle.dump(estimator, fh)
    labels = np.where(estimator.predict(ROWS_FOR_LABELS) == 1, "churn", "stay")
    joblib.dump(
        LogisticRegression().fit(ROWS_FOR_LABELS, labels), folder / "labels" / "model.joblib"
    )


@pytest.fixture(scope="module")
def extra_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    save_extra_models(folder)
    return folder


@pytest.fixture(scope="module")
def gateway(extra_models: Path) -> Iterator[httpx.Client]:
    config = CONFIG.replace("EXTRA", str(extra_models))
    app = create_app(loaded_from_yaml(config, EXAMPLE_MODELS))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def degraded() -> Iterator[httpx.Client]:
    app = create_app(loaded_from_yaml(DEGRADED, EXAMPLE_MODELS))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        yield client


def infer_body(rows: np.ndarray = ROWS, **extra: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input-0",
                "datatype": "FP64",
                "shape": list(rows.shape),
                "data": rows.tolist(),
            }
        ],
        **extra,
    }


def outputs_of(doc: dict[str, Any]) -> dict[str, np.ndarray]:
    return {o["name"]: np.array(o["data"]).reshape(o["shape"]) for o in doc["outputs"]}


def assert_error(r: httpx.Response, status: int, *fragments: str) -> str:
    """A JSON ``{"error": ...}`` with ``status`` whose message holds every fragment."""
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])
    doc = r.json()
    assert list(doc) == ["error"]
    assert_spec(doc, "inference_error_response")
    message: str = doc["error"]
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --------------------------------------------------------------------------- health


def test_live_and_ready(gateway: httpx.Client) -> None:
    r = gateway.get("/v2/health/live")
    assert (r.status_code, r.json()) == (200, {"live": True})
    r = gateway.get("/v2/health/ready")
    assert (r.status_code, r.json()) == (200, {"ready": True})


@pytest.mark.parametrize("path", ["/v2", "/v2/"])
def test_server_metadata(gateway: httpx.Client, path: str) -> None:
    r = gateway.get(path)
    assert r.status_code == 200
    doc = r.json()
    assert_spec(doc, "metadata_server_response")
    assert doc["name"] == "gateway-under-test"
    assert doc["version"] == __version__
    assert "binary_tensor_data" in doc["extensions"]


# --------------------------------------------------------------------------- model metadata


CHURN_OUTPUTS = [
    {"name": "predict", "datatype": "INT64", "shape": [-1]},
    {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 2]},
]


@pytest.mark.parametrize(
    ("path", "version"),
    [("/v2/models/churn", "v1"), ("/v2/models/churn/versions/v2", "v2")],
)
def test_model_metadata(gateway: httpx.Client, path: str, version: str) -> None:
    r = gateway.get(path)
    assert r.status_code == 200
    assert r.headers["x-model-version"] == version
    doc = r.json()
    assert_spec(doc, "metadata_model_response")
    assert doc == {
        "name": "churn",
        "versions": ["v1", "v2"],
        "platform": "sklearn",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 10]}],
        "outputs": CHURN_OUTPUTS,
    }


def test_regression_model_metadata(gateway: httpx.Client) -> None:
    doc = gateway.get("/v2/models/ltv/versions/v1").json()
    assert doc["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 6]}]
    assert doc["outputs"] == [{"name": "predict", "datatype": "FP64", "shape": [-1]}]


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("/v2/models/nope", 404, "model 'nope' not found"),
        ("/v2/models/nope/versions/v1", 404, "model 'nope' not found"),
        ("/v2/models/churn/versions/v9", 404, "version 'v9' of model 'churn' not found"),
        ("/v2/models/nope/ready", 404, "model 'nope' not found"),
        ("/v2/models/churn/versions/v9/ready", 404, "version 'v9' of model 'churn' not found"),
        ("/v1/models/nope", 404, "model 'nope' not found"),
    ],
)
def test_metadata_of_unknown(gateway: httpx.Client, path: str, status: int, fragment: str) -> None:
    assert_error(gateway.get(path), status, fragment)


@pytest.mark.parametrize(
    ("path", "version"),
    [("/v2/models/churn/ready", "v1"), ("/v2/models/churn/versions/v2/ready", "v2")],
)
def test_model_ready(gateway: httpx.Client, path: str, version: str) -> None:
    r = gateway.get(path)
    assert r.status_code == 200
    assert r.headers["x-model-version"] == version
    assert r.json() == {"name": "churn", "ready": True}


def test_repository_index(gateway: httpx.Client) -> None:
    for r in (gateway.get("/v2/repository/index"), gateway.post("/v2/repository/index")):
        assert r.status_code == 200
        index = {(m["name"], m["version"]): m["state"] for m in r.json()}
        assert index == {
            ("churn", "v1"): "READY",
            ("churn", "v2"): "READY",
            ("ltv", "v1"): "READY",
            ("echo", "v1"): "READY",
            ("failing", "v1"): "READY",
            ("label", "v1"): "READY",
            ("pickled", "joblib-as-pkl"): "READY",
            ("pickled", "plain"): "READY",
            ("pickled", "labels"): "READY",
        }


# --------------------------------------------------------------------------- v2 infer


def test_infer_routed_by_rules(gateway: httpx.Client) -> None:
    r = gateway.post("/v2/models/churn/infer", json=infer_body())
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    doc = r.json()
    assert_spec(doc, "inference_response")
    # the only rule routes everything to v2
    assert r.headers["x-model-version"] == doc["model_version"] == "v2"
    assert doc["model_name"] == "churn"
    assert [o["name"] for o in doc["outputs"]] == ["predict"]
    out = doc["outputs"][0]
    assert (out["datatype"], out["shape"]) == ("INT64", [3])
    assert out["data"] == sklearn_model("churn", "v2").predict(ROWS).tolist()


@pytest.mark.parametrize("version", ["v1", "v2"])
def test_pinned_version_reaches_exactly_that_version(gateway: httpx.Client, version: str) -> None:
    r = gateway.post(
        f"/v2/models/churn/versions/{version}/infer",
        json=infer_body(outputs=[{"name": "predict"}, {"name": "predict_proba"}]),
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert_spec(doc, "inference_response")
    assert r.headers["x-model-version"] == doc["model_version"] == version
    got = outputs_of(doc)
    model = sklearn_model("churn", version)
    assert got["predict"].tolist() == model.predict(ROWS).tolist()
    np.testing.assert_allclose(got["predict_proba"], model.predict_proba(ROWS), rtol=1e-12)
    other = sklearn_model("churn", "v2" if version == "v1" else "v1")
    assert not np.allclose(got["predict_proba"], other.predict_proba(ROWS), atol=1e-3)


def test_requested_output_only(gateway: httpx.Client) -> None:
    r = gateway.post(
        "/v2/models/churn/versions/v1/infer",
        json=infer_body(outputs=[{"name": "predict_proba"}]),
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert [(o["name"], o["datatype"], o["shape"]) for o in doc["outputs"]] == [
        ("predict_proba", "FP64", [3, 2])
    ]
    np.testing.assert_allclose(
        outputs_of(doc)["predict_proba"],
        sklearn_model("churn", "v1").predict_proba(ROWS),
        rtol=1e-12,
    )


def test_regression_model(gateway: httpx.Client) -> None:
    x = np.array([[24, 70.0, 2, 40, 0.1, 1], [6, 30.0, 1, 25, 0.0, 0]])
    r = gateway.post("/v2/models/ltv/infer", json=infer_body(x))
    assert r.status_code == 200, r.text
    got = outputs_of(r.json())["predict"]
    np.testing.assert_allclose(got, sklearn_model("ltv", "v1").predict(x), rtol=1e-12)


def test_one_row_as_a_vector(gateway: httpx.Client) -> None:
    r = gateway.post("/v2/models/churn/versions/v1/infer", json=infer_body(ROWS[0]))
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == sklearn_model("churn", "v1").predict(ROWS[:1]).tolist()


def test_request_id_echoed(gateway: httpx.Client) -> None:
    r = gateway.post("/v2/models/churn/infer", json=infer_body(id="my-request-42"))
    assert r.status_code == 200
    assert r.json()["id"] == "my-request-42"
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


def test_x_request_id_generated(gateway: httpx.Client) -> None:
    first = gateway.post("/v2/models/churn/infer", json=infer_body())
    second = gateway.post("/v2/models/churn/infer", json=infer_body())
    ids = [first.headers["x-request-id"], second.headers["x-request-id"]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert ids[0] != ids[1]
    # without an id in the body, the response's id is the request id
    assert first.json()["id"] == ids[0]
    assert re.fullmatch(r"[0-9a-f]{32}", gateway.get("/v2/health/live").headers["x-request-id"])


def test_x_request_id_echoed(gateway: httpx.Client) -> None:
    r = gateway.post(
        "/v2/models/churn/infer", json=infer_body(), headers={"x-request-id": "trace-7f3a"}
    )
    assert r.status_code == 200
    assert r.headers["x-request-id"] == "trace-7f3a"
    assert r.json()["id"] == "trace-7f3a"
    r = gateway.get("/v2/models/nope", headers={"x-request-id": "trace-err"})
    assert r.status_code == 404
    assert r.headers["x-request-id"] == "trace-err"
    both = gateway.post(
        "/v2/models/churn/infer", json=infer_body(id="body-id"), headers={"x-request-id": "hdr"}
    )
    assert (both.headers["x-request-id"], both.json()["id"]) == ("hdr", "body-id")


def test_parameters_accepted(gateway: httpx.Client) -> None:
    r = gateway.post(
        "/v2/models/churn/infer",
        json=infer_body(parameters={"priority": 1, "segment": "beta", "tags": ["a"]}),
    )
    assert r.status_code == 200, r.text
    assert r.json()["model_version"] == "v2"


def test_custom_model_gets_its_parameters(gateway: httpx.Client) -> None:
    body = {
        "inputs": [{"name": "x", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]}],
        "outputs": [{"name": "total"}, {"name": "echo"}],
    }
    r = gateway.post("/v2/models/echo/infer", json=body)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["outputs"] == [
        {"name": "total", "datatype": "FP64", "shape": [2], "data": [6.0, 14.0]},  # scale: 2
        {"name": "echo", "datatype": "INT32", "shape": [2, 2], "data": [1, 2, 3, 4]},
    ]


def test_custom_model_with_a_string_output_name(gateway: httpx.Client) -> None:
    meta = gateway.get("/v2/models/label").json()
    assert [o["name"] for o in meta["outputs"]] == ["label"]
    body = {"inputs": [{"name": "x", "datatype": "INT64", "shape": [2, 2], "data": [1, 2, 9, 9]}]}
    r = gateway.post("/v2/models/label/infer", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"] == [
        {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["low", "high"]}
    ]
    r = gateway.post("/v1/models/label:predict", json={"instances": [[1, 2], [9, 9]]})
    assert r.json() == {"predictions": ["low", "high"]}


def _binary_response(r: httpx.Response) -> tuple[dict[str, Any], dict[str, bytes]]:
    assert r.headers["content-type"] == "application/octet-stream"
    n = int(r.headers["inference-header-content-length"])
    doc = orjson.loads(r.content[:n])
    chunks = {}
    pos = n
    for o in doc["outputs"]:
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            chunks[o["name"]] = r.content[pos : pos + size]
            pos += size
    assert pos == len(r.content)
    return doc, chunks


def test_binary_data_output_parameter(gateway: httpx.Client) -> None:
    r = gateway.post(
        "/v2/models/churn/versions/v1/infer",
        json=infer_body(parameters={"binary_data_output": True}),
    )
    assert r.status_code == 200, r.text
    doc, chunks = _binary_response(r)
    assert doc["outputs"] == [
        {
            "name": "predict",
            "datatype": "INT64",
            "shape": [3],
            "parameters": {"binary_data_size": 24},
        }
    ]
    expected = sklearn_model("churn", "v1").predict(ROWS)
    assert np.frombuffer(chunks["predict"], "<i8").tolist() == expected.tolist()


def test_per_output_binary_data(gateway: httpx.Client) -> None:
    r = gateway.post(
        "/v2/models/churn/versions/v1/infer",
        json=infer_body(
            outputs=[
                {"name": "predict", "parameters": {"binary_data": False}},
                {"name": "predict_proba", "parameters": {"binary_data": True}},
            ]
        ),
    )
    assert r.status_code == 200, r.text
    doc, chunks = _binary_response(r)
    model = sklearn_model("churn", "v1")
    assert doc["outputs"][0]["data"] == model.predict(ROWS).tolist()
    proba = np.frombuffer(chunks["predict_proba"], "<f8").reshape(3, 2)
    np.testing.assert_array_equal(proba, model.predict_proba(ROWS))


def test_binary_request_over_http(gateway: httpx.Client) -> None:
    raw = ROWS.astype("<f8").tobytes()
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "input-0",
                    "datatype": "FP64",
                    "shape": [3, 10],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    )
    r = gateway.post(
        "/v2/models/churn/versions/v2/infer",
        content=head + raw,
        headers={
            "inference-header-content-length": str(len(head)),
            "content-type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == sklearn_model("churn", "v2").predict(ROWS).tolist()


def test_binary_bytes_input_to_custom_model(gateway: httpx.Client) -> None:
    items = [b"abc", b"", b"\x00\xff"]
    raw = b"".join(struct.pack("<I", len(b)) + b for b in items)
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "s",
                    "datatype": "BYTES",
                    "shape": [3],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "echo", "parameters": {"binary_data": True}}],
        }
    )
    r = gateway.post(
        "/v2/models/echo/infer",
        content=head + raw,
        headers={"inference-header-content-length": str(len(head))},
    )
    assert r.status_code == 200, r.text
    doc, chunks = _binary_response(r)
    assert (doc["outputs"][0]["datatype"], doc["outputs"][0]["shape"]) == ("BYTES", [3])
    assert chunks["echo"] == raw


@pytest.mark.parametrize("version", ["joblib-as-pkl", "plain"])
def test_pickle_files(gateway: httpx.Client, version: str) -> None:
    r = gateway.post(f"/v2/models/pickled/versions/{version}/infer", json=infer_body())
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == sklearn_model("churn", "v1").predict(ROWS).tolist()


def test_string_labels_are_bytes(gateway: httpx.Client, extra_models: Path) -> None:
    meta = gateway.get("/v2/models/pickled/versions/labels").json()
    assert meta["outputs"][0] == {"name": "predict", "datatype": "BYTES", "shape": [-1]}
    expected = joblib.load(extra_models / "labels" / "model.joblib").predict(ROWS)
    r = gateway.post("/v2/models/pickled/versions/labels/infer", json=infer_body())
    assert r.status_code == 200, r.text
    out = r.json()["outputs"][0]
    assert (out["datatype"], out["shape"]) == ("BYTES", [3])
    assert out["data"] == expected.tolist()
    assert set(out["data"]) <= {"churn", "stay"}
    r = gateway.post(
        "/v2/models/pickled/versions/labels/infer",
        json=infer_body(parameters={"binary_data_output": True}),
    )
    _, chunks = _binary_response(r)
    assert deserialize_bytes_tensor(chunks["predict"]).tolist() == [s.encode() for s in expected]


def test_empty_batch_is_a_client_error(gateway: httpx.Client) -> None:
    r = gateway.post("/v2/models/churn/infer", json=infer_body(np.zeros((0, 10))))
    assert_error(r, 400, "no rows")


# --------------------------------------------------------------------------- compression


@pytest.mark.parametrize(
    ("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)]
)
def test_compressed_request_body(gateway: httpx.Client, encoding: str, compress: Any) -> None:
    r = gateway.post(
        "/v2/models/churn/versions/v1/infer",
        content=compress(orjson.dumps(infer_body())),
        headers={"content-encoding": encoding, "content-type": "application/json"},
    )
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == sklearn_model("churn", "v1").predict(ROWS).tolist()


def test_compressed_body_over_the_limit_once_inflated(gateway: httpx.Client) -> None:
    bomb = gzip.compress(b" " * (LIMIT * 20))
    assert len(bomb) < LIMIT
    r = gateway.post("/v2/models/churn/infer", content=bomb, headers={"content-encoding": "gzip"})
    assert_error(r, 413, f"exceeds the limit of {LIMIT} bytes once decompressed")


@pytest.mark.parametrize(
    ("encoding", "body", "fragment"),
    [
        ("br", b"{}", "Content-Encoding 'br' is not supported"),
        ("gzip", b"not gzip at all", "gzip request body is corrupt"),
        ("gzip", gzip.compress(b'{"inputs": []}')[:-12], "gzip request body is truncated"),
    ],
)
def test_bad_compressed_body(
    gateway: httpx.Client, encoding: str, body: bytes, fragment: str
) -> None:
    r = gateway.post("/v2/models/churn/infer", content=body, headers={"content-encoding": encoding})
    assert_error(r, 400, fragment)


# --------------------------------------------------------------------------- KServe v1


def test_v1_predict(gateway: httpx.Client) -> None:
    r = gateway.post(
        "/v1/models/churn:predict",
        json={"instances": ROWS.tolist()},
        headers={"x-request-id": "v1-call"},
    )
    assert r.status_code == 200, r.text
    assert r.headers["x-model-version"] == "v2"
    assert r.headers["x-request-id"] == "v1-call"
    assert r.json() == {"predictions": sklearn_model("churn", "v2").predict(ROWS).tolist()}


def test_v1_predict_regression(gateway: httpx.Client) -> None:
    x = [[24, 70.0, 2, 40, 0.1, 1]]
    r = gateway.post("/v1/models/ltv:predict", json={"instances": x})
    assert r.status_code == 200, r.text
    expected = sklearn_model("ltv", "v1").predict(np.array(x))
    np.testing.assert_allclose(r.json()["predictions"], expected, rtol=1e-12)


def test_v1_model_and_list(gateway: httpx.Client) -> None:
    r = gateway.get("/v1/models/churn")
    assert r.status_code == 200
    assert r.json() == {"name": "churn", "ready": True}
    assert r.headers["x-model-version"] == "v1"
    models = gateway.get("/v1/models").json()["models"]
    assert sorted(models) == ["churn", "echo", "failing", "label", "ltv", "pickled"]


@pytest.mark.parametrize(
    ("path", "body", "status", "fragments"),
    [
        ("/v1/models/churn:predict", b"{oops", 400, ["malformed JSON body"]),
        ("/v1/models/churn:predict", b'{"instances": []}', 400, ["non-empty list"]),
        ("/v1/models/churn:predict", b'{"instances": [[1, 2], [3]]}', 400, ["ragged"]),
        ("/v1/models/churn:predict", b'{"instances": [[1, 2]]}', 400, ["expects 10 features"]),
        ("/v1/models/nope:predict", b'{"instances": [[1]]}', 404, ["model 'nope' not found"]),
    ],
)
def test_v1_bad_requests(
    gateway: httpx.Client, path: str, body: bytes, status: int, fragments: list[str]
) -> None:
    assert_error(gateway.post(path, content=body), status, *fragments)


# --------------------------------------------------------------------------- bad input


def _with_input(**changes: Any) -> dict[str, Any]:
    body = infer_body()
    body["inputs"][0].update(changes)
    return body


@pytest.mark.parametrize(
    ("body", "fragments"),
    [
        (_with_input(datatype="FLOAT64"), ["input 'input-0'", "unknown datatype 'FLOAT64'"]),
        (_with_input(datatype="INT32"), ["input 'input-0'", "INT32 needs integer values"]),
        (_with_input(shape=[3, 11]), ["input 'input-0'", "30 elements but shape needs 33"]),
        (_with_input(shape=[2, 10]), ["30 elements but shape needs 20"]),
        (_with_input(data=[["a"] * 10] * 3), ["FP64 needs numbers"]),
        (_with_input(data=[[1.0] * 10, [1.0] * 9, [1.0] * 11]), ["ragged"]),
        (_with_input(shape=[3, 9], data=ROWS[:, :9].tolist()), ["expects 10 features"]),
        (
            _with_input(datatype="BYTES", data=[["a"] * 10] * 3),
            ["takes numeric inputs, not BYTES"],
        ),
        (
            infer_body(outputs=[{"name": "predict_log_proba"}]),
            ["unknown output 'predict_log_proba'"],
        ),
        (infer_body(id=7), ["'id' must be a string"]),
        (infer_body(parameters=[1]), ["'parameters' must be an object"]),
        ({"inputs": []}, ["'inputs' must be a non-empty list"]),
        ({"instances": ROWS.tolist()}, ["'inputs' must be a non-empty list"]),
    ],
)
def test_bad_v2_request(gateway: httpx.Client, body: dict[str, Any], fragments: list[str]) -> None:
    assert_error(gateway.post("/v2/models/churn/infer", json=body), 400, *fragments)


def test_unknown_output_names_the_outputs(gateway: httpx.Client) -> None:
    r = gateway.post(
        "/v2/models/churn/versions/v1/infer", json=infer_body(outputs=[{"name": "score"}])
    )
    assert_error(r, 400, "unknown output 'score'", "version 'v1'", "predict, predict_proba")


@pytest.mark.parametrize("body", [b"{not json", b"", b'{"inputs": [', b"\xff\xfe\x00"])
def test_malformed_json(gateway: httpx.Client, body: bytes) -> None:
    r = gateway.post(
        "/v2/models/churn/infer", content=body, headers={"content-type": "application/json"}
    )
    assert_error(r, 400, "malformed JSON body")


def test_unknown_model_and_version(gateway: httpx.Client) -> None:
    assert_error(
        gateway.post("/v2/models/nope/infer", json=infer_body()), 404, "model 'nope' not found"
    )
    assert_error(
        gateway.post("/v2/models/churn/versions/v9/infer", json=infer_body()),
        404,
        "version 'v9' of model 'churn' not found",
    )
    assert_error(
        gateway.post("/v2/models/nope/versions/v1/infer", json=infer_body()),
        404,
        "model 'nope' not found",
    )


def test_body_over_the_limit(gateway: httpx.Client) -> None:
    big = np.zeros((LIMIT // 20, 10))
    content = orjson.dumps(infer_body(big))
    assert len(content) > LIMIT
    r = gateway.post("/v2/models/churn/infer", content=content)
    assert_error(r, 413, f"request body of {len(content)} bytes exceeds the limit of {LIMIT}")
    assert gateway.get("/v2/health/live").status_code == 200


def test_body_of_exactly_the_limit(gateway: httpx.Client) -> None:
    content = orjson.dumps(infer_body())
    content += b" " * (LIMIT - len(content))
    r = gateway.post("/v2/models/churn/versions/v1/infer", content=content)
    assert r.status_code == 200, r.text
    assert_error(gateway.post("/v2/models/churn/infer", content=content + b" "), 413, "exceeds")


def test_chunked_body_over_the_limit(gateway: httpx.Client) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(40):
            yield b" " * 4096

    r = gateway.post("/v2/models/churn/infer", content=chunks())
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in r.request.headers
    assert_error(r, 413, f"request body exceeds the limit of {LIMIT} bytes")


def test_chunked_body_within_the_limit(gateway: httpx.Client) -> None:
    payload = orjson.dumps(infer_body())

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(payload), 100):
            yield payload[i : i + 100]

    r = gateway.post("/v2/models/churn/versions/v1/infer", content=chunks())
    assert r.request.headers.get("transfer-encoding") == "chunked"
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == sklearn_model("churn", "v1").predict(ROWS).tolist()


def test_unknown_endpoint_and_method(gateway: httpx.Client) -> None:
    assert_error(gateway.get("/v2/nothing/here"), 404, "no such endpoint: GET /v2/nothing/here")
    assert_error(
        gateway.get("/v2/models/churn/infer"),
        405,
        "method GET not allowed on /v2/models/churn/infer",
    )


# --------------------------------------------------------------------------- failures


def test_model_that_raises_gives_500_and_the_server_keeps_serving(gateway: httpx.Client) -> None:
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "data": [1.0]}]}
    r = gateway.post("/v2/models/failing/infer", json=body)
    message = assert_error(r, 500, FAILURE_MESSAGE, "model 'failing' version 'v1' failed")
    assert "RuntimeError" in message
    r = gateway.post("/v1/models/failing:predict", json={"instances": [1.0]})
    assert_error(r, 500, FAILURE_MESSAGE)
    # still ready (it loaded), and everything else still answers
    assert gateway.get("/v2/models/failing/ready").json() == {"name": "failing", "ready": True}
    ok = gateway.post("/v2/models/churn/versions/v1/infer", json=infer_body())
    assert ok.status_code == 200
    assert gateway.get("/v2/health/ready").status_code == 200


def test_version_that_failed_to_load(degraded: httpx.Client) -> None:
    r = degraded.get("/v2/models/broken/versions/v2/ready")
    assert r.status_code == 503
    assert r.headers["x-model-version"] == "v2"
    doc = r.json()
    assert (doc["name"], doc["ready"]) == ("broken", False)
    # anonymous callers get the short reason; the admin token shows the path (test_hostile)
    assert "load failed; see the server log" in doc["error"]
    assert "no/such/dir" not in doc["error"]
    # the other version of the same model, and other models, serve
    assert degraded.get("/v2/models/broken/versions/v1/ready").json() == {
        "name": "broken",
        "ready": True,
    }
    assert degraded.get("/v2/models/churn/ready").status_code == 200
    r = degraded.post("/v2/models/churn/infer", json=infer_body())
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == sklearn_model("churn", "v1").predict(ROWS).tolist()
    r = degraded.post("/v2/models/broken/versions/v1/infer", json=infer_body())
    assert r.status_code == 200, r.text


def test_inference_on_a_failed_version(degraded: httpx.Client) -> None:
    r = degraded.post("/v2/models/broken/versions/v2/infer", json=infer_body())
    message = assert_error(
        r,
        503,
        "model 'broken' version 'v2' is not ready (FAILED)",
        "load failed; see the server log",
    )
    assert "does not exist" not in message
    r = degraded.get("/v2/models/broken/versions/v2")
    assert_error(r, 503, "is not ready")


def test_server_ready_while_only_an_unrouted_version_failed(degraded: httpx.Client) -> None:
    # broken/v2 answers no request (no rule routes to it): the gateway stays ready, and the
    # failure shows in the model's readiness and the repository index (tests/integration/
    # test_readiness.py covers routed, fallback and mirror-only versions)
    r = degraded.get("/v2/health/ready")
    assert (r.status_code, r.json()) == (200, {"ready": True})
    assert degraded.get("/v2/health/live").json() == {"live": True}
    index = {(m["name"], m["version"]): m for m in degraded.get("/v2/repository/index").json()}
    assert index["broken", "v2"]["state"] == "FAILED"
    assert index["broken", "v2"]["reason"] == "load failed; see the server log"
    assert index["broken", "v1"]["state"] == "READY"
