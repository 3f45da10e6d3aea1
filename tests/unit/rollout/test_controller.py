"""The controller with a memory store, fake windows and a real (local) webhook server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from fixtures.rollout import Clock, FakeWindows, Hooks, config
from modelrouter.rollout.controller import RolloutController, weighted_rules
from modelrouter.routing.state import RoutingState
from modelrouter.store.memory import MemoryStore
from support import running_server

CANARY = """
  churn-v2:
    model: churn
    rule: default
    primary: v1
    canary: v2
    analysis:
      interval: 10s
      threshold: 2
      stepWeight: 20
      maxWeight: 40
      metrics:
        - {name: request-success-rate, thresholdRange: {min: 99}, minSamples: 10}
        - {name: request-duration, thresholdRange: {max: 100}}
"""


@pytest.fixture(scope="module")
def hook_url() -> Iterator[tuple[Hooks, str]]:
    hooks = Hooks()
    with running_server(hooks.app()) as url:
        yield hooks, url


class Rig:
    def __init__(self, rollout: str = CANARY, **kw: Any) -> None:
        self.config = config(rollout)
        self.clock = Clock()
        self.store = MemoryStore(clock=self.clock)
        self.routing = RoutingState(self.config, self.store)
        self.windows = FakeWindows()
        self.reported: list[tuple[str, str, dict[str, float]]] = []
        name, spec = next(iter(self.config.rollouts.items()))
        self.c = self.controller(name, spec, **kw)

    def controller(self, name: str, spec: Any, **kw: Any) -> RolloutController:
        rig = self

        class Metrics:
            def set_rollout(self, n: str, phase: str, weights: dict[str, float]) -> None:
                rig.reported.append((n, phase, dict(weights)))

        return RolloutController(
            name,
            spec,
            self.store,
            self.routing,
            self.windows,
            clock=self.clock,
            metrics=Metrics(),
            owner=kw.pop("owner", "gw-1"),
            **kw,
        )

    async def start(self) -> None:
        await self.routing.start()

    def weights(self) -> dict[str, int]:
        rule = next(r for r in self.routing.specs["churn"].http if r.name == "default")
        return {d.destination: d.weight or 0 for d in rule.route}

    async def phase(self) -> str:
        rec = await self.store.get_rollout("churn-v2")
        assert rec is not None
        return str(rec.state["phase"])

    async def steps(self, n: int, seconds: float = 10) -> list[str]:
        phases = []
        for _ in range(n):
            self.clock.advance(seconds)
            await self.c.tick()
            phases.append(await self.phase())
        return phases

    async def history(self) -> list[dict[str, Any]]:
        return list(reversed(await self.c.history()))


def test_good_canary_is_promoted_in_steps() -> None:
    async def main() -> None:
        rig = Rig()
        await rig.start()
        assert rig.weights() == {"v1": 90, "v2": 10}
        await rig.c.tick()
        assert await rig.phase() == "Progressing"
        assert rig.weights() == {"v1": 80, "v2": 20}
        await rig.c.tick()  # not due yet: nothing happens
        assert rig.weights() == {"v1": 80, "v2": 20}
        assert await rig.steps(2) == ["Progressing", "Succeeded"]
        assert rig.weights() == {"v1": 0, "v2": 100}
        history = await rig.history()
        assert [h["action"] for h in history] == ["start", "step", "promote", "promoted"]
        step = history[1]
        assert step["weights"] == {"v1": 60, "v2": 40}
        assert step["actor"] == "rollout/churn-v2"
        assert step["checks"][0]["value"] == 100.0
        assert step["figures"]["canary"]["requests"] == 100
        # the routing change is audited by the store under the rollout's actor
        changes = await rig.store.query_audit(kind="change", model="churn")
        assert changes[0]["actor"] == "rollout/churn-v2"
        assert rig.reported[-1] == ("churn-v2", "Succeeded", {"v1": 0, "v2": 100})
        # the other rule is untouched
        assert rig.routing.specs["churn"].http[0].route[0].destination == "v2"
        # the windows read were those of the last interval
        assert rig.windows.calls[-1][1:] == (rig.clock.now - 10, rig.clock.now)

    asyncio.run(main())


def test_failing_canary_is_rolled_back_after_threshold() -> None:
    async def main() -> None:
        rig = Rig()
        await rig.start()
        rig.windows.set("v2", errors=10)
        await rig.c.tick()
        assert await rig.steps(1) == ["Progressing"]
        assert rig.weights() == {"v1": 80, "v2": 20}
        assert await rig.steps(1) == ["RolledBack"]
        assert rig.weights() == {"v1": 100, "v2": 0}
        history = await rig.history()
        assert [h["action"] for h in history] == ["start", "hold", "rollback"]
        assert history[1]["failedChecks"] == 1
        assert "request-success-rate 90 < min 99" in history[2]["reason"]
        assert await rig.steps(2) == ["RolledBack", "RolledBack"]  # final

    asyncio.run(main())


def test_gates_hold_and_hooks_are_called(hook_url: tuple[Hooks, str]) -> None:
    hooks, url = hook_url
    rollout = (
        CANARY
        + f"""
    webhooks:
      - {{type: confirm-rollout, url: "{url}/confirm-rollout"}}
      - {{type: pre-rollout, url: "{url}/pre-rollout"}}
      - {{type: rollout, url: "{url}/rollout"}}
      - {{type: confirm-promotion, url: "{url}/confirm-promotion", metadata: {{team: ml}}}}
      - {{type: post-rollout, url: "{url}/post-rollout"}}
      - {{type: event, url: "{url}/event"}}
"""
    )

    async def main() -> None:
        rig = Rig(rollout)
        await rig.start()
        hooks.status.update({"confirm-rollout": 403, "confirm-promotion": 500})
        assert await rig.steps(3) == ["Initialized"] * 3
        assert rig.weights() == {"v1": 90, "v2": 10}
        hooks.status["confirm-rollout"] = 200
        assert await rig.steps(3) == ["Progressing", "Progressing", "Promoting"]
        assert await rig.steps(2) == ["Promoting", "Promoting"]
        assert rig.weights() == {"v1": 60, "v2": 40}
        hooks.status["confirm-promotion"] = 200
        assert await rig.steps(1) == ["Succeeded"]
        kinds = hooks.kinds()
        assert kinds.index("pre-rollout") < kinds.index("rollout") < kinds.index("post-rollout")
        body = next(b for p, b in hooks.calls if p == "confirm-promotion")
        assert body["name"] == "churn-v2"
        assert body["namespace"] == "churn"
        assert body["metadata"]["team"] == "ml"
        events = [b["metadata"]["eventMessage"] for p, b in hooks.calls if p == "event"]
        assert any("promoted" in e for e in events)
        waits = [h for h in await rig.history() if h["action"] == "wait"]
        assert len(waits) == 2  # one record per gate, not one per tick

    asyncio.run(main())


def test_failing_rollout_hook_counts_and_rollback_hook_rolls_back(
    hook_url: tuple[Hooks, str],
) -> None:
    hooks, url = hook_url
    rollout = (
        CANARY
        + f"""
    webhooks:
      - {{type: rollout, url: "{url}/load-test"}}
      - {{type: rollback, url: "{url}/rollback"}}
"""
    )

    async def main() -> None:
        rig = Rig(rollout)
        await rig.start()
        hooks.status.update({"load-test": 500, "rollback": 404})
        assert await rig.steps(2) == ["Progressing", "Progressing"]
        rec = await rig.store.get_rollout("churn-v2")
        assert rec is not None
        assert rec.state["failedChecks"] == 1
        hooks.status.update({"load-test": 200, "rollback": 200})
        assert await rig.steps(1) == ["RolledBack"]
        assert "rollback webhook" in (await rig.history())[-1]["reason"]

    asyncio.run(main())


def test_pause_resume_promote_abort() -> None:
    async def main() -> None:
        rig = Rig()
        await rig.start()
        await rig.c.tick()
        status = await rig.c.command("pause", "alice")
        assert status["phase"] == "Paused"
        assert await rig.steps(3) == ["Paused"] * 3
        assert rig.weights() == {"v1": 80, "v2": 20}
        status = await rig.c.command("resume", "alice")
        assert status["phase"] == "Progressing"
        assert await rig.steps(1) == ["Progressing"]
        assert rig.weights() == {"v1": 60, "v2": 40}
        status = await rig.c.command("abort", "bob")
        assert status["phase"] == "RolledBack"
        assert rig.weights() == {"v1": 100, "v2": 0}
        history = await rig.history()
        assert history[-1]["actor"] == "bob"
        assert history[-1]["reason"] == "aborted by bob"
        status = await rig.c.command("promote", "bob")  # too late: ignored, recorded
        assert status["phase"] == "RolledBack"

        rig2 = Rig()
        await rig2.start()
        await rig2.c.tick()
        status = await rig2.c.command("promote", "carol")
        assert status["phase"] == "Succeeded"
        assert rig2.weights() == {"v1": 0, "v2": 100}
        with pytest.raises(Exception, match="unknown rollout command"):
            await rig2.c.command("explode", "carol")

    asyncio.run(main())


def test_the_lock_means_only_one_controller_acts() -> None:
    async def main() -> None:
        rig = Rig(lock_ttl=30)
        await rig.start()
        other = rig.controller(
            "churn-v2", rig.config.rollouts["churn-v2"], owner="gw-2", lock_ttl=30
        )
        assert await rig.c.tick()
        assert not await other.tick()
        rig.clock.advance(10)
        assert not await other.tick()
        assert await rig.c.tick()
        assert rig.weights() == {"v1": 60, "v2": 40}
        # the holder dies: after the lease expires the other one takes over
        rig.clock.advance(31)
        assert await other.tick()
        assert await rig.phase() == "Promoting" or await rig.phase() == "Succeeded"
        assert not await rig.c.tick()
        await other.release()
        assert await rig.c.tick()

    asyncio.run(main())


def test_commands_queue_for_the_lease_holder() -> None:
    async def main() -> None:
        rig = Rig(lock_ttl=30)
        await rig.start()
        holder = rig.controller(
            "churn-v2", rig.config.rollouts["churn-v2"], owner="gw-2", lock_ttl=30
        )
        await holder.tick()

        async def run_holder() -> None:
            for _ in range(20):
                await asyncio.sleep(0.05)
                await holder.tick()

        task = asyncio.create_task(run_holder())
        status = await rig.c.command("pause", "dave", wait=5)
        await task
        assert status["phase"] == "Paused"

    asyncio.run(main())


def test_mlflow_alias_is_recorded_when_not_available() -> None:
    rollout = CANARY + "    promotion: {mlflowAlias: champion}\n"

    async def main() -> None:
        rig = Rig(rollout)
        await rig.start()
        await rig.c.tick()
        await rig.c.command("promote", "erin")
        last = (await rig.history())[-1]
        assert last["action"] == "mlflow-alias"
        assert not last["ok"]
        assert "not available" in last["reason"]

        moved: list[tuple[str, str, str]] = []

        async def setter(model: str, version: str, alias: str) -> None:
            moved.append((model, version, alias))

        rig2 = Rig(rollout, alias_setter=setter)
        await rig2.start()
        await rig2.c.tick()
        await rig2.c.command("promote", "erin")
        assert moved == [("churn", "v2", "champion")]

    asyncio.run(main())


def test_bluegreen_mirrors_then_switches() -> None:
    rollout = """
  churn-v2:
    model: churn
    rule: default
    primary: v1
    canary: v2
    strategy: bluegreen
    analysis:
      interval: 10s
      iterations: 2
      mirror: true
      metrics: [{name: request-success-rate, thresholdRange: {min: 99}}]
"""

    async def main() -> None:
        rig = Rig(rollout)
        await rig.start()
        await rig.c.tick()
        assert rig.weights() == {"v1": 100}
        rule = rig.routing.specs["churn"].http[1]
        assert rule.mirror is not None
        assert rule.mirror.destination == "v2"
        assert await rig.steps(2) == ["Progressing", "Succeeded"]
        assert rig.weights() == {"v1": 0, "v2": 100}
        assert rig.routing.specs["churn"].http[1].mirror is None

    asyncio.run(main())


def test_a_spec_change_restarts_a_finished_rollout_once() -> None:
    async def main() -> None:
        rig = Rig()
        await rig.start()
        await rig.c.tick()
        await rig.c.command("abort", "x")
        changed = Rig(CANARY.replace("stepWeight: 20", "stepWeight: 10"))
        c2 = changed.controller("churn-v2", changed.config.rollouts["churn-v2"])
        c2.store, c2.routing = rig.store, rig.routing
        # the spec is adopted once (by whichever gateway reloads first), audited
        assert await c2.adopt() is True
        assert await c2.adopt() is False
        assert await rig.phase() == "Initialized"
        (restart,) = [
            r
            for r in await rig.store.query_audit(kind="rollout", limit=None)
            if r["action"] == "restart"
        ]
        assert (restart["phaseBefore"], restart["phase"]) == ("RolledBack", "Initialized")
        # a controller still on the old spec leaves it alone until its gateway reloads
        await rig.c.tick()
        assert await rig.phase() == "Initialized"
        await c2.tick()
        assert await rig.phase() == "Progressing"
        assert rig.weights() == {"v1": 90, "v2": 10}

    asyncio.run(main())


def test_weighted_rules_keeps_other_destinations() -> None:
    rig = Rig()
    spec = rig.config.rollouts["churn-v2"]
    rules = [
        {
            "name": "default",
            "route": [{"destination": "v1", "weight": 50}, {"destination": "v3", "weight": 50}],
        }
    ]
    out = weighted_rules(rules, spec, {"v1": 70, "v2": 30}, mirror=False)
    assert out[0]["route"] == [
        {"destination": "v3", "weight": 50},
        {"destination": "v1", "weight": 70},
        {"destination": "v2", "weight": 30},
    ]
    assert rules[0]["route"][0]["weight"] == 50


AB = """
  churn-v2:
    model: churn
    rule: default
    primary: v1
    canary: v2
    strategy: abtest
    analysis: {interval: 10s, weight: 50, testMetric: accuracy}
"""


def test_ab_totals_count_from_the_bucket_the_rollout_started_in() -> None:
    """A window counts the 1 s buckets that start inside it: totals from ``startedAt`` itself
    left out the bucket holding it, and with it the rollout's first second of feedback."""

    async def main() -> None:
        rig = Rig(AB)
        await rig.start()
        rig.clock.advance(0.25)
        await rig.c.tick()  # the start: first weights, startedAt
        rec = await rig.store.get_rollout("churn-v2")
        assert rec is not None
        started = rec.state["startedAt"]
        assert started % 1 == 0.25
        await rig.steps(1)
        totals = [since for _, since, _ in rig.windows.calls if since != rig.clock.now - 10]
        assert totals
        assert set(totals) == {started - 0.25}

    asyncio.run(main())


def _stored_weights(rig: Rig) -> dict[int, Any]:
    """The weights in each version of the rollout's stored state, filled as it is written
    (the store's own writes, wrapped)."""
    seen: dict[int, Any] = {}
    store = rig.store
    put_routing, put_rollout = store.put_routing, store.put_rollout

    async def remember() -> None:
        rec = await store.get_rollout("churn-v2")
        if rec is not None:
            seen[rec.version] = rec.state.get("weights")

    async def routing(*args: Any, **kwargs: Any) -> Any:
        out = await put_routing(*args, **kwargs)
        await remember()
        return out

    async def rollout(*args: Any, **kwargs: Any) -> Any:
        out = await put_rollout(*args, **kwargs)
        await remember()
        return out

    store.put_routing = routing  # type: ignore[method-assign]
    store.put_rollout = rollout  # type: ignore[method-assign]
    return seen


def test_a_step_writes_its_weights_and_its_state_in_one_transaction() -> None:
    """Right after the routing write of every step, the stored state is already that step's:
    the live weights and the stored ones agree (they were two writes, with the new weights
    beside the previous step's state in between)."""

    async def main() -> None:
        rig = Rig()
        await rig.start()
        observer = RoutingState(rig.config, rig.store)  # another gateway
        mismatches: list[tuple[Any, Any]] = []
        put_routing = rig.store.put_routing

        async def look_after(*args: Any, **kwargs: Any) -> Any:
            out = await put_routing(*args, **kwargs)
            await observer.refresh()
            rule = next(r for r in observer.specs["churn"].http if r.name == "default")
            live = {d.destination: d.weight or 0 for d in rule.route}
            rec = await rig.store.get_rollout("churn-v2")
            stored = rec.state.get("weights") if rec else None
            if stored != {v: live.get(v, 0) for v in ("v1", "v2")}:
                mismatches.append((live, stored))
            return out

        rig.store.put_routing = look_after  # type: ignore[method-assign]
        await rig.c.tick()
        assert await rig.steps(2) == ["Progressing", "Succeeded"]
        changes = await rig.store.query_audit(kind="change", model="churn")
        assert len(changes) >= 3  # start, step, promoted: each looked at
        assert mismatches == []

    asyncio.run(main())


def test_status_pairs_the_live_weights_with_the_state_of_the_same_step() -> None:
    """A step that lands while another gateway reads the status (between its read of the
    routing and of the state) makes it read again: the weights shown are those of the
    state shown, never the previous step's beside the next one's state."""

    async def main() -> None:
        rig = Rig()
        await rig.start()
        await rig.c.tick()  # Progressing at 20
        stored = _stored_weights(rig)
        name, spec = next(iter(rig.config.rollouts.items()))
        routing = RoutingState(rig.config, rig.store)
        observer = RolloutController(
            name, spec, rig.store, routing, rig.windows, clock=rig.clock, owner="gw-2"
        )
        refresh = observer.routing.refresh
        stepped: list[bool] = []

        async def refresh_then_step() -> None:
            await refresh()
            if not stepped:  # once: the rollout steps right after the routing was read
                stepped.append(True)
                rig.clock.advance(10)
                await rig.c.tick()

        observer.routing.refresh = refresh_then_step  # type: ignore[method-assign]
        status = await observer.status()
        assert stepped
        assert status["weights"] == {"v1": 60, "v2": 40} == rig.weights()
        assert status["weights"] == stored[status["version"]]
        assert status["canaryWeight"] == 40
        latest = await rig.store.get_rollout("churn-v2")
        assert latest is not None
        assert status["message"] == latest.state["message"]

    asyncio.run(main())


def test_status_shows_the_live_weights_and_the_rollouts_own() -> None:
    """An admin changes a paused rollout's rule: ``weights`` is the live table,
    ``rolloutWeights`` what the rollout last wrote, in the same read."""

    async def main() -> None:
        rig = Rig()
        await rig.start()
        await rig.c.tick()  # Progressing at 20
        await rig.c.command("pause", "dave", wait=1)
        status = await rig.c.status()
        assert status["weights"] == status["rolloutWeights"] == {"v1": 80, "v2": 20}
        doc = rig.routing.document("churn")
        rules = weighted_rules(doc["http"], rig.c.spec, {"v1": 50, "v2": 50}, False)
        await rig.routing.update("churn", {"http": rules}, "admin/dave", "half and half")
        status = await rig.c.status()
        assert status["weights"] == {"v1": 50, "v2": 50}
        assert status["canaryWeight"] == 50
        assert status["rolloutWeights"] == {"v1": 80, "v2": 20}

    asyncio.run(main())
