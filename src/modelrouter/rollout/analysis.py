"""The analysis: a pure verdict from a rollout's spec, its state, the figures and the clock.

:func:`evaluate` does no I/O and reads no clock: the controller gives it the windows of both
versions (and the answers of query providers, fetched beforehand), and applies what it says.
Every figure it used is in the :class:`Verdict`, so the audit record of a step shows why.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

import numpy as np

from modelrouter.config.rollouts import MetricCheck, RolloutSpec
from modelrouter.rollout.providers import Measurement, builtin_value
from modelrouter.rollout.statistics import (
    Proportion,
    msprt,
    thompson_best_probability,
    weights_with_floor,
)
from modelrouter.telemetry.window import VersionWindow

Phase = Literal[
    "Initialized",
    "Progressing",
    "Paused",
    "Promoting",
    "Succeeded",
    "RolledBack",
    "Failed",
    "Stopped",
]
PHASES: tuple[str, ...] = get_args(Phase)
FINAL_PHASES = frozenset({"Succeeded", "RolledBack", "Failed", "Stopped"})
"""Phases a rollout does not leave. ``Stopped``: removed from the config file while running."""

Action = Literal["wait", "hold", "step", "promote", "rollback", "conclude"]

MakeVerdict = Callable[[Action, str, "RolloutState", dict[str, int]], "Verdict"]

MIN_TEST_SAMPLES = 30
"""An abtest compares the arms only once each has this many observations."""


@dataclass(frozen=True, slots=True)
class RolloutState:
    """What a rollout remembers between intervals (persisted in the store as JSON)."""

    phase: str = "Initialized"
    canaryWeight: int = 0
    weights: dict[str, int] = field(default_factory=dict)
    failedChecks: int = 0
    iterations: int = 0
    """Checks that counted (enough data, all passing) since the start."""
    startedAt: float | None = None
    lastCheck: float | None = None
    pValue: float = 1.0
    """abtest: the always-valid p-value so far."""
    result: dict[str, Any] | None = None
    """abtest and bandit: the last outcome (winner, effect, interval, probabilities)."""
    message: str = ""
    pausedFrom: str | None = None
    specHash: str = ""

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RolloutState:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes: Any) -> RolloutState:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, slots=True)
class QueryFigures:
    """The answers of a query provider for one metric, fetched by the controller."""

    canary: float | None = None
    primary: float | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Observations:
    """What the controller read for one interval."""

    primary: VersionWindow
    canary: VersionWindow
    """Since the last check."""
    primary_total: VersionWindow | None = None
    canary_total: VersionWindow | None = None
    """Since the start of the rollout (abtest and bandit accumulate)."""
    queried: Mapping[str, QueryFigures] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CheckResult:
    name: str
    provider: str
    value: float | None
    """The compared figure: the canary's, or canary / primary with ``relativeTo: primary``."""
    canary: float | None
    primary: float | None
    samples: int | None
    min: float | None
    max: float | None
    passed: bool | None
    """None: the check did not count (no data or fewer than minSamples)."""
    reason: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True)
class Verdict:
    action: Action
    reason: str
    state: RolloutState
    weights: dict[str, int]
    """The weights to serve after this step (primary and canary)."""
    checks: tuple[CheckResult, ...] = ()
    figures: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "reason": self.reason,
            "weights": self.weights,
            "checks": [c.to_json() for c in self.checks],
            "figures": self.figures,
        }


def split(spec: RolloutSpec, canary_weight: int) -> dict[str, int]:
    return {spec.primary: 100 - canary_weight, spec.canary: canary_weight}


def window_figures(w: VersionWindow) -> dict[str, Any]:
    return {
        **dataclasses.asdict(w),
        "successRate": w.success_rate,
        "accuracy": w.accuracy,
        "meanReward": w.mean_reward,
        "shadowAgreement": w.shadow_agreement,
    }


# --------------------------------------------------------------------------- checks


def _ratio(canary: float, primary: float) -> float:
    if primary == 0:
        return 1.0 if canary == 0 else math.inf
    return canary / primary


def run_check(m: MetricCheck, obs: Observations) -> CheckResult:
    """One metric check against its threshold range."""
    relative = m.relativeTo == "primary"
    samples: int | None
    if m.provider == "builtin":
        c: Measurement = builtin_value(m.name, obs.canary)
        p = builtin_value(m.name, obs.primary) if relative else None
        canary, primary = c.value, (p.value if p else None)
        samples = min(c.samples, p.samples) if p else c.samples
        error = None
    else:
        q = obs.queried.get(m.name, QueryFigures(error="not queried"))
        canary, primary, samples, error = q.canary, q.primary, None, q.error
    lo, hi = m.thresholdRange.min, m.thresholdRange.max

    def result(value: float | None, passed: bool | None, reason: str) -> CheckResult:
        return CheckResult(
            m.name, m.provider, value, canary, primary, samples, lo, hi, passed, reason
        )

    if error is not None:
        return result(None, False, f"{m.name}: {error}")
    if samples is not None and samples < m.minSamples:
        return result(None, None, f"{m.name}: {samples} samples, fewer than {m.minSamples}")
    if canary is None or (relative and primary is None):
        return result(None, None, f"{m.name}: no data")
    assert canary is not None
    value = _ratio(canary, primary) if relative and primary is not None else canary
    what = f"{m.name}{' / primary' if relative else ''} {value:.4g}"
    if lo is not None and value < lo:
        return result(value, False, f"{what} < min {lo:g}")
    if hi is not None and value > hi:
        return result(value, False, f"{what} > max {hi:g}")
    return result(value, True, f"{what} within range")


# --------------------------------------------------------------------------- evaluate


def evaluate(
    spec: RolloutSpec,
    state: RolloutState,
    obs: Observations,
    now: float,
    rng: np.random.Generator | None = None,
) -> Verdict:
    """The next step of a Progressing rollout; ``wait`` when no interval has passed yet.

    Checks first: a failed one counts towards ``threshold`` (then ``rollback``), one without
    enough data holds the rollout. When all pass, the strategy decides: ``canary`` steps the
    weight up, then promotes past ``maxWeight``; ``bluegreen`` promotes after ``iterations``
    passing checks; ``abtest`` runs the sequential test; ``bandit`` re-weights by Thompson
    sampling (``rng``, default seeded by the iteration, so the verdict is reproducible).
    """
    a = spec.analysis
    if state.phase != "Progressing":
        return Verdict("wait", f"phase {state.phase} is not analysed", state, state.weights)
    if state.lastCheck is not None and now - state.lastCheck < a.interval - 1e-6:
        return Verdict("wait", "the interval has not passed", state, state.weights)

    checks = tuple(run_check(m, obs) for m in a.metrics)
    figures: dict[str, Any] = {
        "primary": window_figures(obs.primary),
        "canary": window_figures(obs.canary),
    }
    state = state.replace(lastCheck=now)

    def verdict(action: Action, reason: str, new: RolloutState, weights: dict[str, int]) -> Verdict:
        return Verdict(action, reason, new.replace(message=reason), weights, checks, figures)

    failed = [c for c in checks if c.passed is False]
    if failed:
        n = state.failedChecks + 1
        why = "; ".join(c.reason for c in failed)
        if n >= a.threshold:
            return verdict(
                "rollback",
                f"failed checks {n}/{a.threshold}: {why}",
                state.replace(failedChecks=n, canaryWeight=0),
                split(spec, 0),
            )
        return verdict(
            "hold",
            f"failed check {n}/{a.threshold}: {why}",
            state.replace(failedChecks=n),
            state.weights,
        )
    waiting = [c for c in checks if c.passed is None]
    if waiting:
        return verdict(
            "hold", "not enough data: " + "; ".join(c.reason for c in waiting), state, state.weights
        )
    state = state.replace(iterations=state.iterations + 1)
    if spec.strategy == "canary":
        return _canary(spec, state, verdict)
    if spec.strategy == "bluegreen":
        need = a.iterations or 3
        if state.iterations >= need:
            return verdict(
                "promote", f"{state.iterations}/{need} checks passed", state, state.weights
            )
        return verdict("hold", f"{state.iterations}/{need} checks passed", state, state.weights)
    totals = (obs.primary_total or obs.primary, obs.canary_total or obs.canary)
    if spec.strategy == "abtest":
        return _abtest(spec, state, totals, figures, verdict)
    rng = rng if rng is not None else np.random.default_rng(state.iterations)
    return _bandit(spec, state, totals, figures, rng, verdict)


def _canary(spec: RolloutSpec, state: RolloutState, verdict: MakeVerdict) -> Verdict:
    steps = spec.analysis.steps()
    if state.canaryWeight >= steps[-1]:
        return verdict(
            "promote", f"all checks passed at maxWeight {steps[-1]}", state, state.weights
        )
    nxt = next(w for w in steps if w > state.canaryWeight)
    return verdict(
        "step",
        f"all checks passed: canary weight {state.canaryWeight} -> {nxt}",
        state.replace(canaryWeight=nxt, weights=split(spec, nxt)),
        split(spec, nxt),
    )


def proportion(metric: str, w: VersionWindow) -> Proportion:
    """The test metric of an abtest or bandit as successes out of trials."""
    if metric == "accuracy":
        return Proportion(w.correct, w.feedback)
    if metric == "reward":
        return Proportion(w.reward_sum, w.rewards)
    return Proportion(w.requests - w.errors, w.requests)


def _abtest(
    spec: RolloutSpec,
    state: RolloutState,
    totals: tuple[VersionWindow, VersionWindow],
    figures: dict[str, Any],
    verdict: MakeVerdict,
) -> Verdict:
    a = spec.analysis
    pa, pb = (proportion(a.testMetric, w) for w in totals)
    figures["test"] = {
        "metric": a.testMetric,
        "primary": {"successes": pa.successes, "trials": pa.trials, "rate": pa.rate},
        "canary": {"successes": pb.successes, "trials": pb.trials, "rate": pb.rate},
    }
    limit = a.iterations
    if min(pa.trials, pb.trials) < MIN_TEST_SAMPLES:
        if limit is not None and state.iterations >= limit:
            return _no_difference(spec, state, verdict, f"too little data after {limit} checks")
        return verdict(
            "hold",
            f"{a.testMetric}: {pa.trials} and {pb.trials} observations, "
            f"the test needs {MIN_TEST_SAMPLES} per version",
            state,
            state.weights,
        )
    test = msprt(pa, pb, a.alpha, previous_p=state.pValue)
    figures["test"].update(test.to_json())
    state = state.replace(pValue=test.p_value)
    assert test.effect is not None
    assert test.ci_low is not None
    assert test.ci_high is not None
    interval = f"{test.effect:+.4f} [{test.ci_low:+.4f}, {test.ci_high:+.4f}]"
    if test.significant:
        winner = spec.canary if test.effect > 0 else spec.primary
        result = {"winner": winner, "metric": a.testMetric, **test.to_json()}
        reason = f"{winner} wins on {a.testMetric}: effect {interval}, p={test.p_value:.4g}"
        state = state.replace(result=result)
        if winner == spec.canary:
            return verdict("promote", reason, state, state.weights)
        return verdict("conclude", reason, state.replace(canaryWeight=0), split(spec, 0))
    if -a.minEffect <= test.ci_low and test.ci_high <= a.minEffect:
        return _no_difference(
            spec, state, verdict, f"effect {interval} is within +-{a.minEffect:g}", test.to_json()
        )
    if limit is not None and state.iterations >= limit:
        return _no_difference(
            spec,
            state,
            verdict,
            f"no winner after {limit} checks: effect {interval}",
            test.to_json(),
        )
    return verdict(
        "hold", f"no winner yet: effect {interval}, p={test.p_value:.4g}", state, state.weights
    )


def _no_difference(
    spec: RolloutSpec,
    state: RolloutState,
    verdict: MakeVerdict,
    why: str,
    test: dict[str, Any] | None = None,
) -> Verdict:
    result = {"winner": None, "metric": spec.analysis.testMetric, **(test or {})}
    return verdict(
        "conclude",
        f"no difference: {why}; {spec.primary} stays primary",
        state.replace(result=result, canaryWeight=0),
        split(spec, 0),
    )


def _bandit(
    spec: RolloutSpec,
    state: RolloutState,
    totals: tuple[VersionWindow, VersionWindow],
    figures: dict[str, Any],
    rng: np.random.Generator,
    verdict: MakeVerdict,
) -> Verdict:
    a = spec.analysis
    arms = {
        spec.primary: proportion(a.testMetric, totals[0]),
        spec.canary: proportion(a.testMetric, totals[1]),
    }
    best = thompson_best_probability(arms, rng)
    weights = weights_with_floor(best, a.minWeight)
    weights = {spec.primary: weights[spec.primary], spec.canary: weights[spec.canary]}
    result: dict[str, Any] = {
        "metric": a.testMetric,
        "probabilityBest": best,
        "rates": {n: p.rate for n, p in arms.items()},
        "trials": {n: p.trials for n, p in arms.items()},
    }
    figures["bandit"] = result
    state = state.replace(result=result)
    if a.iterations is not None and state.iterations >= a.iterations:
        winner = max(best, key=lambda n: (best[n], n == spec.primary))
        result = {**result, "winner": winner}
        reason = f"{winner} is best with probability {best[winner]:.3f}"
        if winner == spec.canary:
            return verdict("promote", reason, state.replace(result=result), state.weights)
        return verdict(
            "conclude", reason, state.replace(result=result, canaryWeight=0), split(spec, 0)
        )
    return verdict(
        "step",
        "Thompson sampling: " + ", ".join(f"{n} {weights[n]}%" for n in weights),
        state.replace(canaryWeight=weights[spec.canary], weights=weights),
        weights,
    )
