"""``RoutingState``: validation that names the field, versioned updates through the store,
config reloads that write only what changed, and who wins at start (file or admin API)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

from modelrouter.config.loader import parse_config
from modelrouter.config.schema import Config
from modelrouter.errors import ConfigError, Conflict, InvalidInput, ModelNotFound
from modelrouter.routing import RequestContext, decide
from modelrouter.routing.state import RoutingState, routing_document
from modelrouter.store import Store, open_store

T = TypeVar("T")

IMPL = '{modelFormat: custom, implementation: "fixtures.models:EchoModel"}'

CONFIG = f"""
models:
  churn:
    versions:
      v1: {IMPL}
      v2: {IMPL}
      v3: {IMPL}
    http:
      - name: eu
        match: [{{headers: {{x-region: {{exact: eu}}}}}}]
        route: [{{destination: v3}}]
      - name: default
        route: [{{destination: v1, weight: 90}}, {{destination: v2, weight: 10}}]
        sticky: {{header: x-user-id}}
  ltv:
    versions:
      a: {IMPL}
      b: {IMPL}
    http:
      - name: all
        route: [{{destination: a}}]
"""


def config(text: str = CONFIG) -> Config:
    return parse_config(text)


def edited(text: str, old: str, new: str) -> Config:
    assert old in text
    return parse_config(text.replace(old, new))


def run(fn: Callable[[Store], Awaitable[T]]) -> T:
    """Run ``fn(store)`` on a fresh memory store, closing it after."""

    async def main() -> T:
        store = open_store("memory://")
        try:
            return await fn(store)
        finally:
            await store.close()

    return asyncio.run(main())


async def started(store: Store, cfg: Config | None = None) -> RoutingState:
    state = RoutingState(cfg or config(), store)
    await state.start()
    return state


def version_for(state: RoutingState, headers: dict[str, str], model: str = "churn") -> str:
    return decide(state.table, model, RequestContext(headers, rand=lambda: 0.0)).version


def doc(*rules: dict[str, Any]) -> dict[str, Any]:
    return {"http": list(rules)}


def only(version: str, name: str = "r", **extra: Any) -> dict[str, Any]:
    return {"name": name, "route": [{"destination": version}], **extra}


ALL_V2 = doc(only("v2", "all"))


# --------------------------------------------------------------------------- validation


INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "unknown version in route",
        doc(only("v9")),
        "http.0.route.0.destination",
        "unknown version 'v9'",
    ),
    (
        "unknown version in a later rule's route",
        doc(
            only("v1", "a"),
            {
                "name": "b",
                "route": [{"destination": "v1", "weight": 1}, {"destination": "nope", "weight": 1}],
            },
        ),
        "http.1.route.1.destination",
        "unknown version 'nope'",
    ),
    (
        "unknown mirror",
        doc(only("v1", mirror={"destination": "v9"})),
        "http.0.mirror.destination",
        "unknown version 'v9'",
    ),
    (
        "unknown mirrors entry",
        doc(only("v1", mirrors=[{"destination": "v2"}, {"destination": "v8"}])),
        "http.0.mirrors.1.destination",
        "unknown version 'v8'",
    ),
    (
        "unknown fallback",
        doc(only("v1", fallback=["v2", "v9"])),
        "http.0.fallback.1",
        "unknown version 'v9'",
    ),
    (
        "all-zero weights",
        doc(
            {
                "name": "r",
                "route": [{"destination": "v1", "weight": 0}, {"destination": "v2", "weight": 0}],
            }
        ),
        "http.0.route",
        "all zero",
    ),
    (
        "negative weight",
        doc(
            {
                "name": "r",
                "route": [
                    {"destination": "v1", "weight": -5},
                    {"destination": "v2", "weight": 105},
                ],
            }
        ),
        "http.0.route.0.weight",
        "greater than or equal to 0",
    ),
    (
        "invalid regex",
        doc(only("v1", match=[{"headers": {"x-region": {"regex": "(eu"}}}])),
        "http.0.match.0.headers.x-region.regex",
        "invalid regex '(eu'",
    ),
    (
        "invalid body regex",
        doc(only("v1", match=[{}, {"body": {"parameters.s": {"regex": "[a-"}}}])),
        "http.0.match.1.body.parameters.s.regex",
        "invalid regex",
    ),
    (
        "mirror pointing at the only routed version",
        doc({"name": "r", "route": [{"destination": "v2"}], "mirror": {"destination": "v2"}}),
        "http.0.mirror.destination",
        "is the rule's only destination",
    ),
    (
        "unknown field in a rule",
        doc(only("v1", weights=[1])),
        "http.0.weights",
        "unknown field 'weights'",
    ),
    (
        "unknown field in a route",
        doc({"name": "r", "route": [{"destination": "v1", "wieght": 3}]}),
        "http.0.route.0.wieght",
        "unknown field 'wieght'",
    ),
    (
        "missing weight among several",
        doc({"name": "r", "route": [{"destination": "v1", "weight": 3}, {"destination": "v2"}]}),
        "http.0.route",
        "give a weight to every destination",
    ),
    (
        "rule name used twice",
        doc(only("v1", "x"), only("v2", "x")),
        "http.1.name",
        "used twice",
    ),
    (
        "mirrorPercentage over 100",
        doc(only("v1", mirror={"destination": "v2"}, mirrorPercentage={"value": 101})),
        "http.0.mirrorPercentage.value",
        "less than or equal to 100",
    ),
    (
        "bad duration",
        doc(only("v1", timeout="soon")),
        "http.0.timeout",
        "not a duration",
    ),
]


@pytest.mark.parametrize(
    ("document", "field", "fragment"),
    [pytest.param(d, f, m, id=name) for name, d, f, m in INVALID],
)
def test_invalid_documents_are_refused_naming_the_field_and_the_old_table_serves(
    document: dict[str, Any], field: str, fragment: str
) -> None:
    async def check(store: Store) -> None:
        state = await started(store)
        table = state.table
        stored = await store.get_routing()
        with pytest.raises(ConfigError) as info:
            await state.update("churn", document, "alice", "try")
        err = info.value
        assert err.field == field
        assert fragment in err.message
        assert err.message.startswith(f"{field}: ")
        assert err.status.http == 400
        # nothing written, nothing swapped
        assert state.table is table
        assert await store.get_routing() == stored
        assert state.document("churn")["version"] == 1
        assert version_for(state, {"x-region": "eu"}) == "v3"
        changes = await store.query_audit(kind="change", limit=None)
        assert {r["actor"] for r in changes} == {"config-file"}

    run(check)


@pytest.mark.parametrize(
    ("document", "fragment"),
    [
        ({"http": [only("v1")], "extra": True}, "unknown field 'extra'"),
        ({"rules": [only("v1")]}, "'http' list"),
        ({"http": {"name": "r"}}, "'http' list"),
        ([only("v1")], "'http' list"),
        ("http", "'http' list"),
    ],
)
def test_malformed_documents_are_invalid_input(document: Any, fragment: str) -> None:
    async def check(store: Store) -> None:
        state = await started(store)
        table = state.table
        with pytest.raises(InvalidInput) as info:
            await state.update("churn", document, "alice", "try")
        assert fragment in info.value.message
        assert info.value.status.http == 400
        assert state.table is table

    run(check)


def test_unknown_model_is_not_found() -> None:
    async def check(store: Store) -> None:
        state = await started(store)
        with pytest.raises(ModelNotFound):
            await state.update("nope", ALL_V2, "alice", "")
        with pytest.raises(ModelNotFound):
            state.document("nope")

    run(check)


def test_validate_keeps_the_models_versions_and_returns_the_new_rules() -> None:
    state = RoutingState(config(), open_store("memory://"))
    spec = state.validate("churn", ALL_V2)
    assert list(spec.versions) == ["v1", "v2", "v3"]
    assert [r.name for r in spec.http] == ["all"]
    # an empty rule list is valid: everything goes to the first version
    assert state.validate("churn", {"http": []}).http == []


# --------------------------------------------------------------------------- update


def test_update_bumps_versions_and_serves_at_once() -> None:
    async def check(store: Store) -> None:
        state = await started(store)
        first = state.document("churn")
        assert (first["version"], first["actor"]) == (1, "config-file")
        table_version = state.table.version

        rec = await state.update("churn", ALL_V2, "alice", "all on v2")
        assert (rec.version, rec.actor) == (2, "alice")
        assert version_for(state, {"x-region": "eu"}) == "v2"  # served when update returns
        assert state.table.version > table_version
        d = state.document("churn")
        assert d["version"] == 2
        assert d["actor"] == "alice"
        assert d["http"] == ALL_V2["http"]
        assert d["tableVersion"] == state.table.version
        assert isinstance(d["updatedAt"], float)

        rec = await state.update("churn", doc(only("v3", "all")), "bob", "all on v3")
        assert rec.version == 3
        assert version_for(state, {}) == "v3"
        # the other model is untouched
        assert state.document("ltv")["version"] == 1

        changes = await store.query_audit(kind="change", model="churn", order="asc", limit=None)
        assert [(c["actor"], c["routing_version"], c["reason"]) for c in changes] == [
            ("config-file", 1, "rules from the config file"),
            ("alice", 2, "all on v2"),
            ("bob", 3, "all on v3"),
        ]
        assert changes[1]["before"] == routing_document(config().models["churn"])
        # the stored documents say who owns each rule (alice removed eu and default)
        owners = {"all": "admin/alice", "eu": "admin/alice", "default": "admin/alice"}
        assert changes[1]["after"] == {**ALL_V2, "owners": owners}
        assert changes[2]["before"] == {**ALL_V2, "owners": owners}
        assert changes[2]["after"]["owners"]["all"] == "admin/bob"

    run(check)


def test_update_with_a_stale_expected_version_conflicts_and_changes_nothing() -> None:
    async def check(store: Store) -> None:
        state = await started(store)
        await state.update("churn", ALL_V2, "alice", "", expected_version=1)
        table = state.table
        with pytest.raises(Conflict):
            await state.update("churn", doc(only("v3")), "bob", "", expected_version=1)
        assert state.table is table
        assert version_for(state, {}) == "v2"
        rec = await state.update("churn", doc(only("v3")), "bob", "", expected_version=2)
        assert rec.version == 3

    run(check)


def test_the_stored_document_is_normalized_and_round_trips() -> None:
    """What is stored (and returned by GET) is the validated document (defaults dropped), and
    GET then PUT gives the same document."""

    async def check(store: Store) -> None:
        state = await started(store)
        await state.update(
            "churn",
            doc(only("v1", timeout="250ms", retries={"attempts": 2, "perTryTimeout": "100ms"})),
            "alice",
            "",
        )
        got = state.document("churn")["http"]
        assert got == [
            {
                "name": "r",
                "route": [{"destination": "v1"}],
                "timeout": "250ms",
                "retries": {"attempts": 2, "perTryTimeout": "100ms"},
            }
        ]
        rule = state.table.models["churn"].rules[0]
        assert (rule.timeout, rule.per_try_timeout, rule.attempts) == (0.25, 0.1, 3)
        await state.update("churn", {"http": got}, "alice", "again")
        assert state.document("churn")["http"] == got

    run(check)


def test_other_gateways_pick_up_a_change_through_the_watch() -> None:
    async def check(store: Store) -> None:
        one = await started(store)
        two = await started(store)
        watch = await store.watch(two.refresh)
        try:
            await one.update("churn", ALL_V2, "alice", "")
            for _ in range(100):
                if two.document("churn")["version"] == 2:
                    break
                await asyncio.sleep(0.01)
            assert two.document("churn")["version"] == 2
            assert version_for(two, {"x-region": "eu"}) == "v2"
            assert two.table.version == one.table.version
        finally:
            await watch.stop()

    run(check)


# --------------------------------------------------------------------------- apply_config


def test_apply_config_writes_only_the_models_whose_rules_changed() -> None:
    async def check(store: Store) -> None:
        state = await started(store)
        new = edited(
            CONFIG,
            "weight: 90}, {destination: v2, weight: 10",
            "weight: 50}, {destination: v2, weight: 50",
        )
        changed = await state.apply_config(new)
        assert changed == ["churn"]
        routing = await store.get_routing()
        assert routing["churn"].version == 2
        assert routing["churn"].actor == "config-file"
        assert routing["ltv"].version == 1  # untouched
        assert state.table.models["churn"].rules[1].weights == {"v1": 50, "v2": 50}
        changes = await store.query_audit(kind="change", limit=None)
        assert len(changes) == 3  # two seeds and this one

        # the same file again: nothing written
        assert await state.apply_config(new) == []
        assert (await store.get_routing())["churn"].version == 2
        assert len(await store.query_audit(kind="change", limit=None)) == 3

        # only a comment or the server section changed: nothing written
        assert (
            await state.apply_config(
                parse_config(
                    "# note\n"
                    + CONFIG.replace(
                        "weight: 90}, {destination: v2, weight: 10",
                        "weight: 50}, {destination: v2, weight: 50",
                    )
                )
            )
            == []
        )
        assert len(await store.query_audit(kind="change", limit=None)) == 3

    run(check)


def test_apply_config_changing_both_models_writes_both() -> None:
    async def check(store: Store) -> None:
        state = await started(store)
        text = CONFIG.replace("route: [{destination: v3}]", "route: [{destination: v2}]")
        text = text.replace("route: [{destination: a}]", "route: [{destination: b}]")
        assert sorted(await state.apply_config(parse_config(text))) == ["churn", "ltv"]
        assert version_for(state, {"x-region": "eu"}) == "v2"
        assert version_for(state, {}, "ltv") == "b"

    run(check)


def test_apply_config_with_new_versions_waits_for_a_restart() -> None:
    async def check(store: Store) -> None:
        state = await started(store)
        text = CONFIG.replace("      v3: " + IMPL, "      v3: " + IMPL + "\n      v4: " + IMPL)
        text = text.replace("route: [{destination: v3}]", "route: [{destination: v4}]")
        assert await state.apply_config(parse_config(text)) == []
        assert (await store.get_routing())["churn"].version == 1
        assert version_for(state, {"x-region": "eu"}) == "v3"

    run(check)


def test_apply_config_with_invalid_rules_raises_and_keeps_the_old_rules() -> None:
    """The loader refuses an invalid file first; apply_config still validates what it writes."""

    async def check(store: Store) -> None:
        state = await started(store)
        bad = config().model_copy(deep=True)
        spec = bad.models["churn"]
        broken_rule = spec.http[0].model_copy(
            update={"route": [spec.http[0].route[0].model_copy(update={"destination": "v9"})]}
        )
        bad = bad.model_copy(
            update={
                "models": {**bad.models, "churn": spec.model_copy(update={"http": [broken_rule]})}
            }
        )
        table = state.table
        with pytest.raises(ConfigError) as info:
            await state.apply_config(bad)
        assert info.value.field == "http.0.route.0.destination"
        assert state.table is table
        assert (await store.get_routing())["churn"].version == 1

    run(check)


def test_an_edit_of_the_file_leaves_rules_set_through_the_api_alone_and_says_so() -> None:
    """Deliberately changed (issue 8): a reload changes only what the file owns. It used to
    write the whole file over rules an admin had set as soon as the file changed."""

    async def check(store: Store) -> None:
        state = await started(store)
        await state.update("churn", ALL_V2, "alice", "")
        assert await state.apply_config(config()) == []
        new = edited(CONFIG, "route: [{destination: v3}]", "route: [{destination: v1}]")
        assert await state.apply_config(new) == []
        # a second gateway starting with the edited file writes and reports nothing new
        two = RoutingState(new, store)
        await two.start()
        assert two.document("churn")["leftAlone"] == state.document("churn")["leftAlone"]
        assert version_for(state, {"x-region": "eu"}) == "v2"
        d = state.document("churn")
        assert (d["version"], d["actor"], d["owners"]) == (2, "alice", {"all": "admin/alice"})
        assert [x["rule"] for x in d["leftAlone"]] == ["eu", "default"]
        assert {x["owner"] for x in d["leftAlone"]} == {"admin/alice"}
        reports = await store.query_audit(kind="admin", model="churn", limit=None)
        (report,) = [r for r in reports if r["action"] == "config-import"]
        assert [x["rule"] for x in report["leftAlone"]] == ["eu", "default"]
        assert "was not applied" in report["reason"]
        # a person writing the file's rules gives them back to the file; then edits apply
        await state.update("churn", routing_document(new.models["churn"]), "alice", "back")
        assert set(state.document("churn")["owners"].values()) == {"config-file"}
        newer = edited(CONFIG, "route: [{destination: v3}]", "route: [{destination: v2}]")
        assert await state.apply_config(newer) == ["churn"]
        assert version_for(state, {"x-region": "eu"}) == "v2"
        assert state.document("churn")["leftAlone"] == []

    run(check)


# --------------------------------------------------------------------------- start


def test_start_seeds_an_empty_store_from_the_file() -> None:
    async def check(store: Store) -> None:
        state = await started(store)
        routing = await store.get_routing()
        assert set(routing) == {"churn", "ltv"}
        for model in ("churn", "ltv"):
            assert routing[model].version == 1
            assert routing[model].actor == "config-file"
            assert routing[model].document == routing_document(config().models[model])
        assert state.table.version == await store.revision()
        assert version_for(state, {"x-region": "eu"}) == "v3"

    run(check)


def test_a_second_start_with_the_same_file_writes_nothing() -> None:
    async def check(store: Store) -> None:
        await started(store)
        revision = await store.revision()
        state = await started(store)
        assert await store.revision() == revision
        assert state.document("churn")["version"] == 1

    run(check)


def test_a_document_set_through_the_admin_api_wins_over_the_file_at_start() -> None:
    async def check(store: Store) -> None:
        first = await started(store)
        await first.update("churn", ALL_V2, "alice", "all on v2")
        # a restart with the same file, and one with an edited file: alice's rules stay
        for cfg in (
            config(),
            edited(CONFIG, "route: [{destination: v3}]", "route: [{destination: v1}]"),
        ):
            state = await started(store, cfg)
            assert version_for(state, {"x-region": "eu"}) == "v2"
            d = state.document("churn")
            assert (d["version"], d["actor"], d["http"]) == (2, "alice", ALL_V2["http"])
        # the model nobody touched through the API follows the file
        assert (await store.get_routing())["ltv"].actor == "config-file"

    run(check)


def test_a_file_edited_while_no_gateway_ran_replaces_rules_from_the_old_file() -> None:
    async def check(store: Store) -> None:
        await started(store)
        new = edited(CONFIG, "route: [{destination: v3}]", "route: [{destination: v2}]")
        state = await started(store, new)
        assert version_for(state, {"x-region": "eu"}) == "v2"
        routing = await store.get_routing()
        assert routing["churn"].version == 2
        assert routing["churn"].actor == "config-file"
        assert routing["ltv"].version == 1

    run(check)


def test_a_stored_document_this_gateway_cannot_serve_is_ignored() -> None:
    """Written by a gateway whose config has other versions: keep the file's rules, log."""

    async def check(store: Store) -> None:
        await store.put_routing("churn", doc(only("v9")), "alice", "other gateway")
        await store.put_routing("unknown-model", doc(only("x")), "alice", "")
        state = await started(store)
        assert version_for(state, {"x-region": "eu"}) == "v3"  # the file's rules
        assert "unknown-model" not in state.table.models
        assert (await store.get_routing())["churn"].document == doc(only("v9"))  # untouched

    run(check)


def test_the_table_before_start_is_the_files() -> None:
    state = RoutingState(config(), open_store("memory://"))
    assert state.table.version == 0
    assert version_for(state, {"x-region": "eu"}) == "v3"
    assert state.document("churn")["version"] == 0


def test_routing_document_is_a_copy_of_the_rules() -> None:
    spec = config().models["churn"]
    d = routing_document(spec)
    before = copy.deepcopy(d)
    d["http"][0]["name"] = "changed"
    assert routing_document(spec) == before
