"""Durable audit mode: every acknowledged request has its decision record, even when the
gateway is killed (SIGKILL, no shutdown flush) right after answering."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelrouter.store import open_store
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


def decisions(db: Path) -> list[dict[str, Any]]:
    async def read() -> list[dict[str, Any]]:
        store = open_store(f"sqlite:///{db}")
        await store.open()
        try:
            return await store.query_audit(kind="decision", limit=None, order="asc")
        finally:
            await store.close()

    return asyncio.run(read())


@pytest.mark.parametrize("durable", [True, False])
def test_acknowledged_requests_survive_a_kill(tmp_path: Path, durable: bool) -> None:
    db = tmp_path / "gw.db"
    config = tmp_path / "modelrouter.yaml"
    config.write_text(
        f"""
server:
  store: sqlite:///{db}
  watchConfig: false
  # a long flush interval: without durable mode records wait in memory
  audit: {{durable: {str(durable).lower()}, flushInterval: 30s, batchSize: 100000}}
models:
  churn:
    versions:
      v1: {{storageUri: {EXAMPLE_MODELS / "churn" / "v1"}, modelFormat: sklearn}}
"""
    )
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelrouter.cli",
            "serve",
            str(config),
            "--port",
            str(port),
            "--log-level",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    acknowledged: list[str] = []
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "gateway did not start"
            assert proc.poll() is None, "gateway exited"
            time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=10) as client:
            for _ in range(40):
                r = client.post("/v2/models/churn/infer", json=BODY)
                assert r.status_code == 200
                acknowledged.append(r.headers["x-request-id"])
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    recorded = {d["request_id"] for d in decisions(db)}
    if durable:
        assert set(acknowledged) <= recorded
    else:
        # the proof that the test can fail: queued records died with the process
        assert not set(acknowledged) <= recorded
