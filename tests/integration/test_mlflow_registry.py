"""The MLflow Model Registry against a real tracking server (``mlflow server``, SQLite backend,
local artifact root, a free loopback port), started once for the module: ``models:/`` by
version and by alias, ``runs:/``, flavor selection, tags and the resolved version in metadata,
the download cache, a live alias move swapped in under load and audited, ``set_alias``, and
bad input (missing alias or version, corrupt artifact, unreachable registry) reported by the
gateway and by ``modelrouter validate``."""

from __future__ import annotations

import os

# MLflow's telemetry thread, failing to reach its server offline, deletes an environment
# variable while request threads read the environment (KeyError): off before mlflow loads.
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

import asyncio
import contextlib
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import mlflow.sklearn
import numpy as np
import pytest
from click.testing import CliRunner
from mlflow import MlflowClient
from mlflow.models import infer_signature
from sklearn.linear_model import LinearRegression

from modelrouter.app import create_app
from modelrouter.cli import main as cli_main
from modelrouter.errors import ModelLoadError, UpstreamError
from modelrouter.sources import Sources
from modelrouter.sources.mlflow import PROMOTED_TAG, MlflowRegistry
from modelrouter.store import open_store
from support import free_port, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

TOKEN = "registry-test-token"
X = np.array([[1.0], [2.0]])


@dataclass
class Registry:
    uri: str
    root: Path
    run_id: str


def start_mlflow(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    uri = f"http://127.0.0.1:{port}"
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=root,
        # ``mlflow server`` starts uvicorn and a job runner with consumers of its own: in a
        # session of their own, stop_mlflow ends them all
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            raise RuntimeError(
                f"mlflow server exited with {proc.returncode}:\n"
                + (root / "server.log").read_text()[-3000:]
            )
        try:
            if httpx.get(f"{uri}/health", timeout=1).status_code == 200:
                return proc, uri
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            stop_mlflow(proc)
            raise RuntimeError("mlflow server did not answer /health in 90s")
        time.sleep(0.2)


def stop_mlflow(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's whole process group, SIGKILL what is left after 15 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def log_model(slope: float, name: str | None) -> Any:
    """A LinearRegression y = slope * x, logged (and registered as ``name``). Pickled, not
    skops (MLflow 3's default), whose import alone takes seconds; skops models are served by
    pyfunc, which ``modelFormat: mlflow`` exercises here."""
    x = np.arange(10, dtype=np.float64).reshape(-1, 1)
    model = LinearRegression().fit(x, slope * x.ravel())
    with mlflow.start_run() as run:
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            registered_model_name=name,
            signature=infer_signature(x, model.predict(x)),
            pip_requirements=[],
            serialization_format="cloudpickle",
        )
    return run, info


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A real MLflow tracking server with: churn v1 (y=x), v2 (y=10x), champion -> 1, a tag on
    v1; ``broken`` v1 whose model file is corrupt."""
    root = tmp_path_factory.mktemp("mlflow")
    proc, uri = start_mlflow(root)
    previous = mlflow.get_tracking_uri()
    try:
        mlflow.set_tracking_uri(uri)
        run, _ = log_model(1.0, "churn")
        log_model(10.0, "churn")
        client = MlflowClient(uri, uri)
        client.set_registered_model_alias("churn", "champion", "1")
        client.set_model_version_tag("churn", "1", "team", "risk")
        _, broken = log_model(3.0, "broken")
        files = list((root / "artifacts").rglob("model.pkl"))
        corrupt = [f for f in files if broken.model_id in str(f)]
        assert corrupt, files
        corrupt[0].write_bytes(b"this is not a model")
        yield Registry(uri, root, run.info.run_id)
    finally:
        mlflow.set_tracking_uri(previous)
        stop_mlflow(proc)


def config(registry: Registry, tmp: Path) -> str:
    return f"""
server:
  store: sqlite:///{tmp / "gateway.db"}
  cacheDir: {tmp / "cache"}
  mlflow: {{trackingUri: "{registry.uri}", pollInterval: 200ms}}
  watchConfig: false
models:
  churn:
    versions:
      champ: {{storageUri: "models:/churn@champion"}}
      v2: {{storageUri: "models:/churn/2"}}
      run: {{storageUri: "runs:/{registry.run_id}/model"}}
      pyfunc2: {{storageUri: "models:/churn/2", modelFormat: mlflow}}
      nope: {{storageUri: "models:/churn@nope"}}
      v99: {{storageUri: "models:/churn/99"}}
    http:
      - name: default
        route: [{{destination: champ}}]
  broken:
    versions:
      v1: {{storageUri: "models:/broken/1"}}
"""


def infer(client: httpx.Client, path: str) -> float:
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [2, 1], "data": [1.0, 2.0]}]}
    r = client.post(path, json=body)
    assert r.status_code == 200, r.text
    return float(r.json()["outputs"][0]["data"][1])


def test_registry_end_to_end(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELROUTER_ADMIN_TOKEN", TOKEN)
    loaded = loaded_from_yaml(config(registry, tmp_path), tmp_path)
    app = create_app(loaded)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        base = "/v2/models/churn/versions"
        assert infer(client, f"{base}/champ/infer") == pytest.approx(2.0)
        assert infer(client, f"{base}/v2/infer") == pytest.approx(20.0)
        assert infer(client, f"{base}/run/infer") == pytest.approx(2.0)
        assert infer(client, f"{base}/pyfunc2/infer") == pytest.approx(20.0)

        # resolved version, tags and flavor in metadata
        meta = client.get(f"{base}/champ").json()
        assert meta["platform"] == "sklearn"  # a pickled sklearn flavor: the native runtime
        params = meta["parameters"]
        assert params["mlflow_version"] == "1"
        assert params["mlflow_alias"] == "champion"
        assert params["mlflow_tags"] == {"team": "risk"}
        assert client.get(f"{base}/pyfunc2").json()["platform"] == "mlflow_sklearn"

        # bad versions are not ready, with a reason (in full with the admin token); the rest
        # serve
        admin = {"authorization": f"Bearer {TOKEN}"}
        index = {
            (i["name"], i["version"]): i
            for i in client.get("/v2/repository/index", headers=admin).json()
        }
        assert index["churn", "nope"]["state"] == "FAILED"
        assert (
            "alias 'nope' of registered model 'churn' does not exist"
            in (index["churn", "nope"]["reason"])
        )
        assert (
            "version '99' of registered model 'churn' does not exist"
            in (index["churn", "v99"]["reason"])
        )
        assert index["broken", "v1"]["state"] == "FAILED"
        assert index["broken", "v1"]["reason"]
        one = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [1.0]}]}
        r = client.post(f"{base}/nope/infer", json=one)
        assert r.status_code == 503
        assert "load failed; see the server log" in r.json()["error"]  # anonymous: short

        # cached by version
        cached = list((tmp_path / "cache" / "mlflow").glob("*/models/churn/*"))
        assert sorted(p.name for p in cached) == ["1", "2"]

        # the alias moves under load: no request fails, the new version takes over
        failures: list[str] = []
        answers: list[float] = []
        stop = threading.Event()

        def hammer() -> None:
            with httpx.Client(base_url=url, timeout=30) as c:
                body = {
                    "inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [1.0]}]
                }
                while not stop.is_set():
                    r = c.post("/v2/models/churn/infer", json=body)
                    if r.status_code != 200:
                        failures.append(r.text)
                    else:
                        answers.append(round(r.json()["outputs"][0]["data"][0], 6))

        threads = [threading.Thread(target=hammer) for _ in range(2)]
        for t in threads:
            t.start()
        try:
            time.sleep(0.3)
            MlflowRegistry(registry.uri, tmp_path / "other-cache").set_alias(
                "churn", "champion", "2"
            )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                if answers and answers[-1] == 10.0:
                    break
                time.sleep(0.05)
            time.sleep(0.2)
        finally:
            stop.set()
            for t in threads:
                t.join()
        assert failures == []
        assert answers[0] == 1.0
        assert answers[-1] == 10.0
        meta = client.get(f"{base}/champ").json()
        assert meta["parameters"]["mlflow_version"] == "2"
        assert meta["parameters"]["mlflow_tags"][PROMOTED_TAG].startswith("champion ")

        # the repository API: needs the admin token, unload holds, load brings it back
        r = client.post("/v2/repository/models/churn/versions/v2/unload")
        assert r.status_code == 401
        auth = {"authorization": f"Bearer {TOKEN}"}
        r = client.post("/v2/repository/models/churn/versions/v2/unload", headers=auth)
        assert r.status_code == 200, r.text
        assert r.json()["versions"] == [{"version": "v2", "state": "UNLOADED", "reason": None}]
        assert client.post(f"{base}/v2/infer", json=one).status_code == 503
        r = client.post(
            "/v2/repository/models/churn/versions/v2/load",
            headers=auth,
            json={"parameters": {"config": "{}"}},
        )
        assert r.status_code == 400
        r = client.post("/v2/repository/models/churn/versions/v2/load", headers=auth)
        assert r.status_code == 200, r.text
        assert infer(client, f"{base}/v2/infer") == pytest.approx(20.0)
        r = client.post("/v2/repository/models/broken/load", headers=auth)
        assert r.status_code == 503
        assert "version 'v1' failed to load" in r.json()["error"]

    async def audit() -> list[dict[str, Any]]:
        store = open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
        await store.open()
        try:
            return await store.query_audit(kind="admin", limit=None, order="asc")
        finally:
            await store.close()

    records = asyncio.run(audit())
    moves = [r for r in records if r.get("action") == "alias-moved"]
    assert len(moves) == 1
    move = moves[0]
    assert move["actor"] == "mlflow-alias-watch"
    assert (move["model"], move["version"], move["before"], move["after"]) == (
        "churn",
        "champ",
        "1",
        "2",
    )
    assert "churn@champion moved to version 2" in move["reason"]
    actions = [(r["action"], r["version"]) for r in records if r.get("action") != "alias-moved"]
    assert actions == [("unload", "v2"), ("load", "v2"), ("load", "v1")]


def test_set_alias_errors_are_translated(registry: Registry, tmp_path: Path) -> None:
    reg = MlflowRegistry(registry.uri, tmp_path)
    with pytest.raises(ModelLoadError, match="version '42' of registered model 'churn'"):
        reg.set_alias("churn", "challenger", "42")
    reg.set_alias("churn", "challenger", "1")
    assert reg.alias_version("churn", "challenger") == "1"
    dead = MlflowRegistry(f"http://127.0.0.1:{free_port()}", tmp_path)
    start = time.monotonic()
    with pytest.raises(UpstreamError, match="unreachable"):
        dead.set_alias("churn", "challenger", "1", attempts=2, backoff=0.01)
    assert time.monotonic() - start < 20


def test_unreachable_registry_is_an_upstream_error(tmp_path: Path) -> None:
    sources = Sources(tmp_path, tmp_path / "cache", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(UpstreamError, match="unreachable"):
        sources.fetch_sync("models:/churn@champion")


def test_validate_reports_registry_problems(registry: Registry, tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    path = tmp_path / "modelrouter.yaml"
    path.write_text(
        f"""server:
  mlflow: {{trackingUri: "{registry.uri}"}}
models:
  churn:
    versions:
      good: {{storageUri: "models:/churn@champion"}}
      nope: {{storageUri: "models:/churn@nope"}}
      v99: {{storageUri: "models:/churn/99"}}
"""
    )
    result = CliRunner().invoke(cli_main, ["validate", str(path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{path}: line 7: models.churn.versions.nope.storageUri: alias 'nope' of registered "
        f"model 'churn' does not exist in MLflow at {registry.uri}",
        f"{path}: line 8: models.churn.versions.v99.storageUri: version '99' of registered "
        f"model 'churn' does not exist in MLflow at {registry.uri}",
    ]
    path.write_text(path.read_text().replace(registry.uri, dead))
    result = CliRunner().invoke(cli_main, ["validate", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 3
    assert all(f"the MLflow tracking server at {dead} is unreachable" in line for line in lines)
    assert lines[0].startswith(f"{path}: line 6: models.churn.versions.good.storageUri: ")


def test_env_tracking_uri(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.uri)
    assert os.environ["MLFLOW_TRACKING_URI"] == registry.uri
    sources = Sources(Path("."), Path(registry.root / "env-cache"))
    fetched = sources.fetch_sync("models:/churn/1")
    assert (fetched.path / "MLmodel").is_file()
    assert fetched.mlflow_version == "1"
    assert fetched.size > 0


def test_promotion_moves_the_mlflow_alias(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollout with ``promotion: {mlflowAlias: prod}`` points ``churn@prod`` at the
    registered version of the canary when it promotes, and audits it."""
    MlflowRegistry(registry.uri, tmp_path / "setup-cache").set_alias("churn", "prod", "1")
    monkeypatch.setenv("MODELROUTER_ADMIN_TOKEN", TOKEN)
    text = f"""
server:
  store: sqlite:///{tmp_path / "gateway.db"}
  cacheDir: {tmp_path / "cache"}
  mlflow: {{trackingUri: "{registry.uri}", pollInterval: 200ms}}
  watchConfig: false
models:
  churn:
    versions:
      prod: {{storageUri: "models:/churn@prod"}}
      next: {{storageUri: "models:/churn/2"}}
    http:
      - name: default
        route: [{{destination: prod, weight: 100}}, {{destination: next, weight: 0}}]
rollouts:
  promote-next:
    model: churn
    rule: default
    primary: prod
    canary: next
    strategy: canary
    analysis: {{interval: 1h, threshold: 1, stepWeights: [50]}}
    promotion: {{mlflowAlias: prod}}
"""
    auth = {"authorization": f"Bearer {TOKEN}"}
    app = create_app(loaded_from_yaml(text, tmp_path))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        r = client.post("/api/v1/rollouts/promote-next/promote", headers=auth)
        assert r.status_code == 200, r.text
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            status = client.get("/api/v1/rollouts/promote-next", headers=auth).json()
            if status["phase"] == "Succeeded":
                break
            time.sleep(0.1)
        assert status["phase"] == "Succeeded", status
    alias = MlflowClient(registry.uri).get_model_version_by_alias("churn", "prod")
    assert alias.version == "2"

    async def audit() -> list[dict[str, Any]]:
        store = open_store(f"sqlite:///{tmp_path / 'gateway.db'}")
        await store.open()
        try:
            return await store.query_audit(kind="rollout", limit=None, order="asc")
        finally:
            await store.close()

    moves = [r for r in asyncio.run(audit()) if r.get("action") == "mlflow-alias"]
    assert [(m["ok"], m["version"]) for m in moves] == [(True, "next")], moves
