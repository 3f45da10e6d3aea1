"""Owners of rules: what a write stamps, what a config-file import may change."""

from __future__ import annotations

from typing import Any

from modelrouter.routing.owners import FILE, compact, merge_file, owner_of, stamp


def rule(name: str, *versions: str, weight: int | None = None) -> dict[str, Any]:
    route: list[dict[str, Any]] = [{"destination": v} for v in versions]
    if weight is not None:
        route = [
            {"destination": versions[0], "weight": 100 - weight},
            {"destination": versions[1], "weight": weight},
        ]
    return {"name": name, "route": route}


EU, DEFAULT = rule("eu", "v2"), rule("default", "v1", "v2", weight=10)
FILE_RULES = [EU, DEFAULT]


def test_owner_names() -> None:
    assert owner_of(FILE) == FILE
    assert owner_of("rollout/churn-v2") == "rollout/churn-v2"
    assert owner_of("carol") == "admin/carol"


def test_a_write_owns_what_it_changed_and_what_it_removed() -> None:
    after = [EU, rule("default", "v1", "v2", weight=50), rule("beta", "v2")]
    owners = stamp(FILE_RULES, None, FILE, after, "carol", FILE_RULES)
    assert owners == {"eu": FILE, "default": "admin/carol", "beta": "admin/carol"}
    removed = stamp(after, owners, "carol", [EU], "dave", FILE_RULES)
    assert removed == {"eu": FILE, "default": "admin/dave", "beta": "admin/dave"}
    # writing the file's version of a rule gives it back to the file
    back = stamp([EU], removed, "dave", [EU, DEFAULT], "erin", FILE_RULES)
    assert back == {"eu": FILE, "default": FILE, "beta": "admin/dave"}
    assert compact(back, "erin") == back
    assert compact({"eu": FILE, "default": FILE}, FILE) is None


def test_the_file_changes_only_what_it_owns() -> None:
    rolled_back = rule("default", "v1", "v2", weight=0)
    live = [EU, rolled_back]
    owners = {"eu": FILE, "default": "rollout/churn-v2"}
    new_file = [rule("eu", "v1"), DEFAULT]  # an unrelated edit of eu
    m = merge_file(live, owners, "rollout/churn-v2", new_file, active={})
    assert m.rules == [rule("eu", "v1"), rolled_back]  # the canary stays at 0
    assert m.owners == owners
    assert [(x.rule, x.owner) for x in m.left_alone] == [("default", "rollout/churn-v2")]


def test_an_active_rollout_holds_its_rule_whoever_wrote_last() -> None:
    live = [EU, rule("default", "v1", "v2", weight=30)]
    owners = {"eu": FILE, "default": "admin/carol"}
    m = merge_file(
        live,
        owners,
        "carol",
        [EU, rule("default", "v1", "v2", weight=5)],
        {"default": "rollout/churn-v2"},
    )
    assert m.rules == live
    (left,) = m.left_alone
    assert (left.owner, left.why) == ("rollout/churn-v2", "an active rollout runs on it")


def test_rules_added_and_dropped_by_the_file_and_kept_in_place() -> None:
    beta = rule("beta", "v2")
    live = [EU, beta, DEFAULT]
    owners = {"eu": FILE, "beta": "admin/carol", "default": FILE, "gone": "admin/carol"}
    new_file = [rule("new", "v1"), rule("gone", "v1"), DEFAULT]  # eu dropped, two added
    m = merge_file(live, owners, "carol", new_file, {})
    # beta followed only eu, which the file dropped: it goes first
    assert [r["name"] for r in m.rules] == ["beta", "new", "default"]
    assert m.owners == {"new": FILE, "gone": "admin/carol", "beta": "admin/carol", "default": FILE}
    assert [x.rule for x in m.left_alone] == ["gone"]  # carol removed it; it stays removed


def test_a_document_without_owners_belongs_to_its_writer() -> None:
    m = merge_file([rule("all", "v2")], None, "alice", FILE_RULES, {})
    assert m.rules == [rule("all", "v2")]
    assert [x.rule for x in m.left_alone] == ["eu", "default"]
    fresh = merge_file(None, None, FILE, FILE_RULES, {})
    assert (fresh.rules, fresh.left_alone) == (FILE_RULES, [])
