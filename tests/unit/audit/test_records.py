"""Audit records are built in one module, a constructor per kind."""

from __future__ import annotations

import re
from pathlib import Path

from modelrouter.audit import records
from modelrouter.audit.chain import prepare_record

SRC = Path(records.__file__).resolve().parents[1]


def test_no_module_but_records_builds_an_audit_record() -> None:
    """A dict literal with a lower-case ``"kind"`` anywhere else is a producer that bypasses it
    (Kubernetes manifests of the exporters have CamelCase kinds: ``"kind": "Service"``)."""
    literal = re.compile(r"""["']kind["']\s*:\s*["'][a-z]""")
    offenders = [
        str(path.relative_to(SRC))
        for path in SRC.rglob("*.py")
        if path.name != "records.py"
        and "export" not in path.relative_to(SRC).parts  # Kubernetes manifests have kinds too
        and literal.search(path.read_text())
    ]
    assert offenders == []


def _decision(**over: object) -> records.Record:
    args: dict[str, object] = {
        "request_id": "r1",
        "model": "churn",
        "version": "v2",
        "served_by": "v2",
        "pinned": False,
        "rule": "default",
        "matched": ("header x-region exact 'eu'",),
        "bucket": 42,
        "sticky": True,
        "weights": {"v1": 90, "v2": 10},
        "shadows": ("v3",),
        "fallbacks": [],
        "store_revision": 7,
        "status": 200,
        "latency_ms": 1.5,
    }
    args.update(over)
    return records.decision(**args)  # type: ignore[arg-type]


def test_every_constructor_makes_a_known_kind_that_the_store_accepts() -> None:
    built = [
        _decision(),
        records.routing_change(
            model="churn",
            actor="alice",
            before=None,
            previous_routing_version=None,
            after={"http": []},
            routing_version=1,
            reason="x",
        ),
        records.version_action(
            actor="a", action="unload", model="m", version="v1", before="READY", after="UNLOADED"
        ),
        records.alias_moved(
            model="m", version="v2", registered_model="M", alias="champion", before="1", after="2"
        ),
        records.pruned(deleted=3, anchor_seq=3, actor="cli", max_age=None, max_count=5),
        records.rollout_step(
            actor="c",
            rollout="r",
            model="m",
            rule="default",
            canary="v2",
            strategy="canary",
            action="step",
            phase_before="Progressing",
            phase="Progressing",
            weights={"v1": 80, "v2": 20},
            failed_checks=0,
            iterations=2,
            reason="checks passed",
        ),
        records.rollout_alias(
            actor="c", rollout="r", model="m", canary="v2", phase="Promoted", ok=True, reason="ok"
        ),
        records.feedback(actor="f", request_id="r1", model="m", version="v2", truth=1, reward=None),
        records.gap(first_lost_seq=4, last_lost_seq=9, reason="store came back empty"),
        records.ejection(
            action="ejected",
            model="m",
            version="v2",
            consecutive_errors=5,
            ejections=1,
            seconds=30.0,
            reason="5 errors in a row",
        ),
    ]
    assert {r["kind"] for r in built} == records.KINDS
    for r in built:
        assert "time" not in r  # the store stamps it
        prepare_record(r, 1.0)


def test_a_decision_keeps_the_bucket_of_a_sticky_key_only() -> None:
    assert _decision()["bucket"] == 42
    assert _decision(sticky=False)["bucket"] is None
    assert "prediction" not in _decision()
    assert "error" not in _decision()
    assert _decision(prediction=[0.5], error="boom", time=3.0)["prediction"] == [0.5]


def test_the_two_counters_have_two_names_and_old_records_still_read() -> None:
    assert _decision()["store_revision"] == 7
    assert "table_version" not in _decision()
    change = records.routing_change(
        model="m",
        actor="a",
        before={"http": []},
        previous_routing_version=3,
        after={"http": []},
        routing_version=4,
        reason="",
    )
    assert (change["previous_routing_version"], change["routing_version"]) == (3, 4)
    assert (records.routing_version(change), records.previous_routing_version(change)) == (4, 3)
    old_change = {"kind": "change", "table_version": 4, "previous_table_version": 3}
    assert (records.routing_version(old_change), records.previous_routing_version(old_change)) == (
        4,
        3,
    )
    assert records.store_revision({"kind": "decision", "table_version": 7}) == 7
    assert records.store_revision(_decision()) == 7


def test_feedback_scores_only_when_scored() -> None:
    plain = records.feedback(
        actor="f", request_id="r", model="m", version="v", truth=None, reward=1
    )
    assert "correct" not in plain
    scored = records.feedback(
        actor="f",
        request_id="r",
        model="m",
        version="v",
        truth=1,
        reward=None,
        scored=True,
        labels=[1],
        correct=True,
        values=None,
        abs_error=None,
    )
    assert scored["correct"] is True
    assert scored["labels"] == [1]
