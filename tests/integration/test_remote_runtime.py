"""A gateway whose versions proxy to other Open Inference Protocol servers.

The upstream is a real modelrouter gateway serving the example churn model; a small Starlette
app stands in for upstreams that are slow, fail, or must show what they received.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modelrouter.app import create_app
from support import ROOT, free_port, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

CHURN_V1 = ROOT / "examples" / "churn" / "models" / "churn" / "v1"
ROWS = [[12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2], [60, 45.0, 0, 0, 0, 0, 58, 4, 0, 5]]
SLOW_SECONDS = 1.5


def infer_body(rows: list[list[float]], *outputs: str, **parameters: Any) -> dict[str, Any]:
    n = len(rows[0]) if rows else 0
    body: dict[str, Any] = {
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [len(rows), n], "data": rows}]
    }
    if outputs:
        body["outputs"] = [{"name": o} for o in outputs]
    if parameters:
        body["parameters"] = parameters
    return body


def fake_upstream(received: list[dict[str, Any]]) -> Starlette:
    """``echo`` answers with its input and records each request; ``slow`` sleeps; ``broken``
    fails with a 500."""
    metadata = {
        "name": "echo",
        "platform": "fake",
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [-1, 3]}],
        "outputs": [{"name": "echo", "datatype": "FP64", "shape": [-1, 3]}],
    }

    async def meta(request: Request) -> Response:
        return JSONResponse({**metadata, "name": request.path_params["name"]})

    async def infer(request: Request) -> Response:
        name = request.path_params["name"]
        doc = orjson.loads(await request.body())
        received.append({"body": doc, "request_id": request.headers.get("x-request-id")})
        if name == "slow":
            await asyncio.sleep(SLOW_SECONDS)
        if name == "broken":
            return JSONResponse({"error": "the feature store is down"}, status_code=500)
        first = doc["inputs"][0]
        out = {"name": "echo", "datatype": first["datatype"], "shape": first["shape"]}
        return JSONResponse({"model_name": name, "outputs": [{**out, "data": first["data"]}]})

    return Starlette(
        routes=[
            Route("/v2/models/{name}", meta, methods=["GET"]),
            Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        ]
    )


@pytest.fixture(scope="module")
def example_models() -> Path:
    if not (CHURN_V1 / "model.joblib").is_file():
        subprocess.run([sys.executable, str(ROOT / "examples" / "build_models.py")], check=True)
    path: Path = CHURN_V1
    return path


@pytest.fixture(scope="module")
def upstream(example_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = f"""
server: {{store: "memory://"}}
models:
  churn:
    versions:
      v1: {{storageUri: "{example_models}", modelFormat: sklearn}}
"""
    base = tmp_path_factory.mktemp("upstream")
    with running_server(create_app(loaded_from_yaml(config, base))) as url:
        yield url


@pytest.fixture(scope="module")
def fake() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    received: list[dict[str, Any]] = []
    with running_server(fake_upstream(received)) as url:
        yield url, received


@pytest.fixture(scope="module")
def proxy(
    upstream: str,
    fake: tuple[str, list[dict[str, Any]]],
    example_models: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[str]:
    nobody = f"http://127.0.0.1:{free_port()}"
    config = f"""
server: {{store: "memory://"}}
models:
  churn:
    versions:
      remote: {{endpoint: "{upstream}", remoteName: churn, remoteVersion: v1, timeout: 5s}}
  down:
    versions:
      v1: {{endpoint: "{nobody}", timeout: 1s}}
  local:
    versions:
      v1: {{storageUri: "{example_models}", modelFormat: sklearn}}
  echo:
    versions:
      v1: {{endpoint: "{fake[0]}"}}
  slow:
    versions:
      v1: {{endpoint: "{fake[0]}", timeout: 300ms}}
  broken:
    versions:
      v1: {{endpoint: "{fake[0]}"}}
"""
    base = tmp_path_factory.mktemp("proxy")
    with running_server(create_app(loaded_from_yaml(config, base))) as url:
        yield url


def post(url: str, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(url, content=orjson.dumps(body), headers=headers, timeout=30)


def test_predictions_through_the_proxy_equal_direct_ones(upstream: str, proxy: str) -> None:
    body = infer_body(ROWS, "predict", "predict_proba")
    direct = post(f"{upstream}/v2/models/churn/versions/v1/infer", body)
    proxied = post(f"{proxy}/v2/models/churn/infer", body)
    assert direct.status_code == 200, direct.text
    assert proxied.status_code == 200, proxied.text
    assert proxied.headers["x-model-version"] == "remote"
    d, p = direct.json(), proxied.json()
    assert p["model_name"] == "churn"
    assert p["outputs"] == d["outputs"]
    assert [o["name"] for o in p["outputs"]] == ["predict", "predict_proba"]
    assert p["outputs"][1]["shape"] == [2, 2]

    default = post(f"{proxy}/v2/models/churn/infer", infer_body(ROWS)).json()
    assert [o["name"] for o in default["outputs"]] == ["predict"]
    assert default["outputs"][0]["data"] == d["outputs"][0]["data"]

    v1 = httpx.post(f"{proxy}/v1/models/churn:predict", json={"instances": ROWS}, timeout=30)
    assert v1.status_code == 200, v1.text
    assert v1.json()["predictions"] == d["outputs"][0]["data"]


def test_metadata_comes_from_the_remote_model(upstream: str, proxy: str) -> None:
    remote = httpx.get(f"{upstream}/v2/models/churn/versions/v1").json()
    meta = httpx.get(f"{proxy}/v2/models/churn/versions/remote")
    assert meta.status_code == 200, meta.text
    doc = meta.json()
    assert doc["name"] == "churn"
    assert (
        doc["inputs"]
        == remote["inputs"]
        == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 10]}]
    )
    assert doc["outputs"] == remote["outputs"]
    assert doc["platform"] == remote["platform"]


def test_unreachable_endpoint_fails_only_its_version(proxy: str) -> None:
    ready = httpx.get(f"{proxy}/v2/models/down/versions/v1/ready")
    assert ready.status_code == 503
    assert ready.json()["ready"] is False
    r = post(f"{proxy}/v2/models/down/infer", infer_body(ROWS))
    assert r.status_code == 503
    error = r.json()["error"]
    # anonymous callers get the short reason: the load error names an internal address
    assert "not ready" in error
    assert "load failed; see the server log" in error
    assert "http://" not in error

    index = {
        (m["name"], m["version"]): m for m in httpx.post(f"{proxy}/v2/repository/index").json()
    }
    assert index[("down", "v1")]["state"] == "FAILED"
    assert index[("down", "v1")]["reason"] == "load failed; see the server log"

    local = post(f"{proxy}/v2/models/local/infer", infer_body(ROWS))
    assert local.status_code == 200, local.text
    proxied = post(f"{proxy}/v2/models/churn/infer", infer_body(ROWS))
    assert local.json()["outputs"] == proxied.json()["outputs"]


def test_upstream_400_is_a_400(proxy: str) -> None:
    r = post(f"{proxy}/v2/models/churn/infer", infer_body([[1.0, 2.0, 3.0]]))
    assert r.status_code == 400
    error = r.json()["error"]
    assert error.startswith("remote 'churn': ")
    assert "10 features" in error

    unknown = post(f"{proxy}/v2/models/churn/infer", infer_body(ROWS, "nope"))
    assert unknown.status_code == 400
    assert "unknown output 'nope'" in unknown.json()["error"]


def test_upstream_500_is_a_502_with_its_message(proxy: str) -> None:
    r = post(f"{proxy}/v2/models/broken/infer", infer_body([[1.0, 2.0, 3.0]]))
    assert r.status_code == 502
    assert "500: the feature store is down" in r.json()["error"]


def test_timeout_is_a_504(proxy: str) -> None:
    r = post(f"{proxy}/v2/models/slow/infer", infer_body([[1.0, 2.0, 3.0]]))
    assert r.status_code == 504
    assert "within 0.3s" in r.json()["error"]
    assert r.elapsed.total_seconds() < SLOW_SECONDS


def test_parameters_and_request_id_are_passed_through(
    proxy: str, fake: tuple[str, list[dict[str, Any]]]
) -> None:
    received = fake[1]
    received.clear()
    body = {**infer_body([[1.5, 2.5, 3.5]], threshold=0.7, segment="eu"), "id": "req-42"}
    r = post(f"{proxy}/v2/models/echo/infer", body)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [1.5, 2.5, 3.5]
    assert r.json()["id"] == "req-42"
    assert len(received) == 1
    sent = received[0]
    assert sent["body"]["parameters"] == {"threshold": 0.7, "segment": "eu"}
    assert sent["body"]["id"] == "req-42"
    assert sent["request_id"] == "req-42"
    assert sent["body"]["inputs"][0]["shape"] == [1, 3]
