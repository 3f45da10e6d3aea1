"""MLflow alias watching once per cluster: two real gateway processes on one PostgreSQL and a
real MLflow tracking server. An alias move gives exactly one ``alias-moved`` record, and both
gateways serve the new version."""

from __future__ import annotations

import os

os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"  # before mlflow loads (see the registry test)

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import psycopg
import pytest
from mlflow import MlflowClient
from test_mlflow_registry import log_model, start_mlflow, stop_mlflow

from gateway_support import AUTH, PG, gateway, wait_for

pytestmark = pytest.mark.integration

ONE = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [1.0]}]}


@pytest.fixture
def tracking(tmp_path: Path) -> Iterator[str]:
    """A tracking server with churn v1 (y = x), v2 (y = 10x) and champion -> 1."""
    root = tmp_path / "mlflow"
    root.mkdir()
    proc, uri = start_mlflow(root)
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    try:
        # both: another module's server may still be the registry URI of this process
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        log_model(1.0, "churn")
        log_model(10.0, "churn")
        MlflowClient(uri, uri).set_registered_model_alias("churn", "champion", "1")
        yield uri
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])
        stop_mlflow(proc)


@pytest.fixture
def store() -> Iterator[str]:
    schema = f"mrtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG, connect_timeout=5, autocommit=True) as conn:
        conn.execute("SELECT 1")  # PostgreSQL must be up: fail, do not skip
    try:
        yield f"{PG}?schema={schema}"
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def config(folder: Path, store: str, tracking: str) -> Path:
    folder.mkdir()
    path = folder / "modelrouter.yaml"
    path.write_text(
        f"""\
server:
  store: "{store}"
  watchConfig: false
  cacheDir: {folder / "cache"}
  mlflow: {{trackingUri: "{tracking}", pollInterval: 300ms}}
models:
  churn:
    versions:
      champ: {{storageUri: "models:/churn@champion"}}
"""
    )
    return path


def answer(client: httpx.Client) -> float:
    r = client.post("/v2/models/churn/infer", json=ONE)
    assert r.status_code == 200, r.text
    return round(float(r.json()["outputs"][0]["data"][0]), 6)


def moves(client: httpx.Client) -> list[dict[str, object]]:
    r = client.get("/api/v1/audit", params={"kind": "admin", "limit": 100}, headers=AUTH)
    assert r.status_code == 200, r.text
    return [x for x in r.json()["records"] if x.get("action") == "alias-moved"]


@pytest.mark.timeout(480)  # a tracking server, two models logged and two gateways: slow
def test_an_alias_move_is_recorded_once_and_served_by_both(
    tmp_path: Path, store: str, tracking: str
) -> None:
    with (
        gateway(config(tmp_path / "one", store, tracking), tmp_path / "one.log") as one,
        gateway(config(tmp_path / "two", store, tracking), tmp_path / "two.log") as two,
    ):
        assert answer(one) == answer(two) == 1.0
        time.sleep(1.0)  # a few ticks: the watcher records the baseline, nothing moves
        assert moves(one) == []
        MlflowClient(tracking, tracking).set_registered_model_alias("churn", "champion", "2")
        for client in (one, two):
            wait_for(lambda c=client: answer(c) == 10.0, "the new version to be served", 30)
        time.sleep(1.5)  # several more ticks of both gateways: still one record
        for client in (one, two):
            (move,) = moves(client)
            assert (move["model"], move["version"], move["before"], move["after"]) == (
                "churn",
                "champ",
                "1",
                "2",
            )
            assert move["actor"] == "mlflow-alias-watch"
            meta = client.get("/v2/models/churn/versions/champ").json()["parameters"]
            assert meta["mlflow_version"] == "2"
            assert meta["mlflow_alias"] == "champion"
        r = one.get("/api/v1/audit/verify", headers=AUTH)
        assert r.status_code == 200, r.text
