"""``modelrouter serve --workers N``: N gateway processes on one port.

The supervisor binds the port once. On Linux it holds it with ``SO_REUSEPORT`` without
listening, and each of the N spawned workers listens on its own ``SO_REUSEPORT`` socket: the
kernel spreads new connections evenly over their accept queues. Elsewhere it hands its one
listening socket to every worker. Each worker is a whole
:class:`~modelrouter.server.Gateway` following the shared store, so routing, sticky buckets and
rollout state are the same in all of them, and the once-per-cluster jobs (rollout steps, audit
retention) run under store leases. A worker that dies is started again in its slot (after a
pause that grows while it keeps dying at start). SIGTERM or SIGINT is passed on to every worker,
which drains (see :mod:`modelrouter.server`); the supervisor exits 0 when they all did.
Workers end with the supervisor even when it is SIGKILLed (:mod:`modelrouter.lifeline`).
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import shutil
import signal
import socket
import tempfile
import time
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType

from modelrouter.config.loader import LoadedConfig, load_config
from modelrouter.lifeline import die_with_parent

log = logging.getLogger(__name__)

QUICK_DEATH = 10.0
"""A worker that dies sooner than this after its start waits longer before the next one."""
MAX_BACKOFF = 30.0


def _worker_main(
    source: str,
    sock: socket.socket | None,
    port: int,
    index: int,
    metrics_dir: str,
    log_level: str,
    host: str,
    supervisor: int,
) -> None:
    """In a worker process: serve until told to stop, then exit with the gateway's code."""
    die_with_parent(supervisor)
    os.setpgid(0, 0)  # Ctrl-C reaches the supervisor only; it passes SIGTERM on, once
    # told to stop before the gateway serves (it drains from then on): nothing to drain yet
    signal.signal(signal.SIGTERM, _exit_before_serving)
    from modelrouter.server import Gateway, WorkerSlot

    logging.basicConfig(
        level=log_level.upper(),
        format=f"%(asctime)s %(levelname)s [worker {index}] %(name)s: %(message)s",
    )
    loaded = load_config(source)
    gateway = Gateway(
        loaded,
        host,
        port,
        sock=sock,
        reuse_port=sock is None,  # its own socket, bound once its models are loaded
        log_level=log_level,
        slot=WorkerSlot(index, Path(metrics_dir)),
    )
    raise SystemExit(gateway.run())


def _exit_before_serving(sig: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


class Supervisor:
    def __init__(
        self,
        loaded: LoadedConfig,
        sock: socket.socket,
        workers: int,
        host: str,
        log_level: str = "info",
        share: bool = False,
    ) -> None:
        """``sock`` is bound to the port; with ``share`` it listens and every worker accepts
        from it, else it only holds the port and each worker listens with ``SO_REUSEPORT``."""
        if loaded.source is None:
            raise ValueError("workers load the config from its file: a source is needed")
        self.source = loaded.source
        self.settings = loaded.config.server
        self.sock = sock
        self.share = share
        self.port = int(sock.getsockname()[1])
        self.count = workers
        self.host = host
        self.log_level = log_level
        self.metrics_dir = Path(tempfile.mkdtemp(prefix="modelrouter-workers-"))
        self.ctx = multiprocessing.get_context("spawn")
        self.procs: dict[int, BaseProcess] = {}
        self.started_at: dict[int, float] = {}
        self.backoff: dict[int, float] = {}
        self.restarts = 0
        self.stopping = False

    def _start(self, index: int) -> None:
        proc = self.ctx.Process(
            target=_worker_main,
            args=(
                str(self.source),
                self.sock if self.share else None,
                self.port,
                index,
                str(self.metrics_dir),
                self.log_level,
                self.host,
                os.getpid(),
            ),
            name=f"modelrouter-worker-{index}",
        )
        proc.start()
        self.procs[index] = proc
        self.started_at[index] = time.monotonic()

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        first = not self.stopping
        self.stopping = True
        if first:
            log.info("signal %d: stopping %d workers", sig, len(self.procs))
        for proc in self.procs.values():
            if proc.pid is not None and proc.is_alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)  # a second signal ends their drain

    def run(self) -> int:
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)
        }
        try:
            for i in range(self.count):
                self._start(i)
            self._supervise()
            return self._wait_all()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for proc in self.procs.values():
                if proc.is_alive():
                    proc.kill()
                    proc.join(5)
            self.sock.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)

    def _supervise(self) -> None:
        due: dict[int, float] = {}
        while not self.stopping:
            sentinels = [p.sentinel for i, p in self.procs.items() if i not in due]
            wait(sentinels, timeout=0.2)
            now = time.monotonic()
            for index, proc in list(self.procs.items()):
                if self.stopping or index in due or proc.is_alive():
                    continue
                proc.join()
                lived = now - self.started_at[index]
                pause = self.backoff.get(index, 0.0)
                pause = min(max(pause * 2, 0.5), MAX_BACKOFF) if lived < QUICK_DEATH else 0.0
                self.backoff[index] = pause
                log.error(
                    "worker %d (pid %s) exited with %s after %.1fs; restarting in %.1fs",
                    index,
                    proc.pid,
                    proc.exitcode,
                    lived,
                    pause,
                )
                due[index] = now + pause
            for index, at in list(due.items()):
                if now >= at and not self.stopping:
                    del due[index]
                    self.restarts += 1
                    self._start(index)

    def _wait_all(self) -> int:
        shutdown = self.settings.shutdown
        deadline = time.monotonic() + shutdown.drain + shutdown.timeout + 30
        code = 0
        for index, proc in self.procs.items():
            proc.join(max(deadline - time.monotonic(), 0.1))
            if proc.is_alive():
                log.error("worker %d did not stop in time: killed", index)
                proc.kill()
                proc.join(5)
                code = 1
            elif proc.exitcode not in (0, None):
                code = 1
        return code
