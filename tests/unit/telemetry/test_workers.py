"""The sum over worker processes that ``/metrics`` of any worker serves."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from modelrouter.telemetry.metrics import Metrics
from modelrouter.telemetry.workers import WorkerMetrics


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text.decode()):
        for s in fam.samples:
            out[s.name, tuple(sorted(s.labels.items()))] = s.value
    return out


def worker(folder: Path, slot: int) -> tuple[Metrics, WorkerMetrics]:
    metrics = Metrics(CollectorRegistry())
    published = WorkerMetrics(metrics.registry, folder, slot)
    metrics.renderer = published.render
    return metrics, published


def test_counters_and_histograms_are_summed_gauges_are_not(tmp_path: Path) -> None:
    a, pa = worker(tmp_path, 0)
    b, pb = worker(tmp_path, 1)
    for _ in range(3):
        a.request("m", "v1", "r", 200, 0.002)
    b.request("m", "v1", "r", 200, 0.2)
    b.request("m", "v2", "r", 500, 0.004)
    a.fallback("m", "v2", "v1")
    b.fallback("m", "v2", "v1")
    a.set_rollout("canary", "Progressing", {"v1": 90, "v2": 10})  # the lease holder only
    pb.publish()
    got = samples(a.render())
    key = (("model", "m"), ("rule", "r"), ("status", "200"), ("version", "v1"))
    assert got["modelrouter_requests_total", key] == 4
    assert got["modelrouter_requests_total", (*key[:2], ("status", "500"), ("version", "v2"))] == 1
    hist = (("model", "m"), ("rule", "r"), ("version", "v1"))
    assert got["modelrouter_request_duration_seconds_count", hist] == 4
    assert got["modelrouter_request_duration_seconds_sum", hist] == 3 * 0.002 + 0.2
    assert got["modelrouter_request_duration_seconds_bucket", (("le", "0.0025"), *hist)] == 3
    fb = (("from_version", "v2"), ("model", "m"), ("to_version", "v1"))
    assert got["modelrouter_fallbacks_total", fb] == 2
    # a gauge is the answering worker's (or, when it has none, another worker's): never summed
    pa.publish()
    weight = (("rollout", "canary"), ("version", "v2"))
    assert samples(b.render())["modelrouter_rollout_weight", weight] == 10
    assert samples(a.render())["modelrouter_rollout_weight", weight] == 10


def test_a_restarted_worker_carries_on_from_its_slot(tmp_path: Path) -> None:
    a, pa = worker(tmp_path, 0)
    for _ in range(5):
        a.request("m", "v1", "", 200, 0.001)
    pa.publish()
    again, p_again = worker(tmp_path, 0)  # the same slot, a new process
    again.request("m", "v1", "", 200, 0.001)
    p_again.publish()
    other, _ = worker(tmp_path, 1)
    key = (("model", "m"), ("rule", ""), ("status", "200"), ("version", "v1"))
    assert samples(other.render())["modelrouter_requests_total", key] == 6
    assert samples(again.render())["modelrouter_requests_total", key] == 6


def test_a_half_written_snapshot_is_ignored(tmp_path: Path) -> None:
    a, _ = worker(tmp_path, 0)
    a.request("m", "v1", "", 200, 0.001)
    (tmp_path / "slot-1.json").write_bytes(b'[{"name": "modelrouter_requ')
    key = (("model", "m"), ("rule", ""), ("status", "200"), ("version", "v1"))
    assert samples(a.render())["modelrouter_requests_total", key] == 1
