"""What every Store must do with telemetry rows (``append/query/prune_metric_rows``), as checks
run against each implementation (memory and SQLite in tests/unit/store, PostgreSQL in
tests/integration). Each check gets a fresh store and closes nothing."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

import pytest

from modelrouter.errors import InvalidInput
from modelrouter.store import Store
from modelrouter.store.base import MetricRow
from modelrouter.telemetry.recorder import StoreWindows, latency_index

Check = Callable[[Store], Awaitable[None]]
METRIC_CONTRACT: list[Check] = []


def contract(fn: Check) -> Check:
    METRIC_CONTRACT.append(fn)
    return fn


def row(gateway: str, start: float, version: str = "v1", **figures: object) -> MetricRow:
    r = MetricRow(gateway, "churn", version, start)
    for k, v in figures.items():
        setattr(r, k, v)
    return r


@contract
async def rows_round_trip(store: Store) -> None:
    written = row(
        "gw-a",
        100.0,
        requests=7,
        errors=2,
        latency={latency_index(1.0): 5, latency_index(80.0): 2},
        feedback=3,
        correct=2,
        abs_error_sum=1.5,
        rewards=1,
        reward_sum=0.25,
        shadow_compared=4,
        shadow_agreeing=3,
    )
    await store.append_metric_rows([written])
    (back,) = await store.query_metric_rows("churn", "v1", 0, 1000)
    assert back == written
    assert back is not written


@contract
async def query_filters_version_and_half_open_time(store: Store) -> None:
    await store.append_metric_rows(
        [
            row("a", 10.0, requests=1),
            row("a", 11.0, requests=2),
            row("b", 11.0, requests=4),
            row("a", 12.0, requests=8),
            row("a", 11.0, version="v2", requests=16),
        ]
    )
    got = await store.query_metric_rows("churn", "v1", 11.0, 12.0)
    assert sorted((r.gateway, r.requests) for r in got) == [("a", 2), ("b", 4)]
    got = await store.query_metric_rows("churn", "v1", 0, 100)
    assert [r.start for r in got] == sorted(r.start for r in got)
    assert sum(r.requests for r in got) == 15
    assert await store.query_metric_rows("churn", "v3", 0, 100) == []
    assert await store.query_metric_rows("other", "v1", 0, 100) == []


@contract
async def duplicate_buckets_are_all_kept(store: Store) -> None:
    await store.append_metric_rows([row("a", 5.0, requests=1)])
    await store.append_metric_rows([row("a", 5.0, requests=2), row("a", 5.0, requests=3)])
    got = await store.query_metric_rows("churn", "v1", 5.0, 6.0)
    assert sorted(r.requests for r in got) == [1, 2, 3]


@contract
async def prune_deletes_older_buckets(store: Store) -> None:
    await store.append_metric_rows([row("a", float(t), requests=1) for t in range(10)])
    assert await store.prune_metric_rows(4.0) == 4
    got = await store.query_metric_rows("churn", "v1", 0, 100)
    assert [r.start for r in got] == [4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
    assert await store.prune_metric_rows(4.0) == 0


@contract
async def empty_append_is_a_no_op(store: Store) -> None:
    await store.append_metric_rows([])
    assert await store.query_metric_rows("churn", "v1", -math.inf, math.inf) == []


@contract
async def bad_rows_are_refused(store: Store) -> None:
    with pytest.raises(InvalidInput):
        await store.append_metric_rows([row("a", 1.0, abs_error_sum=math.nan)])
    with pytest.raises(InvalidInput):
        await store.append_metric_rows([row("a", 1.0, requests=-1)])
    assert await store.query_metric_rows("churn", "v1", 0, 100) == []


@contract
async def store_windows_sum_every_gateway(store: Store) -> None:
    fast, slow = latency_index(2.0), latency_index(200.0)
    await store.append_metric_rows(
        [
            row("a", 100.0, requests=98, errors=1, latency={fast: 98}, feedback=10, correct=9),
            row("b", 101.0, requests=2, errors=1, latency={slow: 2}, feedback=10, correct=8),
            row("b", 101.0, shadow_compared=5, shadow_agreeing=4, rewards=2, reward_sum=1.5),
        ]
    )
    w = await StoreWindows(store).window("churn", "v1", 100.0, 102.0)
    assert (w.requests, w.errors, w.feedback, w.correct) == (100, 2, 20, 17)
    assert w.success_rate == 98.0
    assert w.accuracy == 0.85
    assert (w.shadow_compared, w.shadow_agreeing, w.rewards, w.reward_sum) == (5, 4, 2, 1.5)
    assert w.latency_p50_ms is not None
    assert w.latency_p99_ms is not None
    assert 1.8 < w.latency_p50_ms < 2.2
    assert 180 < w.latency_p99_ms < 220
    empty = await StoreWindows(store).window("churn", "v1", 200.0, 300.0)
    assert (empty.requests, empty.latency_p99_ms, empty.accuracy) == (0, None, None)
