"""Routing end to end: a real gateway over HTTP, the example models, SQLite in a temp folder.

One gateway (``gw``) serves every test of this module; each concern has its own model so the
tests do not disturb one another: ``churn`` (the example's rules), ``fb`` (fallback), ``slow``
(per-try timeout, retries, rule timeout), ``faults``, ``shadowed``, ``adm`` (routing changes
through the admin API) and ``reload`` (edits of the config file). A second, small gateway has a
one-slot shadow queue to see shadow work dropped and counted.
"""

from __future__ import annotations

import contextlib
import logging
import math
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
import pytest

from fixtures import routing_models
from fixtures.models import FAILURE_MESSAGE
from modelrouter.app import Services, build_services, create_app
from modelrouter.config.loader import load_config
from modelrouter.errors import StoreError
from modelrouter.routing import sticky_bucket
from modelrouter.store import RoutingRecord
from modelrouter.store.memory import MemoryStore
from support import EXAMPLE_MODELS, ROOT, running_server

pytestmark = pytest.mark.integration

T = TypeVar("T")

TOKEN = "e2e-admin-token"
TOKEN_ENV = "MODELROUTER_E2E_ROUTING_TOKEN"
AUTH = {"authorization": f"Bearer {TOKEN}"}

CHURN_ROW = [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2]
ECHO = "fixtures.models:EchoModel"
RM = "fixtures.routing_models"


def versions(**impl: str) -> str:
    return "\n".join(f"      {v}: {spec}" for v, spec in impl.items())


def echo() -> str:
    return f'{{modelFormat: custom, implementation: "{ECHO}"}}'


def failing() -> str:
    return '{modelFormat: custom, implementation: "fixtures.models:FailingModel"}'


def custom(cls: str, executor: str = "inline", **params: float) -> str:
    p = ", ".join(f"{k}: {v}" for k, v in params.items())
    return (
        f'{{modelFormat: custom, implementation: "{RM}:{cls}", executor: {executor}, '
        f"parameters: {{{p}}}}}"
    )


RELOAD_RULES = """\
    http:
      - name: default
        route: [{destination: a, weight: 100}, {destination: b, weight: 0}]
"""


def gateway_yaml(reload_rules: str = RELOAD_RULES) -> str:
    churn = EXAMPLE_MODELS / "churn"
    slow = versions(
        once=custom("SlowOddCallsModel", "thread", delay=0.6, tag=1),
        always=custom("SlowModel", "thread", delay=0.5, tag=2),
        fast=echo(),
    )
    shadowed = versions(
        main=echo(),
        slowshadow=custom("SlowModel", "thread", delay=0.5, tag=3),
        inlineshadow=custom("SlowModel", "inline", delay=0.3, tag=4),
        same=custom("ScaledEchoModel", scale=1),
        double=custom("ScaledEchoModel", scale=2),
        failing=failing(),
    )
    return f"""\
server:
  name: routing-e2e
  store: sqlite:///./state/gw.db
  storePollInterval: 0.2
  auth: {{adminTokenEnv: {TOKEN_ENV}}}
  audit: {{flushInterval: 10ms}}
  shadow: {{maxQueue: 1000, workers: 2, executor: thread}}  # tests count calls in-process
models:
  churn:
    versions:
      v1: {{storageUri: {churn / "v1"}, modelFormat: sklearn}}
      v2: {{storageUri: {churn / "v2"}, modelFormat: sklearn}}
      v3: {{storageUri: {churn / "v3"}, modelFormat: sklearn}}
      eu: {{storageUri: {churn / "eu"}, modelFormat: sklearn}}
    http:
      - name: eu
        match: [{{headers: {{x-region: {{exact: eu}}}}}}]
        route: [{{destination: eu}}]
        fallback: [v1]
      - name: beta
        match:
          - headers: {{x-segment: {{exact: beta}}}}
          - body: {{parameters.segment: {{exact: beta}}}}
        route: [{{destination: v2}}]
      - name: default
        route:
          - {{destination: v1, weight: 90}}
          - {{destination: v2, weight: 10}}
        sticky: {{header: x-user-id}}
        mirror: {{destination: v3}}
        mirrorPercentage: {{value: 100}}
        timeout: 2s
        retries: {{attempts: 1, perTryTimeout: 1s}}
        fallback: [v1]
  fb:
    versions:
      broken: {{storageUri: ./no/such/model.joblib, modelFormat: sklearn}}
      failing: {failing()}
      good: {echo()}
    http:
      - name: missing-file
        match: [{{headers: {{x-case: {{exact: missing}}}}}}]
        route: [{{destination: broken}}]
        fallback: [good]
      - name: raises
        match: [{{headers: {{x-case: {{exact: raises}}}}}}]
        route: [{{destination: failing}}]
        retries: {{attempts: 1}}
        fallback: [broken, good]
      - name: no-fallback
        route: [{{destination: failing}}]
  slow:
    versions:
{slow}
    http:
      - name: retry
        match: [{{headers: {{x-case: {{exact: retry}}}}}}]
        route: [{{destination: once}}]
        retries: {{attempts: 1, perTryTimeout: 150ms}}
      - name: fallback
        match: [{{headers: {{x-case: {{exact: fallback}}}}}}]
        route: [{{destination: always}}]
        retries: {{attempts: 1, perTryTimeout: 100ms}}
        fallback: [fast]
      - name: timeout
        match: [{{headers: {{x-case: {{exact: timeout}}}}}}]
        route: [{{destination: always}}]
        timeout: 200ms
        fallback: [fast]
      - name: default
        route: [{{destination: fast}}]
  faults:
    versions:
      a: {echo()}
    http:
      - name: abort
        match: [{{headers: {{x-case: {{exact: abort}}}}}}]
        route: [{{destination: a}}]
        fault: {{abort: {{httpStatus: 418}}}}
      - name: delay
        match: [{{headers: {{x-case: {{exact: delay}}}}}}]
        route: [{{destination: a}}]
        fault: {{delay: {{fixedDelay: 400ms}}}}
      - name: never
        match: [{{headers: {{x-case: {{exact: never}}}}}}]
        route: [{{destination: a}}]
        fault: {{abort: {{httpStatus: 500, percentage: {{value: 0}}}}}}
      - name: plain
        route: [{{destination: a}}]
  shadowed:
    versions:
{shadowed}
    http:
      - name: slow
        match: [{{headers: {{x-case: {{exact: slow}}}}}}]
        route: [{{destination: main}}]
        mirror: {{destination: slowshadow}}
      - name: inline
        match: [{{headers: {{x-case: {{exact: inline}}}}}}]
        route: [{{destination: main}}]
        mirror: {{destination: inlineshadow}}
      - name: failing
        match: [{{headers: {{x-case: {{exact: failing}}}}}}]
        route: [{{destination: main}}]
        mirror: {{destination: failing}}
      - name: compare
        route: [{{destination: main}}]
        mirrors: [{{destination: same}}, {{destination: double}}]
  adm:
    versions:
      a: {echo()}
      b: {echo()}
      c: {echo()}
    http:
      - name: default
        route: [{{destination: a}}]
  reload:
    versions:
      a: {echo()}
      b: {echo()}
{reload_rules}"""


@dataclass
class Gateway:
    url: str
    http: httpx.Client
    services: Services
    config: Path
    text: str


@contextlib.contextmanager
def serve(config: Path) -> Iterator[tuple[str, Services]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TOKEN_ENV, TOKEN)
        loaded = load_config(config)
        services = build_services(loaded)
        app = create_app(loaded, services)
    with running_server(app) as url:
        yield url, services


def ensure_example_models() -> None:
    if not (EXAMPLE_MODELS / "churn" / "v1" / "model.joblib").exists():
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "build_models.py")], check=True, cwd=ROOT
        )


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    ensure_example_models()
    folder = tmp_path_factory.mktemp("gw")
    (folder / "state").mkdir()
    config = folder / "modelrouter.yaml"
    text = gateway_yaml()
    config.write_text(text)
    with serve(config) as (url, services), httpx.Client(base_url=url, timeout=20) as http:
        yield Gateway(url, http, services, config, text)


# --------------------------------------------------------------------------- helpers


def churn_body(**parameters: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10], "data": CHURN_ROW}]
    }
    if parameters:
        body["parameters"] = parameters
    return body


def echo_body(*values: float) -> dict[str, Any]:
    data = list(values) or [1.0, 2.0]
    return {"inputs": [{"name": "x", "datatype": "FP64", "shape": [len(data)], "data": data}]}


def infer(
    gw: Gateway,
    model: str,
    headers: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
    version: str | None = None,
) -> httpx.Response:
    path = f"/v2/models/{model}" + (f"/versions/{version}" if version else "") + "/infer"
    if body is None:
        body = churn_body() if model == "churn" else echo_body()
    return gw.http.post(path, json=body, headers=headers or {})


def served(r: httpx.Response) -> str:
    assert r.status_code == 200, r.text
    return r.headers["x-model-version"]


def eventually(fn: Callable[[], T | None], timeout: float = 3.0, every: float = 0.02) -> T:
    """The first truthy ``fn()`` within ``timeout`` seconds; fails otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {fn}")
        time.sleep(every)


def decision(gw: Gateway, rid: str) -> dict[str, Any]:
    """The decision record and explanation of request ``rid`` (the audit writer batches)."""

    def get() -> dict[str, Any] | None:
        r = gw.http.get(f"/api/v1/decisions/{quote(rid)}", headers=AUTH)
        if r.status_code == 404:
            return None
        assert r.status_code == 200, r.text
        doc: dict[str, Any] = r.json()
        return doc

    return eventually(get)


def routing(gw: Gateway, model: str) -> dict[str, Any]:
    r = gw.http.get(f"/api/v1/models/{model}/routing", headers=AUTH)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def shadow_pairs(gw: Gateway, model: str) -> dict[str, dict[str, Any]]:
    r = gw.http.get(f"/api/v1/models/{model}/shadow", headers=AUTH)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["model"] == model
    return {f"{p['primary']}->{p['shadow']}": p for p in doc["pairs"]}


def audit(gw: Gateway, **params: Any) -> list[dict[str, Any]]:
    r = gw.http.get("/api/v1/audit", params=params, headers=AUTH)
    assert r.status_code == 200, r.text
    records: list[dict[str, Any]] = r.json()["records"]
    return records


# --------------------------------------------------------------------------- routing


def test_region_rule(gw: Gateway) -> None:
    for name in ("x-region", "X-Region", "X-REGION"):  # header names in any case
        r = infer(gw, "churn", {name: "eu", "x-user-id": "u1"})
        assert served(r) == "eu"
        assert r.json()["model_version"] == "eu"
    assert served(infer(gw, "churn", {"x-region": "EU", "x-user-id": "u1"})) != "eu"
    # KServe v1 is routed by the same rules
    r = gw.http.post(
        "/v1/models/churn:predict", json={"instances": [CHURN_ROW]}, headers={"x-region": "eu"}
    )
    assert served(r) == "eu"
    assert len(r.json()["predictions"]) == 1

    rid = r.headers["x-request-id"]
    rec = decision(gw, rid)["record"]
    assert (rec["rule"], rec["version"], rec["status"]) == ("eu", "eu", 200)
    assert rec["matched"] == ["header x-region exact 'eu'"]


def test_segment_rule_by_header_or_body_parameter(gw: Gateway) -> None:
    assert served(infer(gw, "churn", {"x-segment": "beta", "x-user-id": "u1"})) == "v2"
    r = infer(gw, "churn", {"x-user-id": "u1"}, churn_body(segment="beta"))
    assert served(r) == "v2"
    rec = decision(gw, r.headers["x-request-id"])["record"]
    assert rec["rule"] == "beta"
    assert rec["matched"] == ["body parameters.segment exact 'beta'"]
    # a KServe v1 body's fields are matched the same way
    r = gw.http.post(
        "/v1/models/churn:predict",
        json={"instances": [CHURN_ROW], "parameters": {"segment": "beta"}},
        headers={"x-user-id": "u1"},
    )
    assert served(r) == "v2"
    # first match wins: eu before beta
    assert served(infer(gw, "churn", {"x-region": "eu", "x-segment": "beta"})) == "eu"
    r = infer(gw, "churn", {"x-user-id": "u1"}, churn_body(segment="alpha"))
    assert decision(gw, r.headers["x-request-id"])["record"]["rule"] == "default"


def test_sticky_canary_split(gw: Gateway) -> None:
    users = [f"customer-{i}" for i in range(400)]
    got = {}
    for u in users:
        got[u] = served(infer(gw, "churn", {"x-user-id": u}))
    # every user where its bucket says: the rule's salt is model/rule
    for u, v in got.items():
        bucket = sticky_bucket(b"churn/default", u)
        assert v == ("v1" if bucket < 9000 else "v2"), (u, bucket, v)
    counts = Counter(got.values())
    assert set(counts) == {"v1", "v2"}
    n, p = len(users), 0.1
    assert abs(counts["v2"] - n * p) <= 5 * math.sqrt(n * p * (1 - p)), counts
    # sticky: the same users get the same versions again
    for u in users[:60]:
        assert served(infer(gw, "churn", {"x-user-id": u})) == got[u]
    # the decision record carries the bucket and the weights
    u = users[0]
    r = infer(gw, "churn", {"x-user-id": u})
    rec = decision(gw, r.headers["x-request-id"])["record"]
    assert rec["bucket"] == sticky_bucket(b"churn/default", u)
    assert rec["sticky"] is True
    assert rec["weights"] == {"v1": 90, "v2": 10}
    assert rec["shadows"] == ["v3"]


def test_no_user_id_splits_at_random(gw: Gateway) -> None:
    counts = Counter(served(infer(gw, "churn")) for _ in range(150))
    assert set(counts) == {"v1", "v2"}  # P(no v2 in 150 at 10%) ~ 1e-7
    assert counts["v1"] > counts["v2"]
    r = infer(gw, "churn")
    found = decision(gw, r.headers["x-request-id"])
    rec = found["record"]
    assert (rec["bucket"], rec["sticky"], rec["rule"]) == (None, False, "default")
    assert f"a random draw at weights v1=90, v2=10 chose {served(r)}" in found["explanation"]
    assert "sticky" not in found["explanation"]


def test_pinned_version_bypasses_the_rules(gw: Gateway) -> None:
    r = infer(gw, "churn", {"x-region": "eu"}, version="v3")
    assert served(r) == "v3"
    rec = decision(gw, r.headers["x-request-id"])["record"]
    assert rec["rule"] is None
    assert rec["version"] == rec["served_by"] == "v3"
    assert rec["pinned"] is True
    assert rec["shadows"] == []
    assert (
        "asked for version v3 explicitly" in decision(gw, r.headers["x-request-id"])["explanation"]
    )


# --------------------------------------------------------------------------- fallback


def test_fallback_when_the_routed_versions_file_is_missing(gw: Gateway) -> None:
    state = {
        v["name"]: v["state"]
        for m in gw.http.get("/api/v1/models", headers=AUTH).json()["models"]
        if m["name"] == "fb"
        for v in m["versions"]
    }
    assert state == {"broken": "FAILED", "failing": "READY", "good": "READY"}
    r = infer(gw, "fb", {"x-case": "missing", "x-request-id": "fb-missing-1"})
    assert served(r) == "good"
    assert r.headers["x-request-id"] == "fb-missing-1"
    assert r.json()["outputs"][0]["data"] == [1.0, 2.0]
    found = decision(gw, "fb-missing-1")
    rec = found["record"]
    assert rec["rule"] == "missing-file"
    assert rec["status"] == 200
    assert rec["version"] == "broken"  # what routing chose
    assert rec["served_by"] == "good"  # who answered
    (fb,) = rec["fallbacks"]
    assert (fb["version"], fb["from"]) == ("good", "broken")
    assert "version 'broken' is not ready" in fb["error"]
    assert "does not exist" in fb["error"]  # the audit log (admin only) keeps the full error
    # the explanation names the version that answered, and why
    text = found["explanation"]
    assert "routed to broken" in text, text
    assert "fell back to good (model 'fb' version 'broken' is not ready" in text, text
    assert "served by good with status 200" in text, text


def test_fallback_when_the_routed_version_raises(gw: Gateway) -> None:
    r = infer(gw, "fb", {"x-case": "raises", "x-request-id": "fb-raises-1"})
    assert served(r) == "good"
    rec = decision(gw, "fb-raises-1")["record"]
    assert rec["rule"] == "raises"
    assert rec["status"] == 200
    # failing (after its retry), then broken (not loaded), then good answered
    assert (rec["version"], rec["served_by"]) == ("failing", "good")
    first, second = rec["fallbacks"]
    assert (first["from"], first["version"]) == ("failing", "broken")
    assert FAILURE_MESSAGE in first["error"]
    assert (second["from"], second["version"]) == ("broken", "good")
    assert "not ready" in second["error"]


def test_without_fallback_the_models_error_is_returned_and_recorded(gw: Gateway) -> None:
    r = infer(gw, "fb", {"x-request-id": "fb-none-1"})
    assert r.status_code == 500
    assert FAILURE_MESSAGE in r.json()["error"]
    rec = decision(gw, "fb-none-1")["record"]
    assert rec["status"] == 500
    assert FAILURE_MESSAGE in rec["error"]
    assert rec["fallbacks"] == []
    assert (rec["version"], rec["served_by"]) == ("failing", None)


# --------------------------------------------------------------------------- timeouts


def test_per_try_timeout_then_a_retry_answers(gw: Gateway) -> None:
    model = routing_models.tagged(1)
    before = model.calls
    start = time.perf_counter()
    r = infer(gw, "slow", {"x-case": "retry"})
    elapsed = time.perf_counter() - start
    assert served(r) == "once"
    assert model.calls == before + 2  # the first try timed out, the retry answered
    assert 0.15 <= elapsed < 0.55, elapsed  # one per-try timeout, not the model's 0.6 s
    rec = decision(gw, r.headers["x-request-id"])["record"]
    assert (rec["status"], rec["fallbacks"]) == (200, [])


def test_slow_version_times_out_on_every_try_then_falls_back(gw: Gateway) -> None:
    model = routing_models.tagged(2)
    before = model.calls
    start = time.perf_counter()
    r = infer(gw, "slow", {"x-case": "fallback"})
    elapsed = time.perf_counter() - start
    assert served(r) == "fast"
    assert 0.2 <= elapsed < 0.45, elapsed  # two tries of 100 ms, then the fast version
    rec = decision(gw, r.headers["x-request-id"])["record"]
    assert rec["status"] == 200
    (fb,) = rec["fallbacks"]
    assert (fb["from"], fb["version"]) == ("always", "fast")
    assert "version 'always' did not answer within 100ms" in fb["error"]
    assert (rec["version"], rec["served_by"]) == ("always", "fast")
    assert model.calls == before + 2


def test_rule_timeout_bounds_the_whole_call(gw: Gateway) -> None:
    start = time.perf_counter()
    r = infer(gw, "slow", {"x-case": "timeout"})
    elapsed = time.perf_counter() - start
    assert r.status_code == 504, r.text
    assert "200ms" in r.json()["error"]
    assert elapsed < 0.45, elapsed  # the model takes 0.5 s: the timeout cut it short
    rec = decision(gw, r.headers["x-request-id"])["record"]
    assert rec["status"] == 504
    assert rec["rule"] == "timeout"


# --------------------------------------------------------------------------- faults


def test_fault_abort_returns_the_configured_status(gw: Gateway) -> None:
    r = infer(gw, "faults", {"x-case": "abort"})
    assert r.status_code == 418
    assert "fault" in r.json()["error"]
    assert "abort" in r.json()["error"]
    rec = decision(gw, r.headers["x-request-id"])["record"]
    assert (rec["rule"], rec["status"]) == ("abort", 418)
    assert served(infer(gw, "faults", {"x-case": "never"})) == "a"  # 0 %: never fires
    assert served(infer(gw, "faults")) == "a"


def test_fault_delay_delays(gw: Gateway) -> None:
    start = time.perf_counter()
    r = infer(gw, "faults", {"x-case": "delay"})
    delayed = time.perf_counter() - start
    assert served(r) == "a"
    assert delayed >= 0.4, delayed
    start = time.perf_counter()
    served(infer(gw, "faults"))
    assert time.perf_counter() - start < 0.3


# --------------------------------------------------------------------------- shadow


def test_the_primary_answers_while_the_shadow_is_slow(gw: Gateway) -> None:
    shadow = routing_models.tagged(3)
    before = shadow.calls
    times = []
    for _ in range(3):
        start = time.perf_counter()
        r = infer(gw, "shadowed", {"x-case": "slow"})
        times.append(time.perf_counter() - start)
        assert served(r) == "main"
    assert max(times) < 0.3, times  # the shadow sleeps 0.5 s per call
    pair = eventually(lambda: shadow_pairs(gw, "shadowed").get("main->slowshadow"), timeout=5)
    pair = eventually(
        lambda: (p := shadow_pairs(gw, "shadowed")["main->slowshadow"])["count"] >= 3 and p,
        timeout=5,
    )
    assert shadow.calls >= before + 3
    assert pair["meanLatencyMs"] >= 450
    assert pair["agreement"] == 1.0  # the same echo
    assert pair["errors"] == 0


def test_a_shadow_on_an_inline_model_does_not_hold_up_other_requests(gw: Gateway) -> None:
    """The shadow version predicts inline (on the event loop, were it called directly) for
    0.3 s: run as a shadow it must not stall the requests that come after its primary."""
    shadow = routing_models.tagged(4)
    before = shadow.calls
    start = time.perf_counter()
    for _ in range(3):
        t = time.perf_counter()
        assert served(infer(gw, "shadowed", {"x-case": "inline"})) == "main"
        assert served(infer(gw, "faults")) == "a"
        assert time.perf_counter() - t < 0.25
    assert time.perf_counter() - start < 0.6, "the shadows stalled the event loop"
    eventually(lambda: shadow.calls >= before + 3, timeout=5)


def test_a_failing_shadow_never_fails_the_primary(gw: Gateway) -> None:
    for _ in range(3):
        assert served(infer(gw, "shadowed", {"x-case": "failing"})) == "main"
    pair = eventually(
        lambda: (p := shadow_pairs(gw, "shadowed").get("main->failing")) and p["errors"] >= 3 and p
    )
    assert pair["count"] == 0
    assert pair["agreement"] is None


def test_shadow_answers_are_compared_with_the_primarys(gw: Gateway) -> None:
    for _ in range(4):
        assert served(infer(gw, "shadowed", body=echo_body(1.0, 2.0, 3.0))) == "main"
    pairs = eventually(
        lambda: (
            (p := shadow_pairs(gw, "shadowed")).get("main->double", {}).get("count", 0) >= 4 and p
        )
    )
    same, double = pairs["main->same"], pairs["main->double"]
    assert same["count"] >= 4
    assert same["agreement"] == 1.0
    assert same["meanAbsDiff"] == 0.0
    assert double["agreement"] == 0.0
    assert double["meanAbsDiff"] == pytest.approx(2.0)  # |2x - x| over 1, 2, 3
    # the example's churn mirror to v3 is compared too
    infer(gw, "churn", {"x-user-id": "shadow-user"})
    churn = eventually(lambda: shadow_pairs(gw, "churn"))
    assert any(k.endswith("->v3") and p["count"] >= 1 for k, p in churn.items()), churn
    for p in churn.values():
        assert p["agreement"] is None or 0.0 <= p["agreement"] <= 1.0


def test_a_full_shadow_queue_drops_and_counts(tmp_path: Path) -> None:
    config = tmp_path / "modelrouter.yaml"
    config.write_text(
        f"""\
server:
  store: sqlite:///./s.db
  auth: {{adminTokenEnv: {TOKEN_ENV}}}
  shadow: {{maxQueue: 1, workers: 1, executor: thread}}
  watchConfig: false
models:
  m:
    versions:
      main: {echo()}
      shadow: {custom("SlowModel", "thread", delay=0.3)}
    http:
      - name: all
        route: [{{destination: main}}]
        mirror: {{destination: shadow}}
"""
    )
    with serve(config) as (url, services), httpx.Client(base_url=url, timeout=10) as http:
        start = time.perf_counter()
        for _ in range(8):
            r = http.post("/v2/models/m/infer", json=echo_body())
            assert r.status_code == 200
            assert r.headers["x-model-version"] == "main"
        assert time.perf_counter() - start < 1.0  # 8 shadows of 0.3 s did not hold it up
        # one runs, one waits, the rest are dropped
        pairs = http.get("/api/v1/models/m/shadow", headers=AUTH).json()["pairs"]
        (pair,) = pairs
        assert pair["dropped"] >= 5, pair
        assert services.shadow.dropped == pair["dropped"]
        done = eventually(
            lambda: (
                (p := http.get("/api/v1/models/m/shadow", headers=AUTH).json()["pairs"][0])["count"]
                + p["dropped"]
                >= 8
                and p
            ),
            timeout=3,
        )
        assert done["count"] + done["dropped"] == 8
        assert done["count"] >= 1


# --------------------------------------------------------------------------- admin API


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/models"),
        ("GET", "/api/v1/models/adm/routing"),
        ("PUT", "/api/v1/models/adm/routing"),
        ("GET", "/api/v1/models/adm/shadow"),
        ("GET", "/api/v1/audit"),
        ("GET", "/api/v1/audit/verify"),
        ("GET", "/api/v1/decisions/x"),
        ("POST", "/api/v1/models/adm/versions/a/unload"),
    ],
)
def test_admin_api_needs_the_token(gw: Gateway, method: str, path: str) -> None:
    before = routing(gw, "adm")
    body = {"http": [{"name": "x", "route": [{"destination": "b"}]}]}
    for headers in (
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Bearer {TOKEN}x"},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": TOKEN},
        {"x-admin-token": TOKEN},
        {"authorization": b"Bearer \xe9"},  # a byte that is not ASCII: 401, not 500
        {"authorization": f"Bearer {TOKEN}".encode() + b"\xff"},
    ):
        r = gw.http.request(method, path, headers=headers, json=body)
        assert r.status_code == 401, (headers, r.text)
        assert "token" in r.json()["error"]
    after = routing(gw, "adm")
    assert after["version"] == before["version"]
    assert served(infer(gw, "adm")) == "a"
    states = gw.http.get("/api/v1/models", headers=AUTH).json()["models"]
    adm = next(m for m in states if m["name"] == "adm")
    assert all(v["state"] == "READY" for v in adm["versions"])


@pytest.mark.parametrize("token", [None, "", "s\u00e9same-\u4e2d"])
def test_admin_token_unset_or_not_ascii(tmp_path: Path, token: str | None) -> None:
    config = tmp_path / "modelrouter.yaml"
    config.write_text(
        f"""\
server:
  store: memory://
  auth: {{adminTokenEnv: {TOKEN_ENV}_OTHER}}
  watchConfig: false
models:
  m:
    versions:
      a: {echo()}
"""
    )
    with pytest.MonkeyPatch.context() as mp:
        if token is None:
            mp.delenv(f"{TOKEN_ENV}_OTHER", raising=False)
        else:
            mp.setenv(f"{TOKEN_ENV}_OTHER", token)
        app = create_app(load_config(config))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as http:
        if not token:  # no token configured: the admin API is closed to everyone
            for headers in ({}, {"authorization": "Bearer"}, {"authorization": "Bearer x"}):
                r = http.get("/api/v1/models/m/routing", headers=headers)
                assert r.status_code == 401
                assert "admin API is disabled" in r.json()["error"]
            return
        good = {"authorization": b"Bearer " + token.encode()}
        assert http.get("/api/v1/models/m/routing", headers=good).status_code == 200
        bad = {"authorization": b"Bearer " + token.encode()[:-1]}
        assert http.get("/api/v1/models/m/routing", headers=bad).status_code == 401
        # the data plane needs no token
        assert http.post("/v2/models/m/infer", json=echo_body()).status_code == 200


def route(*pairs: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"destination": v, "weight": w} for v, w in pairs]


BAD_PUTS: list[tuple[str, Any, str]] = [
    (
        "unknown version",
        {"http": [{"name": "r", "route": [{"destination": "zz"}]}]},
        "http.0.route.0.destination",
    ),
    (
        "unknown mirror",
        {"http": [{"name": "r", "route": [{"destination": "a"}], "mirror": {"destination": "zz"}}]},
        "http.0.mirror.destination",
    ),
    (
        "unknown fallback",
        {"http": [{"name": "r", "route": [{"destination": "a"}], "fallback": ["zz"]}]},
        "http.0.fallback.0",
    ),
    (
        "all-zero weights",
        {"http": [{"name": "r", "route": route(("a", 0), ("b", 0))}]},
        "http.0.route",
    ),
    (
        "negative weight",
        {"http": [{"name": "r", "route": route(("a", -1), ("b", 101))}]},
        "http.0.route.0.weight",
    ),
    (
        "invalid regex",
        {
            "http": [
                {
                    "name": "r",
                    "match": [{"headers": {"x-a": {"regex": "a["}}}],
                    "route": [{"destination": "b"}],
                }
            ]
        },
        "http.0.match.0.headers.x-a.regex",
    ),
    (
        "mirror of the only routed version",
        {"http": [{"name": "r", "route": [{"destination": "a"}], "mirror": {"destination": "a"}}]},
        "http.0.mirror.destination",
    ),
    (
        "unknown field in a rule",
        {"http": [{"name": "r", "route": [{"destination": "b"}], "routes": []}]},
        "http.0.routes",
    ),
    ("unknown top-level field", {"http": [], "rules": []}, "'rules'"),
    ("http not a list", {"http": {"name": "r"}}, "'http' list"),
    ("reason not a string", {"http": [], "reason": 3}, "reason"),
    ("bad expectedVersion", {"http": [], "expectedVersion": "1"}, "expectedVersion"),
    ("negative expectedVersion", {"http": [], "expectedVersion": -1}, "expectedVersion"),
    ("body not an object", [1, 2], "object"),
]


def test_invalid_routing_puts_get_400_naming_the_field_and_change_nothing(gw: Gateway) -> None:
    before = routing(gw, "adm")
    changes_before = len(audit(gw, kind="change", model="adm", limit=1000))
    for name, body, field in BAD_PUTS:
        r = gw.http.put("/api/v1/models/adm/routing", json=body, headers=AUTH)
        assert r.status_code == 400, (name, r.text)
        assert field in r.json()["error"], (name, r.json())
    for raw in (b"{not json", b"", b"\xff\xfe"):
        r = gw.http.put(
            "/api/v1/models/adm/routing",
            content=raw,
            headers={**AUTH, "content-type": "application/json"},
        )
        assert r.status_code == 400, r.text
    r = gw.http.put("/api/v1/models/nope/routing", json={"http": []}, headers=AUTH)
    assert r.status_code == 404
    r = gw.http.put(
        "/api/v1/models/adm/routing",
        json={"http": [{"name": "r", "route": [{"destination": "c"}]}], "expectedVersion": 999},
        headers=AUTH,
    )
    assert r.status_code == 409, r.text
    # the old routing keeps serving, nothing was written
    after = routing(gw, "adm")
    assert after == before
    assert served(infer(gw, "adm")) == before["http"][0]["route"][0]["destination"]
    assert len(audit(gw, kind="change", model="adm", limit=1000)) == changes_before


def test_a_valid_put_serves_at_once_and_is_audited(gw: Gateway) -> None:
    before = routing(gw, "adm")
    new = {
        "http": [
            {
                "name": "vip",
                "match": [{"headers": {"x-tier": {"exact": "gold"}}}],
                "route": [{"destination": "c"}],
            },
            {"name": "default", "route": [{"destination": "b"}]},
        ]
    }
    r = gw.http.put(
        "/api/v1/models/adm/routing",
        json={**new, "reason": "move to b", "expectedVersion": before["version"]},
        headers={**AUTH, "x-actor": "alice"},
    )
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["version"] == before["version"] + 1
    assert doc["actor"] == "alice"
    assert doc["http"] == new["http"]
    # served at once: no wait
    assert served(infer(gw, "adm")) == "b"
    assert served(infer(gw, "adm", {"x-tier": "gold"})) == "c"
    got = routing(gw, "adm")
    assert got["version"] == before["version"] + 1
    assert got["http"] == new["http"]
    assert got["tableVersion"] > before["tableVersion"]
    (change,) = audit(gw, kind="change", model="adm", limit=1)
    assert change["actor"] == "alice"
    assert change["reason"] == "move to b"
    assert change["before"] == {"http": before["http"]}
    assert change["after"]["http"] == new["http"]
    # the changed rules are alice's now (issue 8: every rule has an owner)
    assert change["after"]["owners"] == {"vip": "admin/alice", "default": "admin/alice"}
    assert got["owners"] == change["after"]["owners"]
    assert change["routing_version"] == before["version"] + 1
    # the next request's decision names the new rule and table version
    r = infer(gw, "adm", {"x-tier": "gold"})
    rec = decision(gw, r.headers["x-request-id"])["record"]
    assert (rec["rule"], rec["version"]) == ("vip", "c")
    assert rec["store_revision"] == got["tableVersion"]
    # and back, without expectedVersion
    r = gw.http.put("/api/v1/models/adm/routing", json={"http": before["http"]}, headers=AUTH)
    assert r.status_code == 200
    assert r.json()["actor"] == "admin"
    assert served(infer(gw, "adm", {"x-tier": "gold"})) == "a"


# --------------------------------------------------------------------------- config reload


def test_editing_the_config_file_changes_routing_within_two_seconds(gw: Gateway) -> None:
    assert served(infer(gw, "reload")) == "a"
    version = routing(gw, "reload")["version"]
    new_rules = RELOAD_RULES.replace("weight: 100}", "weight: 0}").replace(
        "b, weight: 0}", "b, weight: 100}"
    )
    assert new_rules != RELOAD_RULES
    try:
        gw.config.write_text(gateway_yaml(new_rules))
        start = time.monotonic()
        eventually(lambda: served(infer(gw, "reload")) == "b", timeout=2.5, every=0.05)
        assert time.monotonic() - start <= 2.5
        doc = routing(gw, "reload")
        assert doc["version"] == version + 1
        assert doc["actor"] == "config-file"
        assert doc["http"][0]["route"] == route(("a", 0), ("b", 100))
        # only the edited model was rewritten
        (change,) = audit(gw, kind="change", limit=1)
        assert change["model"] == "reload"
    finally:
        gw.config.write_text(gw.text)
    eventually(lambda: served(infer(gw, "reload")) == "a", timeout=2.5, every=0.05)


class FlakyStore(MemoryStore):
    """A memory store whose next ``put_routing`` calls fail, as a database that is down."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    async def put_routing(self, *args: Any, **kwargs: Any) -> RoutingRecord:
        if self.failures:
            self.failures -= 1
            raise StoreError("the database is down")
        return await super().put_routing(*args, **kwargs)


def test_a_config_edit_is_applied_once_the_store_is_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = f"""\
server:
  store: memory://
  auth: {{adminTokenEnv: {TOKEN_ENV}}}
models:
  m:
    versions:
      a: {echo()}
      b: {echo()}
    http:
      - name: all
        route: [{{destination: a}}]
"""
    config = tmp_path / "modelrouter.yaml"
    config.write_text(text)
    store = FlakyStore()
    loaded = load_config(config)
    app = create_app(loaded, build_services(loaded, store))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as http:

        def version() -> str:
            r = http.post("/v2/models/m/infer", json=echo_body())
            return served(r)

        assert version() == "a"
        store.failures = 2  # the next two writes fail
        config.write_text(text.replace("destination: a}", "destination: b}"))
        eventually(lambda: store.failures == 0, timeout=4)
        assert any("retrying" in r.getMessage() for r in caplog.records)
        eventually(lambda: version() == "b", timeout=2.5, every=0.05)


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(lambda t: t.replace("b, weight: 0}", "zz, weight: 0}"), id="unknown-version"),
        pytest.param(lambda t: t.replace("weight: 100}", "weight: -100}"), id="negative-weight"),
        pytest.param(lambda t: t + "  [unclosed\n", id="yaml-syntax"),
        pytest.param(
            lambda t: t.replace(
                "name: default\n        route: [{destination: a, weight: 100}",
                "name: default\n        bogus: 1\n        route: [{destination: a, weight: 100}",
            ),
            id="unknown-field",
        ),
    ],
)
def test_an_invalid_config_file_is_refused_and_the_old_routing_serves(
    gw: Gateway, broken: Callable[[str], str], caplog: pytest.LogCaptureFixture
) -> None:
    before = routing(gw, "reload")
    bad = broken(gw.text)
    assert bad != gw.text
    caplog.set_level(logging.ERROR, logger="modelrouter.app")
    try:
        gw.config.write_text(bad)
        eventually(lambda: any("refused" in r.getMessage() for r in caplog.records), timeout=3)
        assert served(infer(gw, "reload")) == "a"
        assert routing(gw, "reload") == before
    finally:
        gw.config.write_text(gw.text)


# --------------------------------------------------------------------------- audit


def test_decision_explains_a_request(gw: Gateway) -> None:
    r = infer(gw, "churn", {"x-user-id": "explain-me"})
    version = served(r)
    rid = r.headers["x-request-id"]
    assert len(rid) >= 16  # made by the gateway
    found = decision(gw, rid)
    rec, text = found["record"], found["explanation"]
    assert rec["request_id"] == rid
    assert rec["kind"] == "decision"
    assert rec["model"] == "churn"
    assert rec["version"] == rec["served_by"] == version
    assert rec["pinned"] is False
    assert rec["rule"] == "default"
    assert rec["bucket"] == sticky_bucket(b"churn/default", "explain-me")
    assert rec["store_revision"] >= 1
    assert rec["latency_ms"] > 0
    assert isinstance(rec["seq"], int)
    assert "default" in text
    assert str(rec["bucket"]) in text
    assert version in text
    assert "v3" in text  # mirrored
    r = gw.http.get("/api/v1/decisions/no-such-request", headers=AUTH)
    assert r.status_code == 404
    assert "no-such-request" in r.json()["error"]


def test_a_reused_request_id_explains_every_request(gw: Gateway) -> None:
    rid = f"reused-{time.time_ns()}"
    first = served(infer(gw, "churn", {"x-request-id": rid, "x-user-id": "a"}))
    eventually(lambda: len(audit(gw, request_id=rid)) == 1)
    second = served(infer(gw, "churn", {"x-request-id": rid, "x-user-id": "b"}))
    eventually(lambda: len(audit(gw, request_id=rid)) == 2)
    found = decision(gw, rid)
    assert found["duplicated"] is True
    assert [r["request_id"] for r in found["records"]] == [rid, rid]
    assert [r["served_by"] for r in found["records"]] == [first, second]
    assert found["record"] == found["records"][-1]  # the newest, as before
    assert len(found["explanations"]) == 2
    assert f"request id '{rid}' was used by 2 requests" in found["note"]


def test_audit_filters(gw: Gateway) -> None:
    t0 = time.time()
    time.sleep(0.01)
    rids = []
    for case in ("abort", "delay", "never", None):
        headers = {"x-case": case} if case else {}
        headers["x-request-id"] = f"filters-{case}"
        r = infer(gw, "faults", headers)
        rids.append(r.headers["x-request-id"])
    for rid in rids:
        decision(gw, rid)
    time.sleep(0.01)
    t1 = time.time()

    got = audit(gw, model="faults", since=str(t0), until=str(t1), limit=100)
    assert {r["request_id"] for r in got} == set(rids)
    assert all(r["model"] == "faults" for r in got)
    assert [r["seq"] for r in got] == sorted((r["seq"] for r in got), reverse=True)  # newest first
    asc = audit(gw, model="faults", since=str(t0), until=str(t1), order="asc")
    assert [r["seq"] for r in asc] == sorted(r["seq"] for r in got)

    assert [r["request_id"] for r in audit(gw, rule="abort", since=str(t0))] == ["filters-abort"]
    assert [r["request_id"] for r in audit(gw, request_id="filters-delay")] == ["filters-delay"]
    by_version = audit(gw, model="faults", version="a", since=str(t0))
    assert {r["request_id"] for r in by_version} == set(rids)
    assert audit(gw, model="faults", version="b", since=str(t0)) == []
    assert audit(gw, model="faults", until=str(t0 - 3600)) == []
    assert len(audit(gw, model="faults", since="1h", limit=2)) == 2
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0 - 1)) + "Z"
    assert {r["request_id"] for r in audit(gw, model="faults", since=iso, until=str(t1))} >= set(
        rids
    )
    assert audit(gw, model="faults", kind="change", since=str(t0)) == []
    page = audit(gw, model="faults", since=str(t0), limit=2, order="asc")
    rest = audit(gw, model="faults", since=str(t0), order="asc", after_seq=page[-1]["seq"])
    assert [r["request_id"] for r in page + rest] == [r["request_id"] for r in asc]


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"since": "yesterday-ish"}, "since"),
        ({"until": "12:99"}, "until"),
        ({"since": "nan"}, "since"),
        ({"until": "inf"}, "until"),
        ({"limit": "ten"}, "limit"),
        ({"limit": "-1"}, "limit"),
        ({"after_seq": "x"}, "after_seq"),
        ({"order": "sideways"}, "order"),
        ({"modle": "churn"}, "modle"),
        ({"kind": "decisions"}, "kind"),
        ({"limit": "100000"}, "limit"),
    ],
)
def test_bad_audit_filters_are_400(gw: Gateway, params: dict[str, str], fragment: str) -> None:
    r = gw.http.get("/api/v1/audit", params=params, headers=AUTH)
    assert r.status_code == 400, r.text
    assert fragment in r.json()["error"]


def test_audit_log_verifies(gw: Gateway) -> None:
    infer(gw, "churn", {"x-user-id": "verify"})
    r = gw.http.get("/api/v1/audit/verify", headers=AUTH)
    assert r.status_code == 200, r.text
    doc = r.json()
    assert doc["ok"] is True
    assert doc["checked"] > 0


def test_an_iso_time_without_a_zone_is_utc(gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    """As in ``modelrouter audit``: the server's own time zone does not shift the filter."""
    t0 = time.time() - 1
    r = infer(gw, "faults", {"x-request-id": "tz-check"})
    decision(gw, "tz-check")
    naive = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t0))
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        got = audit(gw, request_id="tz-check", since=naive)
        assert [x["request_id"] for x in got] == ["tz-check"]
        assert audit(gw, request_id="tz-check", until=naive) == []
    finally:
        monkeypatch.undo()
        time.tzset()
    assert r.status_code == 200
