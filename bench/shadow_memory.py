"""Resident memory of the example gateway and of its shadow worker process (issue 11 item 5).

Starts ``modelrouter serve examples/churn/modelrouter.yaml`` the way ``make serve`` does (the
console script), on a free port with a store in a temporary folder, sends mirrored requests
until the shadow worker has loaded churn v3 and answered, then reads VmRSS of each process of
the gateway from /proc and prints a table: the gateway, the shadow worker, the resource
tracker, and the shadow worker against its 150 MB target (PASS/FAIL, never asserted).

    .venv/bin/python bench/shadow_memory.py [--requests 200] [--command modelrouter|module]

``--command module`` starts ``python -m modelrouter`` instead of the console script.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import yaml

from _common import (
    ROOT,
    VENV_BIN,
    BenchError,
    ServerProcess,
    free_port,
    http_get,
    http_post_json,
    log,
    serve,
    terminate_on_sigterm,
)

EXAMPLE = ROOT / "examples" / "churn"
TARGET_MB = 150.0


def example_config(folder: Path) -> Path:
    """The example with absolute model paths and its store in ``folder``."""
    doc = yaml.safe_load((EXAMPLE / "modelrouter.yaml").read_text())
    doc["server"]["store"] = f"sqlite:///{folder / 'modelrouter.db'}"
    for model in doc["models"].values():
        for version in model["versions"].values():
            if "storageUri" in version:
                version["storageUri"] = str((EXAMPLE / version["storageUri"]).resolve())
    path = folder / "modelrouter.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def role(pid: int) -> str:
    cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    if "resource_tracker" in cmd:
        return "resource tracker"
    if "multiprocessing" in cmd:
        return "shadow worker"
    return "child: " + cmd[:60]


def shadow_calls(url: str) -> float:
    """Shadow calls answered so far: ``modelrouter_shadow_requests_total``, all outcomes."""
    status, body = http_get(f"{url}/metrics", timeout=5)
    if status != 200:
        raise BenchError(f"/metrics answered {status}")
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.decode(errors="replace").splitlines()
        if line.startswith("modelrouter_shadow_requests_total{")
    )


def wait_for_shadows(url: str, n: int, timeout: float = 60.0) -> float:
    """Wait until ``n`` shadow calls were answered (the worker has loaded v3 and predicted)."""
    deadline = time.monotonic() + timeout
    while (done := shadow_calls(url)) < n:
        if time.monotonic() > deadline:
            raise BenchError(f"only {done:.0f} of {n} shadow calls answered in {timeout:.0f}s")
        time.sleep(0.2)
    return done


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--command", choices=["modelrouter", "module"], default="modelrouter")
    args = ap.parse_args()
    terminate_on_sigterm()
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    body = (EXAMPLE / "requests" / "churn-v2.json").read_bytes()
    with tempfile.TemporaryDirectory(prefix="mr-mem-") as tmp:
        config = example_config(Path(tmp))
        cmd = (
            [str(VENV_BIN / "modelrouter")]
            if args.command == "modelrouter"
            else [str(VENV_BIN / "python"), "-m", "modelrouter"]
        )
        server = ServerProcess(
            "gateway",
            [*cmd, "serve", str(config), "--port", str(port), "--log-level", "warning"],
            Path(tmp) / "gateway.log",
            f"{url}/v2/health/ready",
            env={"MODELROUTER_ADMIN_TOKEN": "bench-token"},
        )
        with serve(server):
            assert server.proc is not None
            for i in range(args.requests):
                status, _ = http_post_json(f"{url}/v2/models/churn/infer", body)
                if status != 200:
                    log(f"request {i}: status {status}")
            answered = wait_for_shadows(url, args.requests)
            gateway = server.proc.pid
            rows = [("gateway", gateway, rss_mb(gateway))]
            rows += [(role(p), p, rss_mb(p)) for p in children(gateway)]
            workers = [mb for name, _, mb in rows if name == "shadow worker"]
            log(f"{answered:.0f} shadow calls answered")
    print(f"command: {' '.join(cmd)} serve examples/churn/modelrouter.yaml")
    print(f"{'process':<20} {'pid':>8} {'VmRSS MB':>9}")
    for name, pid, mb in rows:
        print(f"{name:<20} {pid:>8} {mb:>9.1f}")
    print(f"{'total':<20} {'':>8} {sum(mb for _, _, mb in rows):>9.1f}")
    if not workers:
        print("shadow worker: not found (FAIL)")
        return 1
    verdict = "PASS" if workers[0] < TARGET_MB else "FAIL"
    print(f"shadow worker {workers[0]:.1f} MB against the {TARGET_MB:.0f} MB target: {verdict}")
    print(json.dumps({name: round(mb, 1) for name, _, mb in rows}), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
