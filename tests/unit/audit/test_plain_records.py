"""The fast path of decision records: the same stored bytes, hash and index columns as the
general (normalizing) path, and the same refusals."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelrouter.audit import records
from modelrouter.audit.chain import (
    GENESIS_HASH,
    PlainRecord,
    canonical_json,
    index_columns,
    is_plain,
    normalize,
    prepare_record,
    seal_text,
)
from modelrouter.audit.writer import AuditWriter
from modelrouter.errors import InvalidInput
from modelrouter.store.memory import MemoryStore
from modelrouter.store.sqlite import SQLiteStore

BASE: dict[str, Any] = {
    "time": 1764590400.123456,
    "request_id": "0123456789abcdef0123456789abcdef",
    "model": "churn",
    "version": "v1",
    "served_by": "v1",
    "pinned": False,
    "rule": "default",
    "matched": (),
    "bucket": None,
    "sticky": False,
    "weights": {"v1": 90.0, "v2": 10.0},
    "shadows": (),
    "fallbacks": [],
    "store_revision": 3,
    "status": 200,
    "latency_ms": 0.412,
    "prediction": [1],
    "error": None,
}

CASES: dict[str, dict[str, Any]] = {
    "typical": {},
    "unicode": {
        "request_id": "ré-🚀",
        "model": "modèle",
        "version": "v²",
        "rule": "règle ✓",
        "error": "échec: ✗ «x»",
        "status": 500,
        "served_by": None,
        "prediction": None,
    },
    "nested": {
        "prediction": [[1, 2], [3.5, "x", None, True]],
        "matched": ["header x-region exact 'eu'", "weight"],
        "shadows": ["v2"],
    },
    "big_ints": {
        "store_revision": 2**63 - 1,
        "bucket": 2**64 - 1,
        "sticky": True,
        "prediction": [2**64 - 1, -(2**63)],
    },
    "floats": {
        "latency_ms": 1e-7,
        "weights": {"v1": 1e300, "v2": -0.0, "v3": 33.333333333333336},
        "time": 0.1 + 0.2,
    },
    "fallbacks": {
        "fallbacks": [
            {"version": "v2", "from": "v1", "error": "model 'churn' version 'v1' failed"}
        ],
        "served_by": "v2",
    },
    "numpy": {
        "latency_ms": np.float64(0.5),
        "weights": {"v1": np.float32(90.0)},
        "bucket": np.int64(3),
        "sticky": True,
        "status": np.int32(200),
        "prediction": [np.int64(1)],
    },
}

GOLDEN = {
    # seal_text(prepare_record(record, 0.0), 7, GENESIS_HASH) before the fast path existed
    "typical": "78455cef0e5e0b30fc42cdf924faeb94276acbd9bbec3fa0b3a97717fa99ae2d",
    "unicode": "c65e048aeb7ed85fc480eaaed5f21e6e0411270d38fa50583e6dab8d813550ae",
    "nested": "663857ea4efcd66a27ddc21f0d5ddf884792b22cfd683b3fab06939c83f69c4e",
    "big_ints": "ee37bf0f5d489c8efadc7de5fc464d1d33612ae3ceec672c160f7845d9a9711d",
    "floats": "eb1db8d489ce6728faa3caa0d9932f79d6217410a0604cb68ef928ef1bc4f86e",
    "fallbacks": "7b54ffa32b83ddd3e30f1ed944fb45c523ccfc7ad52014ebf54581cb52974cf3",
    "numpy": "59992e1063f28867aab1ef18eb2fbb558ae16f32dedbebf171234f9d8d67713f",
}


def _build(**changes: Any) -> dict[str, Any]:
    return records.decision(**{**BASE, **changes})


def _sealed(record: Any) -> tuple[str, str, tuple[Any, ...]]:
    data = prepare_record(record, 0.0)
    body, digest = seal_text(data, 7, GENESIS_HASH)
    return body, digest, index_columns(data)


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_decision_is_stored_as_before_on_either_path(name: str) -> None:
    record = _build(**CASES[name])
    assert (type(record) is PlainRecord) == (name != "numpy")  # numpy values: general path
    fast = _sealed(record)
    general = _sealed(dict(record))  # a plain dict always takes the normalizing path
    assert fast == general
    assert fast[1] == GOLDEN[name]


def test_index_columns_of_a_plain_record() -> None:
    _, _, columns = _sealed(_build(**CASES["unicode"]))
    assert columns == (1764590400.123456, "decision", "modèle", "v²", "règle ✓", "ré-🚀")


@pytest.mark.parametrize(
    "changes",
    [
        {"latency_ms": math.nan},
        {"latency_ms": math.inf},
        {"time": -math.inf},
        {"weights": {"v1": math.nan}},
        {"prediction": [1.0, math.inf]},
        {"prediction": [[math.nan]]},
        {"fallbacks": [{"version": "v2", "from": "v1", "error": math.nan}]},
    ],
)
def test_nan_and_infinity_are_refused_with_the_same_error(changes: dict[str, Any]) -> None:
    record = _build(**changes)
    assert type(record) is not PlainRecord
    with pytest.raises(InvalidInput) as fast:
        prepare_record(record, 0.0)
    with pytest.raises(InvalidInput) as general:
        prepare_record(dict(record), 0.0)
    assert fast.value.message == general.value.message
    assert "not a finite number" in fast.value.message


def test_an_int_wider_than_64_bits_is_refused_as_before() -> None:
    record = _build(store_revision=2**64)
    assert type(record) is not PlainRecord
    with pytest.raises(InvalidInput, match="Integer exceeds 64-bit range"):
        prepare_record(record, 0.0)


def test_records_of_other_callers_are_still_normalized() -> None:
    record = {"kind": "admin", "t": (1, 2), "n": np.float32(0.5), "w": {1: 90}, "seq": 3}
    assert prepare_record(record, 5.0) == {
        "kind": "admin",
        "t": [1, 2],
        "n": 0.5,
        "w": {"1": 90},
        "time": 5.0,
    }
    with pytest.raises(InvalidInput, match="not a finite number"):
        prepare_record({"kind": "admin", "x": [math.nan]}, 5.0)


@pytest.mark.parametrize(
    "value",
    [
        (1, 2),
        np.float64(1.0),
        np.int64(1),
        {1: "a"},
        2**64,
        -(2**63) - 1,
        math.nan,
        [math.inf],
        {"a": {"b": -math.inf}},
        {"a", "b"},
        b"x",
        1 + 2j,
    ],
)
def test_what_is_not_plain(value: Any) -> None:
    assert not is_plain(value)
    assert not is_plain({"x": [value]})


json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=12,
)


@settings(max_examples=200, deadline=None)
@given(json_value)
def test_plain_values_are_what_normalize_leaves_alone(value: Any) -> None:
    assert is_plain(value)
    record = {"kind": "decision", "v": value}
    assert normalize(record) == record
    assert canonical_json(normalize(record)) == canonical_json(record)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.one_of(st.integers(-(2**63), 2**64 - 1), st.floats(), st.text(max_size=5))),
    st.dictionaries(st.text(max_size=4), st.floats()),
)
def test_any_decision_seals_alike_on_both_paths(
    prediction: list[Any], weights: dict[str, float]
) -> None:
    record = _build(prediction=prediction, weights=weights)
    finite = all(math.isfinite(v) for v in [*weights.values(), *prediction] if type(v) is float)
    assert (type(record) is PlainRecord) == finite
    if finite:
        assert _sealed(record) == _sealed(dict(record))
        return
    with pytest.raises(InvalidInput) as fast:
        _sealed(record)
    with pytest.raises(InvalidInput) as general:
        _sealed(dict(record))
    assert fast.value.message == general.value.message


def test_the_sqlite_store_writes_the_same_rows_for_both_paths(tmp_path: Path) -> None:
    built = [_build(**CASES[name]) for name in sorted(CASES)]

    async def write(name: str, batch: list[dict[str, Any]]) -> list[Any]:
        store = SQLiteStore(tmp_path / f"{name}.db", clock=lambda: 1.0)
        try:
            await store.append_audit(batch)
            assert (await store.verify_audit()).ok
            return [(s.record, s.columns) for s in await store.scan_audit(0, 100)]
        finally:
            await store.close()

    rows = [
        asyncio.run(write("fast", built)),
        asyncio.run(write("general", list(map(dict, built)))),
    ]
    assert rows[0] == rows[1]
    assert len(rows[0]) == len(CASES)


def test_through_the_writer_plain_decisions_and_other_records_are_stored_as_json() -> None:
    async def run() -> tuple[list[dict[str, Any]], dict[str, int]]:
        store = MemoryStore()
        writer = AuditWriter(store)
        assert type(_build()) is PlainRecord
        writer.submit(_build())
        writer.submit({"kind": "admin", "t": (1, 2), "n": np.float32(0.5), "w": {1: 90}})
        writer.submit({"kind": "admin", "bad": math.nan})
        writer.submit(_build(latency_ms=math.inf))
        await writer.flush()
        stats = writer.stats()
        await writer.close()
        return await store.query_audit(order="asc"), stats

    stored, stats = asyncio.run(run())
    assert [r["kind"] for r in stored] == ["decision", "admin"]
    assert stored[0]["weights"] == {"v1": 90.0, "v2": 10.0}
    assert {k: stored[1][k] for k in ("t", "n", "w")} == {"t": [1, 2], "n": 0.5, "w": {"1": 90}}
    assert stats["invalid"] == 2
    assert stats["written"] == 2
