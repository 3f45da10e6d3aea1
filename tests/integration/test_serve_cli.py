"""``modelrouter serve`` and ``validate`` as real processes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest

from modelrouter.config import load_config
from support import EXAMPLE_MODELS, ROOT, gateway_process

pytestmark = pytest.mark.integration

ROWS = [[12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2], [60, 45.0, 0, 0, 0, 0, 58, 4, 0, 5]]


def write_config(folder: Path) -> Path:
    (folder / "models").symlink_to(EXAMPLE_MODELS)
    config = folder / "modelrouter.yaml"
    config.write_text(
        """\
server:
  name: served-by-cli
  http: {port: 1}                 # the --port flag overrides it
  store: sqlite:///./state/modelrouter.db
models:
  churn:
    versions:
      v1: {storageUri: ./models/churn/v1, modelFormat: sklearn}
      v2: {storageUri: ./models/churn/v2, modelFormat: sklearn}
  echo:
    versions:
      v1: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
"""
    )
    (folder / "state").mkdir()
    return config


def test_serve_answers_v2_infer(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    env = {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'tests'}"}  # this tree's code
    with gateway_process(config, env=env) as url, httpx.Client(base_url=url) as http:
        assert http.get("/v2/health/ready").json() == {"ready": True}
        assert http.get("/v2").json()["name"] == "served-by-cli"
        body = {
            "id": "cli-1",
            "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [2, 10], "data": ROWS}],
            "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
        }
        for version in ("v1", "v2"):
            r = http.post(f"/v2/models/churn/versions/{version}/infer", json=body)
            assert r.status_code == 200, r.text
            doc = r.json()
            assert r.headers["x-model-version"] == doc["model_version"] == version
            assert doc["id"] == "cli-1"
            model = joblib.load(EXAMPLE_MODELS / "churn" / version / "model.joblib")
            out = {o["name"]: o for o in doc["outputs"]}
            assert out["predict"]["data"] == model.predict(np.array(ROWS)).tolist()
            np.testing.assert_allclose(
                np.array(out["predict_proba"]["data"]).reshape(2, 2),
                model.predict_proba(np.array(ROWS)),
                rtol=1e-12,
            )
        r = http.post("/v2/models/churn/infer", json=body)
        assert r.status_code == 200
        assert r.headers["x-model-version"] == "v1"
        r = http.post("/v1/models/churn:predict", json={"instances": ROWS})
        assert r.status_code == 200
        echo = {"inputs": [{"name": "x", "datatype": "INT8", "shape": [2], "data": [3, 4]}]}
        r = http.post("/v2/models/echo/infer", json=echo)
        assert r.status_code == 200, r.text
        assert r.json()["outputs"][0]["data"] == [3, 4]
    assert (tmp_path / "state" / "modelrouter.db").exists(), "the relative store path resolves"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "modelrouter.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_serve_refuses_an_invalid_config(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("models:\n  churn:\n    versions:\n      v1: {modelFormat: sklearn}\n")
    proc = _cli("serve", str(config), "--port", "1")
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip().endswith(
        f"{config}: line 4: models.churn.versions.v1: a version needs a storageUri or an endpoint"
    )


def test_validate_example_config() -> None:
    example = ROOT / "examples" / "churn" / "modelrouter.yaml"
    models = load_config(example).config.models
    n_versions = sum(len(m.versions) for m in models.values())
    proc = _cli("validate", str(example))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"{example}: OK ({len(models)} models, {n_versions} versions)\n"
