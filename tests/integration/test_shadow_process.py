"""Shadow copies of in-process models predict in a worker process, not the gateway's."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from modelrouter.app import create_app
from support import EXAMPLE_MODELS, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

TOKEN_ENV = "MODELROUTER_SHADOW_PROCESS_TOKEN"
BODY = {
    "inputs": [
        {
            "name": "input-0",
            "shape": [1, 10],
            "datatype": "FP64",
            "data": [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2],
        }
    ]
}


def config(tmp_path: Path, executor: str) -> str:
    pids = tmp_path / "pids.txt"
    return f"""
server:
  store: sqlite:///./gw.db
  watchConfig: false
  auth: {{adminTokenEnv: {TOKEN_ENV}}}
  shadow: {{executor: {executor}}}
models:
  churn:
    versions:
      v1: {{storageUri: {EXAMPLE_MODELS / "churn" / "v1"}, modelFormat: sklearn}}
      v3: {{storageUri: {EXAMPLE_MODELS / "churn" / "v3"}, modelFormat: sklearn}}
      noted: {{modelFormat: custom, implementation: "fixtures.shadow_models:PidNotingModel",
               parameters: {{file: "{pids}"}}}}
    http:
      - name: default
        route: [{{destination: v1}}]
        mirrors: [{{destination: v3}}, {{destination: noted}}]
"""


def shadow_counts(client: httpx.Client) -> dict[str, dict[str, object]]:
    r = client.get("/api/v1/models/churn/shadow", headers={"authorization": "Bearer t"})
    assert r.status_code == 200, r.text
    return {p["shadow"]: p for p in r.json()["pairs"]}


@pytest.mark.parametrize("executor", ["process", "thread"])
def test_shadows_run_where_configured(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    monkeypatch.setenv(TOKEN_ENV, "t")
    loaded = loaded_from_yaml(config(tmp_path, executor), tmp_path)
    with running_server(create_app(loaded)) as url, httpx.Client(base_url=url) as client:
        for _ in range(5):
            r = client.post("/v2/models/churn/infer", json=BODY)
            assert r.status_code == 200, r.text
            assert r.headers["x-model-version"] == "v1"
        deadline = time.monotonic() + 30  # the worker process starts on first use
        while time.monotonic() < deadline:
            pairs = shadow_counts(client)
            if all(pairs.get(s, {}).get("count", 0) >= 5 for s in ("v3", "noted")):
                break
            time.sleep(0.1)
        pairs = shadow_counts(client)
    assert pairs["v3"]["count"] == 5
    assert pairs["v3"]["errors"] == 0
    assert pairs["noted"]["count"] == 5
    pids = {int(p) for p in (tmp_path / "pids.txt").read_text().split()}
    if executor == "process":
        assert len(pids) == 1
        assert os.getpid() not in pids
    else:
        assert pids == {os.getpid()}
