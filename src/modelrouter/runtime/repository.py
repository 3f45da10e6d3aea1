"""The versions of every model, with their state, load errors, memory and requests in flight.

A version is UNLOADED, LOADING, READY or FAILED (with the reason). Requests reach a runtime
through :meth:`ModelRepository.use`, which loads an unloaded version on first use (lazy
loading) and counts the request in flight while it runs.

Memory budget (``server.modelMemoryBudget``): each version is charged its artifact size on
disk, known before it loads, so room is made *before* the load instead of after the memory
spike; an RSS delta would be noisy (allocator, imports, other loads at the same time) and
would charge the first model of a library for the library. Before a load that would exceed the
budget, READY versions with no request in flight are unloaded, least recently used first. A
version with requests in flight is never evicted; when nothing can be evicted the load goes
ahead over budget and it is logged. Evicted versions load again on their next request.

MLflow aliases (``models:/name@alias``) are live: :meth:`ModelRepository.refresh_aliases`
loads the version an alias moved to next to the old one and swaps it in, so no request is
dropped; the old runtime is closed once its requests are done.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from modelrouter import gcpolicy
from modelrouter.config.schema import Config, VersionSpec
from modelrouter.errors import ModelNotFound, ModelNotReady, ModelRouterError, VersionNotFound
from modelrouter.runtime.base import ModelRuntime
from modelrouter.runtime.registry import create_runtime
from modelrouter.sources import Fetched, Sources
from modelrouter.sources.mlflow import is_mlflow_uri, parse_mlflow_uri

log = logging.getLogger(__name__)

RETRY_FAILED_AFTER = 30.0
"""With on-demand loading, a request retries a FAILED version's load after this many seconds."""
DRAIN_TIMEOUT = 30.0
"""How long a replaced or unloaded runtime waits for its requests before it is closed."""


class VersionState(enum.Enum):
    UNLOADED = "UNLOADED"
    LOADING = "LOADING"
    READY = "READY"
    FAILED = "FAILED"


LOAD_FAILED = "load failed; see the server log"
"""What callers without the admin token learn of a load error."""


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
    on_demand: bool = False
    """Loaded on first request (lazy loading or a memory budget): UNLOADED counts as ready."""
    held: bool = False
    """Unloaded through the repository API: stays unloaded until loaded through it."""
    size: int = 0
    """Bytes charged to the memory budget (artifact size on disk)."""
    in_flight: int = 0
    last_used: float = 0.0
    failed_at: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)
    """Where the files came from: resolved MLflow version, tags (shown in model metadata)."""
    mlflow_version: str | None = None
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    _idle: asyncio.Event | None = field(default=None, repr=False)

    @property
    def ready(self) -> bool:
        """READY, or loadable on its first request."""
        if self.state is VersionState.READY:
            return True
        return (
            self.on_demand
            and not self.held
            and self.state in (VersionState.UNLOADED, VersionState.LOADING)
        )

    @property
    def alias(self) -> tuple[str, str] | None:
        """``(registered model, alias)`` for a ``models:/name@alias`` version."""
        uri = self.spec.storageUri
        if uri is None or not is_mlflow_uri(uri):
            return None
        try:
            target = parse_mlflow_uri(uri)
        except ModelRouterError:
            return None
        if target.name is None or target.alias is None:
            return None
        return target.name, target.alias

    def reason(self, full: bool = False) -> str | None:
        """Why the version failed to load: the error itself for the admin (``full``), a short
        :data:`LOAD_FAILED` for anyone else. Load errors hold file paths, backend URLs and
        bytes of a corrupt artifact; they are logged when they happen."""
        if not self.error:
            return None
        return self.error if full else LOAD_FAILED

    def not_ready(self) -> ModelNotReady:
        """The error for a request to this version: the short reason for the caller, the
        load error in full as ``internal`` (logs, audit)."""
        if self.held:
            why = "it was unloaded through the repository API (POST .../load to load it)"
            return ModelNotReady(
                f"model '{self.model}' version '{self.version}' is not ready: {why}"
            )
        head = f"model '{self.model}' version '{self.version}' is not ready ({self.state.value})"
        if not self.error:
            return ModelNotReady(head)
        return ModelNotReady(f"{head}: {self.reason()}", f"{head}: {self.error}")


@dataclass(slots=True)
class RepositoryStats:
    """Counters for the metrics exporter."""

    loads: int = 0
    load_failures: int = 0
    evictions: int = 0
    unloads: int = 0
    alias_moves: int = 0
    over_budget: int = 0
    """Loads that went ahead over budget because every resident version was busy."""


@dataclass(frozen=True, slots=True)
class AliasMove:
    """An MLflow alias moved and the gateway swapped (or failed to swap) the version."""

    model: str
    version: str
    name: str
    alias: str
    before: str | None
    after: str
    error: str | None = None


class _Lease:
    """``async with repository.use(model, version) as runtime``: the runtime, counted in flight."""

    __slots__ = ("_entry", "_repo")

    def __init__(self, repo: ModelRepository, entry: VersionEntry) -> None:
        self._repo = repo
        self._entry = entry

    async def __aenter__(self) -> ModelRuntime:
        e = self._entry
        e.in_flight += 1
        try:
            runtime = e.runtime
            if runtime is None or e.state is not VersionState.READY:
                runtime = await self._repo._load_for_request(e)
        except BaseException:
            e.in_flight -= 1
            raise
        e.last_used = self._repo.clock()
        return runtime

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        e = self._entry
        e.in_flight -= 1
        e.last_used = self._repo.clock()
        if e.in_flight == 0 and e._idle is not None:
            e._idle.set()
            e._idle = None


class ModelRepository:
    """Holds one :class:`VersionEntry` per configured version. A version that fails to load is
    FAILED with its error; the others keep serving."""

    def __init__(
        self,
        config: Config,
        base_dir: Path,
        sources: Sources | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        server = config.server
        self.base_dir = base_dir
        self.sources = sources or Sources.from_settings(server, base_dir)
        self.clock = clock
        self.lazy = server.lazyLoading
        self.budget: int | None = server.modelMemoryBudget
        on_demand = self.lazy or self.budget is not None
        self.models: dict[str, dict[str, VersionEntry]] = {
            name: {
                v: VersionEntry(name, v, spec, on_demand=on_demand)
                for v, spec in m.versions.items()
            }
            for name, m in config.models.items()
        }
        self.stats = RepositoryStats()
        self._local_load = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ lookups

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

    def entries(self) -> list[VersionEntry]:
        return [e for vs in self.models.values() for e in vs.values()]

    def runtime(self, model: str, version: str) -> ModelRuntime:
        """The ready runtime of a version, or :class:`ModelNotReady` with the reason. An
        on-demand version that is not loaded starts loading in the background."""
        e = self.entry(model, version)
        if e.runtime is None or e.state is not VersionState.READY:
            if e.ready and e.state is VersionState.UNLOADED:
                self._spawn(self.load(model, version))
                raise ModelNotReady(
                    f"model '{model}' version '{version}' is loading on demand; retry shortly"
                )
            raise e.not_ready()
        return e.runtime

    def use(self, model: str, version: str) -> _Lease:
        """``async with repository.use(model, version) as runtime:``: the ready runtime,
        loaded first if it is not (on demand), counted in flight (so never evicted) until the
        block ends. Raises :class:`ModelNotReady` with the reason when it cannot load."""
        return _Lease(self, self.entry(model, version))

    async def _load_for_request(self, e: VersionEntry) -> ModelRuntime:
        if e.held:
            raise e.not_ready()
        if e.state is VersionState.FAILED and not (
            e.on_demand and self.clock() - e.failed_at >= RETRY_FAILED_AFTER
        ):
            raise e.not_ready()
        if e.state is VersionState.UNLOADED and not e.on_demand:
            raise e.not_ready()
        await self.load(e.model, e.version)
        if e.runtime is None or e.state is not VersionState.READY:
            raise e.not_ready()
        return e.runtime

    def all_ready(self) -> bool:
        return all(e.ready for e in self.entries())

    def resident(self) -> list[VersionEntry]:
        """Versions holding memory: READY, or LOADING with their size known."""
        return [
            e
            for e in self.entries()
            if e.state is VersionState.READY or (e.state is VersionState.LOADING and e.size)
        ]

    def resident_bytes(self) -> int:
        return sum(e.size for e in self.resident())

    # ------------------------------------------------------------------ load and unload

    async def load(self, model: str, version: str) -> VersionEntry:
        """Load a version (no-op when READY; a FAILED one is retried). Lifts an explicit
        unload: only the repository API (and start-up) call this for a held version."""
        e = self.entry(model, version)
        e.held = False
        async with e._lock:
            if e.state is VersionState.READY:
                return e
            e.state = VersionState.LOADING
            e.error = None
            start = time.perf_counter()
            runtime: ModelRuntime | None = None
            try:
                fetched = await self._fetch(e)
                e.size = fetched.size if fetched else 0
                await self._make_room(e.size, exclude=e)
                runtime = await self._build(e, fetched)
            except ModelRouterError as exc:
                e.state, e.error = VersionState.FAILED, exc.internal
            except Exception as exc:
                e.state, e.error = VersionState.FAILED, f"{type(exc).__name__}: {exc}"
            else:
                e.runtime = runtime
                e.state = VersionState.READY
                e.loaded_at = time.time()
                e.last_used = self.clock()
                if fetched is not None:
                    e.info = dict(fetched.info)
                    e.mlflow_version = fetched.mlflow_version
            e.load_seconds = time.perf_counter() - start
            if e.state is VersionState.FAILED:
                e.size = 0
                e.failed_at = self.clock()
                self.stats.load_failures += 1
                log.error("model %s version %s failed to load: %s", model, version, e.error)
                if runtime is not None:
                    await _close_quietly(runtime)
            else:
                self.stats.loads += 1
                log.info("model %s version %s ready in %.2fs", model, version, e.load_seconds)
                gcpolicy.loaded()
            return e

    async def _fetch(self, e: VersionEntry, uri: str | None = None) -> Fetched | None:
        uri = uri or e.spec.storageUri
        if uri is None:
            return None
        return await self.sources.fetch(uri)

    async def _build(self, e: VersionEntry, fetched: Fetched | None) -> ModelRuntime:
        """A loaded runtime. In-process models load one at a time: unpickling imports modules,
        and concurrent imports in threads can deadlock."""
        runtime = create_runtime(
            e.model,
            e.version,
            e.spec,
            self.base_dir,
            fetched.path if fetched else None,
            fetched.info if fetched else None,
        )
        try:
            if e.spec.is_remote:
                await runtime.aload()
            else:
                async with self._local_load:
                    await runtime.aload()
        except BaseException:
            await _close_quietly(runtime)
            raise
        return runtime

    async def _make_room(self, size: int, exclude: VersionEntry) -> None:
        """Evict idle versions, least recently used first, until ``size`` more bytes fit."""
        if self.budget is None:
            return
        while True:
            used = sum(e.size for e in self.resident() if e is not exclude)
            if used + size <= self.budget:
                return
            idle = [
                e
                for e in self.entries()
                if e is not exclude
                and e.state is VersionState.READY
                and e.in_flight == 0
                and not e._lock.locked()
            ]
            if not idle:
                self.stats.over_budget += 1
                log.warning(
                    "memory budget %d bytes exceeded (%d resident + %d loading): every resident "
                    "version has requests in flight",
                    self.budget,
                    used,
                    size,
                )
                return
            victim = min(idle, key=lambda e: e.last_used)
            await self._evict(victim)

    async def _evict(self, e: VersionEntry) -> None:
        # no await before the state changes: a request cannot slip in between the check
        # (in_flight == 0, done by the caller in the same step) and the unload
        runtime, e.runtime = e.runtime, None
        e.state = VersionState.UNLOADED
        e.size = 0
        self.stats.evictions += 1
        log.info("model %s version %s evicted (least recently used)", e.model, e.version)
        if runtime is not None:
            await _close_quietly(runtime)

    async def load_all(self) -> None:
        """Load every version, unless loading is lazy (then each loads on its first request).
        Remote versions connect concurrently; in-process ones load one at a time. Versions
        held by an explicit unload (a repository intent) stay unloaded."""
        if self.lazy:
            return
        entries = [e for e in self.entries() if not e.held]

        async def load_local() -> None:
            for e in entries:
                if not e.spec.is_remote:
                    await self.load(e.model, e.version)

        await asyncio.gather(
            load_local(), *(self.load(e.model, e.version) for e in entries if e.spec.is_remote)
        )

    async def unload(self, model: str, version: str, *, explicit: bool = True) -> VersionEntry:
        """Unload a version. ``explicit`` (the repository API) keeps it unloaded until it is
        loaded through the API again; requests meanwhile get 503 saying so. Requests already
        running finish on the old runtime."""
        e = self.entry(model, version)
        if explicit:
            e.held = True
        async with e._lock:
            runtime, e.runtime = e.runtime, None
            e.state = VersionState.UNLOADED
            e.error = None
            e.size = 0
        if runtime is not None:
            self.stats.unloads += 1
            await self._drain(e)
            await _close_quietly(runtime)
        return e

    async def _drain(self, e: VersionEntry) -> None:
        """Wait (at most :data:`DRAIN_TIMEOUT`) until no request of ``e`` is in flight."""
        if e.in_flight == 0:
            return
        if e._idle is None:
            e._idle = asyncio.Event()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(e._idle.wait(), DRAIN_TIMEOUT)

    async def close(self) -> None:
        for t in list(self._background):
            t.cancel()
        for e in self.entries():
            await self.unload(e.model, e.version)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a synchronous caller): nothing to run it on
            coro.close()
            return
        task = loop.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ MLflow aliases

    async def refresh_aliases(self) -> list[AliasMove]:
        """One pass over the ``models:/name@alias`` versions: a READY one whose alias now
        points elsewhere is reloaded and swapped; a FAILED one is retried (the alias may
        exist now). Unloaded ones resolve the alias when they load anyway."""
        moves: list[AliasMove] = []
        for e in self.entries():
            alias = e.alias
            if alias is None or e.held:
                continue
            if e.state is VersionState.FAILED:
                await self.load(e.model, e.version)
                continue
            if e.state is not VersionState.READY:
                continue
            name, alias_name = alias
            try:
                current = await asyncio.to_thread(
                    self.sources.mlflow().alias_version, name, alias_name
                )
            except ModelRouterError as exc:
                log.warning(
                    "model %s version %s: cannot check alias %s@%s: %s",
                    e.model,
                    e.version,
                    name,
                    alias_name,
                    exc.message,
                )
                continue
            if current == e.mlflow_version:
                continue
            moves.append(await self._swap(e, name, alias_name, current))
        return moves

    async def swap_to(self, e: VersionEntry, name: str, alias: str, target: str) -> AliasMove:
        """Swap the ``models:/name@alias`` version ``e`` to registered version ``target``
        exactly (not to wherever the alias points by now): what a gateway following the
        cluster's alias watcher does (see :mod:`modelrouter.runtime.aliases`)."""
        return await self._swap(e, name, alias, target, pinned=True)

    async def _swap(
        self, e: VersionEntry, name: str, alias: str, target: str, *, pinned: bool = False
    ) -> AliasMove:
        before = e.mlflow_version
        try:
            fetched = await self._fetch(e, f"models:/{name}/{target}" if pinned else None)
            assert fetched is not None
            if pinned:  # fetched by version: still shown as following the alias
                info = {**fetched.info, "mlflow_alias": alias, "mlflow_uri": e.spec.storageUri}
                fetched = dataclasses.replace(fetched, info=info)
            await self._make_room(fetched.size, exclude=e)
            runtime = await self._build(e, fetched)
        except ModelRouterError as exc:
            error = exc.message
        except Exception as exc:
            error = f"{type(exc).__name__}: {exc}"
        else:
            async with e._lock:
                if e.state is not VersionState.READY:  # unloaded meanwhile: keep it so
                    await _close_quietly(runtime)
                    return AliasMove(e.model, e.version, name, alias, before, target, "unloaded")
                old, e.runtime = e.runtime, runtime
                e.info = dict(fetched.info)
                e.mlflow_version = fetched.mlflow_version
                e.size = fetched.size
                e.loaded_at = time.time()
            self.stats.alias_moves += 1
            after = fetched.mlflow_version or target
            log.info(
                "model %s version %s: %s@%s moved %s -> %s, swapped",
                e.model,
                e.version,
                name,
                alias,
                before,
                after,
            )
            if old is not None:
                self._spawn(self._retire(e, old))
            return AliasMove(e.model, e.version, name, alias, before, after)
        log.error(
            "model %s version %s: %s@%s moved to %s, which failed to load (the old version "
            "keeps serving): %s",
            e.model,
            e.version,
            name,
            alias,
            target,
            error,
        )
        return AliasMove(e.model, e.version, name, alias, before, target, error)

    async def _retire(self, e: VersionEntry, old: ModelRuntime) -> None:
        await self._drain(e)
        await _close_quietly(old)

    async def watch_aliases(
        self, interval: float, on_move: Callable[[AliasMove], Awaitable[None]]
    ) -> None:
        """Every ``interval`` seconds, :meth:`refresh_aliases`; ``on_move`` for each move (the
        app writes it to the audit log). Runs until cancelled; returns at once when no version
        follows an alias."""
        if not any(e.alias for e in self.entries()):
            return
        while True:
            await asyncio.sleep(interval)
            try:
                moves = await self.refresh_aliases()
            except Exception:
                log.exception("checking MLflow aliases failed")
                continue
            for move in moves:
                try:
                    await on_move(move)
                except Exception:
                    log.exception("recording the move of %s@%s failed", move.name, move.alias)


async def _close_quietly(runtime: ModelRuntime) -> None:
    """Close a runtime the repository dropped (every path that drops one ends here), and let
    the collector free it: see :mod:`modelrouter.gcpolicy`."""
    try:
        await runtime.close()
    except Exception:
        log.exception("closing %s/%s failed", runtime.model, runtime.version)
    finally:
        gcpolicy.released()
