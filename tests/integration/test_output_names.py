"""``outputNames``: a version answers under the names its config gives its outputs (a client
that moved from KServe keeps asking for ``output-0``), in responses, requests and metadata;
a version without them keeps the runtime's names, and a fallback answers under its own."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from modelrouter.app import create_app
from modelrouter.config.loader import parse_config
from modelrouter.errors import ConfigError
from support import EXAMPLE_MODELS, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

ROW = [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2]
BODY = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10], "data": ROW}]}

CONFIG = """\
server: {store: "memory://", watchConfig: false}
models:
  churn:
    versions:
      v1: {storageUri: ./churn/v1, modelFormat: sklearn, outputNames: {predict: output-0}}
      v2: {storageUri: ./churn/v2, modelFormat: sklearn}
    http:
      - name: eu
        match: [{headers: {x-region: {exact: eu}}}]
        route: [{destination: v2}]
      - name: default
        route: [{destination: v1}]
"""


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    loaded = loaded_from_yaml(CONFIG, EXAMPLE_MODELS)
    with running_server(create_app(loaded)) as base:
        yield base


def test_responses_carry_the_configured_name(url: str) -> None:
    r = httpx.post(f"{url}/v2/models/churn/infer", json=BODY)
    assert r.status_code == 200, r.text
    assert r.headers["x-model-version"] == "v1"
    assert [o["name"] for o in r.json()["outputs"]] == ["output-0"]


def test_a_request_may_ask_for_the_configured_name_and_the_others_keep_theirs(url: str) -> None:
    body = {**BODY, "outputs": [{"name": "output-0"}, {"name": "predict_proba"}]}
    r = httpx.post(f"{url}/v2/models/churn/infer", json=body)
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["outputs"]] == ["output-0", "predict_proba"]
    # the runtime's own name still works for a client that uses it
    body = {**BODY, "outputs": [{"name": "predict"}]}
    r = httpx.post(f"{url}/v2/models/churn/infer", json=body)
    assert r.status_code == 200, r.text
    assert [o["name"] for o in r.json()["outputs"]] == ["output-0"]


def test_a_version_without_output_names_keeps_the_runtime_names(url: str) -> None:
    r = httpx.post(f"{url}/v2/models/churn/infer", json=BODY, headers={"x-region": "eu"})
    assert r.status_code == 200, r.text
    assert r.headers["x-model-version"] == "v2"
    assert [o["name"] for o in r.json()["outputs"]] == ["predict"]
    body = {**BODY, "outputs": [{"name": "output-0"}]}
    r = httpx.post(f"{url}/v2/models/churn/infer", json=body, headers={"x-region": "eu"})
    assert r.status_code == 400
    assert "output-0" in r.json()["error"]


def test_metadata_lists_the_configured_names(url: str) -> None:
    doc = httpx.get(f"{url}/v2/models/churn/versions/v1").json()
    assert [o["name"] for o in doc["outputs"]] == ["output-0", "predict_proba"]
    doc = httpx.get(f"{url}/v2/models/churn/versions/v2").json()
    assert [o["name"] for o in doc["outputs"]] == ["predict", "predict_proba"]


def test_two_outputs_may_not_take_one_name() -> None:
    bad = CONFIG.replace(
        "outputNames: {predict: output-0}",
        "outputNames: {predict: output-0, predict_proba: output-0}",
    )
    with pytest.raises(ConfigError) as err:
        parse_config(bad)
    assert "models.churn.versions.v1.outputNames" in err.value.message
    assert "output-0" in err.value.message


def test_batched_requests_and_shadows_use_the_runtime_names() -> None:
    """Through the batcher, and for a shadow version without the names, a request asking
    for ``output-0`` still reaches the runtime's ``predict``."""
    text = (
        CONFIG.replace(
            "    http:\n",
            "    batcher: {maxBatchSize: 8, maxLatency: 1ms}\n    http:\n",
            1,
        )
        .replace(
            'server: {store: "memory://", watchConfig: false}',
            'server: {store: "memory://", watchConfig: false, shadow: {executor: thread}}',
        )
        .replace(
            "        route: [{destination: v1}]\n",
            "        route: [{destination: v1}]\n        mirror: {destination: v2}\n",
        )
    )
    loaded = loaded_from_yaml(text, EXAMPLE_MODELS)
    with running_server(create_app(loaded)) as base:
        body = {**BODY, "outputs": [{"name": "output-0"}]}
        r = httpx.post(f"{base}/v2/models/churn/infer", json=body)
        assert r.status_code == 200, r.text
        assert [o["name"] for o in r.json()["outputs"]] == ["output-0"]

        def shadow_lines() -> list[str]:
            text = httpx.get(f"{base}/metrics").text
            return [x for x in text.splitlines() if x.startswith("modelrouter_shadow_requests")]

        deadline = time.monotonic() + 20
        while not any('outcome="ok"' in x for x in shadow_lines()):
            assert time.monotonic() < deadline, shadow_lines()
            time.sleep(0.05)
        errors = [x for x in shadow_lines() if 'outcome="error"' in x]
        assert all(x.endswith(" 0.0") for x in errors), errors
