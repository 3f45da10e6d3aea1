"""Shared test helpers: free ports, a real uvicorn server in a thread or a subprocess."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.types import ASGIApp

from modelrouter.config.loader import LoadedConfig, parse_config
from processes import start_serve, stop, wait_ready

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_MODELS = ROOT / "examples" / "churn" / "models"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loaded_from_yaml(text: str, base_dir: Path) -> LoadedConfig:
    """A config from YAML text whose relative paths resolve against ``base_dir``."""
    return LoadedConfig(parse_config(text), base_dir / "modelrouter.yaml")


@contextlib.contextmanager
def running_server(app: ASGIApp, port: int | None = None) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    port = port or free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextlib.contextmanager
def gateway_process(
    config: Path, port: int | None = None, env: dict[str, str] | None = None
) -> Iterator[str]:
    """``modelrouter serve CONFIG`` in its own process; yield its base URL once it is ready."""
    with gateway_subprocess(config, port, env) as (url, _):
        yield url


@contextlib.contextmanager
def gateway_subprocess(
    config: Path, port: int | None = None, env: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """As :func:`gateway_process`, yielding the base URL and the gateway's process id."""
    port = port or free_port()
    proc = start_serve(config, port, env=env, log_level="warning")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(proc, url, timeout=60, path="/v2/health/live")
        yield url, proc.pid
    finally:
        stop(proc)
