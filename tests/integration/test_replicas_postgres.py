"""Replicas, proven on one machine: three gateway processes on one PostgreSQL, a client
spreading requests over them, and the one holding the rollout's lease SIGKILLed mid-load.

- every request sent to the two others succeeds, during the kill and after it;
- the rollout's lease moves to a survivor within two analysis intervals, and the survivor
  runs the rollout on (its state keeps being checked);
- every sticky user is served the same version by every gateway, before and after;
- in durable mode every acknowledged request (the killed gateway's included) has its decision
  record, and the hash chain verifies.

Needs the PostgreSQL at 127.0.0.1:5432 (user postgres, trust, database ``test``): the test
fails, not skips, without it. Each run works in a schema of its own, dropped at the end.
"""

from __future__ import annotations

import contextlib
import itertools
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psycopg
import pytest

from modelrouter.routing import sticky_bucket
from processes import start_serve, wait_ready
from support import EXAMPLE_MODELS, free_port

pytestmark = pytest.mark.integration

PG = "postgresql://postgres@127.0.0.1:5432/test"
TOKEN = "replicas-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ROW = [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2]
BODY = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10], "data": ROW}]}
INTERVAL = 2.0
"""The rollout's analysis interval: its lease lasts as long."""
CANARY_WEIGHT = 30
USERS = [f"user-{i}" for i in range(40)]


def write_config(folder: Path, store: str) -> Path:
    churn = EXAMPLE_MODELS / "churn"
    config = folder / "modelrouter.yaml"
    config.write_text(
        f"""\
server:
  store: "{store}"
  watchConfig: false
  audit: {{durable: true, flushInterval: 5ms}}
  shadow: {{executor: thread}}
  telemetry: {{flushInterval: 500ms}}
models:
  churn:
    versions:
      v1: {{storageUri: {churn / "v1"}, modelFormat: sklearn}}
      v2: {{storageUri: {churn / "v2"}, modelFormat: sklearn}}
    http:
      - name: default
        route:
          - {{destination: v1, weight: 100}}
          - {{destination: v2, weight: 0}}
        sticky: {{header: x-user-id}}
rollouts:
  churn-ab:
    model: churn
    rule: default
    primary: v1
    canary: v2
    strategy: abtest           # fixed weights: the sticky users must not move
    analysis: {{interval: {INTERVAL}s, weight: {CANARY_WEIGHT}}}
"""
    )
    return config


@dataclass
class Gateway:
    proc: subprocess.Popen[bytes]
    url: str
    name: str


@contextlib.contextmanager
def gateways(config: Path, n: int) -> Iterator[list[Gateway]]:
    """``n`` gateway processes started at once; yielded once each one is ready."""
    started: list[Gateway] = []
    try:
        for i in range(n):
            port = free_port()
            proc = start_serve(
                config,
                port,
                env={"MODELROUTER_ADMIN_TOKEN": TOKEN},
                log=config.with_name(f"gw{i}.log"),
                log_level="warning",
            )
            started.append(Gateway(proc, f"http://127.0.0.1:{port}", f"gw{i}"))
        for i, gw in enumerate(started):
            wait_ready(gw.proc, gw.url, timeout=120, log=config.with_name(f"gw{i}.log"))
        yield started
    finally:
        for gw in started:
            if gw.proc.poll() is None:
                gw.proc.terminate()
        for gw in started:
            try:
                gw.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                gw.proc.kill()
                gw.proc.wait()


def lease(schema: str, name: str) -> tuple[str, float] | None:
    """The owner of lease ``name`` and when it expires, read from the store's table."""
    with psycopg.connect(PG, connect_timeout=5) as conn:
        row = conn.execute(
            f'SELECT owner, expires FROM "{schema}".mr_lock WHERE name = %s', (name,)
        ).fetchone()
    return (str(row[0]), float(row[1])) if row else None


def pid_of(owner: str) -> int:
    """Owners are ``host:pid:nonce``."""
    return int(owner.split(":")[-2])


def expected(user: str) -> str:
    canary_from = 10_000 - CANARY_WEIGHT * 100
    return "v1" if sticky_bucket(b"churn/default", user) < canary_from else "v2"


def versions_of(url: str) -> dict[str, str]:
    out = {}
    with httpx.Client(base_url=url, timeout=20) as c:
        for u in USERS:
            r = c.post("/v2/models/churn/infer", json=BODY, headers={"x-user-id": u})
            assert r.status_code == 200, r.text
            out[u] = r.headers["x-model-version"]
    return out


@dataclass
class Load:
    acked: dict[str, str] = field(default_factory=dict)
    """request id -> version of every 200."""
    to_survivors: int = 0
    failed_survivors: list[str] = field(default_factory=list)
    to_killed_after: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def test_three_replicas_survive_the_loss_of_one(tmp_path: Path) -> None:
    schema = f"mr_replicas_{uuid.uuid4().hex[:12]}"
    store = f"{PG}?schema={schema}"
    with psycopg.connect(PG, connect_timeout=5, autocommit=True) as conn:
        conn.execute("SELECT 1")  # PostgreSQL must be up: no skip
    config = write_config(tmp_path, store)
    lock_name = "rollout/churn-ab"
    try:
        with gateways(config, 3) as gws:
            by_pid = {gw.proc.pid: gw for gw in gws}
            # the rollout starts (once, under its lease) and every gateway serves its weights
            deadline = time.monotonic() + 30
            while True:
                r = httpx.get(f"{gws[0].url}/api/v1/rollouts/churn-ab", headers=AUTH, timeout=10)
                assert r.status_code == 200, r.text
                if r.json()["phase"] == "Progressing":
                    break
                assert time.monotonic() < deadline, r.json()
                time.sleep(0.1)
            deadline = time.monotonic() + 10
            while True:
                docs = [
                    httpx.get(f"{g.url}/api/v1/models/churn/routing", headers=AUTH).json()
                    for g in gws
                ]
                if len({d["version"] for d in docs}) == 1:
                    break
                assert time.monotonic() < deadline, [d["version"] for d in docs]
                time.sleep(0.05)
            before = {gw.name: versions_of(gw.url) for gw in gws}
            for gw in gws:
                assert before[gw.name] == {u: expected(u) for u in USERS}, gw.name
            assert set(before["gw0"].values()) == {"v1", "v2"}

            held = lease(schema, lock_name)
            assert held is not None
            victim = by_pid[pid_of(held[0])]
            survivors = [g for g in gws if g is not victim]

            load = Load()
            run = uuid.uuid4().hex[:8]
            lanes, per_lane = 6, 90
            sent = itertools.count()
            kill_at = lanes * per_lane // 3
            killed = threading.Event()
            killed_at: list[float] = []

            def lane(n: int) -> None:
                clients = {g.name: httpx.Client(base_url=g.url, timeout=20) for g in gws}
                try:
                    for i in range(per_lane):
                        gw = gws[(n + i) % len(gws)]
                        k = next(sent)
                        if k == kill_at:
                            victim.proc.send_signal(signal.SIGKILL)
                            killed_at.append(time.monotonic())
                            killed.set()
                        rid = f"rep-{run}-{n}-{i:03d}"
                        user = USERS[(n * 7 + i) % len(USERS)]
                        headers = {"x-request-id": rid, "x-user-id": user}
                        try:
                            r = clients[gw.name].post(
                                "/v2/models/churn/infer", json=BODY, headers=headers
                            )
                        except httpx.HTTPError as exc:
                            if gw is not victim:
                                with load.lock:
                                    load.failed_survivors.append(f"{rid} {gw.name}: {exc!r}")
                            elif killed.is_set():
                                with load.lock:
                                    load.to_killed_after += 1
                            continue
                        with load.lock:
                            if gw is not victim:
                                load.to_survivors += 1
                                if r.status_code != 200:
                                    load.failed_survivors.append(
                                        f"{rid} {gw.name}: {r.status_code} {r.text[:200]}"
                                    )
                            if r.status_code == 200:
                                version = r.headers["x-model-version"]
                                load.acked[rid] = version
                                assert version == expected(user), (rid, user, version)
                finally:
                    for c in clients.values():
                        c.close()

            start = time.monotonic()
            with ThreadPoolExecutor(lanes) as pool:
                futures = [pool.submit(lane, n) for n in range(lanes)]
                # the lease: wait for a survivor to hold it
                assert killed.wait(60), "the load never reached the kill"
                moved_after = None
                while time.monotonic() - killed_at[0] < 4 * INTERVAL:
                    now_held = lease(schema, lock_name)
                    if now_held is not None and pid_of(now_held[0]) != victim.proc.pid:
                        moved_after = time.monotonic() - killed_at[0]
                        new_holder = by_pid[pid_of(now_held[0])]
                        break
                    time.sleep(0.05)
                for f in futures:
                    f.result()
            elapsed = time.monotonic() - start
            assert victim.proc.wait(timeout=5) == -signal.SIGKILL

            assert not load.failed_survivors, load.failed_survivors[:5]
            assert load.to_survivors >= lanes * per_lane * 2 // 3 - lanes
            assert moved_after is not None, "the lease did not move within four intervals"
            assert moved_after <= 2 * INTERVAL, f"the lease moved after {moved_after:.2f}s"
            assert new_holder in survivors

            # the survivor runs the rollout on: its checks keep coming
            r = httpx.get(f"{survivors[0].url}/api/v1/rollouts/churn-ab", headers=AUTH)
            checked = r.json()["lastCheck"]
            deadline = time.monotonic() + 3 * INTERVAL
            while True:
                r = httpx.get(f"{survivors[1].url}/api/v1/rollouts/churn-ab", headers=AUTH)
                if r.json()["lastCheck"] > checked:
                    break
                assert time.monotonic() < deadline, "no check since the takeover"
                time.sleep(0.1)
            assert r.json()["phase"] == "Progressing"

            # sticky users: same versions from both survivors after the kill
            for gw in survivors:
                assert versions_of(gw.url) == before[gw.name], gw.name

            # durable: every acknowledged request has its record, and the chain verifies
            prefix = f"rep-{run}-"
            r = httpx.get(
                f"{survivors[0].url}/api/v1/audit",
                params={"kind": "decision", "model": "churn", "limit": 5000, "since": "10m"},
                headers=AUTH,
                timeout=30,
            )
            assert r.status_code == 200, r.text
            records = {
                x["request_id"]: x
                for x in r.json()["records"]
                if str(x.get("request_id", "")).startswith(prefix)
            }
            missing = set(load.acked) - set(records)
            assert not missing, f"{len(missing)} acknowledged requests lack a record"
            for rid, version in load.acked.items():
                assert records[rid]["served_by"] == version
                assert records[rid]["status"] == 200
            for gw in survivors:
                v = httpx.get(f"{gw.url}/api/v1/audit/verify", headers=AUTH, timeout=60).json()
                assert v["ok"] is True, v
            print(
                f"\nreplicas: {len(load.acked)} acknowledged of {lanes * per_lane} sent in"
                f" {elapsed:.1f}s; {load.to_survivors} to the survivors, 0 failed;"
                f" {load.to_killed_after} refused by the killed gateway after the kill;"
                f" lease moved {moved_after:.2f}s after the kill (interval {INTERVAL:g}s);"
                f" {len(records)} records, chain verified ({v['checked']} checked)"
            )
    finally:
        with psycopg.connect(PG, connect_timeout=5, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
