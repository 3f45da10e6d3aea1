"""Mirrored calls: the runner (:mod:`.runner`), the comparison of a shadow's answer with the
primary's (:mod:`.comparison`), and the worker process for in-process models (:mod:`.process`
on the gateway's side, :mod:`.worker` inside the worker).

The names below are imported on first use, so the worker process, which imports
``modelrouter.shadow.worker``, does not load the runner and the gateway's side of the pool.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelrouter.shadow.comparison import Comparison, compare
    from modelrouter.shadow.process import BATCH_SIZE, ProcessShadows
    from modelrouter.shadow.runner import PairStats, ShadowCall, ShadowObserver, ShadowRunner

_LAZY = {
    "BATCH_SIZE": "modelrouter.shadow.process",
    "Comparison": "modelrouter.shadow.comparison",
    "PairStats": "modelrouter.shadow.runner",
    "ProcessShadows": "modelrouter.shadow.process",
    "ShadowCall": "modelrouter.shadow.runner",
    "ShadowObserver": "modelrouter.shadow.runner",
    "ShadowRunner": "modelrouter.shadow.runner",
    "compare": "modelrouter.shadow.comparison",
}

__all__ = [
    "BATCH_SIZE",
    "Comparison",
    "PairStats",
    "ProcessShadows",
    "ShadowCall",
    "ShadowObserver",
    "ShadowRunner",
    "compare",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelrouter.shadow' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
