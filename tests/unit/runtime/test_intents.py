"""Repository intents followed by several gateways (two repositories sharing one store): an
unload holds on both, survives a new gateway's start, an older intent never undoes a newer one,
and a store that lost its intents leaves the versions as they are."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from modelrouter.config.loader import parse_config
from modelrouter.errors import VersionNotFound
from modelrouter.runtime.intents import IntentFollower
from modelrouter.runtime.repository import ModelRepository, VersionState
from modelrouter.store.memory import MemoryStore


def config(tmp_path: Path, n: int) -> Any:
    """``n`` models m0.. with one in-process version each (y = (i + 1) * x)."""
    lines = ["models:"]
    for i in range(n):
        x = np.arange(10, dtype=np.float64).reshape(-1, 1)
        joblib.dump(LinearRegression().fit(x, (i + 1) * x.ravel()), tmp_path / f"m{i}.joblib")
        lines += [f"  m{i}:", "    versions:", f"      v1: {{storageUri: ./m{i}.joblib, "]
        lines[-1] += "modelFormat: sklearn}"
    return parse_config("\n".join(lines) + "\n")


def gateway(tmp_path: Path, store: MemoryStore) -> IntentFollower:
    return IntentFollower(ModelRepository(config(tmp_path, 2), tmp_path), store, 0.01)


def state(follower: IntentFollower, model: str = "m1") -> VersionState:
    return follower.repository.entry(model, "v1").state


def test_an_unload_holds_on_every_gateway_and_a_load_lifts_it(tmp_path: Path) -> None:
    async def main() -> None:
        store = MemoryStore()
        one, two = gateway(tmp_path, store), gateway(tmp_path, store)
        for g in (one, two):
            await g.prime()
            await g.repository.load_all()
        outcome = await one.request_unload("m1", "v1", "alice", "bad model")
        assert (outcome.before, outcome.state, outcome.revision) == ("READY", "UNLOADED", 1)
        assert state(one) is VersionState.UNLOADED
        assert state(two) is VersionState.READY  # until it follows
        assert [i.revision for i in await two.sync()] == [1]
        assert state(two) is VersionState.UNLOADED
        assert two.repository.entry("m1", "v1").held
        assert await two.sync() == []  # applied once

        # a gateway that starts now never loads it
        three = gateway(tmp_path, store)
        await three.prime()
        await three.repository.load_all()
        assert state(three) is VersionState.UNLOADED
        assert state(three, "m0") is VersionState.READY

        back = await two.request_load("m1", "v1", "bob")
        assert back.state == "READY"
        assert not back.failed
        for g in (one, three):
            await g.sync()
            assert state(g) is VersionState.READY
        audit = await store.query_audit(kind="admin", order="asc", limit=None)
        assert [(r["action"], r["actor"]) for r in audit] == [("unload", "alice"), ("load", "bob")]
        for g in (one, two, three):
            await g.repository.close()

    asyncio.run(main())


def test_an_older_intent_never_undoes_a_newer_one(tmp_path: Path) -> None:
    async def main() -> None:
        store = MemoryStore()
        one = gateway(tmp_path, store)
        await one.prime()
        await one.repository.load_all()
        older = await store.put_intent("m1", "v1", "unloaded", "alice")
        await store.put_intent("m1", "v1", "loaded", "bob")
        await one.sync()
        assert state(one) is VersionState.READY
        async with one._lock:
            await one._apply(older)  # a request that lost the race, applied late
        assert state(one) is VersionState.READY
        await one.repository.close()

    asyncio.run(main())


def test_a_store_that_lost_its_intents_changes_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        store = MemoryStore()
        one = gateway(tmp_path, store)
        await one.prime()
        await one.repository.load_all()
        await one.request_unload("m1", "v1", "alice")
        one.store = MemoryStore()  # the store came back empty
        assert await one.sync() == []
        assert state(one) is VersionState.UNLOADED
        await one.store.put_intent("m1", "v1", "loaded", "carol")  # revision 1 again
        assert [i.actor for i in await one.sync()] == ["carol"]
        assert state(one) is VersionState.READY
        await one.repository.close()

    asyncio.run(main())


def test_an_unknown_version_is_refused_before_anything_is_stored(tmp_path: Path) -> None:
    async def main() -> None:
        store = MemoryStore()
        one = gateway(tmp_path, store)
        with pytest.raises(VersionNotFound):
            await one.request_unload("m1", "v9", "alice")
        assert await store.list_intents() == []

    asyncio.run(main())
