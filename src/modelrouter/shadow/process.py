"""Shadow predictions of in-process models in a separate process.

A mirrored call to an in-process model costs as much CPU as the primary's. Run in a thread of
the gateway, it holds the GIL while the next primary request waits: a 100% mirror halves the
throughput at concurrency 1. Istio mirrors to another pod; this is the same idea on one
machine: a worker process (spawned, so no thread or lock of the gateway is inherited) loads
its own copy of each shadow version from the files the gateway resolved, and predicts there,
on another core. The gateway only pickles the inputs across. What runs in the worker is in
:mod:`modelrouter.shadow.worker`, the only module of ours the worker imports.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

from modelrouter.errors import InferenceFailed
from modelrouter.protocol.types import InferenceRequest, Tensor
from modelrouter.runtime.base import LocalRuntime
from modelrouter.shadow.worker import OPTIONAL, Job, Result, init_worker, predict_many

log = logging.getLogger(__name__)

BATCH_WINDOW = 0.01
"""Seconds shadow calls wait to travel together to the worker (they are off the response
path; the wait only delays the comparison)."""
BATCH_SIZE = 64


class ProcessShadows:
    """Runs in-process shadow versions in one worker process, started on first use."""

    def __init__(self, base_dir: Path, workers: int = 1) -> None:
        self.base_dir = base_dir
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None
        self._refused: set[tuple[str, str]] = set()
        self._pending: list[tuple[Job, asyncio.Future[Result]]] = []
        self._timer: asyncio.TimerHandle | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=init_worker,
                initargs=(list(sys.path), os.getpid(), OPTIONAL),
            )
        return self._pool

    def start(self) -> None:
        """Spawn the worker now (it imports for a second or two) rather than on the first
        shadow call, when mirrored work would pile up waiting for it."""
        self._executor().submit(os.getpid)

    def accepts(self, runtime: LocalRuntime) -> bool:
        return (runtime.model, runtime.version) not in self._refused

    async def run(self, runtime: LocalRuntime, request: InferenceRequest) -> list[Tensor]:
        """``runtime``'s outputs for ``request``, computed in the worker process. Calls travel
        in batches (every ``BATCH_WINDOW`` seconds, or ``BATCH_SIZE`` calls), so the cost of
        crossing to the other process is paid once per batch. A version the worker cannot
        load (say, a class defined in ``__main__``) runs in a thread instead."""
        slim = InferenceRequest(request.inputs, request.id, request.parameters, request.outputs)
        files = str(runtime.path) if runtime.path is not None else None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        job: Job = (runtime.model, runtime.version, runtime.spec, str(self.base_dir), files, slim)
        self._pending.append((job, future))
        if len(self._pending) >= BATCH_SIZE:
            self._send()
        elif self._timer is None:
            self._timer = loop.call_later(BATCH_WINDOW, self._send)
        status, value = await future
        if status == "ok":
            outputs: list[Tensor] = value
            return outputs
        if status == "refused":
            log.warning(
                "shadow %s/%s cannot run in the worker process (%s); using a thread",
                runtime.model,
                runtime.version,
                value,
            )
            self._refused.add((runtime.model, runtime.version))
            return await asyncio.to_thread(runtime.run, request)
        raise InferenceFailed(str(value))

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._pending = self._pending, []
        if not batch:
            return
        loop = asyncio.get_running_loop()
        done = loop.run_in_executor(self._executor(), predict_many, [j for j, _ in batch])

        def deliver(f: asyncio.Future[list[Result]]) -> None:
            if f.cancelled():  # the gateway is stopping: the batch was never run
                results = [("error", "the shadow worker stopped")] * len(batch)
            else:
                try:
                    results = f.result()
                except BrokenProcessPool as exc:
                    self._pool = None  # the worker died (killed, out of memory): a new one next
                    results = [("error", f"the shadow worker process died: {exc}")] * len(batch)
                except Exception as exc:
                    results = [("error", f"{type(exc).__name__}: {exc}")] * len(batch)
            for (_, waiter), result in zip(batch, results, strict=True):
                if not waiter.done():
                    waiter.set_result(result)

        done.add_done_callback(deliver)

    async def close(self, grace: float = 5.0) -> None:
        """Stop the worker and wait for it, up to ``grace`` seconds (it may still be importing
        when the gateway stops at once). Waiting lets the pool release its queues, so the
        semaphores they hold are unregistered before the gateway exits (no "leaked semaphore
        objects" from the resource tracker). Past ``grace`` the gateway goes on; the worker
        dies with it (:mod:`modelrouter.lifeline`)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._pool is None:
            return
        pool, self._pool = self._pool, None
        done = threading.Event()

        def stop() -> None:
            pool.shutdown(wait=True, cancel_futures=True)
            done.set()

        # a thread of its own: a default-executor thread would hold up the loop's shutdown
        threading.Thread(target=stop, name="shadow-worker-stop", daemon=True).start()
        # past ``grace`` the worker is killed: the interpreter's exit joins the pool's manager
        # thread, so a worker left running would hold up the gateway's exit
        deadline = time.monotonic() + grace
        killed = False
        while not done.is_set():
            if time.monotonic() > deadline:
                if killed:
                    log.warning("the shadow worker's pool did not close after SIGKILL")
                    return
                log.warning("the shadow worker did not stop within %gs; killing it", grace)
                _kill_workers(pool)
                killed = True
                deadline = time.monotonic() + grace
            await asyncio.sleep(0.02)


def _kill_workers(pool: ProcessPoolExecutor) -> None:
    """SIGKILL the pool's worker processes (Python 3.14 has ``kill_workers()``; before it, the
    processes are only reachable through the pool's ``_processes``)."""
    processes: dict[int, Any] = getattr(pool, "_processes", None) or {}
    for process in list(processes.values()):
        with contextlib.suppress(Exception):
            process.kill()
