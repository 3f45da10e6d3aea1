"""Properties of weighted and sticky splits, checked on random weights and keys."""

from __future__ import annotations

import json
import math
import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelrouter.config.schema import ModelSpec
from modelrouter.routing import (
    BUCKETS,
    RequestContext,
    RoutingTable,
    compile_table,
    decide,
    sticky_bucket,
)

ROOT = Path(__file__).resolve().parents[3]
NAMES = ("v1", "v2", "v3", "v4")


def split_table(weights: list[int], sticky: bool = True, salt: str | None = None) -> RoutingTable:
    rule: dict[str, Any] = {
        "name": "split",
        "route": [{"destination": v, "weight": w} for v, w in zip(NAMES, weights, strict=False)],
    }
    if sticky:
        rule["sticky"] = {"header": "x-user-id"}
    if salt is not None:
        rule["salt"] = salt
    spec = ModelSpec.model_validate(
        {
            "versions": {
                v: {"modelFormat": "custom", "implementation": "fixtures.models:EchoModel"}
                for v in NAMES
            },
            "http": [rule],
        }
    )
    return compile_table({"m": spec}, version=1)


def no_draws() -> float:
    raise AssertionError("a sticky request must not draw")


def sticky_version(t: RoutingTable, key: str) -> str:
    return decide(t, "m", RequestContext({"x-user-id": key}, rand=no_draws)).version


def assert_close_to_weights(counts: dict[str, int], weights: list[int], n: int) -> None:
    """Each share within 6 standard deviations of its binomial expectation (plus rounding of
    the bucket bounds), so a correct split fails about once in a billion checks."""
    total = sum(weights)
    for v, w in zip(NAMES, weights, strict=False):
        p = w / total
        expected = n * p
        sd = math.sqrt(n * p * (1 - p))
        slack = 6 * sd + n / BUCKETS + 1
        got = counts.get(v, 0)
        assert abs(got - expected) <= slack, (
            f"{v}: {got} of {n} at weights {weights}, expected {expected:.0f} +- {slack:.0f}"
        )
        if w == 0:
            assert got == 0, f"{v} has weight 0 but got {got}"


weights_strategy = st.lists(st.integers(0, 100), min_size=2, max_size=4).filter(
    lambda ws: sum(ws) > 0
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weights=weights_strategy, salt=st.text(max_size=12), prefix=st.text(max_size=6))
def test_sticky_split_follows_the_weights(weights: list[int], salt: str, prefix: str) -> None:
    t = split_table(weights, salt=salt or None)
    n = 3000
    counts: dict[str, int] = {}
    for i in range(n):
        v = sticky_version(t, f"{prefix}user-{i}")
        counts[v] = counts.get(v, 0) + 1
    assert_close_to_weights(counts, weights, n)


@settings(max_examples=40, deadline=None)
@given(weights=weights_strategy, seed=st.integers(0, 2**32 - 1))
def test_keyless_split_follows_the_weights(weights: list[int], seed: int) -> None:
    t = split_table(weights, sticky=False)
    rng = random.Random(seed)
    n = 3000
    counts: dict[str, int] = {}
    for _ in range(n):
        v = decide(t, "m", RequestContext(rand=rng.random)).version
        counts[v] = counts.get(v, 0) + 1
    assert_close_to_weights(counts, weights, n)


@settings(max_examples=200, deadline=None)
@given(
    salt=st.binary(max_size=16),
    key=st.text(min_size=1, max_size=40),
)
def test_bucket_is_in_range_and_a_pure_function(salt: bytes, key: str) -> None:
    b = sticky_bucket(salt, key)
    assert 0 <= b < BUCKETS
    assert sticky_bucket(salt, key) == b
    assert sticky_bucket(bytes(salt), str(key)) == b  # equal values, not identical objects


def test_buckets_are_uniform() -> None:
    """A chi-square test over 100 groups of buckets: hashing has no hot spots."""
    n = 50_000
    groups = [0] * 100
    for i in range(n):
        groups[sticky_bucket(b"churn/default", f"customer-{i}") * 100 // BUCKETS] += 1
    expected = n / 100
    chi2 = sum((g - expected) ** 2 / expected for g in groups)
    assert chi2 < 180, chi2  # 99 degrees of freedom: p < 1e-6 beyond 180


# --------------------------------------------------------------------------- monotone cohorts


KEYS = [f"user-{i}" for i in range(2000)]


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(0, 99),
    data=st.data(),
    canary_first=st.booleans(),
    salt=st.text(max_size=8),
)
def test_raising_the_canary_only_moves_users_onto_it(
    w: int, data: st.DataObject, canary_first: bool, salt: str
) -> None:
    w2 = data.draw(st.integers(w + 1, 100), label="w'")
    order = [("v2", w), ("v1", 100 - w)] if canary_first else [("v1", 100 - w), ("v2", w)]
    order2 = [(v, w2 if v == "v2" else 100 - w2) for v, _ in order]

    def table_for(pairs: list[tuple[str, int]]) -> RoutingTable:
        spec = ModelSpec.model_validate(
            {
                "versions": {
                    v: {"modelFormat": "custom", "implementation": "fixtures.models:EchoModel"}
                    for v in ("v1", "v2")
                },
                "http": [
                    {
                        "name": "canary",
                        "route": [{"destination": v, "weight": x} for v, x in pairs],
                        "sticky": {"header": "x-user-id"},
                        **({"salt": salt} if salt else {}),
                    }
                ],
            }
        )
        return compile_table({"m": spec})

    before, after = table_for(order), table_for(order2)
    on_canary = {k for k in KEYS if sticky_version(before, k) == "v2"}
    on_canary_after = {k for k in KEYS if sticky_version(after, k) == "v2"}
    left = on_canary - on_canary_after
    assert not left, f"{len(left)} users left the canary when it went from {w} to {w2}"
    # and the canary did grow by about the share it gained
    gained = len(on_canary_after) - len(on_canary)
    n, p = len(KEYS), (w2 - w) / 100
    assert abs(gained - n * p) <= 6 * math.sqrt(n * p * (1 - p)) + 2


@settings(max_examples=60, deadline=None)
@given(
    others=st.lists(st.integers(0, 50), min_size=2, max_size=3),
    position=st.integers(0, 3),
    w=st.integers(0, 60),
    delta=st.integers(1, 60),
)
def test_canary_cohort_is_monotone_among_several_destinations(
    others: list[int], position: int, w: int, delta: int
) -> None:
    """Raising one destination's weight, the others fixed: nobody leaves it."""
    position = min(position, len(others))

    def weights_with(canary: int) -> list[int]:
        ws = list(others)
        ws.insert(position, canary)
        return ws

    before_w, after_w = weights_with(w), weights_with(w + delta)
    if sum(before_w) == 0:
        return
    before, after = split_table(before_w), split_table(after_w)
    canary = NAMES[position]
    for k in KEYS[:800]:
        if sticky_version(before, k) == canary:
            assert sticky_version(after, k) == canary, (k, before_w, after_w)


# --------------------------------------------------------------------------- across processes


CHILD = r"""
import json, sys
from modelrouter.config.loader import load_config
from modelrouter.routing import RequestContext, compile_table, decide, sticky_bucket

keys = json.load(sys.stdin)
loaded = load_config(sys.argv[1])
table = compile_table(loaded.config.models)
out = []
for k in keys:
    d = decide(table, "churn", RequestContext({"x-user-id": k}, rand=lambda: 0.0))
    out.append([sticky_bucket(b"churn/default", k), d.version, d.bucket])
json.dump(out, sys.stdout)
"""

EXAMPLE = ROOT / "examples" / "churn" / "modelrouter.yaml"


def in_child(keys: list[str], hashseed: str) -> list[list[Any]]:
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(EXAMPLE)],
        input=json.dumps(keys),
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONHASHSEED": hashseed},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result: list[list[Any]] = json.loads(proc.stdout)
    return result


def here(keys: list[str]) -> list[list[Any]]:
    from modelrouter.config.loader import load_config

    table = compile_table(load_config(EXAMPLE).config.models)
    out = []
    for k in keys:
        d = decide(table, "churn", RequestContext({"x-user-id": k}, rand=lambda: 0.0))
        out.append([sticky_bucket(b"churn/default", k), d.version, d.bucket])
    return out


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    keys=st.lists(
        st.text(
            alphabet=st.characters(
                blacklist_categories=["Cs"]
            ),  # JSON cannot carry lone surrogates
            min_size=1,
            max_size=30,
        ),
        min_size=20,
        max_size=80,
        unique=True,
    )
)
def test_same_key_same_version_in_another_process(keys: list[str]) -> None:
    keys = [*keys, *(f"user-{i}" for i in range(300))]
    ours = here(keys)
    theirs = in_child(keys, hashseed=str(random.randint(1, 2**31)))
    assert ours == theirs
    versions = {v for _, v, _ in ours}
    assert versions == {"v1", "v2"}, versions  # the example's 90/10 canary: both seen


def test_buckets_are_stable_across_releases() -> None:
    """Fixed values: changing the hash would reshuffle every user of every experiment."""
    assert sticky_bucket(b"churn/default", "user-42") == 2822
    assert sticky_bucket(b"churn/default", "42") == 2339
    assert sticky_bucket(b"churn/default", "alice") == 6850
