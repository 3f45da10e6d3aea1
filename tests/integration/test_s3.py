"""``s3://`` models against a real S3-compatible HTTP server (moto's server mode, a subprocess on
a free loopback port): one object and a folder prefix served through the gateway, the ETag
cache, a missing prefix reported (gateway and ``modelrouter validate``), an unreachable store."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import joblib
import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.linear_model import LinearRegression

from modelrouter.app import create_app
from modelrouter.cli import main as cli_main
from modelrouter.errors import ConfigError, ModelLoadError, StoreError, UpstreamError
from modelrouter.sources import Sources
from support import free_port, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

BUCKET = "models"


def model_bytes(tmp: Path, slope: float) -> bytes:
    x = np.arange(10, dtype=np.float64).reshape(-1, 1)
    path = tmp / f"slope-{slope}.joblib"
    joblib.dump(LinearRegression().fit(x, slope * x.ravel()), path)
    return path.read_bytes()


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """moto's S3 server with bucket ``models``: ``churn/v1.joblib`` (y=x) and the folder
    ``churn/v2/`` holding ``model.joblib`` (y=10x) and a README."""
    tmp = tmp_path_factory.mktemp("s3")
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    log = (tmp / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_ENDPOINT_URL", endpoint)
        mp.setenv("AWS_ACCESS_KEY_ID", "testing")
        mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        mp.delenv("AWS_PROFILE", raising=False)
        try:
            deadline = time.monotonic() + 60
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"moto server exited with {proc.returncode}:\n"
                        + (tmp / "moto.log").read_text()[-3000:]
                    )
                try:
                    httpx.get(endpoint, timeout=1)
                    break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("moto server did not answer in 60s")
                time.sleep(0.1)
            client = boto3.session.Session().client("s3")
            client.create_bucket(Bucket=BUCKET)
            client.put_object(Bucket=BUCKET, Key="churn/v1.joblib", Body=model_bytes(tmp, 1.0))
            client.put_object(
                Bucket=BUCKET, Key="churn/v2/model.joblib", Body=model_bytes(tmp, 10.0)
            )
            client.put_object(Bucket=BUCKET, Key="churn/v2/README.md", Body=b"churn v2")
            client.tmp = tmp
            yield client
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


CONFIG = """
server:
  store: memory://
  cacheDir: CACHE
  watchConfig: false
models:
  churn:
    versions:
      v1: {storageUri: "s3://models/churn/v1.joblib", modelFormat: sklearn}
      v2: {storageUri: "s3://models/churn/v2", modelFormat: sklearn}
      gone: {storageUri: "s3://models/churn/v9", modelFormat: sklearn}
      nobucket: {storageUri: "s3://no-such-bucket/churn", modelFormat: sklearn}
"""


def infer(client: httpx.Client, version: str) -> float:
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [2.0]}]}
    r = client.post(f"/v2/models/churn/versions/{version}/infer", json=body)
    assert r.status_code == 200, r.text
    return float(r.json()["outputs"][0]["data"][0])


def test_gateway_serves_s3_models(s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = CONFIG.replace("CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("MODELROUTER_ADMIN_TOKEN", "s3-test-token")
    app = create_app(loaded_from_yaml(config, tmp_path))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert infer(client, "v1") == pytest.approx(2.0)
        assert infer(client, "v2") == pytest.approx(20.0)
        anonymous = {i["version"]: i for i in client.get("/v2/repository/index").json()}
        assert anonymous["gone"]["reason"] == "load failed; see the server log"
        # the admin token shows the load errors in full
        auth = {"authorization": "Bearer s3-test-token"}
        index = {i["version"]: i for i in client.get("/v2/repository/index", headers=auth).json()}
        assert index["gone"]["state"] == "FAILED"
        assert "s3://models/churn/v9" in index["gone"]["reason"]
        assert index["nobucket"]["state"] == "FAILED"
        assert "NoSuchBucket" in index["nobucket"]["reason"]
        assert client.get("/v2/models/churn/versions/v2").json()["parameters"] == {
            "source": "s3",
            "uri": "s3://models/churn/v2",
        }
    folders = list((tmp_path / "cache" / "s3").iterdir())
    assert len(folders) == 2
    v2 = next(f for f in folders if (f / "README.md").exists())
    assert sorted(p.name for p in v2.iterdir()) == [".complete", "README.md", "model.joblib"]


def test_cache_follows_etags(s3: Any, tmp_path: Path) -> None:
    sources = Sources(tmp_path, tmp_path / "cache")
    first = sources.fetch_sync("s3://models/churn/v1.joblib")
    again = sources.fetch_sync("s3://models/churn/v1.joblib")
    assert first.path == again.path
    assert first.path.name == "v1.joblib"
    assert first.size == first.path.stat().st_size
    s3.put_object(Bucket=BUCKET, Key="churn/v1.joblib", Body=model_bytes(s3.tmp, 3.0))
    try:
        changed = sources.fetch_sync("s3://models/churn/v1.joblib")
        assert changed.path != first.path
        model = joblib.load(changed.path)
        assert model.predict([[1.0]])[0] == pytest.approx(3.0)
    finally:
        s3.put_object(Bucket=BUCKET, Key="churn/v1.joblib", Body=model_bytes(s3.tmp, 1.0))


def test_missing_and_unreachable(s3: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = Sources(tmp_path, tmp_path / "cache")
    with pytest.raises(ModelLoadError, match="no objects at s3://models/churn/nothing"):
        sources.check("s3://models/churn/nothing")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(UpstreamError, match="unreachable"):
        Sources(tmp_path, tmp_path / "cache").fetch_sync("s3://models/churn/v1.joblib")


def test_validate_reports_s3_problems(s3: Any, tmp_path: Path) -> None:
    path = tmp_path / "modelrouter.yaml"
    path.write_text(CONFIG.replace("CACHE", str(tmp_path / "cache")))
    result = CliRunner().invoke(cli_main, ["validate", str(path)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert lines[0] == (
        f"{path}: line 11: models.churn.versions.gone.storageUri: "
        "s3://models/churn/v9: no objects at s3://models/churn/v9"
    )
    assert lines[1].startswith(
        f"{path}: line 12: models.churn.versions.nobucket.storageUri: "
        "s3://no-such-bucket/churn does not exist (NoSuchBucket)"
    )
    assert len(lines) == 2


def test_audit_checkpoints_in_an_s3_object(s3: Any, tmp_path: Path) -> None:
    """A gateway with ``server.audit.checkpoints`` signs its head into an S3 object; the CLI
    verifies the store against it, and catches the log cut short."""
    import sqlite3

    import orjson

    from modelrouter.audit.signing import SigningKey
    from modelrouter.audit.sinks import S3Sink

    key = SigningKey.generate()
    (tmp_path / "audit.key").write_bytes(key.pem())
    (tmp_path / "audit.key.pub").write_bytes(key.public.pem())
    sink = f"s3://{BUCKET}/audit/checkpoints.jsonl"
    config = (
        CONFIG.replace("CACHE", str(tmp_path / "cache"))
        .replace("memory://", "sqlite:///audit.db")
        .replace(
            "  watchConfig: false\n",
            "  watchConfig: false\n"
            "  audit:\n"
            f"    checkpoints: {{sink: '{sink}', keyFile: audit.key, interval: 0.1}}\n",
        )
    )
    app = create_app(loaded_from_yaml(config, tmp_path))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        for _ in range(3):
            infer(client, "v1")
        deadline = time.monotonic() + 30
        while True:  # the decisions are written, then a checkpoint of that head follows
            with sqlite3.connect(tmp_path / "audit.db") as conn:
                (head,) = conn.execute("SELECT head_seq FROM mr_state").fetchone()
            signed = [orjson.loads(x)["seq"] for x in S3Sink(sink).lines()]
            if head >= 3 and head in signed:
                break
            assert time.monotonic() < deadline, f"no checkpoint of head {head} in 30s: {signed}"
            time.sleep(0.1)
    store = f"sqlite:///{tmp_path / 'audit.db'}"
    pub = str(tmp_path / "audit.key.pub")
    ok = CliRunner().invoke(
        cli_main, ["audit", "verify", "--store", store, "--checkpoints", sink, "--public-key", pub]
    )
    assert ok.exit_code == 0, ok.output
    assert "checkpoints signed by key" in ok.output

    with sqlite3.connect(tmp_path / "audit.db") as conn:
        (digest,) = conn.execute("SELECT hash FROM mr_audit WHERE seq = 1").fetchone()
        conn.execute("DELETE FROM mr_audit WHERE seq > 1")
        conn.execute("UPDATE mr_state SET head_seq = 1, head_hash = ?", (digest,))
    plain = CliRunner().invoke(cli_main, ["audit", "verify", "--store", store])
    assert plain.exit_code == 0, plain.output
    caught = CliRunner().invoke(
        cli_main, ["audit", "verify", "--store", store, "--checkpoints", sink, "--public-key", pub]
    )
    assert caught.exit_code == 1
    assert "FAILED at seq 2" in caught.output
    assert "truncation" in caught.output


def test_an_s3_sink_keeps_the_newest_lines(s3: Any) -> None:
    from modelrouter.audit.sinks import S3Sink

    sink = S3Sink(f"s3://{BUCKET}/audit/bounded.jsonl", keep=3)
    with pytest.raises(ConfigError, match="does not exist"):
        list(sink.lines())
    for i in range(5):
        sink.append(f"line {i}")
    assert list(sink.lines()) == ["line 2", "line 3", "line 4"]
    with pytest.raises(StoreError, match="S3 error"):
        S3Sink("s3://no-such-bucket/x.jsonl").append("x")
