"""The control-plane service: the one owner of every state change and control read.

Every control transport (REST admin ``/api/v1``, the repository API ``/v2/repository``, the
rollouts and feedback APIs, the CLI through a gateway, the gRPC repository RPCs and the UI)
translates its request into one call here and the result (or a :mod:`modelrouter.errors`
error) back into its wire format. Each operation has one path and one outcome, whichever
transport asked. No web framework is imported here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from modelrouter.config.schema import Config, VersionSpec
from modelrouter.control.audit import AuditFilter, AuditReads, VerifyReport
from modelrouter.control.figures import FigureReader
from modelrouter.errors import InvalidInput, ModelNotReady, NotFound
from modelrouter.rollout.controller import COMMANDS, RolloutManager
from modelrouter.routing.state import RoutingState
from modelrouter.runtime.intents import IntentFollower
from modelrouter.runtime.repository import ModelRepository, VersionEntry
from modelrouter.shadow.runner import ShadowRunner
from modelrouter.store.base import Store
from modelrouter.telemetry.feedback import FeedbackService
from modelrouter.telemetry.window import WindowSource

MAX_HISTORY = 1000
"""The most rollout steps one status call returns."""


def check_load_parameters(params: Any) -> None:
    """Refuse load parameters that would load something the config file does not name
    (Triton's ``config`` and ``file:...``): no API loads an arbitrary URI."""
    if params is None:
        return
    if not isinstance(params, dict):
        raise InvalidInput("parameters: must be an object")
    refused = [str(k) for k in params if k == "config" or str(k).startswith("file:")]
    if refused:
        raise InvalidInput(
            f"parameters: {', '.join(refused)} are not accepted: only versions named in the "
            "config file can be loaded"
        )


def version_status(e: VersionEntry, full: bool = True) -> dict[str, Any]:
    """A version's state; its load error in full for the admin, else the short reason."""
    return {"name": e.model, "version": e.version, "state": e.state.value, "reason": e.reason(full)}


def version_source(spec: VersionSpec) -> str:
    """Where a version comes from, in one line: its storage URI, or its remote endpoint and
    name (the admin API is the only one that shows it)."""
    if spec.endpoint is not None:
        return f"{spec.endpoint} ({spec.remoteName})" if spec.remoteName else spec.endpoint
    return spec.storageUri or ""


class ControlPlane:
    """Routing, rollouts, repository load/unload, feedback, audit and per-version figures.

    ``rollouts`` and ``feedback`` are optional so that a gateway without rollouts (or a test)
    can build one; the operations that need them answer NotFound / an empty list.
    """

    def __init__(
        self,
        store: Store,
        routing: RoutingState,
        repository: ModelRepository,
        *,
        rollouts: RolloutManager | None = None,
        feedback: FeedbackService | None = None,
        windows: WindowSource | None = None,
        shadow: ShadowRunner | None = None,
        window_seconds: float = 600.0,
        clock: Callable[[], float] = time.time,
        intents: IntentFollower | None = None,
    ) -> None:
        self.store = store
        self.routing = routing
        self.repository = repository
        self.intents = intents or IntentFollower(repository, store, poll_interval=1.0)
        """Load and unload are intents in the store, applied here and followed by every
        gateway (see :mod:`modelrouter.runtime.intents`); the gateway runs its follower."""
        self.rollouts = rollouts
        self.feedback = feedback
        self.shadow = shadow
        self.clock = clock
        self.audit = AuditReads(store, clock)
        self.figures = FigureReader(routing, repository, windows, window_seconds, clock)

    # ------------------------------------------------------------------ models and routing

    async def models(self) -> dict[str, Any]:
        """Every model with its versions' states and its routing version."""
        out = []
        for name, versions in self.repository.models.items():
            doc = self.routing.document(name)
            out.append(
                {
                    "name": name,
                    "routingVersion": doc["version"],
                    "versions": [
                        {
                            "name": v,
                            "state": e.state.value,
                            "reason": e.error,
                            "format": e.spec.format,
                            "source": version_source(e.spec),
                            "loadSeconds": e.load_seconds,
                        }
                        for v, e in versions.items()
                    ],
                }
            )
        return {"models": out, "tableVersion": self.routing.table.version}

    async def get_routing(self, model: str) -> dict[str, Any]:
        """The live routing document of ``model``: rules, version, who wrote it, the owner of
        each rule (an active rollout holds its rule whoever wrote last) and the rules the last
        config-file import left alone."""
        doc = self.routing.document(model)
        active = await self.routing.active_rollouts(self.routing.file_config, model)
        doc["owners"] = {r: active.get(r, o) for r, o in doc["owners"].items()}
        return doc

    async def replace_routing(
        self,
        model: str,
        document: Any,
        actor: str,
        reason: str = "",
        expected_version: int | None = None,
    ) -> dict[str, Any]:
        """Validate and write ``document`` (``{"http": [rules]}``) as the model's routing:
        versioned, audited, served by every gateway. ``expected_version`` makes it a
        compare-and-set (Conflict when the routing changed since it was read)."""
        if not isinstance(reason, str):
            raise InvalidInput("reason: must be a string")
        if expected_version is not None and (
            type(expected_version) is not int or expected_version < 0
        ):
            raise InvalidInput("expectedVersion: must be a non-negative integer")
        await self.routing.update(model, document, actor, reason, expected_version)
        return await self.get_routing(model)

    # ------------------------------------------------------------------ the config file

    async def reload_config(self, config: Config) -> dict[str, Any]:
        """A changed config file: rollouts added, changed or removed in ``rollouts:`` are
        started, restarted or stopped, then the routing rules the file owns are imported.
        Every gateway calls this on the edit; each change is written (and audited) once.
        Returns what this gateway did and the rules left to other owners."""
        done: dict[str, Any] = {"started": [], "restarted": [], "stopped": []}
        if self.rollouts is not None:
            done.update(await self.rollouts.reconcile(config.rollouts))
        done["routing"] = await self.routing.apply_config(config)
        done["leftAlone"] = {
            m: [x.to_json() for x in left] for m, left in self.routing.left_alone.items() if left
        }
        return done

    # ------------------------------------------------------------------ rollouts

    def _manager(self) -> RolloutManager:
        if self.rollouts is None:
            raise NotFound("this gateway has no rollouts (the config file's rollouts: is empty)")
        return self.rollouts

    async def list_rollouts(self) -> list[dict[str, Any]]:
        if self.rollouts is None:
            return []
        # a copy: a config reload may add or remove rollouts while the statuses are read
        return [await c.status() for c in list(self.rollouts.controllers.values())]

    async def rollout_status(self, name: str, history: int = 50) -> dict[str, Any]:
        """The rollout's state (weights as the live table has them) and its last steps."""
        if type(history) is not int or not 0 <= history <= MAX_HISTORY:
            raise InvalidInput(f"limit: must be an integer from 0 to {MAX_HISTORY}")
        c = self._manager().get(name)
        return {**await c.status(), "history": await c.history(history)}

    async def rollout_command(self, name: str, action: str, actor: str) -> dict[str, Any]:
        """pause, resume, promote or abort ``name``; answers its status after the command."""
        c = self._manager().get(name)
        if action not in COMMANDS:
            raise InvalidInput(f"action: unknown command {action!r} (known: {', '.join(COMMANDS)})")
        return await c.command(action, actor)

    # ------------------------------------------------------------------ repository

    def _targets(self, model: str, version: str | None) -> list[VersionEntry]:
        if version is not None:
            return [self.repository.entry(model, version)]
        return list(self.repository.versions(model).values())

    async def _load_or_unload(
        self, model: str, version: str | None, actor: str, load: bool, full: bool = True
    ) -> list[dict[str, Any]]:
        """One outcome on every transport: a version that fails to load is ModelNotReady
        (503, retrying may help) naming the reason; the attempt is audited either way."""
        targets = self._targets(model, version)
        request = self.intents.request_load if load else self.intents.request_unload
        for e in targets:  # each intent stored with its one audit record, then applied here
            await request(e.model, e.version, actor)
        failed = [e for e in targets if e.error]
        if load and failed:
            raise ModelNotReady(
                "; ".join(
                    f"model '{e.model}' version '{e.version}' failed to load: {e.reason(full)}"
                    for e in failed
                )
            )
        return [version_status(e, full) for e in targets]

    # ``full``: whether the caller may see load errors in full (file paths, backend URLs,
    # artifact bytes): the admin may, an anonymous caller gets the short reason.

    async def load_version(
        self, model: str, version: str, actor: str, full: bool = True
    ) -> dict[str, Any]:
        (status,) = await self._load_or_unload(model, version, actor, True, full)
        return status

    async def unload_version(
        self, model: str, version: str, actor: str, full: bool = True
    ) -> dict[str, Any]:
        """Unload; the version stays unloaded (503 to requests) until loaded again."""
        (status,) = await self._load_or_unload(model, version, actor, False, full)
        return status

    async def load_model(self, model: str, actor: str, full: bool = True) -> list[dict[str, Any]]:
        """Load every version of ``model`` (the repository API's model-level call)."""
        return await self._load_or_unload(model, None, actor, True, full)

    async def unload_model(self, model: str, actor: str, full: bool = True) -> list[dict[str, Any]]:
        return await self._load_or_unload(model, None, actor, False, full)

    async def repository_index(self, full: bool = False) -> list[dict[str, Any]]:
        """Every configured version with its state (the repository extension's index); the
        reason of a failed one in full only for the admin."""
        out = []
        for e in self.repository.entries():
            item: dict[str, Any] = {"name": e.model, "version": e.version, "state": e.state.value}
            reason = e.reason(full)
            if reason:
                item["reason"] = reason
            out.append(item)
        return out

    # ------------------------------------------------------------------ feedback

    async def post_feedback(self, doc: Any, actor: str) -> dict[str, Any]:
        """Ground truth or a reward for a request id: 404 unknown id, 409 already given."""
        if self.feedback is None:
            raise NotFound("feedback is not available on this gateway")
        result = await self.feedback.submit(doc, actor)
        return result.to_json()

    # ------------------------------------------------------------------ audit

    async def audit_query(self, filters: AuditFilter) -> list[dict[str, Any]]:
        return await self.audit.query(filters)

    async def audit_explain(self, request_id: str) -> dict[str, Any]:
        return await self.audit.explain(request_id)

    async def audit_verify(self) -> VerifyReport:
        return await self.audit.verify()

    # ------------------------------------------------------------------ figures

    async def version_figures(self, model: str, window: float | None = None) -> dict[str, Any]:
        """Per version of ``model``: state, weight in each rule, and the figures of the last
        ``window`` seconds from the store (every gateway's traffic)."""
        return await self.figures.versions(model, window)

    async def shadow_stats(self, model: str, window: float | None = None) -> dict[str, Any]:
        """Shadow agreement of every version ``model`` mirrors to, from the store's windows
        (``shadows``: every gateway), and this gateway's live counters per pair (``pairs``:
        calls, errors, drops, which only this process sees)."""
        doc = await self.figures.shadows(model, window)
        stats = self.shadow.stats.values() if self.shadow is not None else ()
        doc["pairs"] = [s.to_json() for s in stats if s.model == model]
        return doc
