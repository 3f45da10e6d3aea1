"""Explicit load and unload, once per cluster: an intent in the store that every gateway follows.

An operator's "unload v2" (or "load v2") is written to the store as an *intent* (model,
version, ``loaded`` | ``unloaded``, actor, reason, revision) with its one audit record, in one
transaction (:meth:`Store.put_intent`). The gateway that took the request applies it at once
and answers with its own outcome; every gateway (this one included) follows the store: it
polls the newest intent revision every ``poll_interval`` and applies each intent it has not
applied yet. An unloaded version is held (requests get 503 saying so) on every gateway, and
across restarts: :meth:`IntentFollower.prime` holds them before the models load at start.

Transport-free: the REST admin API, the repository API and the control-plane service call
:meth:`IntentFollower.request_load` / :meth:`IntentFollower.request_unload`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from modelrouter.errors import StoreError
from modelrouter.runtime.repository import ModelRepository, VersionEntry, VersionState
from modelrouter.store.base import IntentRecord, IntentState, Store
from modelrouter.store.faults import StoreFault

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IntentOutcome:
    """What a request did: the stored intent, and the version's state on this gateway."""

    model: str
    version: str
    intent: IntentState
    revision: int
    before: str
    state: str
    error: str | None

    @property
    def failed(self) -> bool:
        """A load that left the version not READY here (its error says why)."""
        return self.intent == "loaded" and self.state != VersionState.READY.value


class IntentFollower:
    """Writes intents for this gateway and applies everyone's to its repository."""

    def __init__(self, repository: ModelRepository, store: Store, poll_interval: float) -> None:
        self.repository = repository
        self.store = store
        self.poll_interval = poll_interval
        self._applied: dict[tuple[str, str], int] = {}
        self._seen_revision = 0
        self._lock = asyncio.Lock()
        self.applied_count = 0
        """Intents of other gateways (or earlier ones) applied here."""

    # ------------------------------------------------------------------ requests

    async def request_load(
        self, model: str, version: str, actor: str, reason: str = ""
    ) -> IntentOutcome:
        """Load ``model``/``version`` on every gateway (lifts an unload); the outcome is this
        gateway's. Raises ModelNotFound/VersionNotFound for what is not configured here, and
        StoreError when the intent cannot be stored (then nothing changed)."""
        return await self._request(model, version, "loaded", actor, reason)

    async def request_unload(
        self, model: str, version: str, actor: str, reason: str = ""
    ) -> IntentOutcome:
        """Unload ``model``/``version`` on every gateway, and keep it unloaded (also after a
        restart) until it is loaded again."""
        return await self._request(model, version, "unloaded", actor, reason)

    async def _request(
        self, model: str, version: str, state: IntentState, actor: str, reason: str
    ) -> IntentOutcome:
        entry = self.repository.entry(model, version)
        before = entry.state.value
        intent = await self.store.put_intent(model, version, state, actor, reason)
        async with self._lock:
            entry = await self._apply(intent)
        return IntentOutcome(
            model, version, state, intent.revision, before, entry.state.value, entry.error
        )

    # ------------------------------------------------------------------ following

    async def prime(self) -> None:
        """At start, before the models load: hold every version the store says is unloaded,
        so that it is not loaded at all. Intents of versions not configured here are ignored."""
        async with self._lock:
            intents = await self.store.list_intents()
            for intent in intents:
                entry = self._entry(intent)
                if entry is None:
                    continue
                if intent.state == "unloaded":
                    entry.held = True
                self._applied[(intent.model, intent.version)] = intent.revision
            self._seen_revision = max((i.revision for i in intents), default=0)

    async def sync(self) -> list[IntentRecord]:
        """Apply every intent not applied here yet; returns those applied."""
        async with self._lock:
            top = await self.store.intent_revision()
            newest = max([self._seen_revision, *self._applied.values()])
            if top < newest:  # the store lost its intents (a reset): start over
                log.warning("repository intents: the store went back to revision %d", top)
                self._forget()
            elif top == self._seen_revision:
                return []
            done = []
            for intent in await self.store.list_intents():
                key = (intent.model, intent.version)
                if self._applied.get(key, 0) >= intent.revision or self._entry(intent) is None:
                    continue
                await self._apply(intent)
                done.append(intent)
                self.applied_count += 1
                log.info(
                    "model %s version %s %s on the request of %s (intent %d)",
                    intent.model,
                    intent.version,
                    intent.state,
                    intent.actor,
                    intent.revision,
                )
            self._seen_revision = top
            return done

    async def on_store_fault(self, faults: Sequence[StoreFault]) -> None:
        """The store lost state (see :mod:`modelrouter.store_guard`): its intent revisions
        start again, so what was applied here says nothing about the new ones. The versions
        keep their state."""
        async with self._lock:
            self._forget()

    def _forget(self) -> None:
        self._applied.clear()
        self._seen_revision = 0

    async def run(self) -> None:
        """Follow the store until cancelled; an unreachable store is retried."""
        while True:
            await asyncio.sleep(self.poll_interval)
            try:
                await self.sync()
            except StoreError as exc:
                log.debug("repository intents: cannot read the store: %s", exc)
            except Exception:
                log.exception("applying repository intents failed")

    async def _apply(self, intent: IntentRecord) -> VersionEntry:
        """Caller holds ``self._lock``. An intent older than one applied already is stale."""
        key = (intent.model, intent.version)
        if self._applied.get(key, 0) > intent.revision:
            return self.repository.entry(intent.model, intent.version)
        if intent.state == "unloaded":
            entry = await self.repository.unload(intent.model, intent.version, explicit=True)
        else:
            entry = await self.repository.load(intent.model, intent.version)
        self._applied[key] = max(self._applied.get(key, 0), intent.revision)
        return entry

    def _entry(self, intent: IntentRecord) -> VersionEntry | None:
        versions = self.repository.models.get(intent.model)
        return None if versions is None else versions.get(intent.version)
