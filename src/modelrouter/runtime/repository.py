"""The loaded versions of every model, with their state and load errors."""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from modelrouter.config.schema import Config, VersionSpec
from modelrouter.errors import ModelNotFound, ModelNotReady, ModelRouterError, VersionNotFound
from modelrouter.runtime.base import ModelRuntime
from modelrouter.runtime.registry import create_runtime

log = logging.getLogger(__name__)


class VersionState(enum.Enum):
    UNLOADED = "UNLOADED"
    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"


@dataclass(slots=True)
class VersionEntry:
    model: str
    version: str
    spec: VersionSpec
    state: VersionState = VersionState.UNLOADED
    runtime: ModelRuntime | None = None
    error: str | None = None
    loaded_at: float | None = None
    load_seconds: float | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    @property
    def ready(self) -> bool:
        return self.state is VersionState.READY


class ModelRepository:
    """Holds one :class:`VersionEntry` per configured version. A version that fails to load is
    FAILED with its error; the others keep serving."""

    def __init__(self, config: Config, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.models: dict[str, dict[str, VersionEntry]] = {
            name: {v: VersionEntry(name, v, spec) for v, spec in m.versions.items()}
            for name, m in config.models.items()
        }

    def entry(self, model: str, version: str) -> VersionEntry:
        versions = self.models.get(model)
        if versions is None:
            raise ModelNotFound(model)
        found = versions.get(version)
        if found is None:
            raise VersionNotFound(model, version)
        return found

    def versions(self, model: str) -> dict[str, VersionEntry]:
        versions = self.models.get(model)
        if versions is None:
            raise ModelNotFound(model)
        return versions

    def runtime(self, model: str, version: str) -> ModelRuntime:
        """The ready runtime of a version, or :class:`ModelNotReady` with the reason."""
        e = self.entry(model, version)
        if e.runtime is None or e.state is not VersionState.READY:
            reason = f": {e.error}" if e.error else ""
            raise ModelNotReady(
                f"model '{model}' version '{version}' is not ready ({e.state.value}){reason}"
            )
        return e.runtime

    def all_ready(self) -> bool:
        return all(e.ready for vs in self.models.values() for e in vs.values())

    async def load(self, model: str, version: str) -> VersionEntry:
        e = self.entry(model, version)
        async with e._lock:
            if e.state is VersionState.READY:
                return e
            e.state = VersionState.LOADING
            e.error = None
            start = time.perf_counter()
            runtime: ModelRuntime | None = None
            try:
                runtime = create_runtime(model, version, e.spec, self.base_dir)
                await runtime.aload()
            except ModelRouterError as exc:
                e.state, e.error = VersionState.FAILED, exc.message
            except Exception as exc:
                e.state, e.error = VersionState.FAILED, f"{type(exc).__name__}: {exc}"
            else:
                e.runtime = runtime
                e.state = VersionState.READY
                e.loaded_at = time.time()
            e.load_seconds = time.perf_counter() - start
            if e.state is VersionState.FAILED:
                log.error("model %s version %s failed to load: %s", model, version, e.error)
                if runtime is not None:
                    await _close_quietly(runtime)
            else:
                log.info("model %s version %s ready in %.2fs", model, version, e.load_seconds)
            return e

    async def load_all(self) -> None:
        """Remote versions connect concurrently; in-process ones load one at a time, because
        unpickling imports modules, and concurrent imports in threads can deadlock."""
        entries = [e for vs in self.models.values() for e in vs.values()]

        async def load_local() -> None:
            for e in entries:
                if not e.spec.is_remote:
                    await self.load(e.model, e.version)

        await asyncio.gather(
            load_local(), *(self.load(e.model, e.version) for e in entries if e.spec.is_remote)
        )

    async def unload(self, model: str, version: str) -> VersionEntry:
        e = self.entry(model, version)
        async with e._lock:
            runtime, e.runtime = e.runtime, None
            e.state = VersionState.UNLOADED
            e.error = None
            if runtime is not None:
                await _close_quietly(runtime)
            return e

    async def close(self) -> None:
        for vs in self.models.values():
            for v in vs:
                await self.unload(vs[v].model, v)


async def _close_quietly(runtime: ModelRuntime) -> None:
    try:
        await runtime.close()
    except Exception:
        log.exception("closing %s/%s failed", runtime.model, runtime.version)
