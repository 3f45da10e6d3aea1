"""The gRPC endpoint against clients nobody here wrote: Triton's ``tritonclient.grpc`` and the
KServe SDK's ``InferenceGRPCClient``.

Each client runs in its own process and virtualenv (tests/peers.py): both register the
protobuf package ``inference`` and pin protobuf versions of their own. A script makes the
calls and prints what it saw; the judging happens here.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest

import peers
from fixtures.models import FAILURE_MESSAGE
from modelrouter import __version__
from modelrouter.app import create_app
from support import EXAMPLE_MODELS, free_port, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

SCRIPTS = Path(__file__).resolve().parents[1] / "peer_scripts"

CONFIG = """\
server:
  name: grpc-peers
  store: memory://
  watchConfig: false
  grpc: {{port: {port}}}
models:
  churn:
    versions:
      v1: {{storageUri: ./churn/v1, modelFormat: sklearn}}
      v2: {{storageUri: ./churn/v2, modelFormat: sklearn}}
    http:
      - name: eu
        match: [{{headers: {{x-region: {{exact: eu}}}}}}]
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
"""

X = np.random.default_rng(20261201).normal(loc=2.0, scale=3.0, size=(4, 10))


def sklearn_model(version: str) -> Any:
    return joblib.load(EXAMPLE_MODELS / "churn" / version / "model.joblib")


@pytest.fixture(scope="module")
def target() -> Iterator[str]:
    port = free_port()
    app = create_app(loaded_from_yaml(CONFIG.format(port=port), EXAMPLE_MODELS))
    with running_server(app):
        yield f"127.0.0.1:{port}"


@pytest.fixture(scope="module")
def triton_seen(target: str) -> dict[str, Any]:
    script = SCRIPTS / "tritonclient_grpc_calls.py"
    return json.loads(
        peers.run_script(peers.tritonclient_grpc(), script, target, json.dumps(X.tolist()))
    )


@pytest.fixture(scope="module")
def kserve_seen(target: str) -> dict[str, Any]:
    script = SCRIPTS / "kserve_grpc_calls.py"
    return json.loads(peers.run_script(peers.kserve(), script, target, json.dumps(X.tolist())))


# ------------------------------------------------------------------------- tritonclient.grpc


def test_triton_health_and_metadata(triton_seen: dict[str, Any]) -> None:
    assert triton_seen["live"] is True
    assert triton_seen["ready"] is True
    assert triton_seen["model_ready"] == [True, True, False]
    meta = triton_seen["server_metadata"]
    assert (meta["name"], meta["version"]) == ("grpc-peers", __version__)
    model = triton_seen["model_metadata"]
    assert (model["name"], model["versions"], model["platform"]) == (
        "churn",
        ["v1", "v2"],
        "sklearn",
    )
    assert model["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": ["-1", "10"]}]
    index = {(m["name"], m["version"], m["state"]) for m in triton_seen["index"]}
    assert ("churn", "v2", "READY") in index
    assert ("failing", "v1", "READY") in index


def test_triton_infer_routed_and_pinned(triton_seen: dict[str, Any]) -> None:
    default = triton_seen["default"]
    assert default["id"] == "tc-1"
    assert default["raw"] == 1  # tritonclient sends raw contents and gets raw back
    assert default["predict"] == sklearn_model(default["model_version"]).predict(X).tolist()
    pinned = triton_seen["pinned"]
    assert pinned["model_version"] == "v2"
    assert pinned["predict"] == sklearn_model("v2").predict(X).tolist()
    assert triton_seen["eu"] == ["v2", "v2", "v2"]
    np.testing.assert_allclose(triton_seen["proba_v1"], sklearn_model("v1").predict_proba(X))


def test_triton_sticky_by_metadata(triton_seen: dict[str, Any]) -> None:
    sticky = triton_seen["sticky"]
    assert all(len(v) == 1 for v in sticky.values()), sticky
    assert {v[0] for v in sticky.values()} == {"v1", "v2"}


def test_triton_binary_contents(triton_seen: dict[str, Any]) -> None:
    assert triton_seen["bytes_echo"] == [
        ["héllo".encode().hex(), ""],
        ["00ff", (b"x" * 300).hex()],
    ]
    assert triton_seen["fp16_echo"] == [[0.5, -1.5]]


def test_triton_error_codes(triton_seen: dict[str, Any]) -> None:
    errors = triton_seen["errors"]
    assert errors["unknown_model"] == {
        "status": "StatusCode.NOT_FOUND",
        "message": "model 'nope' not found",
    }
    assert errors["unknown_version"] == {
        "status": "StatusCode.NOT_FOUND",
        "message": "version 'v9' of model 'churn' not found",
    }
    assert errors["wrong_features"] == {
        "status": "StatusCode.INVALID_ARGUMENT",
        "message": "the model expects 10 features per row, got 7",
    }
    assert errors["unknown_output"]["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "unknown output 'score'" in errors["unknown_output"]["message"]
    assert errors["model_failure"]["status"] == "StatusCode.INTERNAL"
    assert FAILURE_MESSAGE in errors["model_failure"]["message"]
    assert errors["metadata_unknown"]["status"] == "StatusCode.NOT_FOUND"


def test_triton_repository_calls(triton_seen: dict[str, Any]) -> None:
    after = triton_seen["after_unload"]
    assert after["ready"] is False
    assert after["infer"]["status"] == "StatusCode.UNAVAILABLE"
    assert triton_seen["after_load"] is True
    refused = triton_seen["load_with_file"]
    assert refused["status"] == "StatusCode.INVALID_ARGUMENT"
    assert "are not accepted" in refused["message"]


# ------------------------------------------------------------------------- KServe


def test_kserve_client(kserve_seen: dict[str, Any]) -> None:
    assert (kserve_seen["live"], kserve_seen["ready"], kserve_seen["model_ready"]) == (
        True,
        True,
        True,
    )
    for key in ("typed", "raw"):
        seen = kserve_seen[key]
        model = sklearn_model(seen["model_version"])
        assert seen["outputs"]["predict"] == model.predict(X).tolist()
    assert kserve_seen["typed"]["id"] == "ks-1"
    assert kserve_seen["eu"]["predict"] == sklearn_model("v2").predict(X).tolist()
    assert set(kserve_seen["sticky_distinct_answers"].values()) == {1}
    assert kserve_seen["unknown_model"] == ["NOT_FOUND", "model 'nope' not found"]
