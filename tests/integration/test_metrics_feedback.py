"""Metrics and feedback end to end: real gateways over HTTP on the example's models.

``gw``: the example config (``examples/churn``: a 90/10 sticky canary with a 100% shadow to v3,
and the ``ltv`` regression) on SQLite in a temp folder, with an admin token. Then two gateways
on one PostgreSQL schema, whose windows one :class:`StoreWindows` sums.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelrouter.app import Services, build_services, create_app
from modelrouter.store import open_store
from modelrouter.telemetry import metrics as names
from modelrouter.telemetry.recorder import StoreWindows
from modelrouter.telemetry.window import VersionWindow
from support import EXAMPLE_MODELS, ROOT, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

T = TypeVar("T")

TOKEN = "metrics-feedback-token"
TOKEN_ENV = "MODELROUTER_METRICS_E2E_TOKEN"
AUTH = {"authorization": f"Bearer {TOKEN}"}
PG = "postgresql://postgres@127.0.0.1:5432/test"

CHURN_ROW = [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2]
LTV_ROW = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def example_yaml(store: str, gateway_id: str) -> str:
    """The example config with its store and telemetry settings replaced."""
    text = (ROOT / "examples" / "churn" / "modelrouter.yaml").read_text()
    lines = []
    for line in text.splitlines():
        if line.strip().startswith("store:"):
            line = f"  store: {store}"
        elif line.strip().startswith("auth:"):
            line = f"  auth: {{adminTokenEnv: {TOKEN_ENV}}}"
        elif line.strip().startswith("audit:"):
            line = "  audit: {flushInterval: 10ms}\n  watchConfig: false"
            line += f"\n  telemetry: {{flushInterval: 100ms, gatewayId: {gateway_id}}}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def ensure_example_models() -> None:
    if not (EXAMPLE_MODELS / "churn" / "v1" / "model.joblib").exists():
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "build_models.py")], check=True, cwd=ROOT
        )


@dataclass
class Gateway:
    url: str
    http: httpx.Client
    services: Services


@contextlib.contextmanager
def gateway(store: str, gateway_id: str) -> Iterator[Gateway]:
    ensure_example_models()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TOKEN_ENV, TOKEN)
        loaded = loaded_from_yaml(example_yaml(store, gateway_id), ROOT / "examples" / "churn")
        services = build_services(loaded)
        app = create_app(loaded, services)
    with running_server(app) as url, httpx.Client(base_url=url, timeout=20) as http:
        yield Gateway(url, http, services)


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    folder = tmp_path_factory.mktemp("metrics")
    with gateway(f"sqlite:///{folder / 'gw.db'}", "gw-sqlite") as g:
        yield g


def eventually(fn: Callable[[], T | None], timeout: float = 5.0, every: float = 0.05) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {fn}")
        time.sleep(every)


def infer(gw: Gateway, model: str, row: list[float], **headers: str) -> httpx.Response:
    body = {
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, len(row)], "data": row}]
    }
    r = gw.http.post(f"/v2/models/{model}/infer", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return r


def scrape(gw: Gateway) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    r = gw.http.get("/metrics")  # no token
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def sample(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def window(services: Services, model: str, version: str) -> VersionWindow:
    """The window of every gateway, read from the store like a rollout controller would."""

    async def read() -> VersionWindow:
        async with open_store(services.store.url) as store:
            return await StoreWindows(store).window(model, version, 0, time.time() + 10)

    return asyncio.run(read())


def feedback(gw: Gateway, body: Any, auth: bool = True) -> httpx.Response:
    return gw.http.post("/api/v1/feedback", json=body, headers=AUTH if auth else {})


# --------------------------------------------------------------------------- /metrics


def test_metrics_expose_request_counters_and_histograms(gw: Gateway) -> None:
    before = scrape(gw)
    served = [infer(gw, "churn", CHURN_ROW, **{"x-user-id": f"u{i}"}) for i in range(20)]
    infer(gw, "churn", CHURN_ROW, **{"x-region": "eu"})
    by_version: dict[str, int] = {}
    for r in served:
        by_version[r.headers["x-model-version"]] = (
            by_version.get(r.headers["x-model-version"], 0) + 1
        )
    after = scrape(gw)
    for version, n in by_version.items():
        labels = {"model": "churn", "version": version, "rule": "default"}
        delta = sample(after, names.REQUESTS, **labels, status="200") - sample(
            before, names.REQUESTS, **labels, status="200"
        )
        assert delta == n
        count = names.REQUEST_DURATION + "_count"
        assert sample(after, count, **labels) - sample(before, count, **labels) == n
        bucket = sample(after, names.REQUEST_DURATION + "_bucket", **labels, le="+Inf")
        assert bucket == sample(after, count, **labels)
    eu = {"model": "churn", "version": "eu", "rule": "eu", "status": "200"}
    assert sample(after, names.REQUESTS, **eu) >= 1
    assert sample(after, names.MODEL_STATE, model="churn", version="v3", state="READY") == 1
    assert sample(after, names.MODEL_STATE, model="ltv", version="v1", state="READY") == 1


def test_shadow_agreement_metrics_with_the_example_mirror(gw: Gateway) -> None:
    for i in range(10):
        infer(gw, "churn", CHURN_ROW, **{"x-user-id": f"s{i}"})

    def compared() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
        s = scrape(gw)
        pair = {"model": "churn", "primary": "v1", "shadow": "v3"}
        return s if sample(s, names.SHADOW_COMPARED, **pair) >= 5 else None

    s = eventually(compared)
    pair = {"model": "churn", "primary": "v1", "shadow": "v3"}
    n = sample(s, names.SHADOW_COMPARED, **pair)
    agreeing = sample(s, names.SHADOW_AGREEING, **pair)
    assert 0 <= agreeing <= n
    assert sample(s, names.SHADOW_REQUESTS, **pair, outcome="ok") == n  # one label per request
    assert (names.SHADOW_ABS_DIFF, frozenset(pair.items())) in s
    # the same figures in the shadow version's window, in the store
    w = eventually(lambda: (x := window(gw.services, "churn", "v3")).shadow_compared >= n and x)
    assert w.shadow_agreement is not None
    assert 0.0 <= w.shadow_agreement <= 1.0


# --------------------------------------------------------------------------- feedback


def test_label_feedback_joins_and_shows_as_accuracy(gw: Gateway) -> None:
    before = window(gw.services, "churn", "v1")
    rids = []
    predictions = []
    for i in range(30):
        r = infer(gw, "churn", CHURN_ROW, **{"x-user-id": f"fb-user-{i}"})
        if r.headers["x-model-version"] != "v1" or len(rids) == 6:
            continue
        rids.append(r.headers["x-request-id"])
        predictions.append(r.json()["outputs"][0]["data"][0])
    assert len(rids) == 6, "90% of users land on v1"
    wrong = 1 - predictions[0]
    results = []
    for i, rid in enumerate(rids):
        truth = predictions[i] if i else wrong  # the first one wrong, the rest right
        r = feedback(gw, {"request_id": rid, "truth": truth})
        assert r.status_code == 200, r.text
        results.append(r.json())
    assert results[0] == {
        "request_id": rids[0],
        "model": "churn",
        "version": "v1",
        "labels": 1,
        "correct": 0,
        "values": 0,
        "abs_error": 0.0,
    }
    assert all(x["correct"] == 1 for x in results[1:])

    def grown() -> VersionWindow | None:
        w = window(gw.services, "churn", "v1")
        return w if w.feedback - before.feedback == len(rids) else None

    w = eventually(grown)
    assert w.correct - before.correct == len(rids) - 1
    assert w.accuracy is not None
    s = scrape(gw)
    assert sample(s, names.FEEDBACK, model="churn", version="v1", outcome="incorrect") >= 1
    # the feedback is on the audit record too
    rec = asyncio.run(_audit(gw, rids[0], "feedback"))
    assert rec["truth"] == wrong
    assert rec["correct"] == 0
    # and the decision record carries the prediction it was joined to
    dec = asyncio.run(_audit(gw, rids[0], "decision"))
    assert dec["prediction"] == [predictions[0]]


async def _audit(gw: Gateway, rid: str, kind: str) -> dict[str, Any]:
    async with open_store(gw.services.store.url) as store:
        (rec,) = await store.query_audit(request_id=rid, kind=kind)
        return rec


def test_regression_feedback_and_reward(gw: Gateway) -> None:
    r = infer(gw, "ltv", LTV_ROW)
    rid = r.headers["x-request-id"]
    predicted = r.json()["outputs"][0]["data"][0]
    got = feedback(gw, {"request_id": rid, "truth": predicted + 2.5, "reward": 1})
    assert got.status_code == 200, got.text
    doc = got.json()
    assert (doc["values"], doc["labels"], doc["reward"]) == (1, 0, 1.0)
    assert doc["abs_error"] == pytest.approx(2.5)
    w = eventually(
        lambda: (x := window(gw.services, "ltv", "v1")).feedback >= 1 and x.rewards >= 1 and x
    )
    assert w.mean_abs_error == pytest.approx(2.5)
    assert w.mean_reward == 1.0


def test_feedback_from_the_store_when_not_in_memory(gw: Gateway) -> None:
    r = infer(gw, "ltv", LTV_ROW)
    rid = r.headers["x-request-id"]
    gw.services.telemetry.recorder._recent.pop(rid)  # as if another gateway had served it
    got = feedback(gw, {"request_id": rid, "reward": 0.5})
    assert got.status_code == 200, got.text
    assert got.json()["version"] == "v1"


def test_unknown_request_id_is_404(gw: Gateway) -> None:
    r = feedback(gw, {"request_id": "no-such-request", "truth": 1})
    assert r.status_code == 404
    assert "no-such-request" in r.json()["error"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"truth": 1}, "request_id"),
        ({"request_id": "", "truth": 1}, "request_id"),
        ({"request_id": 7, "truth": 1}, "request_id"),
        ({"request_id": "x"}, "truth or reward"),
        ({"request_id": "x", "truth": {"a": 1}}, "truth"),
        ({"request_id": "x", "reward": "high"}, "reward"),
        ({"request_id": "x", "truth": 1, "label": 1}, "label"),
        ([1, 2], "JSON object"),
    ],
)
def test_bad_feedback_is_400_naming_the_field(gw: Gateway, body: Any, field: str) -> None:
    r = feedback(gw, body)
    assert r.status_code == 400, r.text
    assert field in r.json()["error"]


def test_truth_of_the_wrong_shape_is_400(gw: Gateway) -> None:
    rid = infer(gw, "ltv", LTV_ROW).headers["x-request-id"]
    r = feedback(gw, {"request_id": rid, "truth": [1.0, 2.0]})
    assert r.status_code == 400
    assert "truth" in r.json()["error"]
    r = feedback(gw, {"request_id": rid, "truth": "high"})
    assert r.status_code == 400
    assert "truth" in r.json()["error"]


def test_malformed_json_and_duplicates_and_token(gw: Gateway) -> None:
    r = gw.http.post("/api/v1/feedback", content=b"{nope", headers=AUTH)
    assert r.status_code == 400
    rid = infer(gw, "ltv", LTV_ROW).headers["x-request-id"]
    assert feedback(gw, {"request_id": rid, "reward": 1}, auth=False).status_code == 401
    assert feedback(gw, {"request_id": rid, "reward": 1}).status_code == 200
    again = feedback(gw, {"request_id": rid, "reward": 1})
    assert again.status_code == 409
    assert "already" in again.json()["error"]


# --------------------------------------------------------------------------- two gateways


@pytest.fixture
def pg_url() -> Iterator[str]:
    schema = f"mrtest_{uuid.uuid4().hex[:12]}"
    yield f"{PG}?schema={schema}"
    with psycopg.connect(PG, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_two_gateways_write_windows_that_one_window_sums(pg_url: str) -> None:
    with gateway(pg_url, "gw-a") as a, gateway(pg_url, "gw-b") as b:
        for _ in range(7):
            infer(a, "ltv", LTV_ROW)
        for _ in range(5):
            infer(b, "ltv", LTV_ROW)
        # feedback on gateway b for a request gateway a served: joined through the store
        rid = infer(a, "ltv", LTV_ROW).headers["x-request-id"]
        got = eventually(
            lambda: (x := feedback(b, {"request_id": rid, "reward": 2})).status_code == 200 and x
        )
        assert got.json()["version"] == "v1"

        def summed() -> VersionWindow | None:
            w = window(a.services, "ltv", "v1")
            return w if w.requests == 13 and w.rewards == 1 else None

        w = eventually(summed)
        assert w.errors == 0
        assert w.latency_p50_ms is not None
        assert w.latency_p50_ms > 0

        async def gateways() -> set[str]:
            async with open_store(pg_url) as store:
                rows = await store.query_metric_rows("ltv", "v1", 0, time.time() + 10)
                return {r.gateway for r in rows}

        assert asyncio.run(gateways()) == {"gw-a", "gw-b"}
        # each gateway's own window holds only its own traffic
        local = asyncio.run(b.services.telemetry.recorder.window("ltv", "v1", 0, time.time() + 10))
        assert local.requests == 5
