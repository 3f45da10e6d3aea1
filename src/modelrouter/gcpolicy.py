"""The garbage-collection policy of a serving gateway: freeze what start-up built.

Why: a loaded gateway holds ~180,000 long-lived objects (modules, config, models, the app).
CPython's cycle collector walks all of them in every full collection, one every ~20,000
requests under load (90-200 ms of CPU on a 2-core VM), and young collections promote the
objects of requests in flight; in all ~16 µs a request, measured with ``gc.callbacks``.
:func:`gc.freeze` moves every tracked object to a permanent generation the collector skips,
so full collections only walk what was allocated since.

The catch: frozen objects are never collected. What was frozen and later becomes cyclic
garbage stays until the next :func:`gc.unfreeze`. So the gateway refreezes around every
change that drops a lot: when a version's runtime is dropped (unloaded, evicted, replaced by
an alias move, a failed load), :func:`released` unfreezes at once (its cycles become
collectable by the next full collection) and, :data:`SETTLE` seconds after the last change,
collects and freezes again; a version loaded after start-up (:func:`loaded`) is frozen the
same way. Each refreeze is one full collection (~100 ms on a 2-core VM); while changes keep
coming the collector just runs unfrozen, as by default. What leaks is bounded: garbage among
frozen objects lives at most until the next refreeze, and is never more than the last freeze
took.

The young-generation threshold is raised from CPython's 700 to :data:`YOUNG_THRESHOLD`: with
32 requests in flight, a collection every 700 allocations (a few requests) finds the objects
of the requests in flight alive and promotes them, so the older generations fill with request
garbage and are collected more often; at 7,000 a young collection comes every few dozen
requests and promotes about as many survivors ten times less often (bench/README.md,
"Garbage collection": 20,000 requests then pass without a full collection).

The policy is process-wide (the collector is): :func:`frozen` runs it for as long as a
gateway process serves (:class:`modelrouter.server.Gateway`); the repository's hooks do
nothing outside it (tests, library use).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass

log = logging.getLogger(__name__)

SETTLE = 1.0
"""Seconds after the last load or unload before collecting and freezing again: a burst of
changes (an eviction making room, a repository intent over many versions) pays one full
collection."""

YOUNG_THRESHOLD = 7000
"""Allocations (net of deallocations) between young collections; CPython's default is 700."""


@dataclass(slots=True)
class GcStats:
    freezes: int = 0
    """Collect-and-freeze passes (start-up, then one per settled change)."""
    frozen: int = 0
    """Objects in the permanent generation after the last freeze."""
    last_pause: float = 0.0
    """Seconds the last collect-and-freeze held the event loop."""


stats = GcStats()
_active = 0
_previous_threshold: tuple[int, int, int] | None = None
_pending: asyncio.TimerHandle | None = None


def active() -> bool:
    """Whether a gateway process runs the policy."""
    return _active > 0


@contextlib.contextmanager
def frozen() -> Iterator[None]:
    """Run the policy: raise the young threshold, collect once and freeze what survives; on
    exit, unfreeze and restore the threshold (nested uses count: the last exit restores)."""
    global _active, _previous_threshold
    if _active == 0:
        _previous_threshold = gc.get_threshold()
        gc.set_threshold(YOUNG_THRESHOLD, *_previous_threshold[1:])
    _active += 1
    refreeze()
    try:
        yield
    finally:
        _active -= 1
        if _active == 0:
            _cancel_pending()
            gc.unfreeze()
            if _previous_threshold is not None:
                gc.set_threshold(*_previous_threshold)
                _previous_threshold = None


def refreeze() -> None:
    """Unfreeze, collect everything, freeze what survives (one full collection's pause)."""
    _cancel_pending()
    start = time.perf_counter()
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    stats.freezes += 1
    stats.frozen = gc.get_freeze_count()
    stats.last_pause = time.perf_counter() - start
    log.debug("gc: froze %d objects in %.1f ms", stats.frozen, stats.last_pause * 1000)


def released() -> None:
    """A version's runtime was dropped: make what was frozen collectable now, refreeze once
    the changes settle."""
    if not _active:
        return
    gc.unfreeze()
    _schedule()


def loaded() -> None:
    """A version loaded after start-up: freeze it too once the changes settle."""
    if _active:
        _schedule()


def _schedule() -> None:
    global _pending
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # no event loop (a synchronous caller): refreeze now
        refreeze()
        return
    _cancel_pending()
    _pending = loop.call_later(SETTLE, refreeze)


def _cancel_pending() -> None:
    global _pending
    if _pending is not None:
        _pending.cancel()
        _pending = None
