"""The small pure pieces of the export: names, weights, durations."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from modelrouter.config.durations import parse_duration
from modelrouter.export.durations import flagger_interval, seconds_text
from modelrouter.export.istio import percentages
from modelrouter.export.names import dns_label, isvc_of_host

DNS_1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


@given(st.lists(st.text(min_size=0, max_size=40), min_size=1, max_size=3))
def test_dns_labels_are_valid(parts: list[str]) -> None:
    name = dns_label(*parts)
    assert DNS_1035.match(name), name
    assert len(name) <= 63
    assert len(dns_label(*parts, limit=45)) <= 45


def test_long_names_keep_a_hash_of_the_whole() -> None:
    a, b = dns_label("x" * 80, "v1"), dns_label("x" * 80, "v2")
    assert a != b
    assert len(a) == len(b) == 63


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=8).filter(lambda w: sum(w) > 0))
def test_percentages_sum_to_100_in_proportion(weights: list[int]) -> None:
    out = percentages(weights)
    assert sum(out) == 100
    for w, p in zip(weights, out, strict=True):
        assert abs(p - w * 100 / sum(weights)) < 1
        if w == 0:
            assert p == 0


@given(st.floats(0.001, 10_000, allow_nan=False))
def test_istio_durations_read_back(seconds: float) -> None:
    text = seconds_text(seconds)
    assert "e" not in text
    assert abs(parse_duration(text) - seconds) < 1e-6


def test_flagger_intervals() -> None:
    assert flagger_interval(30) == "30s"
    assert flagger_interval(120) == "2m"
    assert flagger_interval(0.2) == "1s"


def test_hosts_name_their_inference_service() -> None:
    for host in (
        "churn-v1-predictor.ml.svc.cluster.local",
        "churn-v1-predictor",
        "churn-v1-predictor-default.ml",
        "churn-v1.ml.example.com",
    ):
        assert isvc_of_host(host) == "churn-v1"
