"""The garbage-collection policy: freeze at start-up, and a dropped version is still freed."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelrouter import gcpolicy
from modelrouter.config.loader import parse_config
from modelrouter.runtime.repository import ModelRepository
from modelrouter.server import Gateway
from support import free_port, loaded_from_yaml

CONFIG = """\
server:
  store: memory://
  watchConfig: false
  shutdown: {drain: 0s, timeout: 1s}
models:
  m:
    versions:
      a: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
      b: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
"""


@pytest.fixture(autouse=True)
def settle_fast(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(gcpolicy, "SETTLE", 0.05)
    yield
    assert not gcpolicy.active()
    assert gc.get_freeze_count() == 0


def cyclic_model(repo: ModelRepository, version: str) -> weakref.ref[Any]:
    """A weak reference to ``version``'s model object, made part of a reference cycle (as
    real models often are): only the cycle collector can free it."""
    model = repo.runtime("m", version)._obj  # type: ignore[attr-defined]
    model.myself = model
    return weakref.ref(model)


def test_the_policy_freezes_and_restores_the_collector() -> None:
    before = gc.get_threshold()
    with gcpolicy.frozen():
        assert gcpolicy.active()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (gcpolicy.YOUNG_THRESHOLD, *before[1:])
        with gcpolicy.frozen():  # nested: only the outer exit restores
            pass
        assert gcpolicy.active()
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before


def test_a_version_unloaded_after_the_freeze_is_freed(tmp_path: Path) -> None:
    async def main() -> None:
        repo = ModelRepository(parse_config(CONFIG), tmp_path)
        await repo.load_all()
        unloaded, kept = cyclic_model(repo, "a"), cyclic_model(repo, "b")
        with gcpolicy.frozen():
            gc.collect()
            assert unloaded() is not None  # both still loaded
            assert kept() is not None
            await repo.unload("m", "a")
            gc.collect()
            assert unloaded() is None  # unfrozen when it was dropped: collected
            assert kept() is not None
            freezes = gcpolicy.stats.freezes
            await asyncio.sleep(gcpolicy.SETTLE * 4)
            assert gcpolicy.stats.freezes == freezes + 1  # frozen again once settled
            assert gc.get_freeze_count() > 0
            await repo.load("m", "a")  # a load after start-up is frozen too
            await asyncio.sleep(gcpolicy.SETTLE * 4)
            assert gcpolicy.stats.freezes == freezes + 2
        await repo.close()

    asyncio.run(main())


def test_without_the_policy_the_hooks_do_nothing(tmp_path: Path) -> None:
    async def main() -> None:
        repo = ModelRepository(parse_config(CONFIG), tmp_path)
        await repo.load_all()
        freezes = gcpolicy.stats.freezes
        await repo.unload("m", "a")
        await repo.load("m", "a")
        await asyncio.sleep(gcpolicy.SETTLE * 4)
        assert gcpolicy.stats.freezes == freezes
        assert gc.get_freeze_count() == 0
        await repo.close()

    asyncio.run(main())


def test_a_serving_gateway_runs_the_policy_until_it_stops(tmp_path: Path) -> None:
    seen: list[tuple[bool, bool]] = []

    async def main() -> int:
        gateway = Gateway(loaded_from_yaml(CONFIG, tmp_path), "127.0.0.1", free_port())
        task = asyncio.create_task(gateway.serve())
        while not gateway.started:
            assert not task.done()
            await asyncio.sleep(0.02)
        model = cyclic_model(gateway.services.repository, "a")
        seen.append((gcpolicy.active(), gc.get_freeze_count() > 0))
        await gateway.services.repository.unload("m", "a")
        gc.collect()
        seen.append((model() is None, gc.get_freeze_count() == 0))
        gateway.request_stop()
        return await asyncio.wait_for(task, 20)

    assert asyncio.run(main()) == 0
    assert seen == [(True, True), (True, True)]
