"""evaluate() step by step, with a frozen clock and made-up windows."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelrouter.config.rollouts import RolloutSpec
from modelrouter.rollout.analysis import (
    Observations,
    QueryFigures,
    RolloutState,
    Verdict,
    evaluate,
)
from modelrouter.telemetry.window import VersionWindow

T0 = 1_000_000.0


def spec(strategy: str = "canary", **analysis: Any) -> RolloutSpec:
    a: dict[str, Any] = {
        "interval": 30,
        "threshold": 2,
        "stepWeight": 10,
        "maxWeight": 30,
        "metrics": [
            {"name": "request-success-rate", "thresholdRange": {"min": 99}, "minSamples": 10},
            {"name": "request-duration", "thresholdRange": {"max": 250}},
        ],
    }
    a.update(analysis)
    return RolloutSpec.model_validate(
        {
            "model": "churn",
            "rule": "default",
            "primary": "v1",
            "canary": "v2",
            "strategy": strategy,
            "analysis": a,
        }
    )


def win(
    version: str, requests: int = 100, errors: int = 0, p99: float | None = 50.0, **kw: Any
) -> VersionWindow:
    return VersionWindow(
        "churn", version, T0, T0 + 30, requests=requests, errors=errors, latency_p99_ms=p99, **kw
    )


def obs(
    canary: VersionWindow | None = None, primary: VersionWindow | None = None, **kw: Any
) -> Observations:
    return Observations(primary or win("v1"), canary or win("v2"), **kw)


def progressing(weight: int = 10, **kw: Any) -> RolloutState:
    return RolloutState(
        phase="Progressing",
        canaryWeight=weight,
        weights={"v1": 100 - weight, "v2": weight},
        startedAt=T0,
        lastCheck=T0,
        **kw,
    )


def run(s: RolloutSpec, state: RolloutState, observations: list[Observations]) -> list[Verdict]:
    out = []
    now = state.lastCheck or T0
    for o in observations:
        now += s.analysis.interval
        v = evaluate(s, state, o, now)
        out.append(v)
        state = v.state
    return out


def test_good_canary_is_promoted_in_steps() -> None:
    s = spec()
    verdicts = run(s, progressing(10), [obs()] * 3)
    assert [v.action for v in verdicts] == ["step", "step", "promote"]
    assert [v.weights for v in verdicts[:2]] == [{"v1": 80, "v2": 20}, {"v1": 70, "v2": 30}]
    assert verdicts[-1].state.canaryWeight == 30
    assert "maxWeight 30" in verdicts[-1].reason


def test_step_weights() -> None:
    s = spec(stepWeight=None, stepWeights=[1, 5, 25, 50], maxWeight=None)
    verdicts = run(s, progressing(1), [obs()] * 4)
    assert [v.state.canaryWeight for v in verdicts] == [5, 25, 50, 50]
    assert verdicts[-1].action == "promote"


def test_not_due_before_the_interval() -> None:
    s = spec()
    v = evaluate(s, progressing(10), obs(), T0 + 29)
    assert v.action == "wait"
    assert evaluate(s, progressing(10), obs(), T0 + 30).action == "step"


def test_failing_canary_is_rolled_back_after_threshold() -> None:
    s = spec()
    bad = obs(win("v2", errors=5))
    verdicts = run(s, progressing(10), [bad, obs(), bad])
    assert [v.action for v in verdicts] == ["hold", "step", "rollback"]
    assert verdicts[0].state.failedChecks == 1
    assert verdicts[-1].weights == {"v1": 100, "v2": 0}
    failed = [c for c in verdicts[0].checks if c.passed is False]
    assert failed[0].name == "request-success-rate"
    assert failed[0].value == pytest.approx(95.0)
    assert "< min 99" in failed[0].reason
    # every figure it used is in the verdict
    assert verdicts[0].figures["canary"]["errors"] == 5
    assert verdicts[0].to_json()["checks"][0]["canary"] == pytest.approx(95.0)


def test_latency_above_max_fails() -> None:
    v = run(spec(threshold=1), progressing(), [obs(win("v2", p99=400))])[0]
    assert v.action == "rollback"
    assert "request-duration 400 > max 250" in v.reason


def test_min_samples_holds_without_counting() -> None:
    s = spec()
    verdicts = run(s, progressing(10), [obs(win("v2", requests=5, errors=5))] * 3)
    assert {v.action for v in verdicts} == {"hold"}
    assert verdicts[-1].state.failedChecks == 0
    assert "fewer than 10" in verdicts[-1].reason
    no_traffic = run(s, progressing(10), [obs(win("v2", requests=0, p99=None))])[0]
    assert no_traffic.action == "hold"
    assert "0 samples" in no_traffic.reason


def test_relative_to_primary() -> None:
    s = spec(
        metrics=[
            {"name": "request-duration", "relativeTo": "primary", "thresholdRange": {"max": 1.2}}
        ],
        threshold=1,
    )
    ok = run(s, progressing(), [obs(win("v2", p99=55), win("v1", p99=50))])[0]
    assert ok.action == "step"
    assert ok.checks[0].value == pytest.approx(1.1)
    assert ok.checks[0].primary == 50
    slow = run(s, progressing(), [obs(win("v2", p99=70), win("v1", p99=50))])[0]
    assert slow.action == "rollback"


def test_query_provider_figures_and_errors() -> None:
    s = spec(
        metrics=[
            {"name": "err", "provider": "prometheus", "query": "x", "thresholdRange": {"max": 1}}
        ],
        threshold=2,
    )
    good = run(s, progressing(), [obs(queried={"err": QueryFigures(canary=0.5)})])[0]
    assert good.action == "step"
    broken = run(s, progressing(), [obs(queried={"err": QueryFigures(error="down")})])[0]
    assert broken.action == "hold"
    assert broken.state.failedChecks == 1
    assert "err: down" in broken.reason


def test_bluegreen_switches_after_iterations() -> None:
    s = spec("bluegreen", iterations=3)
    state = progressing(0)
    verdicts = run(s, state, [obs()] * 3)
    assert [v.action for v in verdicts] == ["hold", "hold", "promote"]
    assert all(v.weights == {"v1": 100, "v2": 0} for v in verdicts)


def feedback(version: str, n: int, correct: int) -> VersionWindow:
    return win(version, feedback=n, correct=correct)


def test_abtest_declares_the_better_version() -> None:
    s = spec("abtest", metrics=[], alpha=0.05)
    state = progressing(50)
    looks = [
        Observations(
            win("v1"), win("v2"), feedback("v1", k * 100, k * 70), feedback("v2", k * 100, k * 85)
        )
        for k in range(1, 10)
    ]
    verdicts = run(s, state, looks)
    final = next(v for v in verdicts if v.action != "hold")
    assert final.action == "promote"
    result = final.state.result
    assert result is not None
    assert result["winner"] == "v2"
    assert result["effect"] == pytest.approx(0.15)
    assert result["ciLow"] < 0.15 < result["ciHigh"]
    assert result["pValue"] <= 0.05
    assert verdicts[0].action == "hold"  # 100 each: not yet


def test_abtest_primary_wins_keeps_primary() -> None:
    s = spec("abtest", metrics=[])
    looks = [
        Observations(win("v1"), win("v2"), feedback("v1", 2000, 1700), feedback("v2", 2000, 1400))
    ]
    v = run(s, progressing(50), looks)[0]
    assert v.action == "conclude"
    assert v.weights == {"v1": 100, "v2": 0}
    assert v.state.result is not None
    assert v.state.result["winner"] == "v1"


def test_abtest_no_difference() -> None:
    s = spec("abtest", metrics=[], minEffect=0.02)
    looks = [
        Observations(
            win("v1"), win("v2"), feedback("v1", 200000, 140000), feedback("v2", 200000, 140100)
        )
    ]
    v = run(s, progressing(50), looks)[0]
    assert v.action == "conclude"
    assert v.state.result is not None
    assert v.state.result["winner"] is None
    assert "no difference" in v.reason
    limited = spec("abtest", metrics=[], iterations=2)
    same = Observations(win("v1"), win("v2"), feedback("v1", 100, 70), feedback("v2", 100, 70))
    vs = run(limited, progressing(50), [same, same])
    assert [x.action for x in vs] == ["hold", "conclude"]


def test_abtest_waits_for_samples() -> None:
    s = spec("abtest", metrics=[])
    looks = [Observations(win("v1"), win("v2"), feedback("v1", 10, 7), feedback("v2", 10, 9))]
    v = run(s, progressing(50), looks)[0]
    assert v.action == "hold"
    assert "needs 30" in v.reason


def test_bandit_moves_weight_to_the_better_arm_with_floor() -> None:
    s = spec("bandit", metrics=[], minWeight=5)
    looks = [Observations(win("v1"), win("v2"), feedback("v1", 300, 180), feedback("v2", 300, 240))]
    v = evaluate(s, progressing(50), looks[0], T0 + 30, rng=np.random.default_rng(0))
    assert v.action == "step"
    assert v.weights == {"v1": 5, "v2": 95}
    assert v.state.result is not None
    assert v.state.result["probabilityBest"]["v2"] > 0.99
    unsure = Observations(win("v1"), win("v2"), feedback("v1", 4, 2), feedback("v2", 4, 2))
    w = evaluate(s, progressing(50), unsure, T0 + 30, rng=np.random.default_rng(0)).weights
    assert 30 < w["v2"] < 70
    assert w["v1"] + w["v2"] == 100
    again = evaluate(s, progressing(50), unsure, T0 + 30, rng=np.random.default_rng(0)).weights
    assert again == w


def test_bandit_ends_after_iterations() -> None:
    s = spec("bandit", metrics=[], iterations=1)
    looks = [Observations(win("v1"), win("v2"), feedback("v1", 300, 180), feedback("v2", 300, 240))]
    v = run(s, progressing(50), looks)[0]
    assert v.action == "promote"
    assert v.state.result is not None
    assert v.state.result["winner"] == "v2"


def test_only_progressing_is_analysed() -> None:
    for phase in ("Initialized", "Paused", "Succeeded"):
        assert evaluate(spec(), RolloutState(phase=phase), obs(), T0).action == "wait"


def test_state_round_trips() -> None:
    st = progressing(20, result={"winner": "v2"})
    assert RolloutState.from_json({**st.to_json(), "unknown": 1}) == st
