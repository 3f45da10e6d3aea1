"""The control-plane service itself, on a memory store: one path and one outcome per call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from fixtures.rollout import FakeWindows
from modelrouter.config.loader import parse_config
from modelrouter.control import AuditFilter, ControlPlane
from modelrouter.errors import Conflict, InvalidInput, ModelNotFound, ModelNotReady, NotFound
from modelrouter.rollout.controller import build_manager
from modelrouter.routing.state import RoutingState
from modelrouter.runtime.repository import ModelRepository
from modelrouter.store.memory import MemoryStore
from modelrouter.telemetry.service import Telemetry

T = TypeVar("T")
IMPL = '{modelFormat: custom, implementation: "fixtures.models:EchoModel"}'
CONFIG = f"""
models:
  churn:
    versions:
      v1: {IMPL}
      v2: {IMPL}
      v3: {IMPL}
      broken: {{storageUri: ./does-not-exist, modelFormat: sklearn}}
    http:
      - name: eu
        match: [{{headers: {{x-region: {{exact: eu}}}}}}]
        route: [{{destination: v2}}]
      - name: default
        route: [{{destination: v1, weight: 90}}, {{destination: v2, weight: 10}}]
        mirror: {{destination: v3}}
        mirrorPercentage: {{value: 50}}
rollouts:
  churn-v2:
    model: churn
    rule: default
    primary: v1
    canary: v2
    analysis: {{interval: 10s, stepWeight: 20, maxWeight: 40}}
"""


class Rig:
    def __init__(self, store: MemoryStore, control: ControlPlane, windows: FakeWindows) -> None:
        self.store = store
        self.control = control
        self.windows = windows


async def make_rig(tmp_path: Path) -> AsyncIterator[Rig]:
    config = parse_config(CONFIG)
    store = MemoryStore()
    routing = RoutingState(config, store)
    repository = ModelRepository(config, tmp_path)
    telemetry = Telemetry(store)
    windows = FakeWindows()
    manager = build_manager(config, store, routing, windows)
    control = ControlPlane(
        store,
        routing,
        repository,
        rollouts=manager,
        feedback=telemetry.feedback_service,
        windows=windows,
    )
    await routing.start()
    try:
        yield Rig(store, control, windows)
    finally:
        await repository.close()
        await store.close()


def run(tmp_path: Path, fn: Callable[[Rig], Awaitable[T]]) -> T:
    async def main() -> T:
        gen = make_rig(tmp_path)
        rig = await gen.__anext__()
        try:
            return await fn(rig)
        finally:
            await gen.aclose()

    return asyncio.run(main())


def test_models_and_routing(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        c = rig.control
        doc = await c.models()
        (churn,) = doc["models"]
        assert churn["name"] == "churn"
        assert churn["routingVersion"] == 1
        assert [v["name"] for v in churn["versions"]] == ["v1", "v2", "v3", "broken"]
        routing = await c.get_routing("churn")
        assert [r["name"] for r in routing["http"]] == ["eu", "default"]
        with pytest.raises(ModelNotFound):
            await c.get_routing("nope")

    run(tmp_path, body)


def test_replace_routing_validates_versions_and_audits(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        c = rig.control
        rules = (await c.get_routing("churn"))["http"]
        with pytest.raises(InvalidInput, match="reason"):
            await c.replace_routing("churn", {"http": rules}, "carol", 5)  # type: ignore[arg-type]
        with pytest.raises(InvalidInput, match="expectedVersion"):
            await c.replace_routing("churn", {"http": rules}, "carol", "", -1)
        with pytest.raises(Conflict):
            await c.replace_routing("churn", {"http": rules}, "carol", "", 7)
        rules[1]["route"] = [
            {"destination": "v1", "weight": 50},
            {"destination": "v2", "weight": 50},
        ]
        doc = await c.replace_routing("churn", {"http": rules}, "carol", "half", 1)
        assert doc["version"] == 2
        assert doc["actor"] == "carol"
        (change,) = await c.audit_query(AuditFilter(kind="change", limit=1))
        assert (change["actor"], change["reason"]) == ("carol", "half")
        assert change["routing_version"] == 2

    run(tmp_path, body)


def test_load_and_unload_have_one_outcome(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        c = rig.control
        assert (await c.load_version("churn", "v1", "ann"))["state"] == "READY"
        with pytest.raises(ModelNotReady, match="version 'broken' failed to load"):
            await c.load_version("churn", "broken", "ann")
        unloaded = await c.unload_version("churn", "v1", "ann")
        assert unloaded == {"name": "churn", "version": "v1", "state": "UNLOADED", "reason": None}
        with pytest.raises(NotFound):
            await c.load_version("churn", "v9", "ann")
        # one record per request, for every gateway: the intent, written before it is applied
        records = await c.audit_query(AuditFilter(kind="admin", order="asc"))
        assert [(r["action"], r["version"], r["before"], r["after"]) for r in records] == [
            ("load", "v1", "none", "loaded"),
            ("load", "broken", "none", "loaded"),
            ("unload", "v1", "loaded", "unloaded"),
        ]
        index = {(i["name"], i["version"]): i["state"] for i in await c.repository_index()}
        assert index == {
            ("churn", "v1"): "UNLOADED",
            ("churn", "v2"): "UNLOADED",
            ("churn", "v3"): "UNLOADED",
            ("churn", "broken"): "FAILED",
        }
        with pytest.raises(ModelNotReady, match="'broken' failed"):
            await c.load_model("churn", "ann")
        states = {v["version"]: v["state"] for v in await c.unload_model("churn", "ann")}
        assert states == {v: "UNLOADED" for v in ("v1", "v2", "v3", "broken")}

    run(tmp_path, body)


def test_audit_filters_are_checked_in_one_place() -> None:
    with pytest.raises(InvalidInput, match="kind: unknown audit record kind 'decisions'"):
        AuditFilter(kind="decisions")
    with pytest.raises(InvalidInput, match="kind: unknown"):
        AuditFilter.parse({"kind": "nope"})
    with pytest.raises(InvalidInput, match="unknown audit filter 'colour'"):
        AuditFilter.parse({"colour": "red"})
    with pytest.raises(InvalidInput, match="since: 'soon' is not a time"):
        AuditFilter.parse({"since": "soon"})
    with pytest.raises(InvalidInput, match="limit: must be an integer, not 'ten'"):
        AuditFilter.parse({"limit": "ten"})
    with pytest.raises(InvalidInput, match="limit: must be an integer from 0 to 10000"):
        AuditFilter.parse({"limit": "100000"})
    with pytest.raises(InvalidInput, match="limit: must not be negative"):
        AuditFilter.parse({"limit": "-1"})
    with pytest.raises(InvalidInput, match="order"):
        AuditFilter.parse({"order": "sideways"})
    with pytest.raises(InvalidInput, match="since: must not be later than until"):
        AuditFilter.parse({"since": "100", "until": "50"})
    f = AuditFilter.parse({"since": "10m", "kind": "change", "after_seq": "3"}, now=1000.0)
    assert (f.since, f.kind, f.after_seq, f.limit, f.order) == (400.0, "change", 3, 100, "desc")


def test_explain_and_verify(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        c = rig.control
        with pytest.raises(NotFound, match="no decision recorded for request id 'r-1'"):
            await c.audit_explain("r-1")
        await rig.store.append_audit(
            [
                {
                    "kind": "decision",
                    "request_id": "r-1",
                    "model": "churn",
                    "version": "v1",
                    "rule": "default",
                    "matched": [],
                    "bucket": 12,
                    "weights": {"v1": 90, "v2": 10},
                    "status": 200,
                }
            ]
        )
        doc = await c.audit_explain("r-1")
        assert doc["record"]["request_id"] == "r-1"
        assert "Request r-1" in doc["explanation"]
        report = await c.audit_verify()
        assert report.ok
        assert report.checked == 2
        assert report.to_json()["firstBadSeq"] is None

    run(tmp_path, body)


def test_feedback_once_per_request(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        c = rig.control
        with pytest.raises(InvalidInput, match="request_id"):
            await c.post_feedback({"truth": 1}, "fb")
        feedback = c.feedback
        assert feedback is not None
        feedback.wait = 0.0
        with pytest.raises(NotFound, match="no request 'r-2'"):
            await c.post_feedback({"request_id": "r-2", "reward": 1.0}, "fb")
        await rig.store.append_audit(
            [{"kind": "decision", "request_id": "r-2", "model": "churn", "served_by": "v2"}]
        )
        first = await c.post_feedback({"request_id": "r-2", "reward": 1.0}, "fb")
        assert first == {"request_id": "r-2", "model": "churn", "version": "v2", "reward": 1.0}
        with pytest.raises(Conflict, match="already given"):
            await c.post_feedback({"request_id": "r-2", "reward": 0.0}, "fb")

    run(tmp_path, body)


def test_rollouts(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        c = rig.control
        (status,) = await c.list_rollouts()
        assert (status["name"], status["phase"]) == ("churn-v2", "Initialized")
        with pytest.raises(NotFound, match="rollout 'nope' not found"):
            await c.rollout_status("nope")
        with pytest.raises(InvalidInput, match="action: unknown command 'explode'"):
            await c.rollout_command("churn-v2", "explode", "ann")
        with pytest.raises(InvalidInput, match="limit"):
            await c.rollout_status("churn-v2", -1)
        paused = await c.rollout_command("churn-v2", "pause", "ann")
        assert paused["phase"] == "Paused"
        doc = await c.rollout_status("churn-v2", 5)
        assert doc["history"][0]["action"] == "pause"

    run(tmp_path, body)


def test_version_figures_from_the_windows(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        c = rig.control
        rig.windows.set("v2", requests=40, errors=2, latency_p50_ms=3.0, feedback=10, correct=9)
        doc = await c.version_figures("churn", window=60)
        by = {v["name"]: v for v in doc["versions"]}
        assert by["v1"]["weights"] == {"eu": 0.0, "default": 90.0}
        assert by["v2"]["weights"] == {"eu": 100.0, "default": 10.0}
        assert by["v2"]["mirrored"] == {}
        assert by["v3"]["mirrored"] == {"default": 50.0}
        assert by["v3"]["weights"] == {"eu": 0.0, "default": 0.0}
        assert by["v2"]["requests"] == 40
        assert by["v2"]["errorRate"] == pytest.approx(0.05)
        assert by["v2"]["accuracy"] == pytest.approx(0.9)
        assert by["v2"]["latencyP50Ms"] == 3.0
        assert by["broken"]["state"] == "UNLOADED"
        assert doc["until"] - doc["since"] == pytest.approx(60)
        with pytest.raises(InvalidInput, match="window"):
            await c.version_figures("churn", window=0)
        with pytest.raises(ModelNotFound):
            await c.version_figures("nope")
        rig.windows.set("v3", shadow_compared=10, shadow_agreeing=7)
        shadows = await c.shadow_stats("churn")
        assert shadows["shadows"] == [
            {"shadow": "v3", "compared": 10, "agreeing": 7, "agreement": 0.7}
        ]
        assert shadows["pairs"] == []

    run(tmp_path, body)


def default_weights(doc: dict[str, Any]) -> dict[str, int]:
    rule = next(r for r in doc["http"] if r["name"] == "default")
    return {d["destination"]: d["weight"] for d in rule["route"]}


def test_pause_put_resume_status_reads_the_live_table(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        c = rig.control
        assert c.rollouts is not None
        await c.rollouts.tick_all()  # starts: 80/20
        assert default_weights(await c.get_routing("churn")) == {"v1": 80, "v2": 20}
        await c.rollout_command("churn-v2", "pause", "ann")
        doc = await c.get_routing("churn")
        rules = doc["http"]
        rules[1]["route"] = [
            {"destination": "v1", "weight": 90},
            {"destination": "v2", "weight": 10},
        ]
        doc = await c.replace_routing("churn", {"http": rules}, "carol", "hold at 10")
        assert doc["owners"]["default"] == "rollout/churn-v2"  # it runs on the rule
        resumed = await c.rollout_command("churn-v2", "resume", "ann")
        live = default_weights(await c.get_routing("churn"))
        assert live == {"v1": 90, "v2": 10}
        assert resumed["weights"] == live
        assert resumed["canaryWeight"] == 10
        status = await c.rollout_status("churn-v2")
        assert (status["phase"], status["weights"]) == ("Progressing", live)

    run(tmp_path, body)


def test_a_rollback_result_survives_an_unrelated_file_edit(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        c = rig.control
        assert c.rollouts is not None
        await c.rollouts.tick_all()
        await c.rollout_command("churn-v2", "abort", "ann")
        assert default_weights(await c.get_routing("churn")) == {"v1": 100, "v2": 0}
        eu = "route: [{destination: v2}]"
        edited = parse_config(CONFIG.replace(eu, "route: [{destination: v1}]", 1))
        done = await c.reload_config(edited)
        assert done["routing"] == ["churn"]
        doc = await c.get_routing("churn")
        assert doc["http"][0]["route"] == [{"destination": "v1"}]  # the file's edit applies
        assert default_weights(doc) == {"v1": 100, "v2": 0}  # the canary stays at 0
        assert doc["owners"] == {"eu": "config-file", "default": "rollout/churn-v2"}
        assert [x["rule"] for x in doc["leftAlone"]] == ["default"]
        assert done["leftAlone"] == {"churn": doc["leftAlone"]}
        (change,) = await c.audit_query(AuditFilter(kind="change", limit=1))
        assert "left alone: default (held by rollout/churn-v2)" in change["reason"]

    run(tmp_path, body)


def test_rollouts_follow_the_config_file(tmp_path: Path) -> None:
    async def body(rig: Rig) -> None:
        c = rig.control
        assert c.rollouts is not None
        await c.rollouts.tick_all()
        assert (await c.rollout_status("churn-v2"))["phase"] == "Progressing"
        # changed: restarted, audited once
        changed = parse_config(CONFIG.replace("stepWeight: 20", "stepWeight: 10"))
        assert (await c.reload_config(changed))["restarted"] == ["churn-v2"]
        assert (await c.reload_config(changed))["restarted"] == []
        await c.rollouts.tick_all()
        status = await c.rollout_status("churn-v2")
        assert (status["phase"], status["weights"]) == ("Progressing", {"v1": 90, "v2": 10})
        # removed: stopped where it is, audited; the rule keeps the live weights
        removed = parse_config(CONFIG[: CONFIG.index("rollouts:")])
        done = await c.reload_config(removed)
        assert done["stopped"] == ["churn-v2"]
        assert await c.list_rollouts() == []
        rec = await rig.store.get_rollout("churn-v2")
        assert rec is not None
        assert rec.state["phase"] == "Stopped"
        assert default_weights(await c.get_routing("churn")) == {"v1": 90, "v2": 10}
        # added back: starts again
        assert (await c.reload_config(changed))["started"] == ["churn-v2"]
        await c.rollouts.tick_all()
        assert (await c.rollout_status("churn-v2"))["phase"] == "Progressing"
        actions = [
            r["action"] for r in await c.audit_query(AuditFilter(kind="rollout", order="asc"))
        ]
        assert actions == ["start", "restart", "start", "stop", "restart", "start"]

    run(tmp_path, body)


def test_a_rollout_gone_from_the_file_while_no_gateway_ran_is_stopped_at_start(
    tmp_path: Path,
) -> None:
    async def body(rig: Rig) -> None:
        c = rig.control
        assert c.rollouts is not None
        await c.rollouts.tick_all()  # churn-v2 runs
        # a gateway starting with a file without rollouts
        config = parse_config(CONFIG[: CONFIG.index("rollouts:")])
        other = build_manager(config, rig.store, c.routing, rig.windows)
        await other.adopt_all()
        rec = await rig.store.get_rollout("churn-v2")
        assert rec is not None
        assert rec.state["phase"] == "Stopped"
        await other.adopt_all()  # once
        stops = [
            r
            for r in await c.audit_query(AuditFilter(kind="rollout", limit=100))
            if r["action"] == "stop"
        ]
        assert [(s["rollout"], s["phaseBefore"]) for s in stops] == [("churn-v2", "Progressing")]

    run(tmp_path, body)
