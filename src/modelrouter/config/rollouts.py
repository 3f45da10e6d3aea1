"""The ``rollouts:`` section of the config file (Flagger's field names).

A rollout moves one rule of one model from its ``primary`` version to its ``canary`` by a
``strategy``; the controller (:mod:`modelrouter.rollout.controller`) runs it, the pure
:func:`modelrouter.rollout.analysis.evaluate` judges it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from modelrouter.config.durations import Duration

if TYPE_CHECKING:
    from modelrouter.config.schema import ModelSpec

BUILTIN_METRICS = ("request-success-rate", "request-duration", "accuracy", "shadow-agreement")
"""Metrics computed from the gateway's own windows (provider ``builtin``)."""

PROVIDERS = ("builtin", "prometheus")

WEBHOOK_TYPES = (
    "confirm-rollout",
    "pre-rollout",
    "rollout",
    "confirm-promotion",
    "post-rollout",
    "rollback",
    "event",
)

TEST_METRICS = ("accuracy", "reward", "request-success-rate")
"""Proportions an ``abtest`` or a ``bandit`` can decide on."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ThresholdRange(_Strict):
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_bound(self) -> ThresholdRange:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError("min is larger than max")
        return self


class MetricCheck(_Strict):
    """One check of the analysis: a figure that must stay inside ``thresholdRange``."""

    name: str
    thresholdRange: ThresholdRange
    relativeTo: Literal["primary"] | None = None
    """Compare the canary's figure divided by the primary's (1.0: equal)."""
    provider: str = "builtin"
    """``builtin`` (the names in BUILTIN_METRICS) or ``prometheus`` (needs ``query``)."""
    query: str | None = None
    """PromQL with ``{{ model }}``, ``{{ version }}``, ``{{ interval }}`` substituted."""
    minSamples: int = Field(1, ge=0)
    """Fewer requests (or feedback, or comparisons) than this: the check does not count."""

    @model_validator(mode="after")
    def _provider_fields(self) -> MetricCheck:
        if self.provider not in PROVIDERS:
            raise ValueError(
                f"provider: unknown metric provider {self.provider!r} "
                f"(known: {', '.join(PROVIDERS)})"
            )
        if self.provider == "prometheus" and not self.query:
            raise ValueError("query: a prometheus metric needs a PromQL query")
        if self.provider == "builtin":
            if self.query is not None:
                raise ValueError("query: only for provider prometheus")
            if self.name not in BUILTIN_METRICS:
                raise ValueError(
                    f"name: unknown built-in metric {self.name!r} "
                    f"(known: {', '.join(BUILTIN_METRICS)}; or give provider: prometheus)"
                )
        return self


class AnalysisSpec(_Strict):
    interval: Duration = Field(60.0, gt=0)
    """Time between two checks."""
    threshold: int = Field(5, ge=1)
    """Failed checks before rollback."""
    stepWeight: int | None = Field(None, ge=1, le=100)
    stepWeights: list[int] = Field(default_factory=list)
    maxWeight: int | None = Field(None, ge=1, le=100)
    """The canary's last weight before promotion (default: 50, or the last of stepWeights)."""
    iterations: int | None = Field(None, ge=1)
    """bluegreen: passing checks before the switch (default 3); abtest and bandit: checks
    before the experiment ends (default: no limit for abtest, none for bandit)."""
    mirror: bool = False
    """bluegreen: mirror the primary's traffic to the canary while it is checked."""
    weight: int = Field(50, ge=1, le=99)
    """abtest: the canary's fixed weight."""
    testMetric: Literal["accuracy", "reward", "request-success-rate"] = "accuracy"
    """abtest and bandit: the proportion compared between the two versions."""
    alpha: float = Field(0.05, gt=0, lt=1)
    """abtest: the error rate of the sequential test (a winner is declared at p <= alpha)."""
    minEffect: float = Field(0.02, ge=0)
    """abtest: a confidence interval inside +-minEffect declares no difference."""
    minWeight: int = Field(5, ge=0, le=50)
    """bandit: the floor of each arm's weight."""
    metrics: list[MetricCheck] = Field(default_factory=list)

    @model_validator(mode="after")
    def _steps(self) -> AnalysisSpec:
        if self.stepWeight is not None and self.stepWeights:
            raise ValueError("stepWeights: give stepWeight or stepWeights, not both")
        for i, w in enumerate(self.stepWeights):
            if not 1 <= w <= 100:
                raise ValueError(f"stepWeights.{i}: {w} is not between 1 and 100")
            if i and w <= self.stepWeights[i - 1]:
                raise ValueError(f"stepWeights.{i}: weights must increase")
        if self.stepWeights and self.maxWeight is not None and self.maxWeight < self.stepWeights[0]:
            raise ValueError("maxWeight: smaller than the first of stepWeights")
        names = [m.name for m in self.metrics]
        for i, n in enumerate(names):
            if n in names[:i]:
                raise ValueError(f"metrics.{i}.name: metric {n!r} appears twice")
        return self

    @property
    def max_weight(self) -> int:
        if self.maxWeight is not None:
            return self.maxWeight
        return self.stepWeights[-1] if self.stepWeights else 50

    def steps(self) -> list[int]:
        """The canary weights the analysis goes through, ending at ``max_weight``."""
        top = self.max_weight
        if self.stepWeights:
            out = [w for w in self.stepWeights if w < top]
        else:
            step = self.stepWeight or 10
            out = list(range(step, top, step))
        return [*out, top]


class Promotion(_Strict):
    mlflowAlias: str | None = None
    """After promotion, point this MLflow alias at the canary's model version."""


class Webhook(_Strict):
    name: str | None = None
    type: Literal[
        "confirm-rollout",
        "pre-rollout",
        "rollout",
        "confirm-promotion",
        "post-rollout",
        "rollback",
        "event",
    ]
    url: str
    timeout: Duration = Field(10.0, gt=0)
    metadata: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _url(self) -> Webhook:
        if not self.url.startswith(("http://", "https://")):
            raise ValueError(f"url: {self.url!r} must be an http:// or https:// URL")
        return self


class RolloutSpec(_Strict):
    model: str
    rule: str
    primary: str
    canary: str
    strategy: Literal["canary", "abtest", "bluegreen", "bandit"] = "canary"
    analysis: AnalysisSpec = AnalysisSpec()
    promotion: Promotion = Promotion()
    webhooks: list[Webhook] = Field(default_factory=list)

    @model_validator(mode="after")
    def _two_versions(self) -> RolloutSpec:
        if self.primary == self.canary:
            raise ValueError("canary: the same version as primary")
        return self


def check_rollouts(rollouts: Mapping[str, RolloutSpec], models: Mapping[str, ModelSpec]) -> None:
    """Raise ValueError naming the field when a rollout points at something that is not there."""
    busy: dict[tuple[str, str], str] = {}
    for name, r in rollouts.items():
        where = f"rollouts.{name}"
        model = models.get(r.model)
        if model is None:
            raise ValueError(f"{where}.model: unknown model {r.model!r}")
        for field, version in (("primary", r.primary), ("canary", r.canary)):
            if version not in model.versions:
                raise ValueError(
                    f"{where}.{field}: model {r.model} has no version {version!r}"
                    f" (known: {', '.join(model.versions)})"
                )
        rule = next((x for x in model.http if x.name == r.rule), None)
        if rule is None:
            known = ", ".join(x.name for x in model.http) or "none"
            raise ValueError(f"{where}.rule: model {r.model} has no rule {r.rule!r} ({known})")
        routed = {d.destination for d in rule.route}
        for field, version in (("primary", r.primary), ("canary", r.canary)):
            if version not in routed and not (r.strategy == "bluegreen" and field == "canary"):
                raise ValueError(
                    f"{where}.{field}: rule {r.rule} does not route version {version!r}"
                )
        other = busy.get((r.model, r.rule))
        if other is not None:
            raise ValueError(f"{where}.rule: rule {r.rule} is already rolled out by {other}")
        busy[(r.model, r.rule)] = name
