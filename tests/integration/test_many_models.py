"""Many models under a memory budget, over HTTP: 100 small models, lazily loaded, a budget that
fits 10. Every model answers correctly (also under concurrent clients), the resident versions
stay within the budget, and evictions are counted."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import joblib
import numpy as np
import pytest
import tritonclient.http
from sklearn.linear_model import LinearRegression

from modelrouter.app import build_services, create_app
from modelrouter.sources.cache import size_on_disk
from support import loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

N_MODELS = 100
FITS = 10


def write_models(folder: Path) -> int:
    """Model ``m<i>`` answers ``(i + 1) * x``; returns the largest file size."""
    x = np.arange(10, dtype=np.float64).reshape(-1, 1)
    for i in range(N_MODELS):
        joblib.dump(LinearRegression().fit(x, (i + 1) * x.ravel()), folder / f"m{i}.joblib")
    return max(size_on_disk(folder / f"m{i}.joblib") for i in range(N_MODELS))


def config(budget: int) -> str:
    lines = [
        "server:",
        "  store: memory://",
        "  watchConfig: false",
        "  lazyLoading: true",
        f"  modelMemoryBudget: {budget}",
        "models:",
    ]
    for i in range(N_MODELS):
        lines.append(f"  m{i}: {{versions: {{v1: {{storageUri: ./m{i}.joblib, ")
        lines[-1] += "modelFormat: sklearn}}}"
    return "\n".join(lines) + "\n"


def ask(client: httpx.Client, i: int) -> float:
    body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [2.0]}]}
    r = client.post(f"/v2/models/m{i}/infer", json=body)
    assert r.status_code == 200, r.text
    return float(r.json()["outputs"][0]["data"][0])


def test_hundred_models_under_a_budget_of_ten(tmp_path: Path) -> None:
    size = write_models(tmp_path)
    budget = FITS * size + size // 2
    loaded = loaded_from_yaml(config(budget), tmp_path)
    services = build_services(loaded)
    repo = services.repository
    app = create_app(loaded, services)
    max_resident = 0
    with running_server(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/v2/health/ready").status_code == 200  # lazy: ready to load
        index = client.get("/v2/repository/index").json()
        assert {i["state"] for i in index} == {"UNLOADED"}
        for i in range(N_MODELS):
            assert ask(client, i) == pytest.approx(2.0 * (i + 1))
            max_resident = max(max_resident, len(repo.resident()))
            assert repo.resident_bytes() <= budget
        assert repo.stats.evictions == N_MODELS - FITS
        assert repo.stats.loads == N_MODELS

        # concurrent clients, random order: in-flight versions are never evicted
        order = random.Random(7).sample(range(N_MODELS), N_MODELS) * 3

        def one(i: int) -> tuple[int, float]:
            with httpx.Client(base_url=url, timeout=30) as c:
                return i, ask(c, i)

        with ThreadPoolExecutor(8) as pool:
            for i, answer in pool.map(one, order):
                assert answer == pytest.approx(2.0 * (i + 1))
        assert len(repo.resident()) <= FITS
        assert repo.resident_bytes() <= budget
        assert repo.stats.over_budget == 0  # 8 clients: never more than 8 versions busy
        assert repo.stats.evictions > N_MODELS - FITS
        assert repo.stats.load_failures == 0

        # the same figures in Prometheus
        metrics = client.get("/metrics").text
        assert (
            f'modelrouter_repository_events_total{{event="evictions"}} {repo.stats.evictions}.0'
            in metrics
        )
        assert f"modelrouter_resident_versions {len(repo.resident())}.0" in metrics

        # the index shows what is resident
        index = client.get("/v2/repository/index").json()
        ready = [i for i in index if i["state"] == "READY"]
        assert 1 <= len(ready) <= FITS

        # Triton's client drives the repository API (no admin token configured: open)
        triton = tritonclient.http.InferenceServerClient(url.removeprefix("http://"))
        try:
            assert triton.is_model_ready("m3")
            triton.unload_model("m3")
            assert not triton.is_model_ready("m3")
            body = {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1, 1], "data": [1]}]}
            r = client.post("/v2/models/m3/infer", json=body)
            assert r.status_code == 503
            assert "unloaded through the repository API" in r.json()["error"]
            triton.load_model("m3")
            assert triton.is_model_ready("m3")
            assert repo.entry("m3", "v1").state.value == "READY"
            assert ask(client, 3) == pytest.approx(8.0)
        finally:
            triton.close()
    assert max_resident <= FITS
