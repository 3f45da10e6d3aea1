"""A cheaper answer to scikit-learn's "is this a dataframe?" when the input is a numpy array.

Since 1.8, scikit-learn asks narwhals on every ``predict`` whether its input is a dataframe or
a series: in ``check_array`` and again in the feature-name check. narwhals answers by looking
the object up against every dataframe library it knows, with ``inspect.getattr_static``; for a
plain ``numpy.ndarray`` the answer is always no, and asking cost 30 us of a one-row
``LogisticRegression.predict`` of 74 us (scikit-learn 1.9.1, narwhals 2.29).

:func:`install` wraps ``narwhals.stable.v2.dependencies.is_into_dataframe`` and
``is_into_series`` (the module scikit-learn calls them from) so that an object whose type is
exactly ``numpy.ndarray`` gets ``False`` at once; every other object, a pandas or polars frame
included, gets narwhals' own answer. The runtimes hand scikit-learn nothing but ndarrays, so
what a model computes does not change (tests/unit/runtime/test_sklearn_checks.py). It is
installed only when the two functions exist and answer ``False`` for an ndarray, so another
narwhals or scikit-learn leaves everything as it is.
"""

from __future__ import annotations

import functools
import importlib
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

CHECKS = ("is_into_dataframe", "is_into_series")
_MODULE = "narwhals.stable.v2.dependencies"
_lock = threading.Lock()
_installed = False


def _fast(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    @functools.wraps(check)
    def answer(obj: Any) -> bool:
        if type(obj) is np.ndarray:
            return False
        return check(obj)

    answer.__modelrouter_fast__ = True  # type: ignore[attr-defined]
    return answer


def install() -> bool:
    """Wrap narwhals' two checks, once per process. True when they are wrapped."""
    global _installed
    with _lock:
        if _installed:
            return True
        try:
            module = importlib.import_module(_MODULE)
        except ImportError:  # an older scikit-learn that does not use narwhals
            return False
        found = [getattr(module, name, None) for name in CHECKS]
        probe = np.zeros((1, 1))
        checks: list[Callable[[Any], bool]] = []
        for check in found:
            if not callable(check) or check(probe) is not False:
                return False
            checks.append(check)
        for name, check in zip(CHECKS, checks, strict=True):
            if not getattr(check, "__modelrouter_fast__", False):
                setattr(module, name, _fast(check))
        _installed = True
        return True
