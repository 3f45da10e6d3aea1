"""Audit records in words."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from modelrouter.audit.explain import diff, explain, iso_time, summarize

T = 1795429862.0  # 2026-11-23T10:31:02Z


def decision(**over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "kind": "decision",
        "seq": 12,
        "time": T,
        "request_id": "abc",
        "model": "churn",
        "version": "v2",
        "rule": "default",
        "matched": ["header x-region exact 'eu'"],
        "bucket": 734,
        "weights": {"v1": 90, "v2": 10},
        "shadows": ["v3"],
        "fallbacks": [],
        "store_revision": 7,
        "status": 200,
        "latency_ms": 3.1,
        "error": None,
    }
    r.update(over)
    return r


def test_iso_time() -> None:
    assert iso_time(T) == "2026-11-23T10:31:02Z"
    assert iso_time(None) == "?"


def test_a_sticky_decision_in_words() -> None:
    assert explain(decision()) == (
        "Request abc at 2026-11-23T10:31:02Z for model churn matched rule 'default' "
        "(header x-region exact 'eu'); sticky bucket 734 of 10000 at weights v1=90, v2=10 "
        "chose v2; mirrored to v3; served by v2 with status 200 in 3.1 ms; "
        "store revision 7"
    )


def test_a_decision_of_an_earlier_release_reads_table_version_as_the_store_revision() -> None:
    old = decision()
    old["table_version"] = old.pop("store_revision")
    assert explain(old) == explain(decision())
    assert "routing table version" not in explain(old)


def test_a_random_draw_without_conditions() -> None:
    text = explain(decision(matched=[], bucket=None, shadows=[], weights={"v1": 99.5, "v2": 0.5}))
    assert "matched rule 'default';" in text
    assert "a random draw at weights v1=99.5, v2=0.5 chose v2" in text
    assert "mirrored" not in text


def test_a_single_destination_and_several_conditions() -> None:
    text = explain(
        decision(
            rule="eu",
            matched=["header x-region exact 'eu'", "query tier prefix 'gold'"],
            weights={"v2": 100},
            bucket=None,
            shadows=[{"version": "v3"}, "v4"],
        )
    )
    assert "matched rule 'eu' (header x-region exact 'eu' and query tier prefix 'gold')" in text
    assert "; routed to v2;" in text
    assert "mirrored to v3 and v4" in text


def test_fallbacks_and_failures() -> None:
    text = explain(decision(fallbacks=[{"version": "v1", "error": "v2 timed out after 250ms"}]))
    assert "fell back to v1 (v2 timed out after 250ms); served by v1 with status 200" in text
    text = explain(decision(status=504, error="upstream timeout", latency_ms=250.0))
    assert "failed with status 504 (upstream timeout) after 250.0 ms" in text
    assert "served by" not in text
    assert "0.42 ms" in explain(decision(latency_ms=0.42))


def test_a_pinned_request() -> None:
    text = explain(decision(pinned=True, rule=None, matched=[], bucket=None))
    assert "asked for version v2 explicitly (routing bypassed)" in text
    assert "chose" not in text


def test_no_rule_matched() -> None:
    text = explain(decision(rule=None, matched=[], version=None, status=404, error="no route"))
    assert "matched no rule" in text
    assert "failed with status 404 (no route)" in text


BEFORE = {
    "http": [
        {"name": "eu", "route": [{"destination": "v2"}]},
        {
            "name": "default",
            "route": [{"destination": "v1", "weight": 90}, {"destination": "v2", "weight": 10}],
        },
    ]
}
AFTER = {
    "http": [
        {"name": "eu", "route": [{"destination": "v2"}]},
        {
            "name": "default",
            "route": [{"destination": "v1", "weight": 80}, {"destination": "v2", "weight": 20}],
            "mirror": {"destination": "v3"},
        },
    ]
}


def change(**over: Any) -> dict[str, Any]:
    r: dict[str, Any] = {
        "kind": "change",
        "time": T,
        "actor": "alice",
        "action": "update",
        "what": "routing of churn",
        "model": "churn",
        "before": BEFORE,
        "after": AFTER,
        "previous_routing_version": 6,
        "routing_version": 7,
        "reason": "canary step 2",
    }
    r.update(over)
    return r


def test_a_change_in_words() -> None:
    assert explain(change()) == (
        "alice changed routing of churn from routing version 6 to 7 at 2026-11-23T10:31:02Z: "
        "http['default'].route[0].weight 90 -> 80, http['default'].route[1].weight 10 -> 20, "
        'http[\'default\'].mirror added: {"destination": "v3"}; reason: canary step 2'
    )


def test_a_creation_in_words() -> None:
    text = explain(change(before=None, previous_routing_version=None, routing_version=1))
    assert text == (
        "alice created routing of churn (routing version 1) at 2026-11-23T10:31:02Z; "
        "reason: canary step 2"
    )


def test_a_change_of_an_earlier_release_reads_table_version_as_the_routing_version() -> None:
    old = change()
    old["previous_table_version"] = old.pop("previous_routing_version")
    old["table_version"] = old.pop("routing_version")
    assert explain(old) == explain(change())
    assert summarize(old) == summarize(change()) == "alice routing of churn v6->v7: canary step 2"


def test_a_gap_in_words() -> None:
    text = explain(
        {"kind": "gap", "time": T, "first_lost_seq": 5, "last_lost_seq": 9, "reason": "reset"}
    )
    assert text == (
        "modelrouter found records seq 5..9 lost at 2026-11-23T10:31:02Z; "
        "the chain continues from here; reason: reset"
    )


def test_diff_by_rule_name() -> None:
    reordered = {"http": list(reversed(BEFORE["http"]))}
    assert diff(BEFORE, reordered) == ["http reordered: default, eu"]
    dropped = {"http": BEFORE["http"][1:]}
    assert diff(BEFORE, dropped) == ["http['eu'] removed"]
    assert diff({"a": [1, 2]}, {"a": [1, 2, 3]}) == ["a [1, 2] -> [1, 2, 3]"]
    assert diff({"a": 1, "b": 2}, {"a": 1}) == ["b removed"]
    many = diff({"x": list(range(10))}, {"x": [i + 1 for i in range(10)]})
    assert len(many) == 10
    assert "(and 4 more changes)" in explain(
        change(before={"x": list(range(10))}, after={"x": [i + 1 for i in range(10)]})
    )


def test_admin_and_rollout_records() -> None:
    prune = {
        "kind": "admin",
        "time": T,
        "actor": "cli",
        "action": "prune_audit",
        "what": "audit log",
        "deleted": 120,
        "anchor_seq": 120,
        "reason": "retention: max_count=5",
    }
    assert explain(prune) == (
        "cli prune_audit audit log at 2026-11-23T10:31:02Z: deleted 120 records; the log now "
        "starts after seq 120; reason: retention: max_count=5"
    )
    rollout = {
        "kind": "rollout",
        "time": T,
        "rollout": "churn-v2",
        "model": "churn",
        "action": "step",
        "weights": {"v1": 80, "v2": 20},
        "reason": "all checks passed",
    }
    text = explain(rollout)
    assert text.startswith("the rollout controller step churn-v2 of model churn at 2026-11-23")
    assert 'weights={"v1": 80, "v2": 20}' in text
    assert text.endswith("reason: all checks passed")
    assert explain({"kind": "feedback", "seq": 3, "time": T, "label": 1}) == (
        "feedback record 3 at 2026-11-23T10:31:02Z: label=1"
    )


def test_summaries_are_one_line() -> None:
    assert summarize(decision()) == "req=abc model=churn rule=default -> v2 200 3.1ms"
    assert summarize(change()) == "alice routing of churn v6->v7: canary step 2"
    assert summarize({"kind": "admin", "actor": "bob", "action": "unload", "what": "v1"}) == (
        "bob unload v1"
    )


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "kind",
                "time",
                "request_id",
                "model",
                "version",
                "rule",
                "matched",
                "bucket",
                "weights",
                "shadows",
                "fallbacks",
                "status",
                "latency_ms",
                "error",
                "before",
                "after",
                "actor",
                "reason",
                "table_version",
                "store_revision",
                "routing_version",
                "served_by",
                "pinned",
            ]
        ),
        st.one_of(
            st.none(),
            st.booleans(),
            st.integers(),
            st.floats(allow_nan=False),
            st.text(max_size=5),
            st.sampled_from(["decision", "change", "admin", "rollout"]),
            st.lists(st.text(max_size=3), max_size=2),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
        ),
    )
)
def test_explain_never_raises_on_partial_records(record: dict[str, Any]) -> None:
    assert isinstance(explain(record), str)
    assert isinstance(summarize(record), str)
