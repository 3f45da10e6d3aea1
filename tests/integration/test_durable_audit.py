"""Durable audit mode: every acknowledged request has its decision record, even when the
gateway is killed (SIGKILL, no shutdown flush) right after answering."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelrouter.store import open_store
from processes import start_serve, wait_ready
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
    proc = start_serve(config, port, log=config.with_suffix(".log"), log_level="warning")
    acknowledged: list[str] = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(proc, url, timeout=60, log=config.with_suffix(".log"))
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
