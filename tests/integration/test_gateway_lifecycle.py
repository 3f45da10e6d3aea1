"""One gateway process: SIGTERM drains without a failed request, and nothing outlives it."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from processes import Load, alive, descendants, output, serving
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
SLOW = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1.0]}]}
DRAIN = 2.0
SLOW_DELAY = DRAIN + 1.0
"""Longer than the drain: a slow request under way when SIGTERM comes is still in flight when
the drain ends, and within ``shutdown.timeout`` after it."""


def write_config(folder: Path) -> Path:
    (folder / "models").symlink_to(EXAMPLE_MODELS)
    config = folder / "modelrouter.yaml"
    config.write_text(
        f"""\
server:
  store: sqlite:///./gw.db
  watchConfig: false
  shutdown: {{drain: {DRAIN}s, timeout: 5s}}
models:
  churn:
    versions:
      v1: {{storageUri: ./models/churn/v1, modelFormat: sklearn}}
      v3: {{storageUri: ./models/churn/v3, modelFormat: sklearn}}
    http:
      - name: default
        route: [{{destination: v1}}]
        mirrors: [{{destination: v3}}]
  slow:
    versions:
      v1: {{modelFormat: custom, implementation: "fixtures.routing_models:SlowModel",
           executor: thread,
           parameters: {{delay: {SLOW_DELAY}, started: {folder / "slow-started"}}}}}
"""
    )
    return config


def test_sigterm_drains_under_load_without_a_failed_request(tmp_path: Path) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with serving(write_config(tmp_path), port) as proc:
        with Load(url, BODY) as load:
            time.sleep(1.0)
            # a request under way when the signal comes is finished, not cut, though it
            # outlasts the drain
            slow: list[int | str] = []

            def send_slow() -> None:
                try:
                    r = httpx.post(f"{url}/v2/models/slow/infer", json=SLOW, timeout=15)
                    slow.append(r.status_code)
                except httpx.HTTPError as exc:
                    slow.append(repr(exc))

            slow_thread = threading.Thread(target=send_slow)
            slow_thread.start()
            marker = tmp_path / "slow-started"
            deadline = time.monotonic() + 30
            while not marker.exists():
                assert time.monotonic() < deadline, "the slow request never started"
                time.sleep(0.01)
            signalled = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            # readiness turns 503 first, while inference still answers (checked below)
            while (r := httpx.get(f"{url}/v2/health/ready", timeout=5)).status_code == 200:
                time.sleep(0.01)
            unready = time.monotonic()
            assert (r.status_code, r.json()) == (503, {"ready": False})
            time.sleep(max(signalled + DRAIN - 0.2 - time.monotonic(), 0))
        drained = [o for t, o in load.results if unready <= t <= signalled + DRAIN - 0.2]
        before = [o for t, o in load.results if t < unready]
        slow_thread.join(15)
        code = proc.wait(15)
        out = output(proc)
    assert code == 0, out
    assert len(before) >= 5, len(before)
    assert len(drained) >= 5, len(drained)  # still served after readiness turned 503
    failed = [o for o in before + drained if o != 200]
    assert failed == [], failed[:5]
    assert slow == [200], f"the in-flight request was cut: {slow}\n{out}"
    assert "leaked semaphore" not in out
    assert "Traceback" not in out
    assert "drained: no new connections" in out


def test_sigkill_of_the_gateway_leaves_no_process_behind(tmp_path: Path) -> None:
    port = free_port()
    with serving(write_config(tmp_path), port) as proc:
        # the shadow worker process is spawned at start; wait until it runs
        deadline = time.monotonic() + 60
        while not (family := descendants(proc.pid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert family, "no shadow worker process"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        time.sleep(2)
        left = sorted(p for p in family if alive(p))
    assert left == [], f"processes of the killed gateway still run: {left}"
