"""MLflow alias watching once per cluster: one gateway watches, every gateway follows.

Versions given as ``models:/name@alias`` follow the alias. Rather than every gateway asking
MLflow and recording each move (N reloads, N records), one gateway holds the lease
``mlflow-alias-watch`` in the store (renewed every tick, like a rollout's lease; another
gateway takes over when it lapses). The holder asks MLflow where each alias points and, when it
moved, writes the new version to the store with one ``alias-moved`` audit record, in one
transaction and only if the stored version is still the one it read (compare-and-set), so a
move is recorded once even while the lease changes hands.

Every gateway, the holder included, follows the store: a READY version whose alias the store
says points elsewhere is swapped to exactly that registered version (loaded next to the old
one, no request dropped). A FAILED alias version is retried every ``RETRY_FAILED_AFTER``
seconds (the alias may exist now).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from modelrouter.audit import records
from modelrouter.errors import ModelRouterError, StoreError
from modelrouter.runtime.repository import (
    RETRY_FAILED_AFTER,
    AliasMove,
    ModelRepository,
    VersionEntry,
    VersionState,
)
from modelrouter.store.base import AliasRecord, Store
from modelrouter.store.faults import gateway_name

log = logging.getLogger(__name__)

LEASE = "mlflow-alias-watch"
ACTOR = records.ALIAS_WATCH_ACTOR


def move_record(
    name: str, alias: str, before: str, after: str, followers: list[VersionEntry], gateway: str
) -> dict[str, Any]:
    """The one ``alias-moved`` audit record of a move (``model``/``version``: the first of
    this gateway's versions that follow the alias; ``followers``: all of them)."""
    first = followers[0]
    record = records.alias_moved(
        model=first.model,
        version=first.version,
        registered_model=name,
        alias=alias,
        before=before,
        after=after,
    )
    record["what"] = f"MLflow alias {name}@{alias}"
    record["followers"] = [f"{e.model}/{e.version}" for e in followers]
    record["gateway"] = gateway
    # written before any gateway swaps: the outcome of each is in its log and metrics
    record["reason"] = f"{name}@{alias} moved to version {after}; every gateway swaps it in"
    return record


class AliasCoordinator:
    """The lease-holding watcher and the follower of one gateway."""

    def __init__(
        self,
        repository: ModelRepository,
        store: Store,
        interval: float,
        owner: str | None = None,
    ) -> None:
        self.repository = repository
        self.store = store
        self.interval = interval
        self.owner = owner or f"{gateway_name()}:{uuid.uuid4().hex[:8]}"
        self.lease_ttl = 3 * interval + 5.0
        self.watching = False
        """Whether this gateway held the lease at its last tick."""
        self.swaps: list[AliasMove] = []
        """The swaps this gateway made (newest last; kept for its lifetime, few)."""

    def followed(self) -> dict[tuple[str, str], list[VersionEntry]]:
        """This gateway's versions per ``(registered model, alias)`` they follow."""
        out: dict[tuple[str, str], list[VersionEntry]] = {}
        for e in self.repository.entries():
            if e.alias is not None:
                out.setdefault(e.alias, []).append(e)
        return out

    async def tick(self) -> list[AliasMove]:
        """Watch (with the lease), then follow; returns the swaps made here."""
        followed = self.followed()
        if not followed:
            return []
        self.watching = await self.store.try_lock(LEASE, self.owner, self.lease_ttl)
        stored = {(a.name, a.alias): a for a in await self.store.list_aliases()}
        if self.watching:
            await self._watch(followed, stored)
            stored = {(a.name, a.alias): a for a in await self.store.list_aliases()}
        return await self._follow(followed, stored)

    async def _watch(
        self,
        followed: dict[tuple[str, str], list[VersionEntry]],
        stored: dict[tuple[str, str], AliasRecord],
    ) -> None:
        registry = self.repository.sources.mlflow()
        for (name, alias), entries in followed.items():
            try:
                current = await asyncio.to_thread(registry.alias_version, name, alias)
            except ModelRouterError as exc:
                log.warning("cannot check MLflow alias %s@%s: %s", name, alias, exc.message)
                continue
            known = stored.get((name, alias))
            if known is None:
                # the first look: the version the gateways loaded is the baseline, so that a
                # move made before anyone watched is still a recorded move
                loaded = [e.mlflow_version for e in entries if e.mlflow_version]
                baseline = loaded[0] if loaded else current
                known = await self.store.move_alias(name, alias, baseline, None)
                if known is None:  # another watcher set it meanwhile: its turn
                    continue
            if known.version == current:
                continue
            record = move_record(name, alias, known.version, current, entries, gateway_name())
            if await self.store.move_alias(name, alias, current, known.version, record):
                log.info("MLflow alias %s@%s moved %s -> %s", name, alias, known.version, current)

    async def _follow(
        self,
        followed: dict[tuple[str, str], list[VersionEntry]],
        stored: dict[tuple[str, str], AliasRecord],
    ) -> list[AliasMove]:
        swaps = []
        for (name, alias), entries in followed.items():
            target = stored.get((name, alias))
            for e in entries:
                if e.held:
                    continue
                if e.state is VersionState.FAILED:
                    if self.repository.clock() - e.failed_at >= RETRY_FAILED_AFTER:
                        await self.repository.load(e.model, e.version)
                    continue
                if target is None or e.state is not VersionState.READY:
                    continue
                if e.mlflow_version == target.version:
                    continue
                move = await self.repository.swap_to(e, name, alias, target.version)
                swaps.append(move)
                self.swaps.append(move)
                if move.error:
                    log.error(
                        "model %s version %s: not swapped to %s@%s version %s: %s",
                        e.model,
                        e.version,
                        name,
                        alias,
                        target.version,
                        move.error,
                    )
        return swaps

    async def run(self) -> None:
        """Tick every ``interval`` until cancelled; returns at once when no version follows an
        alias. The lease is given up on the way out."""
        if not self.followed():
            return
        try:
            while True:
                await asyncio.sleep(self.interval)
                try:
                    await self.tick()
                except StoreError as exc:
                    log.warning("MLflow alias watch: store unavailable: %s", exc)
                except Exception:
                    log.exception("MLflow alias watch failed")
        finally:
            if self.watching:
                try:
                    await self.store.release_lock(LEASE, self.owner)
                except Exception as exc:
                    log.warning("MLflow alias watch: lease not released: %s", exc)
