"""The hash chain: every kind of tampering is caught, honest logs always verify."""

from __future__ import annotations

import copy
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelrouter.audit.chain import (
    GENESIS_HASH,
    INDEX_COLUMNS,
    ChainPoint,
    ChainVerifier,
    canonical_json,
    check_columns,
    index_columns,
    normalize,
    prepare_record,
    record_hash,
    seal,
    verify,
)
from modelrouter.errors import InvalidInput


def chain(records: list[dict[str, Any]], start: ChainPoint | None = None) -> list[dict[str, Any]]:
    """Seal ``records`` as a store would, after ``start``."""
    point = start or ChainPoint(0, GENESIS_HASH)
    out = []
    for r in records:
        sealed = seal(prepare_record(r, now=1000.0), point.seq + 1, point.hash)
        out.append(sealed)
        point = ChainPoint(sealed["seq"], sealed["hash"])
    return out


def head_of(records: list[dict[str, Any]]) -> ChainPoint:
    return ChainPoint(records[-1]["seq"], records[-1]["hash"])


def sample(n: int = 6) -> list[dict[str, Any]]:
    return chain(
        [
            {
                "kind": "decision",
                "request_id": f"r{i}",
                "model": "churn",
                "version": "v1",
                "weights": {"v1": 90, "v2": 10},
                "latency_ms": 1.5 * i,
                "status": 200,
            }
            for i in range(n)
        ]
    )


def test_an_honest_chain_verifies() -> None:
    records = sample()
    result = verify(records, head=head_of(records))
    assert (result.ok, result.checked, result.first_bad_seq) == (True, 6, None)
    assert records[0]["prev_hash"] == GENESIS_HASH
    assert verify([], head=ChainPoint(0, GENESIS_HASH)).ok


def test_an_edited_record_fails_at_its_seq() -> None:
    records = sample()
    records[2]["version"] = "v2"
    result = verify(records, head=head_of(records))
    assert (result.ok, result.first_bad_seq, result.checked) == (False, 3, 2)
    assert "edited" in result.reason


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link() -> None:
    records = sample()
    records[2]["status"] = 500
    records[2]["hash"] = record_hash(records[2]["prev_hash"], records[2])
    result = verify(records, head=head_of(records))
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "prev_hash" in result.reason


def test_a_record_deleted_in_the_middle_fails() -> None:
    records = sample()
    del records[3]
    result = verify(records, head=head_of(records))
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "missing" in result.reason


def test_a_deleted_middle_record_with_renumbering_fails() -> None:
    records = sample()
    del records[3]
    for r in records[3:]:
        r["seq"] -= 1
    result = verify(records)
    assert (result.ok, result.first_bad_seq) == (False, 4)


def test_deleting_the_tail_fails_only_with_the_head() -> None:
    records = sample()
    head = head_of(records)
    cut = records[:4]
    assert verify(cut).ok  # without a head, a shorter log looks complete: why the head exists
    result = verify(cut, head=head)
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert "deleted" in result.reason
    assert "5..6" in result.reason


def test_a_replaced_newest_record_fails_against_the_head() -> None:
    records = sample()
    head = head_of(records)
    last = records[-1]
    last["status"] = 503
    records[-1] = seal(last, last["seq"], last["prev_hash"])
    result = verify(records, head=head)
    assert (result.ok, result.first_bad_seq) == (False, 6)
    assert "head" in result.reason


def test_records_beyond_the_head_fail() -> None:
    records = sample()
    result = verify(records, head=ChainPoint(4, records[3]["hash"]))
    assert (result.ok, result.first_bad_seq) == (False, 5)


def test_reordered_records_fail() -> None:
    records = sample()
    records[1], records[2] = records[2], records[1]
    result = verify(records, head=head_of(records))
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "reordered" in result.reason or "missing" in result.reason


def test_swapped_seqs_fail() -> None:
    records = sample()
    records[1]["seq"], records[2]["seq"] = records[2]["seq"], records[1]["seq"]
    records[1], records[2] = records[2], records[1]
    result = verify(records, head=head_of(records))
    assert (result.ok, result.first_bad_seq) == (False, 2)


def test_a_duplicated_record_fails() -> None:
    records = sample()
    records.insert(3, copy.deepcopy(records[2]))
    result = verify(records, head=head_of(records))
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "duplicated" in result.reason


def test_the_first_record_deleted_fails_without_an_anchor() -> None:
    records = sample()[1:]
    result = verify(records)
    assert (result.ok, result.first_bad_seq) == (False, 1)


def test_a_pruned_log_verifies_from_its_anchor() -> None:
    records = sample(10)
    anchor = ChainPoint(records[3]["seq"], records[3]["hash"])
    kept = records[4:]
    assert verify(kept, anchor=anchor, head=head_of(records)).ok
    assert not verify(kept).ok
    assert not verify(kept, anchor=ChainPoint(4, "f" * 64)).ok
    # everything pruned: empty log, head at the anchor
    assert verify([], anchor=head_of(records), head=head_of(records)).ok


def test_a_record_without_a_seq_fails() -> None:
    records = sample()
    del records[2]["seq"]
    assert verify(records).first_bad_seq == 3


def test_the_streaming_verifier_stops_at_the_first_failure() -> None:
    records = sample()
    records[1]["model"] = "fraud"
    v = ChainVerifier()
    assert v.feed(records[0])
    assert not v.feed(records[1])
    assert not v.feed(records[2])
    assert v.failed
    assert v.finish().first_bad_seq == 2


def test_canonical_json_is_stable() -> None:
    a = canonical_json({"b": 1, "a": [1.5, "é", None], "c": {"y": True, "x": False}})
    assert a == '{"a":[1.5,"é",null],"b":1,"c":{"x":false,"y":true}}'.encode()
    assert canonical_json({"a": 1, "b": 2}) == canonical_json({"b": 2, "a": 1})


def test_normalize_makes_plain_json() -> None:
    data = normalize(
        {
            "kind": "decision",
            "t": (1, 2),
            "n": np.float32(0.5),
            "i": np.int64(3),
            "w": {1: 90},
            "a": np.array([1, 2]),
        }
    )
    assert data == {"kind": "decision", "t": [1, 2], "n": 0.5, "i": 3, "w": {"1": 90}, "a": [1, 2]}
    for bad in ({"x": math.nan}, {"x": [math.inf]}, {"x": {"y": -math.inf}}):
        with pytest.raises(InvalidInput):
            normalize(bad)
    with pytest.raises(InvalidInput):
        normalize([1, 2])  # type: ignore[arg-type]


def test_prepare_record_needs_a_kind_and_sets_the_time() -> None:
    r = prepare_record({"kind": "admin", "seq": 5, "hash": "x"}, now=42.0)
    assert r == {"kind": "admin", "time": 42.0}
    assert prepare_record({"kind": "admin", "time": 7}, now=42.0)["time"] == 7
    for bad in (
        {},
        {"kind": ""},
        {"kind": 3},
        {"kind": "admin", "time": "now"},
        {"kind": "admin", "time": True},
    ):
        with pytest.raises(InvalidInput):
            prepare_record(bad, now=1.0)


# -- properties --------------------------------------------------------------------------

json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53), max_value=2**53),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=12),
)
json_value = st.one_of(
    json_leaf,
    st.lists(json_leaf, max_size=3),
    st.dictionaries(st.text(max_size=5), json_leaf, max_size=3),
)
field_name = st.text(min_size=1, max_size=10).filter(
    lambda k: k not in ("kind", "seq", "prev_hash", "hash", "time")
)
record = st.builds(
    lambda kind, fields, t: {**fields, "kind": kind, "time": t},
    st.sampled_from(["decision", "change", "admin", "rollout"]),
    st.dictionaries(field_name, json_value, max_size=6),
    st.floats(min_value=0, max_value=4e9, allow_nan=False),
)


@settings(max_examples=40, deadline=None)
@given(st.lists(record, min_size=0, max_size=12))
def test_any_honest_sequence_verifies(records: list[dict[str, Any]]) -> None:
    sealed = chain(records)
    head = head_of(sealed) if sealed else ChainPoint(0, GENESIS_HASH)
    result = verify(sealed, head=head)
    assert result.ok, result
    assert result.checked == len(records)
    # what a store writes and reads back (JSON text) verifies the same
    import json

    reread = [json.loads(json.dumps(r)) for r in sealed]
    assert verify(reread, head=head).ok


def _different(value: Any) -> Any:
    """A JSON value that is not equal to ``value``."""
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, bool) or value is None:
        return "changed"
    if isinstance(value, int | float):
        return value + 1 if abs(value) < 1e15 else value / 2 + 1
    return [value, "changed"]


@settings(max_examples=50, deadline=None)
@given(st.lists(record, min_size=1, max_size=8), st.data())
def test_any_single_field_edit_fails(records: list[dict[str, Any]], data: st.DataObject) -> None:
    sealed = chain(records)
    head = head_of(sealed)
    i = data.draw(st.integers(min_value=0, max_value=len(sealed) - 1), label="record")
    field = data.draw(st.sampled_from(sorted(sealed[i])), label="field")
    new = _different(sealed[i][field])
    assert new != sealed[i][field]
    sealed[i][field] = new
    result = verify(sealed, head=head)
    assert not result.ok
    assert result.first_bad_seq == i + 1, result


def _columns(record: dict[str, Any]) -> tuple[Any, ...]:
    return (record["seq"], *index_columns(record))


def test_index_columns_that_match_their_records_verify() -> None:
    records = chain([{"kind": "decision", "time": 1.0 + i, "request_id": str(i)} for i in range(3)])
    verifier = ChainVerifier()
    assert all(verifier.feed(r, _columns(r)) for r in records)
    assert verifier.finish(ChainPoint(3, records[-1]["hash"])).ok


@pytest.mark.parametrize(
    ("position", "value"),
    [(0, 3), (1, 99.0), (2, "admin"), (3, "ltv"), (4, "v9"), (5, "eu"), (6, "r-other")],
)
def test_an_index_column_unlike_its_record_fails_at_its_seq(position: int, value: Any) -> None:
    records = chain(
        [
            {"kind": "decision", "time": 1.0 + i, "model": "m", "version": "v1", "rule": "d"}
            | {"request_id": f"r{i}"}
            for i in range(3)
        ]
    )
    verifier = ChainVerifier()
    assert verifier.feed(records[0], _columns(records[0]))
    wrong = list(_columns(records[1]))
    wrong[position] = value
    assert not verifier.feed(records[1], tuple(wrong))
    result = verifier.finish()
    name = INDEX_COLUMNS[position]
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert f"column {name} is {value!r}" in result.reason


def test_check_columns_names_a_record_it_cannot_derive_columns_from() -> None:
    assert "cannot be derived" in (check_columns({"seq": 1}, (1,) * 7) or "")
