"""How a shadow's answer is compared with the primary's: element by element."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from modelrouter.protocol.types import Tensor


@dataclass(slots=True, frozen=True)
class Comparison:
    elements: int
    agreeing: int
    abs_diff_sum: float


def compare(primary: Tensor, shadow: Tensor) -> Comparison:
    """Element-wise: equal values agree; numeric pairs add their absolute difference."""
    a, b = primary.data, shadow.data
    if a.shape != b.shape:
        return Comparison(max(a.size, 1), 0, 0.0)
    n = int(a.size)
    if n == 0:
        return Comparison(0, 0, 0.0)
    agreeing = int(np.count_nonzero(a == b))
    diff = 0.0
    if a.dtype.kind in "biuf" and b.dtype.kind in "biuf":
        diff = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).sum())
    return Comparison(n, agreeing, diff)
