"""Shadowing the canary (Istio, Flagger): v2 takes 20% and also mirrors; it is compared on the
requests v1 answers, and never against itself."""

from __future__ import annotations

import time

import httpx
import pytest

from modelrouter.app import create_app
from support import EXAMPLE_MODELS, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

CONFIG = """\
server:
  store: memory://
  watchConfig: false
  shadow: {executor: thread}
models:
  churn:
    versions:
      v1: {storageUri: ./churn/v1, modelFormat: sklearn}
      v2: {storageUri: ./churn/v2, modelFormat: sklearn}
    http:
      - name: canary
        route: [{destination: v1, weight: 80}, {destination: v2, weight: 20}]
        sticky: {header: x-user-id}
        mirror: {destination: v2}
"""

ROW = [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2]


def shadow_counts(metrics: str) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for line in metrics.splitlines():
        if line.startswith("modelrouter_shadow_requests_total{"):
            labels = dict(
                part.split("=", 1)
                for part in line[line.index("{") + 1 : line.index("}")].split(",")
            )
            key = (labels["primary"].strip('"'), labels["shadow"].strip('"'))
            out[key] = out.get(key, 0) + float(line.rsplit(" ", 1)[1])
    return out


def test_the_canary_is_compared_on_the_primary_traffic() -> None:
    app = create_app(loaded_from_yaml(CONFIG, EXAMPLE_MODELS))
    body = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10], "data": [ROW]}]}
    served = {"v1": 0, "v2": 0}
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as c:
        for i in range(100):
            r = c.post("/v2/models/churn/infer", json=body, headers={"x-user-id": f"u{i}"})
            assert r.status_code == 200
            served[r.headers["x-model-version"]] += 1
        deadline = time.monotonic() + 10
        while True:
            counts = shadow_counts(c.get("/metrics").text)
            if sum(counts.values()) >= served["v1"] or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    assert served["v1"] > 50, served
    assert served["v2"] > 5, served
    assert set(counts) == {("v1", "v2")}, counts
    assert counts[("v1", "v2")] == served["v1"]
