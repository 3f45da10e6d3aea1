"""The transport-neutral audit query filter and request explanations."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelrouter.audit import records
from modelrouter.audit.query import MAX_PAGE, AuditQuery, explain_request, run_query
from modelrouter.errors import InvalidInput
from modelrouter.store.memory import MemoryStore


def _decision(rid: str, version: str) -> dict[str, Any]:
    return records.decision(
        request_id=rid,
        model="churn",
        version=version,
        served_by=version,
        pinned=False,
        rule="default",
        matched=(),
        bucket=None,
        sticky=False,
        weights={"v1": 50, "v2": 50},
        shadows=(),
        fallbacks=[],
        store_revision=3,
        status=200,
        latency_ms=1.0,
    )


@pytest.mark.parametrize(
    ("args", "field"),
    [
        ({"kind": "decisions"}, "kind"),
        ({"order": "up"}, "order"),
        ({"limit": -1}, "limit"),
        ({"after_seq": -5}, "after_seq"),
        ({"since": 10.0, "until": 5.0}, "since"),
    ],
)
def test_a_bad_filter_is_refused_naming_its_field(args: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        AuditQuery(**args)
    assert err.value.message.startswith(field)


def test_every_known_kind_is_accepted() -> None:
    for kind in records.KINDS:
        assert AuditQuery(kind=kind).kind == kind


def test_from_params_parses_text_and_refuses_what_it_does_not_know() -> None:
    q = AuditQuery.from_params(
        {"kind": "change", "since": "10m", "limit": "5", "order": "asc", "after_seq": "7"}, 1000.0
    )
    assert q == AuditQuery(kind="change", since=400.0, limit=5, order="asc", after_seq=7)
    for params, field in (
        ({"kind": "nope"}, "kind"),
        ({"limit": str(MAX_PAGE + 1)}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"since": "soon"}, "since"),
        ({"colour": "red"}, "unknown audit filter 'colour'"),
    ):
        with pytest.raises(InvalidInput) as err:
            AuditQuery.from_params(params, 1000.0)
        assert field in err.value.message


def test_run_query_and_explain_a_reused_request_id() -> None:
    async def main() -> None:
        store = MemoryStore()
        await store.append_audit(
            [_decision("dup", "v1"), _decision("one", "v1"), _decision("dup", "v2")]
        )
        got = await run_query(store, AuditQuery(request_id="dup", order="asc"))
        assert [r["version"] for r in got] == ["v1", "v2"]

        found = await explain_request(store, "dup")
        assert found is not None
        assert found.duplicated
        assert [r["seq"] for r in found.records] == [1, 3]
        assert found.decision is not None
        assert found.decision["version"] == "v2"
        assert "used by 2 requests (decision records seq 1, 3)" in found.note
        doc = found.to_json()
        assert doc["record"]["seq"] == 3
        assert doc["duplicated"] is True
        assert len(doc["explanations"]) == 2

        single = await explain_request(store, "one")
        assert single is not None
        assert not single.duplicated
        assert single.note == ""
        assert await explain_request(store, "none") is None

    asyncio.run(main())


def test_an_explanation_lists_the_newest_records_and_says_so() -> None:
    async def main() -> None:
        store = MemoryStore()
        await store.append_audit([_decision("many", f"v{i}") for i in range(5)])
        found = await explain_request(store, "many", limit=3)
        assert found is not None
        assert found.truncated
        assert [r["seq"] for r in found.records] == [3, 4, 5]
        assert "only the newest 3 records" in found.note

    asyncio.run(main())
