"""``serve --workers 2``: two gateway processes on one port that behave as one."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path

import httpx
import pytest

from modelrouter.store import open_store
from processes import Load, alive, descendants, serving, spawned_children
from support import EXAMPLE_MODELS, free_port

pytestmark = pytest.mark.integration

BODY = {
    "inputs": [
        {
            "name": "input-0",
            "shape": [1, 10],
            "datatype": "FP64",
            "data": [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2],
        }
    ]
}
USERS = [f"user-{i}" for i in range(8)]
ROUNDS = 6


def write_config(folder: Path) -> Path:
    (folder / "models").symlink_to(EXAMPLE_MODELS)
    config = folder / "modelrouter.yaml"
    config.write_text(
        """\
server:
  store: sqlite:///./gw.db
  watchConfig: false
  shutdown: {drain: 0.2s, timeout: 5s}
  telemetry: {flushInterval: 0.2s}
  shadow: {executor: thread}
models:
  churn:
    versions:
      v1: {storageUri: ./models/churn/v1, modelFormat: sklearn}
      v2: {storageUri: ./models/churn/v2, modelFormat: sklearn}
    http:
      - name: split
        sticky: {header: x-user-id}
        route: [{destination: v1, weight: 50}, {destination: v2, weight: 50}]
"""
    )
    return config


def scrape_totals(url: str) -> tuple[float, float]:
    """(requests_total, request_duration count) summed over every label, from one scrape on
    a new connection."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
    requests = sum(
        float(m) for m in re.findall(r"^modelrouter_requests_total\{.*\} (\S+)$", text, re.M)
    )
    count = sum(
        float(m)
        for m in re.findall(r"^modelrouter_request_duration_seconds_count\{.*\} (\S+)$", text, re.M)
    )
    return requests, count


def assert_every_scrape_sums(url: str, total: int) -> None:
    """Six scrapes in a row (on new connections: either worker answers) report ``total``;
    the other worker's counts may lag by its publishing interval (1 s), so wait for that."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if [scrape_totals(url) for _ in range(6)] == [(total, total)] * 6:
            return
        time.sleep(0.3)
    assert [scrape_totals(url) for _ in range(6)] == [(total, total)] * 6


def send(url: str, seen: dict[str, set[str]], rounds: int) -> None:
    """Each user's requests, each on a new connection (the kernel hands it to either
    worker); the versions that answered each user are added to ``seen``."""
    for _ in range(rounds):
        for user in USERS:
            r = httpx.post(
                f"{url}/v2/models/churn/infer",
                json=BODY,
                headers={"x-user-id": user},
                timeout=10,
            )
            assert r.status_code == 200, r.text
            seen[user].add(r.headers["x-model-version"])


def gateways_in_store(db: Path) -> set[str]:
    async def read() -> set[str]:
        store = open_store(f"sqlite:///{db}")
        await store.open()
        try:
            rows = []
            for version in ("v1", "v2"):
                rows += await store.query_metric_rows("churn", version, 0, time.time() + 60)
            return {r.gateway for r in rows}
        finally:
            await store.close()

    return asyncio.run(read())


def test_two_workers_share_the_port_stickiness_and_the_metrics(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with serving(write_config(tmp_path), port, "--workers", "2", log=log) as proc:
        deadline = time.monotonic() + 60
        while len(workers := spawned_children(proc.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workers) == 2
        # every request on a new connection: the kernel hands it to either worker
        seen: dict[str, set[str]] = {u: set() for u in USERS}
        send(url, seen, ROUNDS)
        assert all(len(v) == 1 for v in seen.values()), seen  # sticky in every worker
        assert {v for vs in seen.values() for v in vs} == {"v1", "v2"}
        total = ROUNDS * len(USERS)
        # each worker counted its own share: both served
        deadline = time.monotonic() + 30
        while len(gateways_in_store(tmp_path / "gw.db")) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(gateways_in_store(tmp_path / "gw.db")) == 2
        # any scrape reports the sum over both workers (they publish every second)
        assert_every_scrape_sums(url, total)

        # a worker that dies is started again, and its counts are kept
        victim = min(workers)
        victim_family = descendants(victim) | {victim}
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + 120
        while log.read_text().count("serving on") < 3 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert log.read_text().count("serving on") == 3, log.read_text()
        now = spawned_children(proc.pid)
        assert len(now) == 2, now
        assert victim not in now
        assert not [p for p in victim_family if alive(p)]
        # until the new worker has served some (a third gateway in the store)
        deadline = time.monotonic() + 60
        while len(gateways_in_store(tmp_path / "gw.db")) < 3 and time.monotonic() < deadline:
            send(url, seen, 1)
            total += len(USERS)
            time.sleep(0.3)
        assert len(gateways_in_store(tmp_path / "gw.db")) == 3
        assert all(len(v) == 1 for v in seen.values()), seen  # the new worker agrees
        assert_every_scrape_sums(url, total)

        family = descendants(proc.pid)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        out = log.read_text()
    assert code == 0, out
    assert "restarting" in out
    time.sleep(0.5)
    assert not [p for p in family if alive(p)]


def test_sigkill_of_the_supervisor_ends_its_workers(tmp_path: Path) -> None:
    port = free_port()
    config = write_config(tmp_path)
    text = config.read_text().replace("executor: thread", "executor: process")
    text = text.replace(  # a mirror: each worker spawns its shadow worker process at start
        "      v2: {storageUri: ./models/churn/v2, modelFormat: sklearn}\n",
        "      v2: {storageUri: ./models/churn/v2, modelFormat: sklearn}\n"
        "      v3: {storageUri: ./models/churn/v3, modelFormat: sklearn}\n",
    )
    text += "        mirrors: [{destination: v3}]\n"
    config.write_text(text)
    with serving(config, port, "--workers", "2") as proc:
        deadline = time.monotonic() + 60
        while len(family := descendants(proc.pid)) < 4 and time.monotonic() < deadline:
            time.sleep(0.1)  # two workers, each with its shadow worker
        assert len(family) >= 4, family
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        time.sleep(2)
        left = sorted(p for p in family if alive(p))
    assert left == [], f"processes of the killed supervisor still run: {left}"


def test_sigterm_drains_every_worker_under_load_without_a_failed_request(tmp_path: Path) -> None:
    drain = 2.0
    config = write_config(tmp_path)
    config.write_text(config.read_text().replace("drain: 0.2s", f"drain: {drain}s"))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with serving(config, port, "--workers", "2", log=log) as proc:
        with Load(url, BODY, keep_alive=2, fresh=2) as load:
            time.sleep(1.0)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            time.sleep(drain - 0.3)
        during = [o for t, o in load.results if t <= signalled + drain - 0.3]
        code = proc.wait(60)
    out = log.read_text()
    assert code == 0, out
    assert len(during) >= 10, len(during)
    assert [o for o in during if o != 200] == []
    assert out.count("drained: no new connections") == 2  # both workers drained
    assert "Traceback" not in out
