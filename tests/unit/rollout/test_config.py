"""The rollouts: section is validated with the field named in the error."""

from __future__ import annotations

import pytest

from fixtures.rollout import config
from modelrouter.errors import ConfigError

BASE = """
  r:
    model: churn
    rule: default
    primary: v1
    canary: v2
"""


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        (("model: churn", "model: nope"), "rollouts.r.model", "unknown model 'nope'"),
        (("canary: v2", "canary: v9"), "rollouts.r.canary", "has no version 'v9'"),
        (("rule: default", "rule: other"), "rollouts.r.rule", "has no rule 'other'"),
        (("rule: default", "rule: beta"), "rollouts.r.primary", "does not route version 'v1'"),
        (("canary: v2", "canary: v1"), "rollouts.r.canary", "the same version as primary"),
    ],
)
def test_rollout_points_at_real_things(change: tuple[str, str], field: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        config(BASE.replace(*change))
    assert err.value.field == field
    assert message in err.value.message


def test_analysis_fields() -> None:
    ok = config(BASE + "    analysis: {stepWeights: [5, 25, 50]}\n")
    assert ok.rollouts["r"].analysis.steps() == [5, 25, 50]
    assert config(BASE + "    analysis: {stepWeight: 20, maxWeight: 50}\n").rollouts[
        "r"
    ].analysis.steps() == [20, 40, 50]
    bad = [
        ("    analysis: {stepWeights: [5, 5]}\n", "weights must increase"),
        ("    analysis: {stepWeight: 5, stepWeights: [5]}\n", "not both"),
        (
            "    analysis: {metrics: [{name: x, thresholdRange: {min: 1}}]}\n",
            "unknown built-in metric 'x'",
        ),
        (
            "    analysis: {metrics: [{name: x, provider: datadog, thresholdRange: {min: 1}}]}\n",
            "unknown metric provider 'datadog'",
        ),
        (
            "    analysis: {metrics: [{name: x,provider: prometheus, thresholdRange: {max: 1}}]}\n",
            "needs a PromQL query",
        ),
        ("    webhooks: [{type: nope, url: http://x}]\n", "webhooks"),
    ]
    for text, message in bad:
        with pytest.raises(ConfigError) as err:
            config(BASE + text)
        assert message in str(err.value), (text, err.value)
