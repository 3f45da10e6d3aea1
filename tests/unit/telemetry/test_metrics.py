"""Prometheus metrics on an injected registry: names, labels and values after traffic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from modelrouter.app import build_services
from modelrouter.errors import ModelRouterError
from modelrouter.protocol import v2
from modelrouter.routing.decide import RequestContext
from modelrouter.store.memory import MemoryStore
from modelrouter.telemetry import metrics as names
from modelrouter.telemetry.metrics import Metrics
from support import loaded_from_yaml

CONFIG = """\
server:
  store: memory://
  audit: {flushInterval: 10ms}
  telemetry: {gatewayId: unit-gw}
models:
  m:
    versions:
      a: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
      b: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
      same: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
      broken: {modelFormat: custom, implementation: "fixtures.models:FailingModel"}
    http:
      - name: failing
        match: [{headers: {x-case: {exact: fail}}}]
        route: [{destination: broken}]
        fallback: [b]
      - name: default
        route: [{destination: a}]
        mirror: {destination: same}
"""


def value(registry: CollectorRegistry, name: str, **labels: str) -> float:
    found = registry.get_sample_value(name, labels)
    return 0.0 if found is None else found


def test_every_name_is_prefixed_and_registered_once() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    assert all(n.startswith(names.PREFIX) for n in names.NAMES)
    assert len(set(names.NAMES)) == len(names.NAMES)
    exposed = {
        f.name
        for f in text_string_to_metric_families(Metrics(CollectorRegistry()).render().decode())
    }
    for n in names.NAMES:
        if n == names.MODEL_STATE:
            continue  # read from a repository, none here
        assert n.removesuffix("_total") in exposed, n


def test_batcher_counts_are_read_at_scrape_time() -> None:
    from modelrouter.runtime.batcher import BatchCounts

    registry = CollectorRegistry()
    m = Metrics(registry)
    counts: dict[tuple[str, str], BatchCounts] = {}
    m.watch_batchers(counts)
    assert value(registry, names.BATCHER_PREDICTS, model="churn", version="v1") == 0
    counts[("churn", "v1")] = BatchCounts(predicts=3, requests=40)
    counts[("churn", "v2")] = BatchCounts(predicts=5, requests=5)
    assert value(registry, names.BATCHER_PREDICTS, model="churn", version="v1") == 3
    assert value(registry, names.BATCHER_REQUESTS, model="churn", version="v1") == 40
    assert value(registry, names.BATCHER_REQUESTS, model="churn", version="v2") == 5
    counts[("churn", "v1")].predicts += 1
    assert value(registry, names.BATCHER_PREDICTS, model="churn", version="v1") == 4


def test_metrics_use_the_injected_registry_only() -> None:
    a, b = CollectorRegistry(), CollectorRegistry()
    Metrics(a).request("m", "v1", "default", 200, 0.01)
    Metrics(b)  # a second instance does not collide
    assert value(a, names.REQUESTS, model="m", version="v1", rule="default", status="200") == 1
    assert value(b, names.REQUESTS, model="m", version="v1", rule="default", status="200") == 0


def test_request_counter_and_histogram_values() -> None:
    registry = CollectorRegistry()
    m = Metrics(registry)
    for _ in range(3):
        m.request("churn", "v1", "default", 200, 0.004)
    m.request("churn", "v2", None, 503, 0.2)
    labels = {"model": "churn", "version": "v1", "rule": "default"}
    assert value(registry, names.REQUESTS, **labels, status="200") == 3
    assert value(registry, names.REQUEST_DURATION + "_count", **labels) == 3
    assert value(registry, names.REQUEST_DURATION + "_sum", **labels) == pytest.approx(0.012)
    assert value(registry, names.REQUEST_DURATION + "_bucket", **labels, le="0.005") == 3
    assert value(registry, names.REQUEST_DURATION + "_bucket", **labels, le="0.0025") == 0
    pinned = {"model": "churn", "version": "v2", "rule": ""}
    assert value(registry, names.REQUESTS, **pinned, status="503") == 1


def test_set_rollout_phase_and_weights() -> None:
    registry = CollectorRegistry()
    m = Metrics(registry)
    m.set_rollout("churn-v2", "Progressing", {"v1": 90, "v2": 10})
    assert value(registry, names.ROLLOUT_PHASE, rollout="churn-v2", phase="Progressing") == 1
    assert value(registry, names.ROLLOUT_PHASE, rollout="churn-v2", phase="Paused") == 0
    assert value(registry, names.ROLLOUT_WEIGHT, rollout="churn-v2", version="v2") == 10
    m.set_rollout("churn-v2", "Succeeded", {"v2": 100})
    assert value(registry, names.ROLLOUT_PHASE, rollout="churn-v2", phase="Progressing") == 0
    assert value(registry, names.ROLLOUT_PHASE, rollout="churn-v2", phase="Succeeded") == 1
    assert value(registry, names.ROLLOUT_WEIGHT, rollout="churn-v2", version="v2") == 100
    assert (
        registry.get_sample_value(names.ROLLOUT_WEIGHT, {"rollout": "churn-v2", "version": "v1"})
        is None
    )


def test_feedback_counters() -> None:
    registry = CollectorRegistry()
    m = Metrics(registry)
    m.feedback_result("m", "v1", labels=3, correct=2)
    m.feedback_result("ltv", "v1", values=2, abs_error=1.5, reward=0.5)
    assert value(registry, names.FEEDBACK, model="m", version="v1", outcome="correct") == 2
    assert value(registry, names.FEEDBACK, model="m", version="v1", outcome="incorrect") == 1
    assert value(registry, names.FEEDBACK, model="ltv", version="v1", outcome="value") == 2
    assert value(registry, names.FEEDBACK_ABS_ERROR, model="ltv", version="v1") == 1.5
    assert value(registry, names.FEEDBACK, model="ltv", version="v1", outcome="reward") == 1
    assert value(registry, names.FEEDBACK_REWARD, model="ltv", version="v1") == 0.5


def test_dataplane_reports_requests_fallbacks_shadows_and_model_state(tmp_path: Path) -> None:
    async def main() -> None:
        services = build_services(loaded_from_yaml(CONFIG, tmp_path), MemoryStore())
        registry = services.telemetry.registry
        await services.repository.load_all()
        services.shadow.start()
        dp = services.dataplane
        body = orjson.dumps(
            {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "FP64", "data": [1, 2, 3, 4]}]}
        )
        for i in range(4):
            await dp.infer("m", v2.decode_request(body), request_id=f"r{i}")
        ctx = RequestContext({"x-case": "fail"}, {}, {}, None)
        await dp.infer("m", v2.decode_request(body), ctx=ctx, request_id="f1")
        with pytest.raises(ModelRouterError, match="feature store"):
            await dp.infer("m", v2.decode_request(body), version="broken", request_id="p1")
        await services.shadow.drain()
        await services.shadow.close()

        req = {"model": "m", "rule": "default"}
        assert value(registry, names.REQUESTS, **req, version="a", status="200") == 4
        assert value(registry, names.REQUEST_DURATION + "_count", **req, version="a") == 4
        # the fallback answered: counted under the version that served
        assert (
            value(registry, names.REQUESTS, model="m", rule="failing", version="b", status="200")
            == 1
        )
        assert (
            value(registry, names.FALLBACKS, model="m", from_version="broken", to_version="b") == 1
        )
        assert (
            value(registry, names.REQUESTS, model="m", rule="", version="broken", status="500") == 1
        )
        pair = {"model": "m", "primary": "a", "shadow": "same"}
        assert value(registry, names.SHADOW_REQUESTS, **pair, outcome="ok") == 4
        assert value(registry, names.SHADOW_COMPARED, **pair) == 16
        assert value(registry, names.SHADOW_AGREEING, **pair) == 16
        assert value(registry, names.SHADOW_ABS_DIFF, **pair) == 0
        assert value(registry, names.MODEL_STATE, model="m", version="a", state="READY") == 1
        assert value(registry, names.MODEL_STATE, model="m", version="a", state="FAILED") == 0

        window = await services.telemetry.recorder.window("m", "a", 0, 1e12)
        assert window.requests == 4
        shadow = await services.telemetry.recorder.window("m", "same", 0, 1e12)
        assert shadow.shadow_agreement == 1.0
        broken = await services.telemetry.recorder.window("m", "broken", 0, 1e12)
        assert (broken.requests, broken.errors) == (1, 1)
        recent = services.telemetry.recorder.recent("r0")
        assert recent is not None
        assert recent.prediction == [1.0, 2.0, 3.0, 4.0]
        await services.repository.close()

    asyncio.run(main())
