"""The shadow worker process: what runs there, and nothing more.

This is the module the worker imports (the pool's initializer and job function live here), so
it imports only what a prediction needs: the runtime interface, the batcher's grouping, the
protocol types. Not the web stack (Starlette, uvicorn, httpx), gRPC, the store or the CLI; a
test checks ``sys.modules`` inside a real worker. Optional packages that the built-in runtimes
never need (pandas and pyarrow, which scikit-learn imports when it finds them: about 65 MB) are
hidden until a version of another format (a custom class, an MLflow model) is loaded here; a
built-in version that does need one after all is refused and runs in a thread of the gateway.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelrouter.errors import ModelRouterError
from modelrouter.lifeline import die_with_parent
from modelrouter.protocol.types import InferenceRequest
from modelrouter.runtime.base import LocalRuntime
from modelrouter.runtime.batcher import Batcher, run_together

if TYPE_CHECKING:
    from modelrouter.config.schema import VersionSpec

LEAN_FORMATS = frozenset({"sklearn", "xgboost", "lightgbm", "onnx"})
"""Built-in runtimes that predict on NumPy arrays: none of them needs :data:`OPTIONAL`."""

OPTIONAL = ("pandas", "pyarrow")
"""Imported by scikit-learn (and XGBoost, LightGBM) only if present; a worker that hosts
:data:`LEAN_FORMATS` alone does without them."""

_RUNTIMES: dict[tuple[str, str, str], LocalRuntime] = {}
"""Loaded shadow versions, by (model, version, files)."""

_HIDDEN: frozenset[str] = frozenset()
"""The :data:`OPTIONAL` packages hidden in this process (see :func:`init_worker`)."""

Job = tuple[str, str, "VersionSpec", str, "str | None", InferenceRequest]
"""(model, version, spec, base_dir, files, request): one shadow call for the worker."""

Result = tuple[str, Any]
"""``("ok", outputs)``, ``("refused", why)`` (run it in the gateway) or ``("error", message)``."""


def init_worker(path: list[str], gateway: int, hide: tuple[str, ...] = ()) -> None:
    """The pool's initializer: die with the gateway, leave Ctrl-C to it, import custom models
    as it does, and make the packages in ``hide`` unimportable (``import pandas`` raises
    ``ImportError``, which scikit-learn takes as "not installed")."""
    global _HIDDEN
    die_with_parent(gateway)  # never an orphan, even when the gateway is SIGKILLed
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the gateway's to handle
    sys.path[:] = path  # custom models import as they do in the gateway
    for name in hide:
        if name not in sys.modules:
            sys.modules[name] = None  # type: ignore[assignment]
    _HIDDEN = frozenset(n for n in hide if sys.modules.get(n, 0) is None)


def _unhide() -> None:
    """Make the hidden packages importable again (a version that may need them is loading)."""
    global _HIDDEN
    for name in _HIDDEN:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]
    _HIDDEN = frozenset()


def _needs_hidden(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is an import of a package hidden here."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, ImportError) and (cur.name or "").split(".")[0] in _HIDDEN:
            return True
        cur = cur.__cause__ or cur.__context__
    return False


def _runtime(
    model: str, version: str, spec: VersionSpec, base_dir: str, files: str | None
) -> LocalRuntime:
    """The loaded copy of a shadow version (built on first use)."""
    from modelrouter.runtime.registry import create_runtime

    key = (model, version, files or "")
    runtime = _RUNTIMES.get(key)
    if runtime is None:
        if spec.format not in LEAN_FORMATS:
            _unhide()
        created = create_runtime(
            model, version, spec, Path(base_dir), Path(files) if files else None
        )
        if not isinstance(created, LocalRuntime):
            raise TypeError(f"{model}/{version} is not an in-process model")
        created.load()
        for old in [k for k in _RUNTIMES if k[:2] == key[:2]]:
            del _RUNTIMES[old]  # an alias moved: the old files are not needed any more
        runtime = _RUNTIMES[key] = created
    return runtime


def predict_many(jobs: list[Job]) -> list[Result]:
    """Each job's :data:`Result`, in order. Jobs for the same version whose requests share a
    :meth:`Batcher.key <modelrouter.runtime.batcher.Batcher.key>` share one ``predict``
    (:func:`~modelrouter.runtime.batcher.run_together`, as the gateway's batcher does)."""
    results: list[Result | None] = [None] * len(jobs)
    runtimes: dict[int, LocalRuntime] = {}
    for i, (model, version, spec, base_dir, files, _) in enumerate(jobs):
        try:
            runtimes[i] = _runtime(model, version, spec, base_dir, files)
        except Exception as exc:  # it loads in the gateway: a thread there will do
            results[i] = ("refused", f"{type(exc).__name__}: {exc}")
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i in runtimes:
        model, version, _, _, files, request = jobs[i]
        key = Batcher.key(request)
        groups.setdefault((model, version, files, key if key is not None else i), []).append(i)
    for members in groups.values():
        requests = [jobs[i][5] for i in members]
        outcomes = run_together(runtimes[members[0]].run, requests)
        for i, outcome in zip(members, outcomes, strict=True):
            if not isinstance(outcome, Exception):
                results[i] = ("ok", outcome)
            elif _needs_hidden(outcome):
                results[i] = ("refused", f"{type(outcome).__name__}: {outcome}")
            elif isinstance(outcome, ModelRouterError):
                results[i] = ("error", outcome.message)
            else:
                results[i] = ("error", f"{type(outcome).__name__}: {outcome}")
    return [r for r in results if r is not None]


def loaded_modules() -> list[str]:
    """A probe job: the names in this process's ``sys.modules`` (what the worker imported)."""
    return sorted(name for name, module in sys.modules.items() if module is not None)
