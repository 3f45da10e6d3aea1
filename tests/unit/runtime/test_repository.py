"""The model repository: lazy loading, the memory budget with LRU eviction, requests in flight,
explicit unload, failed versions, and MLflow alias swaps (with a fake registry)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from modelrouter.config.loader import parse_config
from modelrouter.errors import ModelLoadError, ModelNotReady, UpstreamError
from modelrouter.protocol.types import InferenceRequest, Tensor
from modelrouter.runtime.repository import AliasMove, ModelRepository, VersionState
from modelrouter.sources import Fetched, Sources
from modelrouter.sources.cache import size_on_disk


def make_model(path: Path, slope: float) -> Path:
    x = np.arange(10, dtype=np.float64).reshape(-1, 1)
    joblib.dump(LinearRegression().fit(x, slope * x.ravel()), path)
    return path


def config(tmp_path: Path, n: int, server: str = "") -> Any:
    lines = [f"server: {{{server}}}", "models:"]
    for i in range(n):
        make_model(tmp_path / f"m{i}.joblib", float(i + 1))
        lines += [f"  m{i}:", "    versions:", f"      v1: {{storageUri: ./m{i}.joblib,"]
        lines[-1] += " modelFormat: sklearn}"
    return parse_config("\n".join(lines) + "\n")


def request(x: float = 2.0) -> InferenceRequest:
    return InferenceRequest([Tensor.from_array("x", np.array([[x]]))])


async def predict(repo: ModelRepository, model: str, version: str = "v1") -> float:
    async with repo.use(model, version) as runtime:
        outputs = await runtime.infer(request())
    return float(outputs[0].data.ravel()[0])


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1
        return self.now


def test_eager_by_default(tmp_path: Path) -> None:
    async def main() -> None:
        repo = ModelRepository(config(tmp_path, 2), tmp_path)
        assert not repo.all_ready()
        await repo.load_all()
        assert all(e.state is VersionState.READY for e in repo.entries())
        assert repo.all_ready()
        assert await predict(repo, "m1") == pytest.approx(4.0)
        await repo.close()

    asyncio.run(main())


def test_lazy_loads_on_first_request(tmp_path: Path) -> None:
    async def main() -> None:
        repo = ModelRepository(config(tmp_path, 3, "lazyLoading: true"), tmp_path)
        await repo.load_all()
        assert all(e.state is VersionState.UNLOADED for e in repo.entries())
        assert repo.all_ready(), "lazy versions are ready to load"
        assert await predict(repo, "m2") == pytest.approx(6.0)
        states = {e.model: e.state for e in repo.entries()}
        assert states == {
            "m0": VersionState.UNLOADED,
            "m1": VersionState.UNLOADED,
            "m2": VersionState.READY,
        }
        assert repo.stats.loads == 1
        # concurrent first requests load once
        results = await asyncio.gather(*(predict(repo, "m0") for _ in range(5)))
        assert results == [pytest.approx(2.0)] * 5
        assert repo.stats.loads == 2
        await repo.close()

    asyncio.run(main())


def test_sync_lookup_starts_a_lazy_load(tmp_path: Path) -> None:
    async def main() -> None:
        repo = ModelRepository(config(tmp_path, 1, "lazyLoading: true"), tmp_path)
        with pytest.raises(ModelNotReady, match="loading on demand"):
            repo.runtime("m0", "v1")
        for _ in range(200):
            if repo.entry("m0", "v1").state is VersionState.READY:
                break
            await asyncio.sleep(0.01)
        assert repo.runtime("m0", "v1") is not None
        await repo.close()

    asyncio.run(main())


def test_budget_evicts_least_recently_used(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = config(tmp_path, 5)
        size = size_on_disk(tmp_path / "m0.joblib")
        budget = int(size * 2.5)  # room for two
        cfg = config(tmp_path, 5, f"lazyLoading: true, modelMemoryBudget: {budget}")
        repo = ModelRepository(cfg, tmp_path, clock=Clock())
        for i in (0, 1, 0, 2):  # m1 is now the least recently used
            await predict(repo, f"m{i}")
        resident = {e.model for e in repo.resident()}
        assert resident == {"m0", "m2"}
        assert repo.stats.evictions == 1
        assert repo.resident_bytes() <= budget
        for i in range(5):
            assert await predict(repo, f"m{i}") == pytest.approx(2.0 * (i + 1))
            assert len(repo.resident()) <= 2
        assert repo.stats.evictions == 5  # m2, m0, m1, m2 again
        assert repo.entry("m1", "v1").ready, "an evicted version loads again on demand"
        await repo.close()

    asyncio.run(main())


def test_never_evicts_a_version_in_flight(tmp_path: Path) -> None:
    async def main() -> None:
        size = size_on_disk(make_model(tmp_path / "probe.joblib", 1.0))
        cfg = config(tmp_path, 3, f"lazyLoading: true, modelMemoryBudget: {int(size * 1.5)}")
        repo = ModelRepository(cfg, tmp_path, clock=Clock())
        async with repo.use("m0", "v1") as held:
            # m0 is busy: loading m1 cannot evict it, so it goes over budget
            assert await predict(repo, "m1") == pytest.approx(4.0)
            assert repo.entry("m0", "v1").state is VersionState.READY
            assert repo.stats.over_budget == 1
            # m1 is idle: loading m2 evicts m1, not the busy m0
            await predict(repo, "m2")
            assert repo.entry("m1", "v1").state is VersionState.UNLOADED
            assert repo.entry("m0", "v1").state is VersionState.READY
            outputs = await held.infer(request())
            assert float(outputs[0].data.ravel()[0]) == pytest.approx(2.0)
        assert repo.entry("m0", "v1").in_flight == 0
        await repo.close()

    asyncio.run(main())


def test_explicit_unload_holds_until_loaded(tmp_path: Path) -> None:
    async def main() -> None:
        repo = ModelRepository(config(tmp_path, 1, "lazyLoading: true"), tmp_path)
        await predict(repo, "m0")
        await repo.unload("m0", "v1")
        e = repo.entry("m0", "v1")
        assert e.state is VersionState.UNLOADED
        assert not e.ready
        assert not repo.all_ready()
        with pytest.raises(ModelNotReady, match="unloaded through the repository API"):
            await predict(repo, "m0")
        await repo.load("m0", "v1")
        assert await predict(repo, "m0") == pytest.approx(2.0)
        await repo.close()

    asyncio.run(main())


def test_failed_version_has_a_reason_and_others_serve(tmp_path: Path) -> None:
    async def main() -> None:
        cfg = parse_config(
            "models:\n"
            "  good: {versions: {v1: {storageUri: ./m.joblib, modelFormat: sklearn}}}\n"
            "  bad: {versions: {v1: {storageUri: ./corrupt.joblib, modelFormat: sklearn}}}\n"
        )
        make_model(tmp_path / "m.joblib", 1.0)
        (tmp_path / "corrupt.joblib").write_bytes(b"not a pickle at all")
        repo = ModelRepository(cfg, tmp_path)
        await repo.load_all()
        bad = repo.entry("bad", "v1")
        assert bad.state is VersionState.FAILED
        assert bad.error
        assert repo.stats.load_failures == 1
        with pytest.raises(ModelNotReady, match="FAILED"):
            await predict(repo, "bad")
        assert await predict(repo, "good") == pytest.approx(2.0)
        await repo.close()

    asyncio.run(main())


# --------------------------------------------------------------------------- aliases


class FakeRegistry:
    def __init__(self) -> None:
        self.aliases = {("churn", "champion"): "1"}
        self.reachable = True

    def alias_version(self, name: str, alias: str) -> str:
        if not self.reachable:
            raise UpstreamError("the MLflow tracking server is unreachable")
        version = self.aliases.get((name, alias))
        if version is None:
            raise ModelLoadError(f"alias '{alias}' of registered model '{name}' does not exist")
        return version


class FakeSources(Sources):
    """``models:/churn@champion`` -> ``<tmp>/v<N>.joblib`` for the alias's version N."""

    def __init__(self, base_dir: Path) -> None:
        super().__init__(base_dir, base_dir / "cache")
        self.registry = FakeRegistry()
        self.fetches = 0

    def mlflow(self) -> Any:
        return self.registry

    def fetch_sync(self, uri: str) -> Fetched:
        self.fetches += 1
        version = self.registry.alias_version("churn", "champion")
        path = self.base_dir / f"v{version}.joblib"
        info = {"mlflow_version": version, "mlflow_tags": {"stage": f"s{version}"}}
        return Fetched(path, size_on_disk(path), info, version)


def alias_config() -> Any:
    return parse_config(
        "models:\n"
        "  churn:\n"
        "    versions:\n"
        "      champ: {storageUri: 'models:/churn@champion', modelFormat: sklearn}\n"
    )


def test_alias_move_swaps_without_dropping_requests(tmp_path: Path) -> None:
    make_model(tmp_path / "v1.joblib", 1.0)
    make_model(tmp_path / "v2.joblib", 10.0)

    async def main() -> None:
        sources = FakeSources(tmp_path)
        repo = ModelRepository(alias_config(), tmp_path, sources)
        await repo.load_all()
        e = repo.entry("churn", "champ")
        assert e.mlflow_version == "1"
        sig = repo.runtime("churn", "champ").signature()
        assert sig.extra["mlflow_version"] == "1"
        assert sig.extra["mlflow_tags"] == {"stage": "s1"}
        assert await repo.refresh_aliases() == []

        stop = asyncio.Event()
        answers: list[float] = []

        async def client() -> None:
            while not stop.is_set():
                answers.append(await predict(repo, "churn", "champ"))
                await asyncio.sleep(0.001)

        clients = [asyncio.create_task(client()) for _ in range(4)]
        await asyncio.sleep(0.05)
        sources.registry.aliases[("churn", "champion")] = "2"
        moves = await repo.refresh_aliases()
        await asyncio.sleep(0.05)
        stop.set()
        await asyncio.gather(*clients)  # no request failed
        assert moves == [AliasMove("churn", "champ", "churn", "champion", "1", "2")]
        assert {round(a, 6) for a in answers} == {2.0, 20.0}
        assert answers[-1] == pytest.approx(20.0)
        assert e.mlflow_version == "2"
        assert repo.runtime("churn", "champ").signature().extra["mlflow_version"] == "2"
        assert repo.stats.alias_moves == 1
        await repo.close()

    asyncio.run(main())


def test_alias_moved_to_a_broken_version_keeps_the_old(tmp_path: Path) -> None:
    make_model(tmp_path / "v1.joblib", 1.0)
    (tmp_path / "v3.joblib").write_bytes(b"corrupt")

    async def main() -> None:
        sources = FakeSources(tmp_path)
        repo = ModelRepository(alias_config(), tmp_path, sources)
        await repo.load_all()
        sources.registry.aliases[("churn", "champion")] = "3"
        (move,) = await repo.refresh_aliases()
        assert move.after == "3"
        assert move.error
        assert await predict(repo, "churn", "champ") == pytest.approx(2.0)
        sources.registry.reachable = False
        assert await repo.refresh_aliases() == []  # logged, retried next time
        assert await predict(repo, "churn", "champ") == pytest.approx(2.0)
        await repo.close()

    asyncio.run(main())


def test_missing_alias_fails_then_loads_when_it_appears(tmp_path: Path) -> None:
    make_model(tmp_path / "v4.joblib", 4.0)

    async def main() -> None:
        sources = FakeSources(tmp_path)
        sources.registry.aliases.clear()
        repo = ModelRepository(alias_config(), tmp_path, sources)
        await repo.load_all()
        e = repo.entry("churn", "champ")
        assert e.state is VersionState.FAILED
        assert e.error == "alias 'champion' of registered model 'churn' does not exist"
        sources.registry.aliases[("churn", "champion")] = "4"
        await repo.refresh_aliases()
        assert repo.entry("churn", "champ").state.value == "READY"
        assert await predict(repo, "churn", "champ") == pytest.approx(8.0)
        await repo.close()

    asyncio.run(main())


def test_watch_aliases_reports_moves(tmp_path: Path) -> None:
    make_model(tmp_path / "v1.joblib", 1.0)
    make_model(tmp_path / "v2.joblib", 10.0)

    async def main() -> None:
        sources = FakeSources(tmp_path)
        repo = ModelRepository(alias_config(), tmp_path, sources)
        await repo.load_all()
        seen: list[AliasMove] = []
        moved = asyncio.Event()

        async def on_move(move: AliasMove) -> None:
            seen.append(move)
            moved.set()

        task = asyncio.create_task(repo.watch_aliases(0.01, on_move))
        sources.registry.aliases[("churn", "champion")] = "2"
        await asyncio.wait_for(moved.wait(), 5)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [(m.before, m.after) for m in seen] == [("1", "2")]
        await repo.close()

    asyncio.run(main())
