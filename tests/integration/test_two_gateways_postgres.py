"""Two real gateway processes sharing one PostgreSQL store.

They must agree on every sticky assignment, serve a routing change made through the other
within a second, and write one hash-chained audit log that holds a decision record for every
request either of them answered. Needs the PostgreSQL at 127.0.0.1:5432 (user postgres, trust
auth, database ``test``); each run works in a fresh schema, dropped at the end.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from modelrouter.routing import sticky_bucket
from support import EXAMPLE_MODELS, ROOT, gateway_process

pytestmark = pytest.mark.integration

PG = "postgresql://postgres@127.0.0.1:5432/test"
TOKEN = "two-gateways-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ROW = [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2]
BODY = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10], "data": ROW}]}


@dataclass
class Pair:
    one: httpx.Client
    two: httpx.Client
    store: str


def write_config(folder: Path, store: str) -> Path:
    churn = EXAMPLE_MODELS / "churn"
    config = folder / "modelrouter.yaml"
    config.write_text(
        f"""\
server:
  store: "{store}"
  watchConfig: false
  audit: {{flushInterval: 10ms}}
models:
  churn:
    versions:
      v1: {{storageUri: {churn / "v1"}, modelFormat: sklearn}}
      v2: {{storageUri: {churn / "v2"}, modelFormat: sklearn}}
    http:
      - name: eu
        match: [{{headers: {{x-region: {{exact: eu}}}}}}]
        route: [{{destination: v2}}]
      - name: default
        route:
          - {{destination: v1, weight: 90}}
          - {{destination: v2, weight: 10}}
        sticky: {{header: x-user-id}}
"""
    )
    return config


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    if not (EXAMPLE_MODELS / "churn" / "v1" / "model.joblib").exists():
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "build_models.py")], check=True, cwd=ROOT
        )
    schema = f"mr_two_gw_{uuid.uuid4().hex[:12]}"
    store = f"{PG}?schema={schema}"
    # PostgreSQL must be up: a connection error fails the test (no skip)
    with psycopg.connect(PG, connect_timeout=5, autocommit=True) as conn:
        conn.execute("SELECT 1")
    config = write_config(tmp_path_factory.mktemp("two-gateways"), store)
    # the gateways run this tree's sources, not whatever the shared venv points at
    path = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")])
    env = {"MODELROUTER_ADMIN_TOKEN": TOKEN, "PYTHONPATH": path}
    try:
        with (
            gateway_process(config, env=env) as url1,
            gateway_process(config, env=env) as url2,
            httpx.Client(base_url=url1, timeout=20) as one,
            httpx.Client(base_url=url2, timeout=20) as two,
        ):
            yield Pair(one, two, store)
    finally:
        with psycopg.connect(PG, connect_timeout=5, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def version_of(client: httpx.Client, user: str, **headers: str) -> str:
    r = client.post("/v2/models/churn/infer", json=BODY, headers={"x-user-id": user, **headers})
    assert r.status_code == 200, r.text
    return r.headers["x-model-version"]


def expected(user: str, canary_from: int) -> str:
    """The version the default rule gives ``user`` when v1 owns buckets [0, canary_from)."""
    return "v1" if sticky_bucket(b"churn/default", user) < canary_from else "v2"


def get_routing(client: httpx.Client) -> dict[str, Any]:
    r = client.get("/api/v1/models/churn/routing", headers=AUTH)
    assert r.status_code == 200, r.text
    doc: dict[str, Any] = r.json()
    return doc


def test_both_gateways_serve_the_same_rules_from_the_store(pair: Pair) -> None:
    one, two = get_routing(pair.one), get_routing(pair.two)
    assert one["version"] == two["version"] == 1  # the second gateway did not write again
    assert one["actor"] == two["actor"] == "config-file"
    assert one["http"] == two["http"]
    assert version_of(pair.one, "x", **{"x-region": "eu"}) == "v2"
    assert version_of(pair.two, "x", **{"x-region": "eu"}) == "v2"


def test_the_same_user_gets_the_same_version_from_both(pair: Pair) -> None:
    users = [f"user-{i}" for i in range(120)]
    seen = set()
    for u in users:
        a, b = version_of(pair.one, u), version_of(pair.two, u)
        assert a == b == expected(u, 9000), (u, a, b)
        seen.add(a)
    assert seen == {"v1", "v2"}


def test_a_change_through_one_is_served_by_the_other_within_a_second(pair: Pair) -> None:
    before = get_routing(pair.one)
    # users on v1 at 90/10 who move to v2 at 50/50
    movers = [
        u
        for u in (f"mover-{i}" for i in range(400))
        if 5000 <= sticky_bucket(b"churn/default", u) < 9000
    ][:5]
    assert len(movers) == 5
    for u in movers:
        assert version_of(pair.two, u) == "v1"
    rules = copy.deepcopy(before["http"])
    default = next(r for r in rules if r["name"] == "default")
    default["route"] = [{"destination": "v1", "weight": 50}, {"destination": "v2", "weight": 50}]
    try:
        r = pair.one.put(
            "/api/v1/models/churn/routing",
            json={"http": rules, "reason": "canary to 50%", "expectedVersion": before["version"]},
            headers={**AUTH, "x-actor": "carol"},
        )
        assert r.status_code == 200, r.text
        changed = time.monotonic()
        assert r.json()["version"] == before["version"] + 1
        # the other gateway: poll for at most one second
        while version_of(pair.two, movers[0]) != "v2":
            assert time.monotonic() - changed < 1.0, "the other gateway still serves the old rules"
            time.sleep(0.02)
        assert time.monotonic() - changed < 1.0
        doc = get_routing(pair.two)
        assert doc["version"] == before["version"] + 1
        assert doc["actor"] == "carol"
        for u in movers:
            assert version_of(pair.one, u) == version_of(pair.two, u) == "v2"
        for u in (f"user-{i}" for i in range(60)):
            assert version_of(pair.one, u) == version_of(pair.two, u) == expected(u, 5000)
        # one change record, in the shared log, seen from either gateway
        for client in (pair.one, pair.two):
            r = client.get("/api/v1/audit", params={"kind": "change", "limit": 1}, headers=AUTH)
            (change,) = r.json()["records"]
            assert change["actor"] == "carol"
            assert change["reason"] == "canary to 50%"
            assert change["routing_version"] == before["version"] + 1
    finally:
        r = pair.two.put(
            "/api/v1/models/churn/routing", json={"http": before["http"]}, headers=AUTH
        )
        assert r.status_code == 200, r.text
    deadline = time.monotonic() + 1.0
    while version_of(pair.one, movers[0]) != "v1":
        assert time.monotonic() < deadline, "the change back did not reach the first gateway"
        time.sleep(0.02)


def test_every_request_of_a_load_has_its_decision_record_in_one_verified_chain(
    pair: Pair,
) -> None:
    per_client = 75
    run = uuid.uuid4().hex[:8]
    clients = {"one": pair.one, "two": pair.two}
    plan = [(gw, lane) for gw in clients for lane in range(2)]  # two sequential lanes each
    failures: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 40

    def lane(gw: str, n: int) -> list[str]:
        ids = []
        # a client of its own per lane: httpx clients are not shared between threads here
        with httpx.Client(base_url=str(clients[gw].base_url), timeout=10) as http:
            for i in range(per_client):
                if time.monotonic() > deadline:
                    break
                rid = f"load-{run}-{gw}-{n}-{i:03d}"
                r = http.post(
                    "/v2/models/churn/infer",
                    json=BODY,
                    headers={"x-request-id": rid, "x-user-id": f"load-user-{i % 37}"},
                )
                if r.status_code != 200 or r.headers["x-request-id"] != rid:
                    with lock:
                        failures.append(f"{rid}: {r.status_code} {r.text[:200]}")
                ids.append(rid)
        return ids

    start = time.monotonic()
    with ThreadPoolExecutor(len(plan)) as pool:
        lanes = list(pool.map(lambda p: lane(*p), plan))
    elapsed = time.monotonic() - start
    assert not failures, failures[:5]
    sent = [rid for ids in lanes for rid in ids]
    assert len(sent) == per_client * len(plan), f"only {len(sent)} requests in {elapsed:.1f}s"

    # every request id has exactly one decision record (the writers batch: wait a little)
    prefix = f"load-{run}-"

    def records() -> list[dict[str, Any]]:
        r = pair.two.get(
            "/api/v1/audit",
            params={
                "kind": "decision",
                "model": "churn",
                "limit": 5000,
                "order": "asc",
                "since": "5m",
            },
            headers=AUTH,
        )
        assert r.status_code == 200, r.text
        return [x for x in r.json()["records"] if str(x.get("request_id", "")).startswith(prefix)]

    give_up = time.monotonic() + 5
    found = records()
    while len(found) < len(sent) and time.monotonic() < give_up:
        time.sleep(0.1)
        found = records()
    ids = [x["request_id"] for x in found]
    assert sorted(ids) == sorted(sent), (
        f"{len(set(sent) - set(ids))} requests lack a record, {len(ids) - len(set(ids))} twice"
    )
    # in order of seq: unique, ascending; and each lane's requests in the order it sent them
    seqs = [x["seq"] for x in found]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)
    for ids_of_lane in lanes:
        order = [x["request_id"] for x in found if x["request_id"] in set(ids_of_lane)]
        assert order == ids_of_lane
    for x in found:
        user = f"load-user-{int(x['request_id'][-3:]) % 37}"
        assert x["status"] == 200
        assert x["rule"] == "default"
        assert x["bucket"] == sticky_bucket(b"churn/default", user)
        assert x["version"] == x["served_by"] == expected(user, 9000)
    # both gateways wrote into the one chain
    assert {x["request_id"].split("-")[2] for x in found} == {"one", "two"}

    # the chain verifies, from either gateway and from the CLI
    for client in (pair.one, pair.two):
        r = client.get("/api/v1/audit/verify", headers=AUTH)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["ok"] is True, doc
        assert doc["checked"] >= len(sent)
    cli = subprocess.run(
        [sys.executable, "-m", "modelrouter.cli", "audit", "verify", "--store", pair.store],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
