"""The gateway config the export writes for ``--models kserve`` serves: each version becomes a
remote OIP v2 endpoint at its InferenceService, and the gateway's clients keep the output
names they had in process. A modelrouter server stands in for KServe, answering under the
InferenceService names with KServe's sklearn output name, ``output-0``."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
import yaml
from click.testing import CliRunner

from modelrouter.app import create_app
from modelrouter.cli import main
from support import EXAMPLE_MODELS, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

ROW = [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2]
BODY = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10], "data": ROW}]}

CONFIG = f"""\
server: {{store: "postgresql://router@db:5432/router", watchConfig: false}}
models:
  churn:
    versions:
      v1: {{storageUri: {EXAMPLE_MODELS}/churn/v1, modelFormat: sklearn}}
      v2: {{storageUri: {EXAMPLE_MODELS}/churn/v2, modelFormat: sklearn}}
    http:
      - name: eu
        match: [{{headers: {{x-region: {{exact: eu}}}}}}]
        route: [{{destination: v2}}]
"""

KSERVE_STAND_IN = f"""\
server: {{store: "memory://", watchConfig: false}}
models:
  churn-v1:
    versions:
      "1": {{storageUri: {EXAMPLE_MODELS}/churn/v1, modelFormat: sklearn,
            outputNames: {{predict: output-0}}}}
  churn-v2:
    versions:
      "1": {{storageUri: {EXAMPLE_MODELS}/churn/v2, modelFormat: sklearn,
            outputNames: {{predict: output-0}}}}
"""


def test_the_exported_gateway_serves_through_its_inference_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = tmp_path / "modelrouter.yaml"
    source.write_text(CONFIG)
    out = tmp_path / "out"
    r = CliRunner().invoke(
        main, ["export", "kubernetes", str(source), "--out", str(out), "--storage-prefix", "s3://x"]
    )
    assert r.exit_code == 0, r.output
    docs = list(yaml.safe_load_all((out / "gateway.yaml").read_text()))
    text = next(d for d in docs if d["kind"] == "ConfigMap")["data"]["modelrouter.yaml"]
    with running_server(create_app(loaded_from_yaml(KSERVE_STAND_IN, tmp_path))) as kserve:
        # the cluster's addresses, here: every InferenceService is the stand-in
        for v in ("v1", "v2"):
            text = text.replace(f"http://churn-{v}-predictor.default.svc.cluster.local", kserve)
        gateway = yaml.safe_load(text)
        gateway["server"]["http"]["host"] = "127.0.0.1"
        gateway["server"]["cacheDir"] = str(tmp_path / "cache")
        monkeypatch.setenv("MODELROUTER_STORE", "memory://")  # the Secret, in the cluster
        loaded = loaded_from_yaml(yaml.safe_dump(gateway), tmp_path)
        with running_server(create_app(loaded)) as url:
            r = httpx.post(f"{url}/v2/models/churn/infer", json=BODY, timeout=20)
            assert r.status_code == 200, r.text
            assert r.headers["x-model-version"] == "v1"
            (output,) = r.json()["outputs"]
            assert output["name"] == "predict"  # as the in-process version answered
            body = {**BODY, "outputs": [{"name": "predict"}]}
            r = httpx.post(
                f"{url}/v2/models/churn/infer", json=body, headers={"x-region": "eu"}, timeout=20
            )
            assert r.status_code == 200, r.text
            assert r.headers["x-model-version"] == "v2"
            assert [o["name"] for o in r.json()["outputs"]] == ["predict"]
        # the answers are the models' own: the same as the stand-in gives directly
        direct = httpx.post(f"{kserve}/v2/models/churn-v2/infer", json=BODY, timeout=20).json()
        assert direct["outputs"][0]["name"] == "output-0"
        assert direct["outputs"][0]["data"] == r.json()["outputs"][0]["data"]
