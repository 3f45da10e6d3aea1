"""Shadow predictions of in-process models in a separate process.

A mirrored call to an in-process model costs as much CPU as the primary's. Run in a thread of
the gateway, it holds the GIL while the next primary request waits: a 100% mirror halves the
throughput at concurrency 1. Istio mirrors to another pod; this is the same idea on one
machine: a worker process (spawned, so no thread or lock of the gateway is inherited) loads
its own copy of each shadow version from the files the gateway resolved, and predicts there,
on another core. The gateway only pickles the inputs across.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from modelrouter.config.schema import VersionSpec
from modelrouter.protocol.types import InferenceRequest, Tensor
from modelrouter.runtime.base import LocalRuntime

log = logging.getLogger(__name__)

_RUNTIMES: dict[tuple[str, str, str], LocalRuntime] = {}
"""In the worker process: loaded shadow versions, by (model, version, files)."""


def _init_worker(path: list[str]) -> None:
    sys.path[:] = path  # custom models import as they do in the gateway


def _predict(
    model: str,
    version: str,
    spec: VersionSpec,
    base_dir: str,
    files: str | None,
    request: InferenceRequest,
) -> list[Tensor]:
    """In the worker process: the version's outputs for ``request``."""
    from modelrouter.runtime.registry import create_runtime

    key = (model, version, files or "")
    runtime = _RUNTIMES.get(key)
    if runtime is None:
        created = create_runtime(
            model, version, spec, Path(base_dir), Path(files) if files else None
        )
        if not isinstance(created, LocalRuntime):
            raise TypeError(f"{model}/{version} is not an in-process model")
        created.load()
        for old in [k for k in _RUNTIMES if k[:2] == key[:2]]:
            del _RUNTIMES[old]  # an alias moved: the old files are not needed any more
        runtime = _RUNTIMES[key] = created
    return runtime.run(request)


class ProcessShadows:
    """Runs in-process shadow versions in one worker process, started on first use."""

    def __init__(self, base_dir: Path, workers: int = 1) -> None:
        self.base_dir = base_dir
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._refused: set[tuple[str, str]] = set()

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(list(sys.path),),
            )
        return self._pool

    def accepts(self, runtime: LocalRuntime) -> bool:
        return (runtime.model, runtime.version) not in self._refused

    async def run(self, runtime: LocalRuntime, request: InferenceRequest) -> list[Tensor]:
        """``runtime``'s outputs for ``request``, computed in the worker process. A version the
        worker cannot load (say, a class defined in ``__main__``) runs in a thread instead."""
        slim = InferenceRequest(request.inputs, request.id, request.parameters, request.outputs)
        loop = asyncio.get_running_loop()
        files = str(runtime.path) if runtime.path is not None else None
        try:
            return await loop.run_in_executor(
                self._executor(),
                _predict,
                runtime.model,
                runtime.version,
                runtime.spec,
                str(self.base_dir),
                files,
                slim,
            )
        except BrokenProcessPool:
            self._pool = None  # the worker died (killed, out of memory): a new one next time
            raise
        except (TypeError, ImportError, AttributeError, OSError) as exc:
            log.warning(
                "shadow %s/%s cannot run in the worker process (%s); using a thread",
                runtime.model,
                runtime.version,
                exc,
            )
            self._refused.add((runtime.model, runtime.version))
            return await asyncio.to_thread(runtime.run, request)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
