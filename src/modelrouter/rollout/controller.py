"""The rollout state machine: Initialized -> Progressing (<-> Paused) -> Promoting ->
Succeeded, or -> RolledBack / Failed.

Each tick a :class:`RolloutController` takes the rollout's lease in the store (so one gateway
acts on it at a time), runs a pending manual command, then the step of its phase: gates and
the first weights when Initialized; windows -> :func:`~modelrouter.rollout.analysis.evaluate`
-> new weights when Progressing; the confirm-promotion gate and the switch when Promoting.
Weights are written as the model's routing document (through :meth:`RoutingState.update`, so
every gateway serves them); every step is a ``rollout`` audit record with the figures it saw;
the state is persisted in the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol

import numpy as np

from modelrouter.audit import records
from modelrouter.config.rollouts import RolloutSpec
from modelrouter.config.schema import Config
from modelrouter.errors import (
    ConfigError,
    Conflict,
    InvalidInput,
    ModelRouterError,
    NotFound,
    RolloutConflict,
)
from modelrouter.rollout.analysis import (
    FINAL_PHASES,
    CheckResult,
    Observations,
    QueryFigures,
    RolloutState,
    Verdict,
    evaluate,
    split,
)
from modelrouter.rollout.providers import QueryProvider, provider, render
from modelrouter.rollout.webhooks import HookResult, WebhookCaller, payload
from modelrouter.routing.owners import ACTIVE_PHASES
from modelrouter.routing.state import RoutingState
from modelrouter.store.base import RolloutWrite, Store
from modelrouter.telemetry.recorder import bucket_start
from modelrouter.telemetry.window import VersionWindow, WindowSource

log = logging.getLogger(__name__)

COMMANDS = ("pause", "resume", "promote", "abort")

STATUS_READS = 5
"""Reads of a rollout's status before it settles for what it has: a step between the two
reads of the state starts it again (steps come seconds apart)."""

AliasSetter = Callable[[str, str, str], Awaitable[None]]
"""``(model, version, alias)``: point an MLflow alias at the promoted version."""


class RolloutMetrics(Protocol):
    def set_rollout(self, name: str, phase: str, weights: Mapping[str, float]) -> None: ...


def default_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def spec_hash(spec: RolloutSpec) -> str:
    text = json.dumps(spec.model_dump(mode="json"), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def weighted_rules(
    rules: list[dict[str, Any]], spec: RolloutSpec, weights: Mapping[str, int], mirror: bool
) -> list[dict[str, Any]]:
    """The model's rules with ``weights`` on the rollout's rule; with ``mirror`` the canary
    (weight 0) leaves the route and receives a 100% mirror instead."""
    out = copy.deepcopy(rules)
    rule = next((r for r in out if r.get("name") == spec.rule), None)
    if rule is None:
        raise NotFound(f"model {spec.model} has no rule {spec.rule!r} any more")
    route = [d for d in rule["route"] if d["destination"] not in weights]
    for version in (spec.primary, spec.canary):
        w = weights.get(version, 0)
        if mirror and version == spec.canary and w == 0:
            continue
        route.append({"destination": version, "weight": w})
    rule["route"] = route
    if mirror and weights.get(spec.canary, 0) == 0:
        rule["mirror"] = {"destination": spec.canary}
        rule["mirrorPercentage"] = {"value": 100}
    elif rule.get("mirror", {}).get("destination") in weights:
        rule.pop("mirror", None)
        rule.pop("mirrorPercentage", None)
    return out


class RolloutController:
    """Runs one rollout. :meth:`tick` does at most one step; :meth:`command` queues a manual
    one (run by whichever controller holds the lease at its next tick)."""

    def __init__(
        self,
        name: str,
        spec: RolloutSpec,
        store: Store,
        routing: RoutingState,
        windows: WindowSource,
        *,
        owner: str | None = None,
        clock: Callable[[], float] = time.time,
        prometheus_url: str | None = None,
        webhooks: WebhookCaller | None = None,
        metrics: object | None = None,
        alias_setter: AliasSetter | None = None,
        lock_ttl: float = 15.0,
        rng: np.random.Generator | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.store = store
        self.routing = routing
        self.windows = windows
        self.owner = owner or default_owner()
        self.clock = clock
        self.webhooks = webhooks or WebhookCaller()
        self.metrics = metrics
        self.alias_setter = alias_setter
        self.lock_ttl = lock_ttl
        self.rng = rng
        self.actor = f"rollout/{name}"
        self.lock_name = f"rollout/{name}"
        self._hash = spec_hash(spec)
        self._queries: dict[str, QueryProvider] = {
            m.name: provider(m.provider, prometheus_url)
            for m in spec.analysis.metrics
            if m.provider != "builtin"
        }

    # ------------------------------------------------------------------ reading

    async def read(self) -> tuple[RolloutState, int]:
        rec = await self.store.get_rollout(self.name)
        if rec is None:
            return RolloutState(specHash=self._hash), 0
        return RolloutState.from_json(rec.state), rec.version

    def live_weights(self) -> dict[str, int] | None:
        """The primary's and canary's weights in the rollout's rule of the live table (None
        when the rule is gone). The one truth: status and every step start from these."""
        try:
            rules = self.routing.document(self.spec.model)["http"]
        except NotFound:
            return None
        rule = next((r for r in rules if r.get("name") == self.spec.rule), None)
        if rule is None:
            return None
        route = rule.get("route") or []
        found = {
            str(d["destination"]): 100 if len(route) == 1 else int(d.get("weight") or 0)
            for d in route
        }
        return {v: found.get(v, 0) for v in (self.spec.primary, self.spec.canary)}

    def with_live_weights(self, state: RolloutState) -> RolloutState:
        return self._with_weights(state, self.live_weights())

    def _with_weights(self, state: RolloutState, live: dict[str, int] | None) -> RolloutState:
        """``state`` with the ``live`` weights (None: the rule is gone, keep the state's)."""
        if live is None or live == state.weights:
            return state
        return state.replace(weights=live, canaryWeight=live[self.spec.canary])

    async def history(self, limit: int = 200) -> list[dict[str, Any]]:
        """The newest ``limit`` steps, newest first, read a page at a time (the log of a
        model's rollouts can be long)."""
        out: list[dict[str, Any]] = []
        after: int | None = None
        page_size = 500
        while len(out) < limit:
            page = await self.store.query_audit(
                kind="rollout",
                model=self.spec.model,
                limit=page_size,
                order="desc",
                after_seq=after,
            )
            out += [r for r in page if r.get("rollout") == self.name]
            if len(page) < page_size:
                break
            after = page[-1]["seq"]
        return out[:limit]

    async def status(self) -> dict[str, Any]:
        """The stored state, with the weights the live table has now (an admin may have
        changed them since the last step)."""
        # A step writes its weights and its state in one transaction; reading the state on
        # both sides of the routing, until no step came between, pairs them the same way.
        for _ in range(STATUS_READS):
            first = await self.store.get_rollout(self.name)
            await self.routing.refresh()
            live = self.live_weights()
            rec = await self.store.get_rollout(self.name)
            if (rec.version if rec else 0) == (first.version if first else 0):
                break
        if rec is None:
            state, version = RolloutState(specHash=self._hash), 0
        else:
            state, version = RolloutState.from_json(rec.state), rec.version
        own = dict(state.weights)
        state = self._with_weights(state, live)
        pending = (rec.state.get("command") if rec else None) or None
        return {
            "name": self.name,
            "model": self.spec.model,
            "rule": self.spec.rule,
            "primary": self.spec.primary,
            "canary": self.spec.canary,
            "strategy": self.spec.strategy,
            "version": version,
            "pendingCommand": pending,
            **state.to_json(),
            # what the rollout itself last wrote: ``weights`` (the live table) differs from it
            # only when someone else changed the rule since
            "rolloutWeights": own,
        }

    # ------------------------------------------------------------------ manual control

    async def command(self, action: str, actor: str, wait: float = 10.0) -> dict[str, Any]:
        """Queue ``action`` (pause, resume, promote, abort), run it now if this process can
        take the lease, else wait up to ``wait`` seconds for the lease holder to run it."""
        if action not in COMMANDS:
            raise InvalidInput(f"unknown rollout command {action!r} (known: {', '.join(COMMANDS)})")
        for _ in range(5):
            rec = await self.store.get_rollout(self.name)
            data = dict(rec.state) if rec else RolloutState(specHash=self._hash).to_json()
            data["command"] = {"action": action, "actor": actor, "id": uuid.uuid4().hex}
            try:
                await self.store.put_rollout(self.name, data, rec.version if rec else 0)
                break
            except Conflict:
                await asyncio.sleep(0.05)
        else:
            raise Conflict(f"rollout {self.name} is changing too fast; retry")
        deadline = time.monotonic() + wait
        while True:
            await self.tick()
            rec = await self.store.get_rollout(self.name)
            if rec is None or not rec.state.get("command"):
                return await self.status()
            if time.monotonic() > deadline:
                raise Conflict(
                    f"rollout {self.name}: the command is queued but no controller ran it yet"
                )
            await asyncio.sleep(0.1)

    # ------------------------------------------------------------------ the tick

    async def tick(self) -> bool:
        """One step, if this controller gets the lease. Returns whether it had the lease."""
        if not await self.store.try_lock(self.lock_name, self.owner, self.lock_ttl):
            return False
        rec = await self.store.get_rollout(self.name)
        state, version = await self.read()
        if rec is not None and state.specHash not in (None, "", self._hash):
            # another gateway adopted a changed spec this one has not read yet (or the
            # reverse): wait for the config reload rather than fight over the rollout
            log.debug("rollout %s: the stored spec is not this gateway's; waiting", self.name)
            return True
        command = rec.state.get("command") if rec else None
        if state.phase in ACTIVE_PHASES:
            await self.routing.refresh()
            state = self.with_live_weights(state)
        step = _Step(self, state, version)
        try:
            if command:
                await step.command(command)
            elif state.phase == "Initialized":
                await step.start()
            elif state.phase == "Progressing":
                await step.analyse()
            elif state.phase == "Promoting":
                await step.promote(gate=True)
            else:
                self._report(state)
        except Conflict as exc:
            log.info("rollout %s: %s; trying again at the next tick", self.name, exc)
        except (ConfigError, InvalidInput, NotFound) as exc:
            # the routing cannot take the rollout's weights: nothing will fix that by itself
            await step.save(step.state.replace(phase="Failed"), "fail", exc.message)
        return True

    async def release(self) -> None:
        await self.store.release_lock(self.lock_name, self.owner)

    # ------------------------------------------------------------------ the config file

    async def _audit(self, action: str, phase_before: str, phase: str, reason: str) -> None:
        await self.store.append_audit(
            [
                records.rollout_config(
                    actor="config-file",
                    rollout=self.name,
                    model=self.spec.model,
                    rule=self.spec.rule,
                    canary=self.spec.canary,
                    strategy=self.spec.strategy,
                    action=action,
                    phase_before=phase_before,
                    phase=phase,
                    reason=reason,
                )
            ]
        )

    async def adopt(self) -> bool:
        """Make the stored rollout follow this spec: a rollout whose spec changed in the
        config file (or that was stopped and is back) starts again from Initialized. Once per
        cluster: a compare-and-set on the stored state; the gateway that wins audits it.
        True when this call restarted it."""
        for _ in range(5):
            rec = await self.store.get_rollout(self.name)
            if rec is None:
                return False  # new: its first tick starts it (and audits the start)
            before = RolloutState.from_json(rec.state)
            if before.specHash == self._hash and before.phase != "Stopped":
                return False
            fresh = RolloutState(specHash=self._hash)
            try:
                await self.store.put_rollout(self.name, fresh.to_json(), rec.version)
            except Conflict:
                continue
            why = (
                "back in the config file; starting again"
                if before.phase == "Stopped"
                else "its spec changed in the config file; starting again from Initialized"
            )
            await self._audit("restart", before.phase, fresh.phase, why)
            return True
        raise Conflict(f"rollout {self.name} is changing too fast; retry")

    async def stop_removed(self) -> bool:
        """The rollout left the config file: stop it where it is (its rule keeps the live
        weights, held by the rollout's result until a person changes it). Once per cluster;
        True when this call stopped it."""
        try:
            stopped = await stop_rollout(self.store, self.name, self.spec)
        finally:
            await self.release()
        if stopped is not None:
            self._report(stopped)
        return stopped is not None

    def _report(self, state: RolloutState) -> None:
        set_rollout = getattr(self.metrics, "set_rollout", None)
        if callable(set_rollout):
            weights = state.weights or split(self.spec, 0)
            set_rollout(self.name, state.phase, weights)

    async def query_figures(self, since: float, until: float) -> dict[str, QueryFigures]:
        out: dict[str, QueryFigures] = {}
        for m in self.spec.analysis.metrics:
            q = self._queries.get(m.name)
            if q is None or m.query is None:
                continue
            try:
                canary = await q.query(
                    render(m.query, self.spec.model, self.spec.canary, until - since)
                )
                primary = None
                if m.relativeTo == "primary":
                    primary = await q.query(
                        render(m.query, self.spec.model, self.spec.primary, until - since)
                    )
                out[m.name] = QueryFigures(canary, primary)
            except ModelRouterError as exc:
                out[m.name] = QueryFigures(error=exc.message)
        return out


async def stop_rollout(
    store: Store,
    name: str,
    spec: RolloutSpec | None,
    phases: frozenset[str] | None = None,
) -> RolloutState | None:
    """Stop rollout ``name`` where it is (phase ``Stopped``), if it is in one of ``phases``
    (default: any but Stopped). A compare-and-set on its stored state: of several gateways
    doing this at once one stops it and writes the ``stop`` audit record. ``spec`` is None
    for a rollout the config file no longer describes. Returns the stopped state when this
    call stopped it."""
    why = "removed from the config file"
    for _ in range(5):
        rec = await store.get_rollout(name)
        if rec is None:
            return None
        before = RolloutState.from_json(rec.state)
        if before.phase == "Stopped" or (phases is not None and before.phase not in phases):
            return None
        stopped = before.replace(phase="Stopped", message=why)
        try:
            await store.put_rollout(name, {**stopped.to_json(), "command": None}, rec.version)
        except Conflict:
            continue
        record = records.rollout_config(
            actor="config-file",
            rollout=name,
            model=spec.model if spec else None,
            rule=spec.rule if spec else None,
            canary=spec.canary if spec else None,
            strategy=spec.strategy if spec else None,
            action="stop",
            phase_before=before.phase,
            phase="Stopped",
            reason=why,
            weights=before.weights,
        )
        await store.append_audit([record])
        return stopped
    raise Conflict(f"rollout {name} is changing too fast; retry")


class _Step:
    """One tick's work on one rollout: the transitions, each a small method."""

    def __init__(self, c: RolloutController, state: RolloutState, version: int) -> None:
        self.c = c
        self.spec = c.spec
        self.state = state
        self.version = version
        self.now = c.clock()

    # -------------------------------------------------------------- persistence

    async def save(
        self,
        state: RolloutState,
        action: str,
        reason: str,
        *,
        checks: tuple[CheckResult, ...] = (),
        figures: Mapping[str, Any] | None = None,
        hooks: list[HookResult] | None = None,
        actor: str | None = None,
        audit: bool = True,
        weights: dict[str, int] | None = None,
        mirror: bool = False,
        change: str | None = None,
    ) -> None:
        """Store ``state`` (its message: ``reason``) and audit it as ``action``.

        With ``weights``, the rule's weights move to them in the same store transaction
        (``change``: the routing change's reason, default ``reason``; ``mirror``: see
        :func:`weighted_rules`), so no reader ever sees a step's weights beside the state of
        the step before, or the reverse."""
        before = self.state
        state = state.replace(message=reason, specHash=self.c._hash)
        if weights is None:
            rec = await self.c.store.put_rollout(self.c.name, state.to_json(), self.version)
            self.version = rec.version
        else:
            await self.set_weights(weights, change or reason, state, mirror)
            self.version += 1  # written with the weights: the version it expected, plus one
        self.state = state
        self.c._report(state)
        if not audit:
            return
        record = records.rollout_step(
            actor=actor or self.c.actor,
            rollout=self.c.name,
            model=self.spec.model,
            rule=self.spec.rule,
            canary=self.spec.canary,
            strategy=self.spec.strategy,
            action=action,
            phase_before=before.phase,
            phase=state.phase,
            weights=state.weights,
            failed_checks=state.failedChecks,
            iterations=state.iterations,
            reason=reason,
            checks=[c.to_json() for c in checks],
            figures=figures,
            webhooks=[h.to_json() for h in hooks or []],
            result=state.result,
        )
        await self.c.store.append_audit([record])
        await self.event(state.phase, f"{action}: {reason}")

    async def event(self, phase: str, message: str) -> None:
        hooks = [h for h in self.spec.webhooks if h.type == "event"]
        if hooks:
            await self.c.webhooks.run(
                hooks,
                "event",
                payload(self.c.name, self.spec.model, phase, "event", eventMessage=message),
            )

    async def hooks(self, kind: str) -> list[HookResult]:
        body = payload(self.c.name, self.spec.model, self.state.phase, kind)
        return await self.c.webhooks.run(self.spec.webhooks, kind, body)

    async def set_weights(
        self, weights: dict[str, int], reason: str, state: RolloutState, mirror: bool
    ) -> None:
        """Write ``weights`` into the model's routing document and ``state`` as the rollout's,
        in one transaction (retried when the routing lost a race; a rollout changed since
        this step read it raises :class:`~modelrouter.errors.RolloutConflict`)."""
        rollout = RolloutWrite(self.c.name, state.to_json(), self.version)
        for attempt in (1, 2, 3):
            await self.c.routing.refresh()
            record = self.c.routing.records.get(self.spec.model)
            rules = self.c.routing.document(self.spec.model)["http"]
            doc = {"http": weighted_rules(rules, self.spec, weights, mirror)}
            try:
                await self.c.routing.update(
                    self.spec.model,
                    doc,
                    self.c.actor,
                    reason,
                    record.version if record else None,
                    rollout,
                )
                return
            except RolloutConflict:
                raise
            except Conflict:
                if attempt == 3:
                    raise

    # -------------------------------------------------------------- phases

    async def start(self) -> None:
        """Initialized: confirm-rollout gate, pre-rollout hooks, the first weights."""
        gate = await self.hooks("confirm-rollout")
        if any(not h.ok for h in gate):
            reason = "waiting for confirm-rollout approval"
            if self.state.message != reason:
                await self.save(self.state, "wait", reason, hooks=gate)
            return
        pre = await self.hooks("pre-rollout")
        if any(not h.ok for h in pre):
            await self.failed_hook(pre, "pre-rollout")
            return
        a = self.spec.analysis
        first = {
            "canary": a.steps()[0],
            "abtest": a.weight,
            "bandit": 50,
            "bluegreen": 0,
        }[self.spec.strategy]
        weights = split(self.spec, first)
        reason = f"start: {self.spec.canary} at weight {first}"
        state = self.state.replace(
            phase="Progressing",
            canaryWeight=first,
            weights=weights,
            startedAt=self.now,
            lastCheck=self.now,
            failedChecks=0,
            iterations=0,
            pValue=1.0,
            result=None,
        )
        await self.save(
            state,
            "start",
            reason,
            hooks=[*gate, *pre],
            weights=weights,
            mirror=self.mirror(first),
        )

    def mirror(self, canary_weight: int) -> bool:
        return (
            self.spec.strategy == "bluegreen" and self.spec.analysis.mirror and canary_weight == 0
        )

    async def failed_hook(self, results: list[HookResult], kind: str) -> None:
        n = self.state.failedChecks + 1
        why = f"{kind} webhook failed ({n}/{self.spec.analysis.threshold})"
        if n >= self.spec.analysis.threshold:
            await self.rollback(why, hooks=results, failed=n)
            return
        state = self.state.replace(failedChecks=n, lastCheck=self.now)
        await self.save(state, "hold", why, hooks=results)

    async def analyse(self) -> None:
        """Progressing: rollback hooks, then, once per interval, rollout hooks and the verdict."""
        back = await self.hooks("rollback")
        if any(h.ok for h in back):
            await self.rollback("a rollback webhook asked for it", hooks=back)
            return
        last = self.state.lastCheck or self.now
        if self.now - last < self.spec.analysis.interval - 1e-6:
            return
        hooks = await self.hooks("rollout")
        if any(not h.ok for h in hooks):
            await self.failed_hook(hooks, "rollout")
            return
        verdict = evaluate(self.spec, self.state, await self.observe(last), self.now, self.c.rng)
        await self.apply(verdict, hooks)

    async def observe(self, since: float) -> Observations:
        w, s, now = self.c.windows, self.spec, self.now
        primary, canary = await asyncio.gather(
            w.window(s.model, s.primary, since, now), w.window(s.model, s.canary, since, now)
        )
        totals: tuple[VersionWindow | None, ...] = (None, None)
        if s.strategy in ("abtest", "bandit"):
            # from the start of the bucket the rollout started in: a window takes the buckets
            # that start inside it, and the one holding startedAt starts before it. Without
            # this, what came in during the rollout's first second was never counted (a
            # quick A/B test lost 73 of its 120 feedbacks that way)
            start = bucket_start(self.state.startedAt or since)
            totals = await asyncio.gather(
                w.window(s.model, s.primary, start, now), w.window(s.model, s.canary, start, now)
            )
        queried = await self.c.query_figures(since, now)
        return Observations(primary, canary, totals[0], totals[1], queried)

    async def apply(self, v: Verdict, hooks: list[HookResult]) -> None:
        kw: dict[str, Any] = {"checks": v.checks, "figures": v.figures, "hooks": hooks}
        if v.action == "wait":
            return
        if v.action == "rollback":
            await self.rollback(v.reason, state=v.state, **kw)
        elif v.action == "promote":
            await self.save(v.state.replace(phase="Promoting"), "promote", v.reason, **kw)
            await self.promote(gate=True)
        elif v.action == "conclude":
            concluded = v.state.replace(phase="Succeeded", weights=v.weights)
            await self.save(concluded, "conclude", v.reason, weights=v.weights, **kw)
            await self.hooks("post-rollout")
        elif v.action == "step":
            mirror = self.mirror(v.state.canaryWeight)
            await self.save(v.state, "step", v.reason, weights=v.weights, mirror=mirror, **kw)
        else:
            await self.save(v.state, "hold", v.reason, **kw)

    async def promote(self, gate: bool, actor: str | None = None) -> None:
        """Promoting: the confirm-promotion gate, then all traffic to the canary."""
        results: list[HookResult] = []
        if gate:
            results = await self.hooks("confirm-promotion")
            if any(not h.ok for h in results):
                reason = "waiting for confirm-promotion approval"
                if self.state.message != reason:
                    await self.save(
                        self.state.replace(phase="Promoting"), "wait", reason, hooks=results
                    )
                return
        weights = {self.spec.primary: 0, self.spec.canary: 100}
        reason = f"promoted: {self.spec.canary} takes all traffic of rule {self.spec.rule}"
        state = self.state.replace(phase="Succeeded", canaryWeight=100, weights=weights)
        await self.save(state, "promoted", reason, hooks=results, actor=actor, weights=weights)
        await self.alias()
        await self.hooks("post-rollout")

    async def alias(self) -> None:
        alias = self.spec.promotion.mlflowAlias
        if alias is None:
            return
        if self.c.alias_setter is None:
            reason = f"promotion of the MLflow alias {alias!r} is not available in this gateway"
            ok = False
        else:
            try:
                await self.c.alias_setter(self.spec.model, self.spec.canary, alias)
                reason, ok = f"MLflow alias {alias!r} now points at {self.spec.canary}", True
            except ModelRouterError as exc:
                reason, ok = f"MLflow alias {alias!r} not moved: {exc.message}", False
        await self.c.store.append_audit(
            [
                records.rollout_alias(
                    actor=self.c.actor,
                    rollout=self.c.name,
                    model=self.spec.model,
                    canary=self.spec.canary,
                    phase=self.state.phase,
                    ok=ok,
                    reason=reason,
                )
            ]
        )

    async def rollback(
        self,
        reason: str,
        *,
        state: RolloutState | None = None,
        failed: int | None = None,
        phase: str = "RolledBack",
        actor: str | None = None,
        **kw: Any,
    ) -> None:
        weights = split(self.spec, 0)
        new = (state or self.state).replace(phase=phase, canaryWeight=0, weights=weights)
        if failed is not None:
            new = new.replace(failedChecks=failed)
        await self.save(
            new,
            "rollback",
            reason,
            actor=actor,
            weights=weights,
            change=f"rollback: {reason}",
            **kw,
        )
        await self.hooks("post-rollout")

    # -------------------------------------------------------------- manual commands

    async def command(self, command: Mapping[str, Any]) -> None:
        action, actor = str(command.get("action")), str(command.get("actor") or "admin")
        phase = self.state.phase
        if phase in FINAL_PHASES:
            await self.save(
                self.state, action, f"{action} ignored: rollout already {phase}", actor=actor
            )
        elif action == "pause":
            if phase == "Paused":
                await self.save(self.state, "pause", "already paused", actor=actor)
            else:
                paused = self.state.replace(phase="Paused", pausedFrom=phase)
                await self.save(paused, "pause", f"paused by {actor}", actor=actor)
        elif action == "resume":
            if phase != "Paused":
                await self.save(self.state, "resume", f"not paused ({phase})", actor=actor)
            else:
                back = self.state.pausedFrom or "Progressing"
                resumed = self.state.replace(phase=back, pausedFrom=None, lastCheck=self.now)
                await self.save(resumed, "resume", f"resumed by {actor}", actor=actor)
        elif action == "promote":
            await self.promote(gate=False, actor=actor)
        else:
            await self.rollback(f"aborted by {actor}", actor=actor)


ControllerFactory = Callable[[str, RolloutSpec], RolloutController]


class RolloutManager:
    """Every rollout of the config, ticked in the background of a gateway.

    :meth:`reconcile` follows the config file's ``rollouts:`` (hot reload): a rollout added
    is started, one whose spec changed is restarted, one removed is stopped; each audited
    once per cluster, whichever gateways reload."""

    def __init__(
        self,
        controllers: Mapping[str, RolloutController],
        tick: float = 1.0,
        factory: ControllerFactory | None = None,
        store: Store | None = None,
    ) -> None:
        """``store`` lets :meth:`adopt_all` find rollouts the config file no longer has."""
        self.controllers = dict(controllers)
        self.store = store
        self.tick_interval = tick
        self.factory = factory
        self._task: asyncio.Task[None] | None = None
        self._adopted = False
        self._started = False

    def get(self, name: str) -> RolloutController:
        c = self.controllers.get(name)
        if c is None:
            raise NotFound(f"rollout '{name}' not found")
        return c

    async def adopt_all(self) -> None:
        """At start: every rollout whose spec changed while no gateway ran starts again, and
        one still running in the store that the config file no longer has is stopped."""
        store = self.store
        try:
            for c in list(self.controllers.values()):
                await c.adopt()
            for rec in await store.list_rollouts() if store is not None else []:
                if store is not None and rec.name not in self.controllers:
                    await stop_rollout(store, rec.name, None, ACTIVE_PHASES)
        except Exception:
            log.exception("rollouts: cannot adopt the config file's specs; trying again later")
            return
        self._adopted = True

    async def tick_all(self) -> None:
        if not self._adopted:
            await self.adopt_all()
            if not self._adopted:
                return
        for c in list(self.controllers.values()):
            try:
                await c.tick()
            except Exception:
                log.exception("rollout %s: the step failed; trying again at the next tick", c.name)

    async def reconcile(self, specs: Mapping[str, RolloutSpec]) -> dict[str, list[str]]:
        """Follow a reloaded config file's rollouts; returns what changed here (names under
        ``started``, ``restarted``, ``stopped``)."""
        out: dict[str, list[str]] = {"started": [], "restarted": [], "stopped": []}
        for name in [n for n in self.controllers if n not in specs]:
            await self.controllers.pop(name).stop_removed()
            out["stopped"].append(name)
        for name, spec in specs.items():
            c = self.controllers.get(name)
            if c is not None and spec_hash(spec) == c._hash:
                continue
            if self.factory is None:
                raise ConfigError("rollouts: this gateway cannot start rollouts at run time")
            new = self.factory(name, spec)
            self.controllers[name] = new
            await new.adopt()
            out["started" if c is None else "restarted"].append(name)
        if self.controllers and self._task is None and self._started:
            self._task = asyncio.create_task(self._loop())
        return out

    async def _loop(self) -> None:
        while True:
            await self.tick_all()
            await asyncio.sleep(self.tick_interval)

    def start(self) -> None:
        self._started = True
        if (self.controllers or self.store is not None) and self._task is None:
            self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        self._started = False
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for c in self.controllers.values():
            with contextlib.suppress(Exception):
                await c.release()


def build_manager(
    config: Config,
    store: Store,
    routing: RoutingState,
    windows: WindowSource,
    metrics: object | None = None,
    alias_setter: AliasSetter | None = None,
) -> RolloutManager:
    """A controller for every rollout of ``config``; they tick at a quarter of the shortest
    interval (at most every second). A lease lasts one interval (at most 15s, at least 1s),
    renewed at every tick: when its gateway dies, another one takes it over within about
    1.25 intervals."""
    prometheus = config.server.prometheus.url if config.server.prometheus else None
    owner = default_owner()

    def make(name: str, spec: RolloutSpec) -> RolloutController:
        return RolloutController(
            name,
            spec,
            store,
            routing,
            windows,
            owner=owner,
            prometheus_url=prometheus,
            metrics=metrics,
            alias_setter=alias_setter,
            lock_ttl=max(1.0, min(15.0, spec.analysis.interval)),
        )

    controllers = {name: make(name, spec) for name, spec in config.rollouts.items()}
    shortest = min((s.analysis.interval for s in config.rollouts.values()), default=4.0)
    return RolloutManager(
        controllers, tick=max(0.05, min(1.0, shortest / 4)), factory=make, store=store
    )
