"""Load versions in a child process, as ``serve`` would, to report what would fail.

``modelrouter validate`` builds each local version's runtime in a spawned process (so a model
that crashes the interpreter, leaks memory or imports half a library does not take the CLI
with it), loads it and reads its signature. A crash or a hang is reported for that version
and a fresh process goes on with the others.
"""

from __future__ import annotations

import multiprocessing
import signal
import sys
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from modelrouter.config.schema import VersionSpec
from modelrouter.errors import ModelRouterError

LOAD_TIMEOUT = 120.0
"""Seconds one version may take to load in the child."""

Probe = tuple[str, str, VersionSpec]
"""(model, version, spec)."""


def _init(path: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.path[:] = path  # custom classes import as they do in the CLI


def _probe(model: str, version: str, spec: VersionSpec, base_dir: str) -> str | None:
    """In the child: None when the version loads and has a signature, else why not."""
    from modelrouter.runtime.registry import create_runtime

    try:
        runtime = create_runtime(model, version, spec, Path(base_dir))
        runtime.load()
        runtime.signature()
    except ModelRouterError as exc:
        return exc.message
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        1,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init,
        initargs=(list(sys.path),),
    )


def probe_versions(
    versions: Iterable[Probe], base_dir: Path, timeout: float = LOAD_TIMEOUT
) -> dict[tuple[str, str], str]:
    """Why each version that fails to load fails, by (model, version)."""
    problems: dict[tuple[str, str], str] = {}
    pool = _pool()
    try:
        for model, version, spec in versions:
            future = pool.submit(_probe, model, version, spec, str(base_dir))
            broken = False
            try:
                error = future.result(timeout)
            except BrokenProcessPool:
                error, broken = "the process loading it crashed (a native library failed?)", True
            except FutureTimeout:
                error, broken = f"it did not load within {timeout:g}s", True
            except Exception as exc:  # the spec or the answer did not cross the process line
                error = f"{type(exc).__name__}: {exc}"
            if error is not None:
                problems[model, version] = error
            if broken:
                _kill(pool)
                pool = _pool()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    return problems


def _kill(pool: ProcessPoolExecutor) -> None:
    processes = list(getattr(pool, "_processes", {}).values())  # no public way to stop a hang
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        if proc.is_alive():
            proc.kill()
            proc.join(5)
