"""PromQL metric checks against a real Prometheus scraping a real gateway's /metrics."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from modelrouter.app import create_app
from modelrouter.cli.traffic import load_generator, send_traffic
from modelrouter.errors import UpstreamError
from modelrouter.rollout.providers import PrometheusProvider
from support import EXAMPLE_MODELS, ROOT, free_port, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

TOKEN = "prom-token"


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A Prometheus on a free port scraping the gateway's port (chosen here) every 0.5 s."""
    binary = shutil.which("prometheus")
    assert binary, "the prometheus binary is missing: make setup installs it (apt-get)"
    gateway_port, port = free_port(), free_port()
    (tmp_path / "prometheus.yml").write_text(
        f"""
global: {{scrape_interval: 500ms, evaluation_interval: 500ms}}
scrape_configs:
  - job_name: modelrouter
    scrape_interval: 500ms
    static_configs: [{{targets: ["127.0.0.1:{gateway_port}"]}}]
"""
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "prometheus exited"
            assert time.monotonic() < deadline, "prometheus did not become ready"
            time.sleep(0.1)
        yield url, gateway_port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


CONFIG = """
server:
  store: sqlite:///{tmp}/store.db
  auth: {{adminTokenEnv: MR_PROM_TOKEN}}
  prometheus: {{url: "{prom}"}}
  telemetry: {{flushInterval: 0.2}}
  watchConfig: false
models:
  churn:
    versions:
      v1: {{storageUri: {models}/churn/v1, modelFormat: sklearn}}
      v2: {{storageUri: {models}/churn/v2, modelFormat: sklearn}}
    http:
      - name: default
        route: [{{destination: v1, weight: 50}}, {{destination: v2, weight: 50}}]
        sticky: {{header: x-user-id}}
rollouts:
  churn-v2:
    model: churn
    rule: default
    primary: v1
    canary: v2
    analysis:
      interval: 2s
      threshold: 100
      stepWeight: 50
      maxWeight: 50
      metrics:
        - name: requests-seen
          provider: prometheus
          query: >-
            sum(modelrouter_requests_total{{
              model="{{{{ model }}}}", version="{{{{ version }}}}"}})
          thresholdRange: {{min: 1}}
        - name: p99-under-a-nanosecond
          provider: prometheus
          query: >-
            histogram_quantile(0.99, sum by (le) (rate(
              modelrouter_request_duration_seconds_bucket{{
                model="{{{{ model }}}}", version="{{{{ version }}}}"}}[{{{{ interval }}}}])))
          thresholdRange: {{max: 0.000000001}}
"""


def test_promql_checks_pass_and_fail(
    prometheus: tuple[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prom, gateway_port = prometheus
    monkeypatch.setenv("MR_PROM_TOKEN", TOKEN)
    text = CONFIG.format(tmp=tmp_path, prom=prom, models=EXAMPLE_MODELS)
    app = create_app(loaded_from_yaml(text, tmp_path))
    data = load_generator(ROOT / "examples" / "build_models.py")
    headers = {"authorization": f"Bearer {TOKEN}"}
    with running_server(app, gateway_port) as url:

        async def main() -> list[dict[str, object]]:
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                deadline = time.monotonic() + 40
                seed = 0
                while time.monotonic() < deadline:
                    seed += 1
                    await send_traffic(client, data, token=TOKEN, requests=20, seed=seed)
                    r = await client.get("/api/v1/rollouts/churn-v2?limit=50", headers=headers)
                    checked = [
                        h
                        for h in r.json()["history"]
                        if h["checks"] and all(c["value"] is not None for c in h["checks"])
                    ]
                    if checked:
                        return checked
                    await asyncio.sleep(0.2)
                raise AssertionError(f"no check with Prometheus figures: {r.json()}")

        checked = asyncio.run(main())
    record = checked[0]
    assert record["action"] == "hold"
    seen, p99 = record["checks"]
    assert seen["name"] == "requests-seen"
    assert seen["passed"] is True
    assert seen["value"] >= 1
    assert p99["passed"] is False
    assert p99["value"] > 0.000000001
    assert "> max" in p99["reason"]
    assert record["phase"] == "Progressing"


def test_prometheus_errors_are_translated(prometheus: tuple[str, int]) -> None:
    prom, _ = prometheus

    async def main() -> None:
        provider = PrometheusProvider(prom)
        assert await provider.query("vector(2)") == 2.0
        assert await provider.query('absent_metric_xyz{a="b"}') is None
        with pytest.raises(UpstreamError, match="bad_data"):
            await provider.query("sum(")
        with pytest.raises(UpstreamError, match="ConnectError"):
            await PrometheusProvider(f"http://127.0.0.1:{free_port()}").query("vector(1)")

    asyncio.run(main())
