"""Durations as Kubernetes objects write them: Istio's and Flagger's ``0.25s``, ``30s``."""

from __future__ import annotations


def seconds_text(seconds: float) -> str:
    """``0.25`` -> ``0.25s``, ``30`` -> ``30s`` (Istio reads both; no exponent ever)."""
    text = f"{seconds:.6f}".rstrip("0").rstrip(".")
    return f"{text or '0'}s"


def flagger_interval(seconds: float) -> str:
    """Flagger's ``interval``: whole seconds or minutes (``30s``, ``1m``)."""
    whole = max(1, round(seconds))
    return f"{whole // 60}m" if whole % 60 == 0 else f"{whole}s"
