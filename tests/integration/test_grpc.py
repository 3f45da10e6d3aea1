"""The gRPC endpoint (``server.grpc``) of a real gateway, with modelrouter's own messages.

Routing, pinning, stickiness, raw and typed contents, trailing metadata, the repository calls
and one case per error class end to end. Peers' clients: test_grpc_peers.py.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import joblib
import numpy as np
import pytest

from fixtures.models import FAILURE_MESSAGE
from grpc_support import Client, client, infer_request
from modelrouter import __version__
from modelrouter.app import create_app
from modelrouter.protocol.pb import messages
from processes import serving, spawned_children
from support import EXAMPLE_MODELS, free_port, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

CONFIG = """\
server:
  name: grpc-gateway
  store: memory://
  watchConfig: false
  grpc: {{port: {port}, maxMessageSize: 64KiB}}
models:
  churn:
    versions:
      v1: {{storageUri: ./churn/v1, modelFormat: sklearn}}
      v2: {{storageUri: ./churn/v2, modelFormat: sklearn}}
    http:
      - name: eu
        match: [{{headers: {{x-region: {{exact: eu}}}}}}]
        route: [{{destination: v2}}]
      - name: beta
        match: [{{body: {{parameters.segment: {{exact: beta}}}}}}]
        route: [{{destination: v2}}]
      - name: default
        route: [{{destination: v1, weight: 50}}, {{destination: v2, weight: 50}}]
        sticky: {{header: x-user-id}}
  echo:
    versions:
      v1: {{modelFormat: custom, implementation: "fixtures.models:EchoModel"}}
  failing:
    versions:
      v1: {{modelFormat: custom, implementation: "fixtures.models:FailingModel"}}
  slow:
    versions:
      v1:
        modelFormat: custom
        implementation: "fixtures.routing_models:SlowModel"
        executor: thread
        parameters: {{delay: 0.5}}
    http:
      - name: hurry
        route: [{{destination: v1}}]
        timeout: 50ms
  faulty:
    versions:
      v1: {{modelFormat: custom, implementation: "fixtures.models:EchoModel"}}
    http:
      - name: abort
        route: [{{destination: v1}}]
        fault: {{abort: {{httpStatus: 503}}}}
"""

X = np.random.default_rng(7).normal(loc=2.0, scale=3.0, size=(3, 10))


def sklearn_model(version: str) -> Any:
    return joblib.load(EXAMPLE_MODELS / "churn" / version / "model.joblib")


@pytest.fixture(scope="module")
def gw() -> Iterator[Client]:
    port = free_port()
    app = create_app(loaded_from_yaml(CONFIG.format(port=port), EXAMPLE_MODELS))
    with running_server(app), client(f"127.0.0.1:{port}") as c:
        yield c


def churn(version: str = "", **fields: Any) -> Any:
    return infer_request("churn", {"input-0": X.tolist()}, version, **fields)


def predict(resp: Any) -> np.ndarray:
    out = {o.name: o for o in resp.outputs}["predict"]
    return np.array(out.contents.int64_contents).reshape(list(out.shape))


def test_health_and_server_metadata(gw: Client) -> None:
    assert gw.call("ServerLive")[0].live is True
    assert gw.call("ServerReady")[0].ready is True
    meta, _ = gw.call("ServerMetadata")
    assert (meta.name, meta.version) == ("grpc-gateway", __version__)
    assert "model_repository" in meta.extensions
    m = messages()
    assert gw.call("ModelReady", m.ModelReadyRequest(name="churn"))[0].ready is True
    assert gw.call("ModelReady", m.ModelReadyRequest(name="churn", version="v9"))[0].ready is False
    assert gw.call("ModelReady", m.ModelReadyRequest(name="nope"))[0].ready is False


@pytest.mark.parametrize(("version", "served"), [("", "v1"), ("v2", "v2")])
def test_model_metadata(gw: Client, version: str, served: str) -> None:
    meta, trailing = gw.call(
        "ModelMetadata", messages().ModelMetadataRequest(name="churn", version=version)
    )
    assert trailing["x-model-version"] == served
    assert (meta.name, list(meta.versions), meta.platform) == ("churn", ["v1", "v2"], "sklearn")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [
        ("input-0", "FP64", [-1, 10])
    ]
    assert [t.name for t in meta.outputs] == ["predict", "predict_proba"]


def test_pinned_version_answers_and_says_so(gw: Client) -> None:
    resp, trailing = gw.call("ModelInfer", churn("v2", id="req-7"))
    assert (resp.model_name, resp.model_version, resp.id) == ("churn", "v2", "req-7")
    assert trailing["x-model-version"] == "v2"
    assert len(trailing["x-request-id"]) == 32
    np.testing.assert_array_equal(predict(resp), sklearn_model("v2").predict(X))


def test_request_id_from_metadata(gw: Client) -> None:
    resp, trailing = gw.call("ModelInfer", churn("v1"), [("x-request-id", "abc-123")])
    assert trailing["x-request-id"] == "abc-123"
    assert resp.id == "abc-123"


def test_header_rule_reads_metadata(gw: Client) -> None:
    for _ in range(5):
        resp, trailing = gw.call("ModelInfer", churn(), [("x-region", "eu")])
        assert resp.model_version == trailing["x-model-version"] == "v2"


def test_body_rule_reads_parameters(gw: Client) -> None:
    req = churn()
    req.parameters["segment"].string_param = "beta"
    for _ in range(5):
        assert gw.call("ModelInfer", req, [("x-user-id", "u-1")])[0].model_version == "v2"


def test_sticky_by_metadata(gw: Client) -> None:
    seen: dict[str, set[str]] = {}
    for user in [f"user-{i}" for i in range(12)]:
        for _ in range(3):
            resp, _ = gw.call("ModelInfer", churn(), [("x-user-id", user)])
            seen.setdefault(user, set()).add(resp.model_version)
    assert all(len(v) == 1 for v in seen.values()), seen
    assert {next(iter(v)) for v in seen.values()} == {"v1", "v2"}


def test_raw_contents_in_raw_contents_out(gw: Client) -> None:
    m = messages()
    req = m.ModelInferRequest(model_name="churn", model_version="v1")
    req.inputs.add(name="input-0", datatype="FP32", shape=[3, 10])
    req.raw_input_contents.append(X.astype("<f4").tobytes())
    req.outputs.add(name="predict_proba")
    resp, _ = gw.call("ModelInfer", req)
    (out,) = resp.outputs
    assert (out.name, out.datatype, list(out.shape)) == ("predict_proba", "FP64", [3, 2])
    assert not out.HasField("contents")
    got = np.frombuffer(resp.raw_output_contents[0], "<f8").reshape(3, 2)
    np.testing.assert_allclose(
        got, sklearn_model("v1").predict_proba(X.astype(np.float32)), rtol=1e-6
    )


@pytest.mark.parametrize(
    ("datatype", "field", "values"),
    [
        ("INT8", "int_contents", [-128, 0, 127]),
        ("UINT16", "uint_contents", [0, 1, 65535]),
        ("INT64", "int64_contents", [-(2**63), 0, 2**63 - 1]),
        ("UINT64", "uint64_contents", [0, 1, 2**64 - 1]),
        ("BOOL", "bool_contents", [True, False, True]),
        ("FP32", "fp32_contents", [0.5, -1.25, 3.0]),
        ("BYTES", "bytes_contents", [b"h\xc3\xa9", b"", b"\x00\xff"]),
    ],
)
def test_typed_contents_round_trip(
    gw: Client, datatype: str, field: str, values: list[Any]
) -> None:
    m = messages()
    req = m.ModelInferRequest(model_name="echo")
    t = req.inputs.add(name="x", datatype=datatype, shape=[3, 1])
    getattr(t.contents, field).extend(values)
    req.outputs.add(name="echo")
    resp, _ = gw.call("ModelInfer", req)
    (out,) = resp.outputs
    assert (out.datatype, list(out.shape)) == (datatype, [3, 1])
    assert list(getattr(out.contents, field)) == values


def test_fp16_needs_raw_and_answers_raw(gw: Client) -> None:
    m = messages()
    data = np.array([[1.5], [-2.0]], dtype="<f2")
    req = m.ModelInferRequest(
        model_name="echo", outputs=[m.ModelInferRequest.InferRequestedOutputTensor(name="echo")]
    )
    req.inputs.add(name="x", datatype="FP16", shape=[2, 1])
    req.raw_input_contents.append(data.tobytes())
    resp, _ = gw.call("ModelInfer", req)
    assert np.frombuffer(resp.raw_output_contents[0], "<f2").tolist() == [1.5, -2.0]


# ------------------------------------------------------------------------- errors


def _bad(**changes: Any) -> Any:
    m = messages()
    req = m.ModelInferRequest(model_name="echo")
    t = req.inputs.add(
        name="x", datatype=changes.get("datatype", "FP64"), shape=changes.get("shape", [2])
    )
    if "raw" in changes:
        req.raw_input_contents.extend(changes["raw"])
    else:
        getattr(t.contents, changes.get("field", "fp64_contents")).extend(
            changes.get("values", [1.0, 2.0])
        )
    return req


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (
            _bad(values=[1.0]),
            "input 'x': contents.fp64_contents has 1 elements but shape [2] needs 2",
        ),
        (_bad(datatype="FP8"), "input 'x': unknown datatype 'FP8'"),
        (
            _bad(field="int64_contents", values=[1, 2]),
            "input 'x': datatype FP64 takes contents.fp64_contents, got contents.int64_contents",
        ),
        (
            _bad(datatype="INT8", field="int_contents", values=[1, 300]),
            "input 'x': a value is out of range for INT8 [-128, 127]",
        ),
        (
            _bad(raw=[b"\x00" * 15]),
            "input 'x': raw contents is 15 bytes but shape and FP64 need 16",
        ),
        (_bad(raw=[b"\x00" * 16, b""]), "raw_input_contents has 2 entries but there are 1 inputs"),
        (messages().ModelInferRequest(model_name="echo"), "'inputs' must be a non-empty list"),
        (messages().ModelInferRequest(), "the model name is empty"),
    ],
    ids=["count", "datatype", "field", "range", "raw-size", "raw-count", "no-inputs", "no-model"],
)
def test_invalid_input_is_invalid_argument(gw: Client, request_: Any, message: str) -> None:
    err = gw.error("ModelInfer", request_)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.details()


def test_unknown_output_is_invalid_argument(gw: Client) -> None:
    req = churn("v1")
    req.outputs.add(name="score")
    err = gw.error("ModelInfer", req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == (
        "unknown output 'score' for model 'churn' version 'v1' (outputs: predict, predict_proba)"
    )


@pytest.mark.parametrize(
    ("model", "version", "message"),
    [
        ("nope", "", "model 'nope' not found"),
        ("churn", "v9", "version 'v9' of model 'churn' not found"),
    ],
)
def test_not_found(gw: Client, model: str, version: str, message: str) -> None:
    req = infer_request(model, {"input-0": X.tolist()}, version)
    err = gw.error("ModelInfer", req)
    assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, message)
    err = gw.error("ModelMetadata", messages().ModelMetadataRequest(name=model, version=version))
    assert (err.code(), err.details()) == (grpc.StatusCode.NOT_FOUND, message)


def test_model_failure_is_internal_with_its_message(gw: Client) -> None:
    err = gw.error("ModelInfer", infer_request("failing", {"x": [[1.0]]}))
    assert err.code() == grpc.StatusCode.INTERNAL
    assert FAILURE_MESSAGE in err.details()
    assert gw.call("ServerLive")[0].live


def test_rule_timeout_is_deadline_exceeded(gw: Client) -> None:
    err = gw.error("ModelInfer", infer_request("slow", {"x": [[1.0]]}), [("x-request-id", "t-1")])
    assert err.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "within the rule's timeout of 50ms" in err.details()
    assert dict(err.trailing_metadata())["x-request-id"] == "t-1"


def test_fault_is_unavailable(gw: Client) -> None:
    err = gw.error("ModelInfer", infer_request("faulty", {"x": [[1.0]]}))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "fault injected by rule 'abort'" in err.details()


def test_oversized_message_is_resource_exhausted(gw: Client) -> None:
    req = infer_request("echo", {"x": [[0.5] * 10_000]})  # 80 kB > maxMessageSize 64 KiB
    err = gw.error("ModelInfer", req)
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


# ------------------------------------------------------------------------- repository


def test_repository_index_and_unload_load(gw: Client) -> None:
    m = messages()
    index, _ = gw.call("RepositoryIndex", m.RepositoryIndexRequest())
    assert ("churn", "v2", "READY") in {(x.name, x.version, x.state) for x in index.models}
    gw.call("RepositoryModelUnload", m.RepositoryModelUnloadRequest(model_name="echo"))
    ready, _ = gw.call("RepositoryIndex", m.RepositoryIndexRequest(ready=True))
    assert "echo" not in {x.name for x in ready.models}
    err = gw.error("ModelInfer", infer_request("echo", {"x": [[1.0]]}))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert gw.call("ModelReady", m.ModelReadyRequest(name="echo"))[0].ready is False
    gw.call("RepositoryModelLoad", m.RepositoryModelLoadRequest(model_name="echo"))
    assert gw.call("ModelReady", m.ModelReadyRequest(name="echo"))[0].ready is True
    gw.call("ModelInfer", infer_request("echo", {"x": [[1.0]]}))


def test_repository_refuses_files_and_unknown_models(gw: Client) -> None:
    m = messages()
    req = m.RepositoryModelLoadRequest(model_name="echo")
    req.parameters["file:1/model.py"].bytes_param = b"import os"
    err = gw.error("RepositoryModelLoad", req)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "file:1/model.py are not accepted" in err.details()
    err = gw.error("RepositoryModelLoad", m.RepositoryModelLoadRequest(model_name="nope"))
    assert err.code() == grpc.StatusCode.NOT_FOUND


def test_repository_needs_the_token_when_one_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELROUTER_ADMIN_TOKEN", "s3cret")
    port = free_port()
    app = create_app(loaded_from_yaml(CONFIG.format(port=port), EXAMPLE_MODELS))
    m = messages()
    with running_server(app), client(f"127.0.0.1:{port}") as c:
        req = m.RepositoryModelUnloadRequest(model_name="echo")
        err = c.error("RepositoryModelUnload", req, [("authorization", "Bearer nope")])
        assert err.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "needs the admin token" in err.details()
        c.call("RepositoryModelUnload", req, [("authorization", "Bearer s3cret")])
        assert c.call("ModelReady", m.ModelReadyRequest(name="echo"))[0].ready is False
        # the data plane stays open
        c.call("ModelInfer", churn("v1"))


def test_port_in_use_fails_the_start() -> None:
    port = free_port()
    app = create_app(loaded_from_yaml(CONFIG.format(port=port), EXAMPLE_MODELS))
    with running_server(app):
        again = create_app(loaded_from_yaml(CONFIG.format(port=port), EXAMPLE_MODELS))
        with pytest.raises(RuntimeError), running_server(again):
            pass


# ------------------------------------------------------------------------- hostile inputs


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        (_bad(shape=[0, 2**62], values=[]), "input 'x': shape [0, 4611686018427387904] describes"),
        (_bad(shape=[0, 10**12, 10**12, 10**12], values=[]), "describes more than"),
        (_bad(shape=[1] * 100, values=[1.0]), "input 'x': shape has 100 dimensions"),
        (_bad(values=[1.0, float("nan")]), "input 'x': holds NaN or infinite values"),
        (_bad(values=[float("inf"), 1.0]), "allowNonFinite"),
        (
            _bad(datatype="FP32", raw=[np.array([1.0, -np.inf], "<f4").tobytes()]),
            "input 'x': holds NaN or infinite values",
        ),
    ],
    ids=["overflow", "absurd", "dims", "nan", "inf", "raw-inf"],
)
def test_hostile_tensors_are_invalid_argument(gw: Client, request_: Any, message: str) -> None:
    err = gw.error("ModelInfer", request_)
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.details()
    resp, _ = gw.call("ModelInfer", churn("v1"))  # and the gateway still serves
    assert len(predict(resp)) == len(X)


@pytest.mark.parametrize("rid", ["r" * 129, "has space", "a/b", "semi;colon"])
def test_bad_request_id_metadata_is_invalid_argument(gw: Client, rid: str) -> None:
    err = gw.error("ModelInfer", churn("v1"), [("x-request-id", rid)])
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "x-request-id: must be 1-128 characters" in err.details()
    resp, _ = gw.call("ModelInfer", churn("v1"))
    assert len(predict(resp)) == len(X)


def test_workers_share_the_grpc_port(tmp_path: Path) -> None:
    """``serve --workers 2`` with ``server.grpc``: both workers listen on the gRPC port (as on
    the REST one) and answer over it; a lone gateway keeps the port to itself (above)."""
    grpc_port, http_port = free_port(), free_port()
    config = tmp_path / "modelrouter.yaml"
    config.write_text(
        "server:\n"
        "  store: sqlite:///./gw.db\n"
        "  watchConfig: false\n"
        "  shadow: {executor: thread}\n"
        f"  grpc: {{port: {grpc_port}}}\n"
        "models:\n  churn:\n    versions:\n"
        f"      v1: {{storageUri: {EXAMPLE_MODELS / 'churn' / 'v1'}, modelFormat: sklearn}}\n"
    )
    log = tmp_path / "serve.log"
    with serving(config, http_port, "--workers", "2", log=log) as proc:
        for _ in range(10):  # new channels: the kernel spreads them over both workers
            with client(f"127.0.0.1:{grpc_port}") as c:
                resp, _ = c.call("ModelInfer", churn("v1"))
                assert resp.model_version == "v1"
        listening = f"gRPC inference service on 127.0.0.1:{grpc_port}"
        deadline = time.monotonic() + 30  # ready on REST: one worker may still be starting
        while log.read_text().count(listening) < 2 and time.monotonic() < deadline:
            assert "cannot listen" not in log.read_text(), log.read_text()[-3000:]
            time.sleep(0.1)
        assert log.read_text().count(listening) == 2, log.read_text()[-3000:]
        assert len(spawned_children(proc.pid)) == 2
