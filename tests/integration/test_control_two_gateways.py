"""Two real gateway processes on one PostgreSQL, both following one config file: every change
happens once per cluster and both agree on it (issue 8).

One config edit writes one routing version and one change record; pause, PUT, resume leaves
the rollout's status equal to the live table and to the split both gateways serve; a rollback
survives an unrelated edit of the file; a rollout whose spec changes restarts once and one
removed from the file stops, audited once; the same feedback posted to both at once is
accepted once. Needs the PostgreSQL at 127.0.0.1:5432; each run works in a fresh schema.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from modelrouter.routing import sticky_bucket
from support import EXAMPLE_MODELS, ROOT, gateway_process

pytestmark = pytest.mark.integration

PG = "postgresql://postgres@127.0.0.1:5432/test"
TOKEN = "control-two-gateways"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ROW = [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2]
BODY = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10], "data": ROW}]}
T = TypeVar("T")

EU = "route: [{destination: v2}]"
ROLLOUT = """
rollouts:
  churn-v2:
    model: churn
    rule: default
    primary: v1
    canary: v2
    analysis: {interval: 1h, threshold: 2, stepWeights: [20, 50]}
"""


@dataclass
class Pair:
    one: httpx.Client
    two: httpx.Client
    config: Path
    store: str
    text: str

    def both(self) -> tuple[httpx.Client, httpx.Client]:
        return self.one, self.two

    def write(self, text: str) -> None:
        """Replace the config file atomically (a watcher never reads half a file)."""
        tmp = self.config.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config)
        self.text = text


def config_text(store: str) -> str:
    churn = EXAMPLE_MODELS / "churn"
    return f"""\
server:
  store: "{store}"
  audit: {{flushInterval: 10ms}}
models:
  churn:
    versions:
      v1: {{storageUri: {churn / "v1"}, modelFormat: sklearn}}
      v2: {{storageUri: {churn / "v2"}, modelFormat: sklearn}}
    http:
      - name: eu
        match: [{{headers: {{x-region: {{exact: eu}}}}}}]
        {EU}
      - name: default
        route:
          - {{destination: v1, weight: 90}}
          - {{destination: v2, weight: 10}}
        sticky: {{header: x-user-id}}
{ROLLOUT}"""


def eventually(fn: Callable[[], T | None], timeout: float = 10.0, what: str = "") -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what or fn}")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    if not (EXAMPLE_MODELS / "churn" / "v1" / "model.joblib").exists():
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "build_models.py")], check=True, cwd=ROOT
        )
    schema = f"mrtest_{uuid.uuid4().hex[:12]}"
    store = f"{PG}?schema={schema}"
    with psycopg.connect(PG, connect_timeout=5, autocommit=True) as conn:
        conn.execute("SELECT 1")  # PostgreSQL must be up: a failure, not a skip
    config = tmp_path_factory.mktemp("control") / "modelrouter.yaml"
    text = config_text(store)
    config.write_text(text)
    # this tree's code (not whatever the venv points at), and the test fixtures
    env = {"MODELROUTER_ADMIN_TOKEN": TOKEN, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'tests'}"}
    try:
        with (
            gateway_process(config, env=env) as url1,
            gateway_process(config, env=env) as url2,
            httpx.Client(base_url=url1, timeout=30, headers=AUTH) as one,
            httpx.Client(base_url=url2, timeout=30, headers=AUTH) as two,
        ):
            p = Pair(one, two, config, store, text)
            eventually(lambda: status(p.one)["phase"] == "Progressing", what="rollout started")
            yield p
    finally:
        with psycopg.connect(PG, connect_timeout=5, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def get(client: httpx.Client, path: str, **params: Any) -> Any:
    r = client.get(path, params=params)
    assert r.status_code == 200, r.text
    return r.json()


def routing(client: httpx.Client) -> dict[str, Any]:
    doc: dict[str, Any] = get(client, "/api/v1/models/churn/routing")
    return doc


def status(client: httpx.Client) -> dict[str, Any]:
    doc: dict[str, Any] = get(client, "/api/v1/rollouts/churn-v2")
    return doc


def live_weights(client: httpx.Client) -> dict[str, int]:
    rule = next(r for r in routing(client)["http"] if r["name"] == "default")
    return {d["destination"]: d["weight"] for d in rule["route"]}


def served(client: httpx.Client, user: str, **headers: str) -> str:
    r = client.post("/v2/models/churn/infer", json=BODY, headers={"x-user-id": user, **headers})
    assert r.status_code == 200, r.text
    return r.headers["x-model-version"]


def expected(user: str, weights: dict[str, int]) -> str:
    """The version the default rule gives ``user`` at ``weights`` (v1 owns the low buckets)."""
    v1_share = weights["v1"] * 10000 // (weights["v1"] + weights["v2"])
    return "v1" if sticky_bucket(b"churn/default", user) < v1_share else "v2"


def changes(client: httpx.Client, after: int) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = get(
        client, "/api/v1/audit", kind="change", model="churn", after_seq=after, order="asc"
    )["records"]
    return records


def head_seq(client: httpx.Client) -> int:
    records = get(client, "/api/v1/audit", limit=1)["records"]
    return int(records[0]["seq"]) if records else 0


def rollout_actions(client: httpx.Client, after: int) -> list[str]:
    records = get(client, "/api/v1/audit", kind="rollout", after_seq=after, order="asc")
    return [r["action"] for r in records["records"]]


def both_serve_eu(pair: Pair, version: str) -> bool:
    return all(served(c, "eu-user", **{"x-region": "eu"}) == version for c in pair.both())


def test_one_config_edit_writes_one_routing_version_and_one_change_record(pair: Pair) -> None:
    before, seq = routing(pair.one)["version"], head_seq(pair.one)
    pair.write(pair.text.replace(EU, "route: [{destination: v1}]"))
    eventually(lambda: both_serve_eu(pair, "v1"), what="both gateways serve the edit")
    time.sleep(3)  # both watchers (1 s) have imported the edit by now
    assert routing(pair.one)["version"] == routing(pair.two)["version"] == before + 1
    (change,) = changes(pair.two, seq)
    assert (change["actor"], change["routing_version"]) == ("config-file", before + 1)
    assert change["after"]["http"][0]["route"] == [{"destination": "v1"}]
    # the rollout's rule was left alone (it runs on it), and both say so
    for c in pair.both():
        doc = routing(c)
        assert doc["owners"] == {"eu": "config-file", "default": "rollout/churn-v2"}
    assert live_weights(pair.one) == {"v1": 80, "v2": 20}


def test_pause_put_resume_status_equals_the_live_table_and_the_served_split(pair: Pair) -> None:
    r = pair.one.post("/api/v1/rollouts/churn-v2/pause")
    assert r.status_code == 200, r.text
    doc = routing(pair.two)
    rules = copy.deepcopy(doc["http"])
    rules[1]["route"] = [{"destination": "v1", "weight": 90}, {"destination": "v2", "weight": 10}]
    r = pair.two.put(
        "/api/v1/models/churn/routing",
        json={"http": rules, "reason": "hold", "expectedVersion": doc["version"]},
        headers={"x-actor": "carol"},
    )
    assert r.status_code == 200, r.text
    r = pair.one.post("/api/v1/rollouts/churn-v2/resume")
    assert r.status_code == 200, r.text
    assert r.json()["weights"] == {"v1": 90, "v2": 10}
    for c in pair.both():
        eventually(lambda c=c: live_weights(c) == {"v1": 90, "v2": 10}, what="live 90/10")
        s = status(c)
        assert (s["phase"], s["weights"], s["canaryWeight"]) == (
            "Progressing",
            {"v1": 90, "v2": 10},
            10,
        )
    users = [f"split-{i}" for i in range(60)]
    for u in users:
        want = expected(u, {"v1": 90, "v2": 10})
        assert served(pair.one, u) == served(pair.two, u) == want, u


def test_a_rollback_survives_an_unrelated_file_edit(pair: Pair) -> None:
    r = pair.two.post("/api/v1/rollouts/churn-v2/abort")
    assert r.status_code == 200, r.text
    assert r.json()["phase"] == "RolledBack"
    for c in pair.both():
        eventually(lambda c=c: live_weights(c) == {"v1": 100, "v2": 0}, what="rolled back")
    seq = head_seq(pair.one)
    pair.write(pair.text.replace("route: [{destination: v1}]", EU))  # eu back to v2
    eventually(lambda: both_serve_eu(pair, "v2"), what="both gateways serve the edit")
    time.sleep(3)
    for c in pair.both():
        assert live_weights(c) == {"v1": 100, "v2": 0}  # the canary stays at 0
        assert status(c)["weights"] == {"v1": 100, "v2": 0}
        doc = routing(c)
        assert doc["owners"]["default"] == "rollout/churn-v2"
        assert [x["rule"] for x in doc["leftAlone"]] == ["default"]
    for u in (f"rolled-{i}" for i in range(20)):
        assert served(pair.one, u) == served(pair.two, u) == "v1"
    (change,) = changes(pair.one, seq)
    assert "left alone: default (held by rollout/churn-v2)" in change["reason"]


def test_a_changed_rollout_restarts_once_and_a_removed_one_stops_audited(pair: Pair) -> None:
    seq = head_seq(pair.one)
    pair.write(pair.text.replace("stepWeights: [20, 50]", "stepWeights: [30, 60]"))
    for c in pair.both():
        eventually(lambda c=c: status(c)["phase"] == "Progressing", what="restarted")
    eventually(lambda: live_weights(pair.two) == {"v1": 70, "v2": 30}, what="first step")
    time.sleep(3)
    assert rollout_actions(pair.one, seq) == ["restart", "start"]
    seq = head_seq(pair.one)
    pair.write(pair.text[: pair.text.index("rollouts:")])
    for c in pair.both():
        eventually(lambda c=c: get(c, "/api/v1/rollouts")["rollouts"] == [], what="stopped")
    time.sleep(3)
    assert rollout_actions(pair.two, seq) == ["stop"]
    (stop,) = get(pair.one, "/api/v1/audit", kind="rollout", after_seq=seq, order="asc")["records"]
    assert (stop["phaseBefore"], stop["phase"], stop["actor"]) == (
        "Progressing",
        "Stopped",
        "config-file",
    )
    assert "removed from the config file" in stop["reason"]
    # the rule keeps the weights it had; nothing runs on it any more
    for c in pair.both():
        assert live_weights(c) == {"v1": 70, "v2": 30}
        assert pair_404(c)


def pair_404(client: httpx.Client) -> bool:
    return client.get("/api/v1/rollouts/churn-v2").status_code == 404


def test_the_same_feedback_posted_to_both_at_once_is_accepted_once(pair: Pair) -> None:
    for i in range(3):
        rid = f"fb-{uuid.uuid4().hex[:8]}-{i}"
        r = pair.one.post("/v2/models/churn/infer", json=BODY, headers={"x-request-id": rid})
        assert r.status_code == 200, r.text
        eventually(
            lambda rid=rid: pair.two.get(f"/api/v1/decisions/{rid}").status_code == 200,
            what="the decision record reached the store",
        )
        body = {"request_id": rid, "reward": 1.0}

        def post(c: httpx.Client, body: dict[str, Any] = body) -> int:
            return c.post("/api/v1/feedback", json=body).status_code

        with ThreadPoolExecutor(2) as pool:
            codes = sorted(pool.map(post, pair.both()))
        assert codes == [200, 409], codes
        records = get(pair.one, "/api/v1/audit", kind="feedback", request_id=rid)["records"]
        assert len(records) == 1


def test_version_figures_count_the_traffic_of_both_gateways(pair: Pair) -> None:
    def requests() -> dict[str, int]:
        doc = get(pair.two, "/api/v1/models/churn/versions", window="10m")
        return {v["name"]: v["requests"] for v in doc["versions"]}

    before = requests()
    for i in range(6):
        served(pair.one, f"fig-{i}", **{"x-region": "eu"})  # eu: v2
    for i in range(4):
        served(pair.two, f"fig-{i}", **{"x-region": "eu"})
    # each gateway flushes its windows to the store every telemetry.flushInterval (2 s)
    eventually(lambda: requests()["v2"] >= before["v2"] + 10, what="both gateways' requests")
    docs = [get(c, "/api/v1/models/churn/versions", window="10m") for c in pair.both()]
    for doc in docs:
        v2 = next(v for v in doc["versions"] if v["name"] == "v2")
        assert v2["state"] == "READY"
        assert v2["weights"] == {"eu": 100.0, "default": 30.0}
        assert v2["errorRate"] == 0.0
        assert v2["latencyP50Ms"] is not None
        assert v2["latencyP99Ms"] >= v2["latencyP50Ms"]
    r = pair.one.get("/api/v1/models/churn/versions", params={"window": "soon"})
    assert r.status_code == 400
    assert "window" in r.json()["error"]
    assert pair.one.get("/api/v1/models/nope/versions").status_code == 404
