"""Statistics of experiments: a sequential test that may be looked at every interval, the
effect size with an always-valid confidence interval, and Thompson sampling.

The test is the mixture sequential probability ratio test (mSPRT) of Johari, Pekelis and Walsh,
"Always valid inference" (2017), on the difference of two proportions with a normal mixing
distribution N(0, tau^2) over the effect: with the estimated difference ``d`` and its variance
``V``, the likelihood ratio is ``sqrt(V / (V + tau^2)) * exp(d^2 tau^2 / (2 V (V + tau^2)))``.
``1 / max(ratio so far)`` is a p-value that stays valid however often it is read, so a winner
can be declared at the first look where it falls under alpha. Inverting the same ratio gives a
confidence sequence: an interval for the effect that holds at every look at once.

Pure functions; randomness only through an injected :class:`numpy.random.Generator`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

DEFAULT_TAU = 0.1
"""The mixing standard deviation: the size of effect the test is most sensitive to."""


@dataclass(frozen=True, slots=True)
class Proportion:
    """``successes`` out of ``trials`` (a reward in [0, 1] counts as a fractional success)."""

    successes: float
    trials: int

    @property
    def rate(self) -> float | None:
        return None if self.trials <= 0 else self.successes / self.trials


@dataclass(frozen=True, slots=True)
class SequentialResult:
    """One look of the mSPRT comparing B with A (effect = rate B - rate A)."""

    effect: float | None
    ci_low: float | None
    ci_high: float | None
    likelihood_ratio: float
    p_value: float
    """Always valid: the running minimum over the looks so far (give the last one back)."""
    significant: bool

    def to_json(self) -> dict[str, float | bool | None]:
        return {
            "effect": self.effect,
            "ciLow": self.ci_low,
            "ciHigh": self.ci_high,
            "likelihoodRatio": self.likelihood_ratio,
            "pValue": self.p_value,
            "significant": self.significant,
        }


def _variance(p: Proportion) -> float:
    rate = p.rate if p.rate is not None else 0.5
    rate = min(max(rate, 0.0), 1.0)
    # a floor keeps an all-success (or all-failure) arm from having zero variance
    floor = 1.0 / (p.trials + 2)
    return max(rate * (1.0 - rate), floor * (1.0 - floor)) / p.trials


def msprt(
    a: Proportion,
    b: Proportion,
    alpha: float = 0.05,
    tau: float = DEFAULT_TAU,
    previous_p: float = 1.0,
) -> SequentialResult:
    """The always-valid test of ``rate(b) == rate(a)`` at this look.

    ``previous_p`` is the p-value of the previous look (1.0 at the first), so the returned one
    never rises. The interval is the (1 - alpha) confidence sequence of ``rate(b) - rate(a)``.
    """
    if not 0 < alpha < 1:
        raise ValueError("alpha must be between 0 and 1")
    if a.trials <= 0 or b.trials <= 0 or a.rate is None or b.rate is None:
        return SequentialResult(None, None, None, 1.0, previous_p, previous_p <= alpha)
    d = b.rate - a.rate
    v = _variance(a) + _variance(b)
    t2 = tau * tau
    log_lr = 0.5 * math.log(v / (v + t2)) + d * d * t2 / (2.0 * v * (v + t2))
    lr = math.exp(min(log_lr, 700.0))
    p = min(previous_p, 1.0 / lr if lr > 0 else 1.0, 1.0)
    half = math.sqrt(
        2.0 * v * (v + t2) / t2 * (math.log(1.0 / alpha) + 0.5 * math.log((v + t2) / v))
    )
    return SequentialResult(d, d - half, d + half, lr, p, p <= alpha)


def thompson_best_probability(
    arms: dict[str, Proportion], rng: np.random.Generator, draws: int = 4000
) -> dict[str, float]:
    """The probability that each arm has the highest rate, under Beta(1 + s, 1 + f)
    posteriors, estimated from ``draws`` samples of ``rng``."""
    if not arms:
        return {}
    names = sorted(arms)
    samples = np.stack(
        [
            rng.beta(
                1.0 + max(arms[n].successes, 0.0),
                1.0 + max(arms[n].trials - arms[n].successes, 0.0),
                size=draws,
            )
            for n in names
        ]
    )
    wins = np.bincount(np.argmax(samples, axis=0), minlength=len(names))
    return {n: float(w) / draws for n, w in zip(names, wins, strict=True)}


def weights_with_floor(probabilities: dict[str, float], floor: int) -> dict[str, int]:
    """Integer weights summing to 100 that follow ``probabilities``, each at least ``floor``."""
    names = sorted(probabilities)
    if not names:
        return {}
    if floor * len(names) > 100:
        raise ValueError(f"a floor of {floor} for {len(names)} arms exceeds 100")
    spare = 100 - floor * len(names)
    raw = {n: floor + spare * probabilities[n] for n in names}
    out = {n: math.floor(raw[n]) for n in names}
    left = 100 - sum(out.values())
    for n in sorted(names, key=lambda n: raw[n] - out[n], reverse=True)[:left]:
        out[n] += 1
    return out
