"""Adaptive batching through a real gateway: concurrent requests share one predict, and each
gets its own rows back."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelrouter.app import build_services, create_app
from modelrouter.config.loader import load_config
from modelrouter.protocol.types import InferenceRequest, Tensor
from modelrouter.runtime.base import LocalRuntime
from support import EXAMPLE_MODELS, running_server

pytestmark = pytest.mark.integration


def test_concurrent_requests_are_batched_and_answered_correctly(tmp_path: Path) -> None:
    config = tmp_path / "modelrouter.yaml"
    config.write_text(
        f"""
server:
  store: sqlite:///./router.db
  watchConfig: false
models:
  churn:
    versions:
      v1: {{storageUri: {EXAMPLE_MODELS / "churn" / "v1"}, modelFormat: sklearn}}
    batcher: {{maxBatchSize: 64, maxLatency: 30ms}}
"""
    )
    loaded = load_config(config)
    services = build_services(loaded)
    rows = np.random.default_rng(3).uniform(0, 60, size=(24, 10)).round(2)
    expected = joblib.load(EXAMPLE_MODELS / "churn" / "v1" / "model.joblib").predict_proba(rows)

    async def send_all(url: str) -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            return await asyncio.gather(
                *(
                    client.post(
                        "/v2/models/churn/infer",
                        json={
                            "inputs": [
                                {
                                    "name": "input-0",
                                    "shape": [1, 10],
                                    "datatype": "FP64",
                                    "data": row.tolist(),
                                }
                            ],
                            "outputs": [{"name": "predict_proba"}],
                        },
                    )
                    for row in rows
                )
            )

    with running_server(create_app(loaded, services)) as url:
        responses = asyncio.run(send_all(url))
    for i, r in enumerate(responses):
        assert r.status_code == 200, r.text
        out = r.json()["outputs"][0]
        assert out["shape"] == [1, 2]
        np.testing.assert_allclose(out["data"], expected[i], rtol=1e-12)


def test_batcher_stats_show_stacked_requests(tmp_path: Path) -> None:
    config = tmp_path / "modelrouter.yaml"
    config.write_text(
        f"""
server:
  store: sqlite:///./router.db
  watchConfig: false
models:
  churn:
    versions:
      v1: {{storageUri: {EXAMPLE_MODELS / "churn" / "v1"}, modelFormat: sklearn}}
    batcher: {{maxBatchSize: 8, maxLatency: 50ms}}
"""
    )
    loaded = load_config(config)
    services = build_services(loaded)
    body = {
        "inputs": [{"name": "input-0", "shape": [1, 10], "datatype": "FP64", "data": [1.0] * 10}]
    }
    seen: list[tuple[int, int]] = []

    async def send(url: str) -> None:
        runtime = services.repository.entry("churn", "v1").runtime
        assert isinstance(runtime, LocalRuntime)
        predict = runtime.run

        def slow(request: InferenceRequest) -> list[Tensor]:
            # a 5 ms predict, as a bigger model's: the requests that come in while it runs
            # queue behind it. The example model's own 35 us predict was often over before
            # the next request arrived, and then no batch formed
            time.sleep(0.005)
            return predict(request)

        runtime.run = slow  # type: ignore[method-assign]
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            # six times maxBatchSize at once: requests trickle in over the client's
            # connections, and with 16 a full batch of 8 sometimes never queued up
            got = await asyncio.gather(
                *(client.post("/v2/models/churn/infer", json=body) for _ in range(48))
            )
            assert all(r.status_code == 200 for r in got)
            assert runtime.batcher is not None
            seen.append((runtime.batcher.batches, runtime.batcher.batched_requests))
            metrics = (await client.get("/metrics")).text
        families = {f.name: f for f in text_string_to_metric_families(metrics)}
        labels = {"model": "churn", "version": "v1"}
        (predicts,) = [
            s.value for s in families["modelrouter_batcher_predicts"].samples if s.labels == labels
        ]
        (answered,) = [
            s.value for s in families["modelrouter_batcher_requests"].samples if s.labels == labels
        ]
        # every request went through the batcher, in fewer predicts than requests
        assert answered == 48
        assert 1 <= predicts < 48

    with running_server(create_app(loaded, services)) as url:
        asyncio.run(send(url))
    batches, stacked = seen[0]
    assert batches >= 1
    assert stacked >= 8  # at least one full batch of 8 single-row requests
