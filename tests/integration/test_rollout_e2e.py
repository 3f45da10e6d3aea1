"""Rollouts end to end: a real gateway on the example churn models, real traffic and feedback,
one-second intervals."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelrouter.app import create_app
from modelrouter.cli.traffic import TrafficStats, load_generator, send_traffic
from support import EXAMPLE_MODELS, ROOT, free_port, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

TOKEN = "e2e-token"
DATA = load_generator(ROOT / "examples" / "build_models.py")


def config(tmp: Path, rollout: str, v2: str | None = None) -> str:
    v2 = v2 or f"{{storageUri: {EXAMPLE_MODELS}/churn/v2, modelFormat: sklearn}}"
    return f"""
server:
  store: sqlite:///{tmp}/store.db
  auth: {{adminTokenEnv: MR_E2E_TOKEN}}
  telemetry: {{flushInterval: 0.2}}
  watchConfig: false
models:
  churn:
    versions:
      v1: {{storageUri: {EXAMPLE_MODELS}/churn/v1, modelFormat: sklearn}}
      v2: {v2}
    http:
      - name: default
        route: [{{destination: v1, weight: 90}}, {{destination: v2, weight: 10}}]
        sticky: {{header: x-user-id}}
rollouts:
  churn-v2:
    model: churn
    rule: default
    primary: v1
    canary: v2
{rollout}
"""


def run_rollout(
    tmp: Path,
    monkeypatch: pytest.MonkeyPatch,
    rollout: str,
    done: Callable[[dict[str, Any]], bool],
    timeout: float,
    v2: str | None = None,
    rows: int = 1,
) -> tuple[dict[str, Any], TrafficStats]:
    """Serve, send traffic with feedback until ``done(status)``; return the last status."""
    monkeypatch.setenv("MR_E2E_TOKEN", TOKEN)
    app = create_app(loaded_from_yaml(config(tmp, rollout, v2), tmp))
    headers = {"authorization": f"Bearer {TOKEN}"}
    with running_server(app, free_port()) as url:

        async def main() -> tuple[dict[str, Any], TrafficStats]:
            stats = TrafficStats()
            async with httpx.AsyncClient(base_url=url, timeout=10) as client:
                stop = time.monotonic() + timeout
                status: dict[str, Any] = {}
                seed = 0
                while time.monotonic() < stop:
                    seed += 1
                    await send_traffic(
                        client,
                        DATA,
                        token=TOKEN,
                        requests=40,
                        rows=rows,
                        seed=seed,
                        stats=stats,
                        reward=True,
                    )
                    r = await client.get("/api/v1/rollouts/churn-v2?limit=100", headers=headers)
                    status = r.json()
                    if done(status):
                        break
                return status, stats

        return asyncio.run(main())


FINAL = {"Succeeded", "RolledBack", "Failed"}


def test_good_canary_is_promoted_in_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rollout = """
    analysis:
      interval: 1s
      threshold: 2
      stepWeights: [20, 50]
      metrics:
        - {name: request-success-rate, thresholdRange: {min: 99}, minSamples: 5}
        - {name: request-duration, thresholdRange: {max: 1000}, minSamples: 5}
"""
    status, stats = run_rollout(
        tmp_path, monkeypatch, rollout, lambda s: s["phase"] in FINAL, timeout=40
    )
    assert status["phase"] == "Succeeded", status
    assert status["weights"] == {"v1": 0, "v2": 100}
    actions = [h["action"] for h in reversed(status["history"])]
    assert actions[0] == "start"
    assert actions[-2:] == ["promote", "promoted"]
    steps = [h["weights"]["v2"] for h in reversed(status["history"]) if h["action"] == "step"]
    assert steps[0] == 50
    checked = next(h for h in status["history"] if h["action"] == "step")
    assert checked["checks"][0]["samples"] >= 5
    assert stats.versions["v2"] > 0


def test_failing_canary_is_rolled_back_after_threshold(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The canary is a remote version whose server is down: every request it gets fails."""
    rollout = """
    analysis:
      interval: 1s
      threshold: 3
      stepWeight: 20
      maxWeight: 60
      metrics:
        - {name: request-success-rate, thresholdRange: {min: 99}, minSamples: 3}
"""
    dead = f"{{endpoint: 'http://127.0.0.1:{free_port()}', remoteName: churn, timeout: 1s}}"
    status, _ = run_rollout(
        tmp_path, monkeypatch, rollout, lambda s: s["phase"] in FINAL, timeout=40, v2=dead
    )
    assert status["phase"] == "RolledBack", status
    assert status["weights"] == {"v1": 100, "v2": 0}
    history = list(reversed(status["history"]))
    assert history[0]["action"] == "start"
    assert history[-1]["action"] == "rollback"
    assert "step" not in [h["action"] for h in history]
    failing = [h for h in history if any(c["passed"] is False for c in h["checks"])]
    assert [h["failedChecks"] for h in failing] == [1, 2, 3]
    assert history[-1]["checks"][0]["passed"] is False
    assert history[-1]["checks"][0]["value"] < 99


def test_abtest_with_feedback_declares_v2_better(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rollout = """
    strategy: abtest
    analysis:
      interval: 1s
      weight: 50
      testMetric: accuracy
      alpha: 0.05
      metrics:
        - {name: request-success-rate, thresholdRange: {min: 99}}
"""
    status, stats = run_rollout(
        tmp_path, monkeypatch, rollout, lambda s: s["phase"] in FINAL, timeout=60, rows=16
    )
    assert status["phase"] == "Succeeded", status
    result = status["result"]
    assert result["winner"] == "v2"
    assert result["pValue"] <= 0.05
    assert 0 < result["ciLow"] < result["effect"] < result["ciHigh"]
    assert status["weights"] == {"v1": 0, "v2": 100}
    assert stats.feedback > 0
    assert stats.feedback_errors == 0, stats.last_error


def test_bandit_moves_most_traffic_to_the_better_arm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rollout = """
    strategy: bandit
    analysis:
      interval: 1s
      testMetric: reward
      minWeight: 5
"""

    def moved(s: dict[str, Any]) -> bool:
        # a step writes its weights and its result in one transaction, and the status pairs
        # them: the weights and P(best) read here come from the same step
        best = ((s.get("result") or {}).get("probabilityBest") or {}).get("v2", 0)
        return bool((s.get("weights") or {}).get("v2", 0) >= 80 and best > 0.8)

    status, _ = run_rollout(tmp_path, monkeypatch, rollout, moved, timeout=60, rows=16)
    assert status["phase"] == "Progressing"
    assert status["weights"]["v2"] >= 80, status
    assert status["result"]["probabilityBest"]["v2"] > 0.8
