"""The gateway's side of store faults: notice them, and put back what the gateway owns.

Every ``server.storeCheckInterval`` the gateway calls :meth:`Store.reconcile`, which compares the
store's identity (epoch) and audit head with what this gateway saw and, when the store came
back empty or older, recreates its tables and appends a ``gap`` record (see
:mod:`modelrouter.store.faults`). Faults found inside writes (the audit writer's appends) are
reported by the same call. For each fault the gateway re-seeds routing from its config file,
so that every model has a document again; the table it serves meanwhile stays the last one it
loaded, so serving never stops.

While the store is unreachable the check just fails (logged once per outage, not every tick).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from modelrouter.errors import StoreError
from modelrouter.routing.state import RoutingState
from modelrouter.store.base import Store
from modelrouter.store.faults import StoreFault

log = logging.getLogger(__name__)

FaultListener = Callable[[list[StoreFault]], Awaitable[None]]


class StoreGuard:
    """Checks the store every ``interval`` seconds; re-seeds routing after a fault."""

    def __init__(
        self,
        store: Store,
        routing: RoutingState,
        interval: float,
        listeners: list[FaultListener] | None = None,
    ) -> None:
        self.store = store
        self.routing = routing
        self.interval = interval
        self.listeners = list(listeners or [])
        self.faults: list[StoreFault] = []
        """Every fault handled so far (newest last)."""
        self.reachable = True
        self._reseed_due = False

    async def check(self) -> list[StoreFault]:
        """One check; returns the faults handled by it (empty when all is well)."""
        try:
            faults = await self.store.reconcile()
            self.faults.extend(faults)
            if faults:
                self._reseed_due = True
                log.warning(
                    "store %s lost state: %s",
                    self.store.url,
                    "; ".join(f.describe() for f in faults),
                )
                for listener in self.listeners:
                    await listener(faults)
            if self._reseed_due:
                seeded = await self.routing.reseed()
                self._reseed_due = False
                log.warning(
                    "routing re-seeded from the config file for %s",
                    ", ".join(seeded) or "no model (another gateway did it)",
                )
        except StoreError as exc:
            if self.reachable:
                log.warning("store %s is unreachable: %s", self.store.url, exc)
            self.reachable = False
            return []
        if not self.reachable:
            log.warning("store %s is reachable again", self.store.url)
        self.reachable = True
        return faults

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.check()
            except Exception:
                log.exception("store check failed")
