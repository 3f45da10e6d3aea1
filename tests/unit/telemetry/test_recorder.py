"""Per-version rolling windows with a frozen clock: buckets, flushing, merging across gateways."""

from __future__ import annotations

import asyncio
import random

import pytest

from modelrouter.errors import StoreError
from modelrouter.store.base import MetricRow
from modelrouter.store.memory import MemoryStore
from modelrouter.telemetry.recorder import (
    LATENCY_MAX_INDEX,
    Recorder,
    StoreWindows,
    latency_bounds,
    latency_index,
    quantile,
)


class FrozenClock:
    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


def test_latency_buckets_are_log_spaced_and_cover_everything() -> None:
    assert latency_index(0.0) == 0
    assert latency_index(float("nan")) == 0
    assert latency_index(1e12) == LATENCY_MAX_INDEX
    for ms in (0.05, 0.3, 1.0, 7.5, 123.0, 45_000.0):
        low, high = latency_bounds(latency_index(ms))
        assert low <= ms < high
        assert high / low == pytest.approx(10 ** (1 / 20))


def test_quantile_of_a_histogram_is_close_to_the_exact_one() -> None:
    rnd = random.Random(7)
    values = [rnd.lognormvariate(1.5, 1.0) for _ in range(5000)]
    hist: dict[int, int] = {}
    for v in values:
        i = latency_index(v)
        hist[i] = hist.get(i, 0) + 1
    values.sort()
    for q in (0.5, 0.9, 0.99):
        exact = values[int(q * len(values)) - 1]
        got = quantile(hist, q)
        assert got is not None
        assert got == pytest.approx(exact, rel=0.07)
    assert quantile({}, 0.5) is None


def test_requests_go_into_buckets_of_the_clock() -> None:
    clock = FrozenClock(100.2)
    rec = Recorder("gw", clock=clock)
    rec.request("m", "v1", 200, 0.002)
    clock.now = 100.9
    rec.request("m", "v1", 503, 0.004)
    rec.request("m", "v2", 200, 0.004)
    clock.now = 101.0  # the next bucket
    rec.request("m", "v1", 404, 0.001)

    w = run(rec.window("m", "v1", 100.0, 101.0))
    assert (w.requests, w.errors) == (2, 1)
    w = run(rec.window("m", "v1", 101.0, 102.0))
    assert (w.requests, w.errors) == (1, 0)  # a 4xx is not the version's fault
    w = run(rec.window("m", "v1", 0.0, 1e9))
    assert w.requests == 3
    assert w.success_rate == pytest.approx(200 / 3)
    assert w.latency_p50_ms == pytest.approx(2.0, rel=0.125)
    assert run(rec.window("m", "v2", 0.0, 1e9)).requests == 1  # type: ignore[attr-defined]


def test_flush_writes_deltas_and_keeps_history_in_memory() -> None:
    async def main() -> None:
        clock = FrozenClock(50.0)
        store = MemoryStore()
        rec = Recorder("gw-1", clock=clock)
        rec.request("m", "v1", 200, 0.001)
        assert await rec.flush(store) == 1
        assert await rec.flush(store) == 0  # nothing new
        rec.request("m", "v1", 200, 0.001)  # same bucket, after a flush: a second row
        clock.now = 51.5
        rec.request("m", "v1", 500, 0.001)
        assert await rec.flush(store) == 2
        rows = await store.query_metric_rows("m", "v1", 0, 100)
        assert sorted((r.start, r.requests, r.errors) for r in rows) == [
            (50.0, 1, 0),
            (50.0, 1, 0),
            (51.0, 1, 1),
        ]
        assert {r.gateway for r in rows} == {"gw-1"}
        local = await rec.window("m", "v1", 0, 100)
        shared = await StoreWindows(store).window("m", "v1", 0, 100)
        assert local == shared
        assert (local.requests, local.errors) == (3, 1)

    run(main())


def test_history_older_than_the_window_is_dropped() -> None:
    async def main() -> None:
        clock = FrozenClock(1000.0)
        rec = Recorder("gw", window=60.0, clock=clock)
        rec.request("m", "v1", 200, 0.001)
        await rec.flush(MemoryStore())
        clock.now += 30
        await rec.flush(MemoryStore())
        assert (await rec.window("m", "v1", 0, 1e9)).requests == 1
        clock.now += 40  # 70 s after the request
        await rec.flush(MemoryStore())
        assert (await rec.window("m", "v1", 0, 1e9)).requests == 0

    run(main())


class DownStore(MemoryStore):
    down = True

    async def append_metric_rows(self, rows: object) -> None:  # type: ignore[override]
        if self.down:
            raise StoreError("store down")
        await super().append_metric_rows(rows)  # type: ignore[arg-type]


def test_a_failed_flush_is_retried_with_the_next_one() -> None:
    async def main() -> None:
        clock = FrozenClock(10.0)
        store = DownStore()
        rec = Recorder("gw", clock=clock)
        rec.request("m", "v1", 200, 0.001)
        with pytest.raises(StoreError):
            await rec.flush(store)
        assert (await rec.window("m", "v1", 0, 100)).requests == 1  # still counted locally
        rec.request("m", "v1", 200, 0.001)
        store.down = False
        assert await rec.flush(store) == 1  # both requests, merged into one row
        (r,) = await store.query_metric_rows("m", "v1", 0, 100)
        assert r.requests == 2
        assert (await rec.window("m", "v1", 0, 100)).requests == 2

    run(main())


def test_quantiles_merge_across_two_gateways() -> None:
    async def main() -> None:
        clock = FrozenClock(200.0)
        store = MemoryStore()
        a = Recorder("gw-a", clock=clock)
        b = Recorder("gw-b", clock=clock)
        for _ in range(90):
            a.request("m", "v2", 200, 0.010)  # 10 ms
        for _ in range(10):
            b.request("m", "v2", 200, 0.500)  # 500 ms
        await a.flush(store)
        await b.flush(store)
        rows = await store.query_metric_rows("m", "v2", 0, 1000)
        assert {r.gateway for r in rows} == {"gw-a", "gw-b"}
        w = await StoreWindows(store).window("m", "v2", 0, 1000)
        assert w.requests == 100
        # within one bucket (a factor of 10**(1/20), 12%)
        assert w.latency_p50_ms == pytest.approx(10.0, rel=0.125)
        assert w.latency_p99_ms == pytest.approx(500.0, rel=0.125)
        # each gateway alone sees only its own latencies
        assert (await a.window("m", "v2", 0, 1000)).latency_p99_ms == pytest.approx(10, rel=0.125)

    run(main())


def test_feedback_rewards_and_shadow_agreement() -> None:
    async def main() -> None:
        clock = FrozenClock(300.0)
        store = MemoryStore()
        rec = Recorder("gw", clock=clock)
        rec.feedback("m", "v1", labels=1, correct=1)
        rec.feedback("m", "v1", labels=3, correct=1)
        rec.feedback("ltv", "v1", values=2, abs_error=3.0)
        rec.feedback("m", "v1", reward=1.0)
        rec.feedback("m", "v1", reward=0.0)
        rec.shadow("m", "v3", compared=4, agreeing=3)
        rec.shadow("m", "v3", compared=1, agreeing=1)
        await rec.flush(store)
        w = await StoreWindows(store).window("m", "v1", 0, 1000)
        assert (w.feedback, w.correct, w.accuracy) == (4, 2, 0.5)
        assert (w.rewards, w.mean_reward) == (2, 0.5)
        assert w.requests == 0
        ltv = await StoreWindows(store).window("ltv", "v1", 0, 1000)
        assert (ltv.feedback, ltv.mean_abs_error) == (2, 1.5)
        shadow = await StoreWindows(store).window("m", "v3", 0, 1000)
        assert (shadow.shadow_compared, shadow.shadow_agreeing) == (5, 4)
        assert shadow.shadow_agreement == 0.8

    run(main())


def test_recent_predictions_are_bounded() -> None:
    rec = Recorder("gw", recent_size=3)
    for i in range(5):
        rec.remember(f"r{i}", "m", "v1", [i])
    assert rec.recent("r0") is None
    assert rec.recent("r1") is None
    found = rec.recent("r4")
    assert found is not None
    assert (found.model, found.version, found.prediction) == ("m", "v1", [4])


def test_run_flushes_periodically_and_prunes() -> None:
    async def main() -> None:
        clock = FrozenClock(10_000.0)
        store = MemoryStore()
        await store.append_metric_rows([MetricRow("old", "m", "v1", 1.0, requests=1)])
        rec = Recorder("gw", clock=clock)
        rec.request("m", "v1", 200, 0.001)
        task = asyncio.create_task(rec.run(store, 0.01, retention=3600.0))
        for _ in range(200):
            await asyncio.sleep(0.01)
            rows = await store.query_metric_rows("m", "v1", 0, 1e9)
            if [r.gateway for r in rows] == ["gw"]:
                break
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        rows = await store.query_metric_rows("m", "v1", 0, 1e9)
        assert [(r.gateway, r.requests) for r in rows] == [("gw", 1)]

    run(main())


def test_telemetry_settings_in_the_config() -> None:
    from modelrouter.config.loader import parse_config
    from modelrouter.errors import ConfigError

    config = parse_config(
        "server:\n  telemetry: {flushInterval: 500ms, window: 5m, gatewayId: gw-eu-1}\n"
    )
    t = config.server.telemetry
    assert (t.flushInterval, t.window, t.retention, t.gatewayId) == (0.5, 300.0, 3600.0, "gw-eu-1")
    assert parse_config("{}").server.telemetry.flushInterval == 2.0
    with pytest.raises(ConfigError, match="flushInterval"):
        parse_config("server:\n  telemetry: {flushInterval: 0s}\n")
