"""Helpers of the tests that run real gateway processes against a store: a config, a gateway
process whose output goes to a file (so that it can never block on a full pipe), polling."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

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
    env = {**os.environ, "MODELROUTER_ADMIN_TOKEN": TOKEN}
    with log.open("wb") as out:
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
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 150  # a busy machine, models from a registry
        while True:
            assert proc.poll() is None, f"gateway exited:\n{log.read_text()}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}{ready}", timeout=1).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"gateway not ready:\n{log.read_text()}"
            time.sleep(0.1)
        with httpx.Client(base_url=url, timeout=10) as client:
            yield client
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(check: Callable[[], Any], what: str, seconds: float = 15) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        result = check()
        if result:
            return result
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)
