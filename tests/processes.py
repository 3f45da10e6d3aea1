"""Helpers for tests that start ``modelrouter serve`` and look at its processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def children(pid: int) -> set[int]:
    """The direct children of ``pid`` (from /proc; every thread's list)."""
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out.update(int(p) for p in (task / "children").read_text().split())
    return out


def descendants(pid: int) -> set[int]:
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children(todo.pop()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it has ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def start_serve(
    config: Path,
    port: int,
    *args: str,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    log_level: str = "info",
) -> subprocess.Popen[bytes]:
    """``modelrouter serve`` (this tree's code); its output goes to ``log``, or to a file of its
    own when none is given: readable while it runs, and never a pipe that nobody reads (a full
    pipe blocks the gateway's logging, and it stops answering)."""
    if log is None:
        log = Path(tempfile.mkdtemp(prefix="modelrouter-serve-")) / "serve.log"
    out = log.open("wb")
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelrouter.cli",
                "serve",
                str(config),
                "--port",
                str(port),
                "--log-level",
                log_level,
                *args,
            ],
            # this tree's code (not whatever the venv has installed) and the test fixtures
            env={
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]),
                **(env or {}),
            },
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    finally:
        out.close()  # the child has its own copy
    _LOGS[proc.pid] = log
    return proc


_LOGS: dict[int, Path] = {}
"""Where each gateway :func:`start_serve` started writes its output."""


def output(proc: subprocess.Popen[bytes], log: Path | None = None) -> str:
    """What a gateway :func:`start_serve` started has printed so far."""
    path = log or _LOGS.get(proc.pid)
    return path.read_text(errors="replace") if path is not None and path.exists() else ""


def wait_ready(
    proc: subprocess.Popen[bytes],
    url: str,
    timeout: float = 90,
    path: str = "/v2/health/ready",
    log: Path | None = None,
) -> None:
    """Until ``url + path`` answers 200; fails with the gateway's output if it exits first or
    ``timeout`` passes (a busy machine, models from a registry: be generous)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited with {proc.returncode}:\n{output(proc, log)}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            shown = output(proc, log)
            raise RuntimeError(f"gateway: {path} did not answer 200 in {timeout:g}s\n{shown}")
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes], grace: float = 10) -> None:
    """SIGTERM (the gateway drains and exits), SIGKILL after ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def serving(
    config: Path,
    port: int,
    *args: str,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A ready gateway process; killed (with its descendants) if the test left it running."""
    proc = start_serve(config, port, *args, env=env, log=log)
    try:
        wait_ready(proc, f"http://127.0.0.1:{port}")
        yield proc
    finally:
        if proc.poll() is None:
            family = descendants(proc.pid)
            proc.kill()
            proc.wait()
            for pid in family:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def spawned_children(pid: int) -> set[int]:
    """The children of ``pid`` started by multiprocessing's spawn (not its resource tracker)."""
    return {c for c in children(pid) if "spawn_main" in cmdline(c) and alive(c)}


class Load:
    """Clients sending requests until stopped: some on one keep-alive connection each, some on
    a new connection per request. Every outcome is kept with its time."""

    def __init__(self, url: str, body: dict[str, Any], keep_alive: int = 2, fresh: int = 2) -> None:
        self.url = url
        self.body = body
        self.results: list[tuple[float, int | str]] = []
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._keep_alive, daemon=True) for _ in range(keep_alive)
        ] + [threading.Thread(target=self._fresh, daemon=True) for _ in range(fresh)]

    def _record(self, outcome: int | str) -> None:
        with self.lock:
            self.results.append((time.monotonic(), outcome))

    def _one(self, client: httpx.Client) -> None:
        try:
            r = client.post("/v2/models/churn/infer", json=self.body)
            self._record(r.status_code)
        except httpx.HTTPError as exc:
            self._record(f"{type(exc).__name__}: {exc}")

    def _keep_alive(self) -> None:
        with httpx.Client(base_url=self.url, timeout=10) as client:
            while not self.stop.is_set():
                self._one(client)

    def _fresh(self) -> None:
        while not self.stop.is_set():
            with httpx.Client(base_url=self.url, timeout=10) as client:
                self._one(client)

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(15)
