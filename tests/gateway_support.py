"""Helpers of the tests that run real gateway processes against a store: a config, a gateway
process whose output goes to a file (so that it can never block on a full pipe), polling."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from processes import start_serve, stop, wait_ready
from support import EXAMPLE_MODELS, ROOT, free_port

PG = "postgresql://postgres@127.0.0.1:5432/test"
TOKEN = "store-faults-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}
ROW = [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2]
BODY = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10], "data": ROW}]}


def write_config(folder: Path, store: str, extra: str = "") -> Path:
    churn = EXAMPLE_MODELS / "churn"
    config = folder / "modelrouter.yaml"
    config.write_text(
        f"""\
server:
  store: "{store}"
  watchConfig: false
  storeCheckInterval: 200ms
{extra}
models:
  churn:
    versions:
      v1: {{storageUri: {churn / "v1"}, modelFormat: sklearn}}
      v2: {{storageUri: {churn / "v2"}, modelFormat: sklearn}}
    http:
      - name: default
        route:
          - {{destination: v1, weight: 90}}
          - {{destination: v2, weight: 10}}
"""
    )
    return config


@contextlib.contextmanager
def gateway(config: Path, log: Path, ready: str = "/v2/health/ready") -> Iterator[httpx.Client]:
    """``modelrouter serve`` in its own process (output to ``log``), once ``ready`` answers 200
    (by default: once its models are ready)."""
    if not (EXAMPLE_MODELS / "churn" / "v1" / "model.joblib").exists():
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "build_models.py")], check=True, cwd=ROOT
        )
    port = free_port()
    proc = start_serve(
        config, port, env={"MODELROUTER_ADMIN_TOKEN": TOKEN}, log=log, log_level="warning"
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, timeout=150, path=ready, log=log)
        with httpx.Client(base_url=url, timeout=10) as client:
            yield client
    finally:
        stop(proc)


def wait_for(check: Callable[[], Any], what: str, seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
