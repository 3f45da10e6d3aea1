"""Virtualenvs of the peers the tests talk to: clients and servers nobody here wrote.

tritonclient's gRPC stubs, KServe and MLServer each register the protobuf package
``inference`` and pin protobuf versions of their own, so each runs in its own environment and
process. The environments are made on first use (PyPI access needed once) and cached in
``bench/.peers/`` (git-ignored), shared with the benchmarks (``bench/_common.ensure_venv``):
the MLServer one is the very environment ``bench/serving.py`` uses.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from pathlib import Path

from support import ROOT

sys.path.insert(0, str(ROOT / "bench"))

from _common import (
    KSERVE_VERSION,
    PEERS,
    ServerProcess,
    ensure_venv,
    free_ports,
    kserve_requirements,
    mlserver_requirements,
    serve,
)

__all__ = ["KSERVE_VERSION", "ServerProcess", "free_ports", "serve"]

TRITONCLIENT_VERSION = importlib.metadata.version("tritonclient")


def tritonclient_grpc() -> Path:
    """``bin`` of a virtualenv with ``tritonclient[grpc]`` (its own protobuf)."""
    return ensure_venv(PEERS / "tritonclient-grpc", [f"tritonclient[grpc]=={TRITONCLIENT_VERSION}"])


def kserve() -> Path:
    """``bin`` of a virtualenv with the KServe SDK (ModelServer and InferenceGRPCClient)."""
    return ensure_venv(PEERS / "kserve", kserve_requirements())


def mlserver() -> Path:
    """``bin`` of the MLServer virtualenv (the one bench/serving.py makes, same list)."""
    return ensure_venv(PEERS / "mlserver", mlserver_requirements())


def run_script(bin_dir: Path, script: Path, *args: str, timeout: float = 120) -> str:
    """Run ``script`` with the peer's Python; its stdout, or a failure showing its output."""
    result = subprocess.run(
        [str(bin_dir / "python"), str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"{script.name} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
            f"{result.stderr[-4000:]}"
        )
    return result.stdout


def ensure_all() -> None:
    """Make every peer environment now (``make test`` does, before the suite: building them
    inside a test would count against its timeout)."""
    for make in (tritonclient_grpc, kserve, mlserver):
        print(f"peer environment ready: {make()}", flush=True)


if __name__ == "__main__":
    ensure_all()
