"""Child processes that end with their parent, even when the parent is killed by SIGKILL.

A spawned process (the shadow worker, a gateway worker) would otherwise be re-parented to
PID 1 and live on with its memory. On Linux the kernel delivers ``PR_SET_PDEATHSIG`` when the
parent dies; everywhere, a daemon thread also watches ``getppid()`` and exits the process
when it changes.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time

PR_SET_PDEATHSIG = 1
"""From ``<linux/prctl.h>``."""

WATCH_INTERVAL = 0.5


def _set_parent_death_signal(sig: int) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return bool(libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) == 0)
    return False


def _watch(parent: int) -> None:
    while True:
        time.sleep(WATCH_INTERVAL)
        if os.getppid() != parent:
            os._exit(1)


def die_with_parent(parent: int) -> None:
    """End this process when process ``parent`` ends. Call first thing in the child, with the
    pid the parent passed (if it already died, the child exits at once)."""
    _set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)  # the parent died before the signal was armed
    threading.Thread(target=_watch, args=(parent,), name="lifeline", daemon=True).start()
