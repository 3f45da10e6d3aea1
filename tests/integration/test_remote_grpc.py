"""Remote versions over Open Inference Protocol gRPC (``protocol: grpc``) and REST, against a
real MLServer (mlserver-sklearn) and a real KServe ModelServer, each in its own virtualenv and
process, and against another modelrouter gateway.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pytest

import peers
from modelrouter.app import create_app
from support import EXAMPLE_MODELS, free_port, loaded_from_yaml, running_server

ADMIN_TOKEN = "remote-grpc-token"

pytestmark = pytest.mark.integration

SCRIPTS = Path(__file__).resolve().parents[1] / "peer_scripts"
CHURN_FILE = EXAMPLE_MODELS / "churn" / "v1" / "model.joblib"
X = np.random.default_rng(99).normal(loc=2.0, scale=3.0, size=(5, 10))


def body(*outputs: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [5, 10], "data": X.tolist()}]
    }
    if outputs:
        doc["outputs"] = [{"name": o} for o in outputs]
    return doc


def expected(output: str = "predict") -> list[Any]:
    model = joblib.load(CHURN_FILE)
    result: list[Any] = getattr(model, output)(X).tolist()
    return result


def outputs_of(response: httpx.Response) -> dict[str, list[Any]]:
    """Each output's data in its shape (JSON data is flat)."""
    assert response.status_code == 200, response.text
    return {
        o["name"]: np.reshape(o["data"], o["shape"]).tolist() for o in response.json()["outputs"]
    }


def gateway_for(versions: str) -> str:
    return f"""\
server:
  store: memory://
  watchConfig: false
models:
  churn:
    versions:
{versions}"""


# ------------------------------------------------------------------------- modelrouter upstream

UPSTREAM = """\
server:
  store: memory://
  watchConfig: false
  grpc: {{port: {port}}}
models:
  churn:
    versions:
      v1: {{storageUri: ./churn/v1, modelFormat: sklearn}}
  slow:
    versions:
      v1:
        modelFormat: custom
        implementation: "fixtures.routing_models:SlowModel"
        executor: thread
        parameters: {{delay: 1.0}}
"""


@pytest.fixture(scope="module")
def upstream() -> Iterator[int]:
    port = free_port()
    app = create_app(loaded_from_yaml(UPSTREAM.format(port=port), EXAMPLE_MODELS))
    with running_server(app):
        yield port


@pytest.fixture(scope="module")
def downstream(upstream: int) -> Iterator[httpx.Client]:
    dead = free_port()
    versions = f"""\
      raw: {{endpoint: "grpc://127.0.0.1:{upstream}", protocol: grpc}}
      typed:
        endpoint: "http://127.0.0.1:{upstream}"
        protocol: grpc
        parameters: {{rawContents: false}}
      down: {{endpoint: "grpc://127.0.0.1:{dead}", protocol: grpc}}
      slow: {{endpoint: "grpc://127.0.0.1:{upstream}", protocol: grpc, remoteName: slow,
              timeout: 200ms}}
      gone: {{endpoint: "grpc://127.0.0.1:{upstream}", protocol: grpc, remoteName: nope}}
    http:
      - name: fallback
        route: [{{destination: slow}}]
        fallback: [raw]
"""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELROUTER_ADMIN_TOKEN", ADMIN_TOKEN)  # full load errors for the admin
        app = create_app(loaded_from_yaml(gateway_for(versions), EXAMPLE_MODELS))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        yield c


@pytest.mark.parametrize("version", ["raw", "typed"])
def test_proxied_over_grpc(downstream: httpx.Client, version: str) -> None:
    r = downstream.post(f"/v2/models/churn/versions/{version}/infer", json=body())
    assert r.headers["x-model-version"] == version
    assert outputs_of(r) == {"predict": expected()}
    r = downstream.post(
        f"/v2/models/churn/versions/{version}/infer", json=body("predict_proba", "predict")
    )
    got = outputs_of(r)
    np.testing.assert_allclose(got["predict_proba"], expected("predict_proba"))
    assert got["predict"] == expected()


def test_remote_metadata_over_grpc(downstream: httpx.Client) -> None:
    meta = downstream.get("/v2/models/churn/versions/raw").json()
    assert meta["platform"] == "sklearn"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 10]}]


def test_unreachable_and_unknown_remotes_fail_their_load(downstream: httpx.Client) -> None:
    anonymous = {m["version"]: m for m in downstream.get("/v2/repository/index").json()}
    assert anonymous["down"]["reason"] == "load failed; see the server log"
    auth = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    index = {m["version"]: m for m in downstream.get("/v2/repository/index", headers=auth).json()}
    assert index["down"]["state"] == "FAILED"
    assert "(gRPC) is unavailable" in index["down"]["reason"]
    assert index["gone"]["state"] == "FAILED"
    assert "answered NOT_FOUND: model 'nope' not found" in index["gone"]["reason"]


def test_upstream_invalid_argument_is_a_400(downstream: httpx.Client) -> None:
    doc = body()
    doc["inputs"][0]["shape"] = [5, 2]
    doc["inputs"][0]["data"] = X[:, :2].tolist()
    r = downstream.post("/v2/models/churn/versions/raw/infer", json=doc)
    assert r.status_code == 400
    assert r.json()["error"] == "remote 'churn': the model expects 10 features per row, got 2"


def test_upstream_timeout_falls_back(downstream: httpx.Client) -> None:
    r = downstream.post("/v2/models/churn/infer", json=body())
    assert r.headers["x-model-version"] == "raw"
    assert outputs_of(r) == {"predict": expected()}
    r = downstream.post("/v2/models/churn/versions/slow/infer", json=body())
    assert r.status_code == 504
    assert "did not answer within 0.2s" in r.json()["error"]


# ------------------------------------------------------------------------- MLServer, KServe


@pytest.fixture(scope="module")
def mlserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    bin_dir = peers.mlserver()
    folder = tmp_path_factory.mktemp("mlserver")
    http_port, grpc_port, metrics_port = peers.free_ports(3)
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "parallel_workers": 0,
    }
    (folder / "settings.json").write_text(json.dumps(settings))
    model_dir = folder / "churn"
    model_dir.mkdir()
    model_settings = {
        "name": "churn",
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(CHURN_FILE)},
    }
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
    server = peers.ServerProcess(
        "MLServer",
        [str(bin_dir / "mlserver"), "start", str(folder)],
        folder / "server.log",
        f"http://127.0.0.1:{http_port}/v2/models/churn/ready",
        cwd=folder,
    )
    with peers.serve(server):
        yield http_port, grpc_port


@pytest.fixture(scope="module")
def kserve_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    bin_dir = peers.kserve()
    folder = tmp_path_factory.mktemp("kserve")
    http_port, grpc_port = peers.free_ports(2)
    argv = [str(bin_dir / "python"), str(SCRIPTS / "kserve_sklearn_server.py")]
    argv += ["--http_port", str(http_port), "--grpc_port", str(grpc_port)]
    server = peers.ServerProcess(
        "KServe",
        argv,
        folder / "server.log",
        f"http://127.0.0.1:{http_port}/v2/models/churn/ready",
        cwd=folder,
        env={"PEER_MODEL_FILE": str(CHURN_FILE), "PEER_MODEL_NAME": "churn"},
    )
    with peers.serve(server):
        yield http_port, grpc_port


def _both_protocols(http_port: int, grpc_port: int) -> str:
    return f"""\
      rest: {{endpoint: "http://127.0.0.1:{http_port}"}}
      grpc: {{endpoint: "grpc://127.0.0.1:{grpc_port}", protocol: grpc}}
      grpc-typed:
        endpoint: "grpc://127.0.0.1:{grpc_port}"
        protocol: grpc
        parameters: {{rawContents: false}}
"""


def _check_peer(http_port: int, grpc_port: int, outputs: tuple[str, ...]) -> None:
    config = gateway_for(_both_protocols(http_port, grpc_port))
    app = create_app(loaded_from_yaml(config, EXAMPLE_MODELS))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as c:
        index = {m["version"]: m for m in c.get("/v2/repository/index").json()}
        assert {v: m["state"] for v, m in index.items()} == dict.fromkeys(
            ("rest", "grpc", "grpc-typed"), "READY"
        ), index
        for version in ("rest", "grpc", "grpc-typed"):
            r = c.post(f"/v2/models/churn/versions/{version}/infer", json=body(*outputs))
            got = outputs_of(r)
            # MLServer answers predict as [n, 1]
            assert np.ravel(got["predict"]).astype(int).tolist() == expected(), version
            if "predict_proba" in outputs:
                np.testing.assert_allclose(got["predict_proba"], expected("predict_proba"))


def test_mlserver_over_rest_and_grpc(mlserver: tuple[int, int]) -> None:
    _check_peer(*mlserver, outputs=())


def test_kserve_over_rest_and_grpc(kserve_server: tuple[int, int]) -> None:
    _check_peer(*kserve_server, outputs=("predict", "predict_proba"))


@pytest.mark.parametrize("rid", ["line\r\nx-injected: 1", "caf\u00e9-\u4e2d", "x" * 5000])
def test_any_request_id_travels_safely_over_grpc(downstream: httpx.Client, rid: str) -> None:
    doc = {**body(), "id": rid}
    r = downstream.post("/v2/models/churn/versions/raw/infer", json=doc)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == rid
