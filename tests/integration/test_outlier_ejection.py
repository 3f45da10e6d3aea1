"""Outlier ejection end to end: a remote version frozen with SIGSTOP under bounded load.

Before the freeze the remote answers; while frozen, the first calls wait out their timeout
and fall back, then the version is ejected and every request goes straight to the fallback
(p99 under 50 ms, and no decision waited for the timeout); after SIGCONT and the ejection
time, the remote serves again.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import peers
from modelrouter.app import create_app
from support import EXAMPLE_MODELS, free_port, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

UPSTREAM = f"""\
server: {{store: "memory://", watchConfig: false}}
models:
  churn:
    versions:
      v1: {{storageUri: {EXAMPLE_MODELS / "churn" / "v2"}, modelFormat: sklearn}}
"""

GATEWAY = """\
server: {{store: "memory://", watchConfig: false}}
models:
  churn:
    versions:
      local: {{storageUri: ./churn/v1, modelFormat: sklearn}}
      remote:
        endpoint: "http://127.0.0.1:{port}"
        timeout: 300ms
        outlierDetection:
          consecutiveErrors: 3
          interval: 500ms
          baseEjectionTime: 3s
          maxEjectionPercent: 50
    http:
      - name: default
        route: [{{destination: remote}}]
        fallback: [local]
"""

ROW = [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2]
BODY = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10], "data": [ROW]}]}
CONCURRENCY = 4


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A modelrouter gateway in its own process: (port, pid)."""
    config = tmp_path / "upstream.yaml"
    config.write_text(UPSTREAM)
    port = free_port()
    argv = [sys.executable, "-m", "modelrouter.cli", "serve", str(config), "--port", str(port)]
    server = peers.ServerProcess(
        "upstream",
        argv,
        tmp_path / "upstream.log",
        f"http://127.0.0.1:{port}/v2/health/ready",
        env={"PYTHONPATH": os.environ.get("PYTHONPATH", "")},
    )
    with peers.serve(server, timeout=60):
        assert server.proc is not None
        pid = server.proc.pid
        try:
            yield port, pid
        finally:
            os.kill(pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM


class Load:
    """CONCURRENCY threads sending requests back to back; each result is kept."""

    def __init__(self, url: str) -> None:
        self.url = url
        # start, seconds, status, version, request id
        self.results: list[tuple[float, float, int, str, str]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run) for _ in range(CONCURRENCY)]

    def _run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as c:
            while not self._stop.is_set():
                start = time.monotonic()
                r = c.post("/v2/models/churn/infer", json=BODY)
                took = time.monotonic() - start
                with self._lock:
                    self.results.append(
                        (
                            start,
                            took,
                            r.status_code,
                            r.headers.get("x-model-version", ""),
                            r.headers.get("x-request-id", ""),
                        )
                    )

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def since(self, t: float) -> list[tuple[float, float, int, str, str]]:
        with self._lock:
            return [r for r in self.results if r[0] >= t]


def p99(latencies: list[float]) -> float:
    ordered = sorted(latencies)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def p99_target(before: list[float]) -> float:
    """50 ms (the target) on a machine with cores to spare. On one loaded far beyond its cores
    (other suites, benchmarks) even the fallback's own latency exceeds that: there the bound is
    the version's 300 ms timeout or twice the p99 of the healthy calls ``before`` the freeze,
    whichever is higher (the decisions then prove that no request waited for the timeout)."""
    overloaded = os.getloadavg()[0] > 2 * (os.cpu_count() or 1)
    return max(0.3, 2 * p99(before)) if overloaded else 0.050


def ejected(c: httpx.Client) -> bool:
    return (
        'modelrouter_outlier_ejected{model="churn",version="remote"} 1.0' in c.get("/metrics").text
    )


ADMIN = {"authorization": "Bearer ejection-admin"}


def waited_for_timeout(c: httpx.Client, request_ids: set[str]) -> list[dict[str, object]]:
    """The fallbacks of ``request_ids``' decisions that waited for a timeout, read from the
    audit log once every decision is in it."""
    deadline = time.monotonic() + 10
    while True:
        params = {"kind": "decision", "limit": "10000"}
        found = c.get("/api/v1/audit", params=params, headers=ADMIN).json()["records"]
        mine = [r for r in found if r.get("request_id") in request_ids]
        if len(mine) >= len(request_ids) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert len(mine) == len(request_ids)
    return [
        f
        for r in mine
        for f in r.get("fallbacks") or []
        if "did not answer" in str(f.get("error", ""))
    ]


def test_a_frozen_remote_is_ejected_and_comes_back(upstream: tuple[int, int]) -> None:
    port, pid = upstream
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELROUTER_ADMIN_TOKEN", ADMIN["authorization"].removeprefix("Bearer "))
        app = create_app(loaded_from_yaml(GATEWAY.format(port=port), EXAMPLE_MODELS))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as c, Load(url) as load:
        deadline = time.monotonic() + 15
        while len(load.since(0)) < 8:
            assert time.monotonic() < deadline, "no requests answered before the freeze"
            time.sleep(0.05)
        before = load.since(0)
        assert {(s, v) for _, _, s, v, _ in before} == {(200, "remote")}

        os.kill(pid, signal.SIGSTOP)
        frozen_at = time.monotonic()
        deadline = frozen_at + 5
        while not ejected(c):
            assert time.monotonic() < deadline, "the frozen version was not ejected"
            time.sleep(0.02)
        ejected_at = time.monotonic()
        time.sleep(1.5)  # under the 3 s ejection: every request goes straight to the fallback
        during = load.since(ejected_at + 0.05)
        assert len(during) > 10, len(during)
        assert {(s, v) for _, _, s, v, _ in during} == {(200, "local")}
        latencies = [took for _, took, _, _, _ in during]
        assert p99(latencies) < p99_target([took for _, took, *_ in before])
        # nothing waited for the frozen version's timeout: every decision falls back because
        # the version is ejected (latency alone cannot tell on a busy machine)
        waited = waited_for_timeout(c, {rid for *_, rid in during})
        assert waited == [], waited
        # the calls in flight before the ejection waited their timeout, and the same reading
        # of the audit log says so (so the check above can fail)
        assert max(took for _, took, *_ in load.since(0)) >= 0.3
        # in flight at the freeze or sent before the ejection: with fast requests, the ones
        # that timed out may all have been sent just before SIGSTOP
        frozen = {
            rid
            for start, took, _, _, rid in load.since(0)
            if start < ejected_at and start + took > frozen_at
        }
        assert waited_for_timeout(c, frozen)

        os.kill(pid, signal.SIGCONT)
        # back within baseEjectionTime + one interval of the ejection
        back_by = ejected_at + 3 + 0.5 + 2.0
        while True:
            recent = load.since(time.monotonic() - 0.2)
            if any(v == "remote" for _, _, s, v, _ in recent if s == 200):
                break
            assert time.monotonic() < back_by, "the version did not serve again"
            time.sleep(0.05)
        assert not ejected(c)


def test_the_ejection_is_in_the_audit_log_and_the_decision(
    upstream: tuple[int, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, pid = upstream
    monkeypatch.setenv("MODELROUTER_ADMIN_TOKEN", "t0ken")
    app = create_app(loaded_from_yaml(GATEWAY.format(port=port), EXAMPLE_MODELS))
    auth = {"authorization": "Bearer t0ken"}
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10, headers=auth) as c:
        assert c.post("/v2/models/churn/infer", json=BODY).headers["x-model-version"] == "remote"
        os.kill(pid, signal.SIGSTOP)
        try:
            for _ in range(3):
                r = c.post("/v2/models/churn/infer", json=BODY)
                assert r.headers["x-model-version"] == "local"
            r = c.post("/v2/models/churn/infer", json=BODY)
            assert r.elapsed.total_seconds() < 0.2
        finally:
            os.kill(pid, signal.SIGCONT)
        deadline = time.monotonic() + 5
        while True:
            records = c.get("/api/v1/audit", params={"kind": "ejection"}).json()["records"]
            if records or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        (record,) = records
        assert (record["action"], record["model"], record["version"]) == (
            "ejected",
            "churn",
            "remote",
        )
        assert record["reason"].startswith("3 consecutive errors, the last: ")
        decision = c.get(f"/api/v1/decisions/{r.headers['x-request-id']}").json()["record"]
        assert decision["served_by"] == "local"
        (fallback,) = decision["fallbacks"]
        assert fallback["from"] == "remote"
        assert "is ejected by outlier detection" in fallback["error"]
        assert 'modelrouter_outlier_ejections_total{model="churn",version="remote"} 1.0' in (
            c.get("/metrics").text
        )
