"""Audit retention runs in one gateway of those sharing a store (workers or machines)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

from modelrouter.app import Services, prune_periodically
from modelrouter.config import parse_config
from modelrouter.store.memory import MemoryStore

CONFIG = parse_config("server:\n  audit: {retention: {maxCount: 2, interval: 10ms}}\nmodels: {}\n")


class Counting:
    """The shared store, counting this gateway's prunes."""

    def __init__(self, store: MemoryStore) -> None:
        self.store = store
        self.prunes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)

    async def prune_audit(self, *args: Any, **kwargs: Any) -> int:
        self.prunes += 1
        return await self.store.prune_audit(*args, **kwargs)


def gateway(store: Counting) -> Services:
    return cast(Services, SimpleNamespace(loaded=SimpleNamespace(config=CONFIG), store=store))


async def one_pruner_at_a_time_and_another_takes_over() -> None:
    shared = MemoryStore()
    a, b = Counting(shared), Counting(shared)
    for i in range(10):
        await shared.append_audit([{"kind": "admin", "action": f"x{i}"}])
    first = asyncio.create_task(prune_periodically(gateway(a), "gw-a"))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(prune_periodically(gateway(b), "gw-b"))
    await asyncio.sleep(0.2)
    assert a.prunes > 3
    assert b.prunes == 0, "a second gateway pruned while the lease was held"
    first.cancel()  # the holder stops: it gives the lease up, and the other one prunes
    await asyncio.gather(first, return_exceptions=True)
    await asyncio.sleep(0.1)
    assert b.prunes > 0
    second.cancel()
    await asyncio.gather(second, return_exceptions=True)


def test_one_pruner_at_a_time_and_another_takes_over() -> None:
    asyncio.run(one_pruner_at_a_time_and_another_takes_over())
