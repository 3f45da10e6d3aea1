"""Outlier ejection on a frozen clock."""

from __future__ import annotations

import pytest

from modelrouter.config import parse_config
from modelrouter.outlier import EjectionEvent, OutlierDetector

CONFIG = """\
models:
  m:
    versions:
      v1: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
      v2:
        modelFormat: custom
        implementation: "fixtures.models:EchoModel"
        outlierDetection: {consecutiveErrors: 3, interval: 2s, baseEjectionTime: 5s,
                           maxEjectionPercent: 50}
      v3:
        modelFormat: custom
        implementation: "fixtures.models:EchoModel"
        outlierDetection: {consecutiveErrors: 1, maxEjectionPercent: 50}
      v4: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
"""


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def setup() -> tuple[OutlierDetector, Clock, list[EjectionEvent]]:
    clock = Clock()
    detector = OutlierDetector(parse_config(CONFIG), clock)
    events: list[EjectionEvent] = []
    detector.listener = events.append
    return detector, clock, events


def test_consecutive_errors_eject_and_a_success_resets_the_streak(
    setup: tuple[OutlierDetector, Clock, list[EjectionEvent]],
) -> None:
    d, clock, events = setup
    assert d.enabled
    d.failure("m", "v2", "boom")
    d.failure("m", "v2", "boom")
    d.success("m", "v2")
    d.failure("m", "v2", "boom")
    d.failure("m", "v2", "boom")
    assert d.ejected_for("m", "v2") is None
    d.failure("m", "v2", "timed out")
    # 5 s base ejection, returned at the next 2 s sweep: 6 s
    assert d.ejected_for("m", "v2") == pytest.approx(6.0)
    assert [(e.action, e.version, e.seconds) for e in events] == [("ejected", "v2", 6.0)]
    assert events[0].reason == "3 consecutive errors, the last: timed out"
    assert events[0].audit_record()["kind"] == "ejection"
    clock.now += 5.9
    assert d.ejected_for("m", "v2") == pytest.approx(0.1)
    clock.now += 0.1
    assert d.ejected_for("m", "v2") is None
    assert events[-1].action == "returned"


def test_the_nth_ejection_in_a_row_lasts_n_times_longer(
    setup: tuple[OutlierDetector, Clock, list[EjectionEvent]],
) -> None:
    d, clock, _ = setup
    for expected in (6.0, 10.0, 16.0):  # 5, 10, 15 s rounded up to the 2 s sweep
        for _ in range(3):
            d.failure("m", "v2", "boom")
        assert d.ejected_for("m", "v2") == pytest.approx(expected)
        clock.now += expected
        assert d.ejected_for("m", "v2") is None
    d.success("m", "v2")
    for _ in range(3):
        d.failure("m", "v2", "boom")
    assert d.ejected_for("m", "v2") == pytest.approx(6.0)


def test_max_ejection_percent_keeps_versions_serving(
    setup: tuple[OutlierDetector, Clock, list[EjectionEvent]],
) -> None:
    d, _, events = setup
    for _ in range(3):
        d.failure("m", "v2", "boom")
    d.failure("m", "v3", "boom")  # 50% of 4 versions: 2 may be out
    assert d.ejected_versions("m") == ["v2", "v3"]
    assert len(events) == 2


def test_max_ejection_percent_allows_one() -> None:
    config = parse_config(CONFIG.replace("maxEjectionPercent: 50}", "maxEjectionPercent: 10}"))
    d = OutlierDetector(config, Clock())
    for _ in range(3):
        d.failure("m", "v2", "boom")
    d.failure("m", "v3", "boom")
    assert d.ejected_versions("m") == ["v2"]


def test_versions_without_detection_are_never_ejected(
    setup: tuple[OutlierDetector, Clock, list[EjectionEvent]],
) -> None:
    d, _, events = setup
    for _ in range(100):
        d.failure("m", "v1", "boom")
    assert d.ejected_for("m", "v1") is None
    assert events == []
    assert not OutlierDetector(parse_config("models: {}")).enabled
