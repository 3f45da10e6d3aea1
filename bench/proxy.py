"""What a hop through modelrouter costs in front of a remote Open Inference Protocol server.

    .venv/bin/python bench/proxy.py [--quick] [-n 4000]

One remote (a modelrouter gateway serving the example churn model on HTTP and gRPC, audit off:
a fast upstream so the hop shows) is called three ways, each server in its own process:

- **direct**: the load generator talks to the remote;
- **modelrouter**: through a second gateway whose one version is that remote (``endpoint``,
  REST; ``protocol: grpc`` for the gRPC rows), with its defaults: decision audit on (SQLite),
  telemetry on;
- **haproxy**: through haproxy (Debian; ``make haproxy``), HTTP mode for REST, TCP mode for
  gRPC (HTTP/2 passed through).

Load: ``hey`` for REST (single-row v2 JSON), ``h2load`` for gRPC (raw contents, 8 streams per
connection; each run proven by bench/grpc_load.py: a real client's answers before and after,
the bytes of every response, and the remote's own count of calls, all OK), at concurrency 1
and 32. Each cell reports req/s, p50 and p99, and the CPU each process spent per request
(utime + stime from /proc, children included). Ratios printed with the issue's targets:
modelrouter adds < 0.3 ms p50 at c=1 over direct, keeps >= 0.8x direct req/s at c=32, and
reaches >= 0.85x haproxy's req/s at c=32. Compare figures of one run only.

``kserve`` rows (``--paths kserve``): the deployment the issue names, models in KServe pods
behind the gateway. The remote is one KServe ModelServer (the KServe SDK from
``bench/.peers/kserve``, serving the churn model), called over REST directly, through
modelrouter (its defaults: audit, telemetry) and through haproxy, with the same three targets.
A real model server spends far more per request than the fast remote above, so these rows
say what the hop costs where it is used; the rows above say what it costs at worst.

``guide`` rows (``--paths guide``): the guide's topology, two KServe ModelServers (the KServe
SDK from ``bench/.peers/kserve``, made on first use; both serve the churn model) split 90/10,
by haproxy (weighted round robin, keep-alive to both) and by a modelrouter gateway whose two
versions are those servers (``endpoint``) with a 90/10 rule, its defaults on (audit,
telemetry). Target: modelrouter >= 0.85x haproxy's req/s at c=32 (issue 12 part 4).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np

from _common import (
    KSERVE_SERVER,
    PEERS,
    RESULTS,
    VENV_BIN,
    BenchError,
    ServerProcess,
    ensure_h2load,
    ensure_hey,
    ensure_venv,
    format_table,
    free_ports,
    kserve_requirements,
    log,
    print_block,
    run_hey,
    serve,
    warn_if_busy,
    write_json,
)
from grpc_load import check_answers, frame, infer_message, timed_grpc

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "examples" / "churn" / "models" / "churn" / "v1"
ROW = [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its waited-for children, and of its live children."""
    total = 0.0
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        pids += [int(c) for c in children]
    except OSError:
        pass
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the ")": state is field 3, utime 14, stime 15, cutime 16, cstime 17
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / CLK_TCK
    return total


def remote_version(version: str, endpoint: str, protocol: str = "rest") -> str:
    """The config line of a version served by the remote OIP server at ``endpoint``."""
    grpc = ", protocol: grpc" if protocol == "grpc" else ""
    return f'      {version}: {{endpoint: "{endpoint}"{grpc}, remoteName: churn}}\n'


def gateway(
    work: Path, name: str, http: int, grpc: int, versions: str, audit: bool
) -> ServerProcess:
    config = work / f"{name}.yaml"
    config.write_text(
        "server:\n"
        f"  store: sqlite:///{work / (name + '.db')}\n"
        "  watchConfig: false\n"
        + ("" if audit else "  audit: {enabled: false}\n")
        + f"  grpc: {{port: {grpc}}}\n"
        "models:\n  churn:\n    versions:\n" + versions
    )
    argv = [str(VENV_BIN / "modelrouter"), "serve", str(config), "--port", str(http)]
    argv += ["--log-level", "warning"]
    return ServerProcess(
        name, argv, work / f"{name}.log", f"http://127.0.0.1:{http}/v2/health/ready", cwd=work
    )


def haproxy(work: Path, listen_http: int, listen_grpc: int, http: int, grpc: int) -> ServerProcess:
    exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(exe).exists():
        raise BenchError("haproxy is not installed: run `make haproxy`")
    config = work / "haproxy.cfg"
    config.write_text(
        f"""global
  maxconn 4096
defaults
  timeout connect 5s
  timeout client 30s
  timeout server 30s
frontend rest
  mode http
  bind 127.0.0.1:{listen_http}
  option http-keep-alive
  default_backend remote_rest
backend remote_rest
  mode http
  http-reuse always
  server r1 127.0.0.1:{http}
frontend grpc
  mode tcp
  bind 127.0.0.1:{listen_grpc}
  default_backend remote_grpc
backend remote_grpc
  mode tcp
  server r1 127.0.0.1:{grpc}
"""
    )
    return ServerProcess(
        "haproxy",
        [exe, "-db", "-f", str(config)],
        work / "haproxy.log",
        f"http://127.0.0.1:{listen_http}/v2/health/ready",
    )


def kserve(work: Path, name: str, http: int, grpc: int, kserve_bin: Path) -> ServerProcess:
    """A KServe ModelServer (its defaults) serving the churn model as ``churn``."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    argv = [str(kserve_bin / "python"), str(KSERVE_SERVER)]
    argv += [f"--http_port={http}", f"--grpc_port={grpc}"]
    env = {"PEER_MODEL_NAME": "churn", "PEER_MODEL_FILE": str(MODEL_DIR / "model.joblib")}
    return ServerProcess(
        name,
        argv,
        folder / "server.log",
        f"http://127.0.0.1:{http}/v2/models/churn/ready",
        folder,
        env,
    )


def guide_haproxy(work: Path, listen: int, v1: int, v2: int) -> ServerProcess:
    """haproxy splitting 90/10 between the two KServe servers, as the guide's mesh does."""
    exe = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(exe).exists():
        raise BenchError("haproxy is not installed: run `make haproxy`")
    config = work / "guide-haproxy.cfg"
    config.write_text(
        "global\n  maxconn 4096\n"
        "defaults\n  mode http\n  option http-keep-alive\n  timeout connect 5s\n"
        "  timeout client 30s\n  timeout server 30s\n"
        f"frontend models\n  bind 127.0.0.1:{listen}\n  default_backend versions\n"
        "backend versions\n  balance roundrobin\n  http-reuse always\n"
        f"  server v1 127.0.0.1:{v1} weight 90\n"
        f"  server v2 127.0.0.1:{v2} weight 10\n"
    )
    return ServerProcess(
        "guide-haproxy",
        [exe, "-db", "-f", str(config)],
        work / "guide-haproxy.log",
        f"http://127.0.0.1:{listen}/v2/models/churn/ready",
    )


GUIDE_RULE = (
    "    http:\n"
    "      - name: default\n"
    "        route: [{destination: v1, weight: 90}, {destination: v2, weight: 10}]\n"
)
"""The modelrouter side of the guide rows: the same 90/10 split as a routing rule."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=4000)
    parser.add_argument("--quick", action="store_true", help="300 requests per cell")
    parser.add_argument(
        "--paths",
        default="rest,grpc,kserve,guide",
        help="which rows: rest, grpc, kserve, guide (comma-separated; default all)",
    )
    args = parser.parse_args()
    n = 300 if args.quick else args.requests
    paths = {p.strip() for p in args.paths.split(",") if p.strip()}
    unknown = paths - {"rest", "grpc", "kserve", "guide"}
    if unknown or not paths:
        parser.error(f"--paths takes rest, grpc, kserve, guide; got {args.paths!r}")
    load = warn_if_busy()
    hey = ensure_hey()
    h2load = ensure_h2load() if "grpc" in paths else ""
    work = RESULTS / "proxy-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    body = work / "body.json"
    body.write_text(
        json.dumps(
            {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10], "data": [ROW]}]}
        )
    )
    cells: dict[str, dict[str, Any]] = {}
    if paths & {"rest", "grpc"}:
        cells |= proxy_rows(work, body, n, hey, h2load, paths)
    if "kserve" in paths:
        cells |= kserve_rows(work, body, n, hey)
    if "guide" in paths:
        cells |= guide_rows(work, body, n, hey)
    rows = []
    for key, r in cells.items():
        cpu = r["cpu_ms_per_request"]
        rows.append(
            [
                key,
                f"{r['rps']:.0f}",
                f"{r['p50_ms']:.2f}",
                f"{r['p99_ms']:.1f}",
                f"{cpu.get('remote', 0):.2f}",
                f"{cpu['hop']:.2f}" if "hop" in cpu else "-",
            ]
        )
    header = ["path", "req/s", "p50 ms", "p99 ms", "remote CPU ms/req", "hop CPU ms/req"]
    print_block(f"Proxy hop (load average at start {load:.1f})", format_table(header, rows))
    ratios = []
    for protocol in ("REST", "gRPC", "KServe REST"):
        if f"{protocol} direct c=1" not in cells:
            continue
        d1, m1 = cells[f"{protocol} direct c=1"], cells[f"{protocol} modelrouter c=1"]
        d32, m32 = cells[f"{protocol} direct c=32"], cells[f"{protocol} modelrouter c=32"]
        h32 = cells[f"{protocol} haproxy c=32"]
        added = m1["p50_ms"] - d1["p50_ms"]
        ratios += [
            [f"{protocol}: p50 added at c=1", f"{added:.2f} ms", "< 0.3 ms", _ok(added < 0.3)],
            [
                f"{protocol}: req/s vs direct, c=32",
                f"{m32['rps'] / d32['rps']:.2f}x",
                ">= 0.8x",
                _ok(m32["rps"] / d32["rps"] >= 0.8),
            ],
            [
                f"{protocol}: req/s vs haproxy, c=32",
                f"{m32['rps'] / h32['rps']:.2f}x",
                ">= 0.85x",
                _ok(m32["rps"] / h32["rps"] >= 0.85),
            ],
        ]
    if "guide haproxy c=32" in cells:
        g32, gm32 = cells["guide haproxy c=32"], cells["guide modelrouter c=32"]
        ratios.append(
            [
                "guide (2 KServe, 90/10): req/s vs haproxy, c=32",
                f"{gm32['rps'] / g32['rps']:.2f}x",
                ">= 0.85x",
                _ok(gm32["rps"] / g32["rps"] >= 0.85),
            ]
        )
    print_block("Targets", format_table(["ratio", "measured", "target", ""], ratios))
    write_json(RESULTS / "proxy.json", {"load_average": load, "requests": n, "cells": cells})


def measure(
    url: str,
    body: Path,
    n: int,
    c: int,
    hey: str,
    watched: dict[str, list[ServerProcess]],
) -> dict[str, Any]:
    """One REST cell: a warm-up, then ``n`` requests at concurrency ``c``, with the CPU per
    request of each group of ``watched`` processes (their CPU added up)."""
    run_hey(url, body, max(100, n // 10), c, hey=hey)  # warm up
    pids = {k: [s.proc.pid for s in group if s.proc] for k, group in watched.items()}
    before = {k: sum(cpu_seconds(p) for p in group) for k, group in pids.items()}
    r = run_hey(url, body, n, c, hey=hey).to_json()
    after = {k: sum(cpu_seconds(p) for p in group) for k, group in pids.items()}
    r["cpu_ms_per_request"] = {k: (after[k] - before[k]) * 1000 / r["requests"] for k in pids}
    return r


def proxy_rows(
    work: Path, body: Path, n: int, hey: str, h2load: str, paths: set[str]
) -> dict[str, dict[str, Any]]:
    """The REST and gRPC rows: the remote direct, through modelrouter, through haproxy."""
    grpc_body = work / "body.grpc"
    grpc_body.write_bytes(frame(infer_message("churn", np.array(ROW, dtype=np.float64))))
    (r_http, r_grpc, m_http, m_grpc, mg_http, mg_grpc, h_http, h_grpc) = free_ports(8)
    local = f"      v1: {{storageUri: {MODEL_DIR}, modelFormat: sklearn}}\n"
    remote = gateway(work, "remote", r_http, r_grpc, local, audit=False)
    via_rest = gateway(
        work,
        "modelrouter-rest",
        m_http,
        m_grpc,
        remote_version("v1", f"http://127.0.0.1:{r_http}"),
        audit=True,
    )
    via_grpc = gateway(
        work,
        "modelrouter-grpc",
        mg_http,
        mg_grpc,
        remote_version("v1", f"grpc://127.0.0.1:{r_grpc}", "grpc"),
        audit=True,
    )
    proxy = haproxy(work, h_http, h_grpc, r_http, r_grpc)
    cells: dict[str, dict[str, Any]] = {}
    servers = [remote, proxy]
    servers += [via_rest] if "rest" in paths else []
    servers += [via_grpc] if "grpc" in paths else []
    with ExitStack() as stack:
        for server in servers:
            stack.enter_context(serve(server))
        rows = np.array([ROW], dtype=np.float64)
        answer = check_answers(f"127.0.0.1:{r_grpc}", "churn", rows)[0] if "grpc" in paths else []

        def grpc_run(target: str, count: int, c: int) -> dict[str, Any]:
            """h2load through ``target``; the remote counts the calls (it gets them all)."""
            return timed_grpc(
                target,
                "churn",
                grpc_body,
                count,
                c,
                h2load=h2load,
                check=lambda: check_answers(target, "churn", rows, answer)[1],
                metrics_url=f"http://127.0.0.1:{r_http}/metrics",
            ).to_json()

        plan = []
        if "rest" in paths:
            plan += [
                ("REST", "direct", f"http://127.0.0.1:{r_http}", None),
                ("REST", "modelrouter", f"http://127.0.0.1:{m_http}", via_rest),
                ("REST", "haproxy", f"http://127.0.0.1:{h_http}", proxy),
            ]
        if "grpc" in paths:
            plan += [
                ("gRPC", "direct", f"127.0.0.1:{r_grpc}", None),
                ("gRPC", "modelrouter", f"127.0.0.1:{mg_grpc}", via_grpc),
                ("gRPC", "haproxy", f"127.0.0.1:{h_grpc}", proxy),
            ]
        for protocol, path, target, hop in plan:
            for c in (1, 32):
                key = f"{protocol} {path} c={c}"
                log(key)
                watched = {"remote": [remote], **({"hop": [hop]} if hop else {})}
                if protocol == "REST":
                    r = measure(f"{target}/v2/models/churn/infer", body, n, c, hey, watched)
                else:
                    pids = {k: g[0].proc.pid for k, g in watched.items() if g[0].proc}
                    grpc_run(target, max(100, n // 10), c)  # warm up
                    before = {k: cpu_seconds(p) for k, p in pids.items()}
                    r = grpc_run(target, n, c)
                    after = {k: cpu_seconds(p) for k, p in pids.items()}
                    r["cpu_ms_per_request"] = {
                        k: (after[k] - before[k]) * 1000 / r["requests"] for k in pids
                    }
                cells[key] = r
    return cells


def rest_cells(
    prefix: str,
    plan: Sequence[tuple[str, int, ServerProcess | None]],
    remotes: list[ServerProcess],
    body: Path,
    n: int,
    hey: str,
) -> dict[str, dict[str, Any]]:
    """``prefix PATH c=C`` cells of REST rows: each ``(path, port, hop)`` of ``plan`` at c=1
    and c=32, the CPU of ``remotes`` (together) and of the hop (when there is one)."""
    cells: dict[str, dict[str, Any]] = {}
    for path, port, hop in plan:
        for c in (1, 32):
            key = f"{prefix} {path} c={c}"
            log(key)
            url = f"http://127.0.0.1:{port}/v2/models/churn/infer"
            watched = {"remote": remotes, **({"hop": [hop]} if hop else {})}
            cells[key] = measure(url, body, n, c, hey, watched)
    return cells


def kserve_rows(work: Path, body: Path, n: int, hey: str) -> dict[str, dict[str, Any]]:
    """One KServe ModelServer as the remote: direct, through modelrouter, through haproxy."""
    kserve_bin = ensure_venv(PEERS / "kserve", kserve_requirements())
    k_http, k_grpc, m_http, m_grpc, h_http, h_grpc = free_ports(6)
    remote = kserve(work, "kserve-remote", k_http, k_grpc, kserve_bin)
    router = gateway(
        work,
        "modelrouter-kserve",
        m_http,
        m_grpc,
        remote_version("v1", f"http://127.0.0.1:{k_http}"),
        audit=True,
    )
    proxy = haproxy(work, h_http, h_grpc, k_http, k_grpc)
    with ExitStack() as stack:
        for server in (remote, router, proxy):
            stack.enter_context(serve(server))
        plan = (
            ("direct", k_http, None),
            ("modelrouter", m_http, router),
            ("haproxy", h_http, proxy),
        )
        return rest_cells("KServe REST", plan, [remote], body, n, hey)


def guide_rows(work: Path, body: Path, n: int, hey: str) -> dict[str, dict[str, Any]]:
    """The guide's topology: two KServe servers split 90/10 by haproxy, then by modelrouter."""
    kserve_bin = ensure_venv(PEERS / "kserve", kserve_requirements())
    p1, g1, p2, g2, front, m_http, m_grpc = free_ports(7)
    v1 = kserve(work, "kserve-v1", p1, g1, kserve_bin)
    v2 = kserve(work, "kserve-v2", p2, g2, kserve_bin)
    split = guide_haproxy(work, front, p1, p2)
    versions = (
        remote_version("v1", f"http://127.0.0.1:{p1}")
        + remote_version("v2", f"http://127.0.0.1:{p2}")
        + GUIDE_RULE
    )
    router = gateway(work, "modelrouter-guide", m_http, m_grpc, versions, audit=True)
    with ExitStack() as stack:
        for server in (v1, v2, split, router):
            stack.enter_context(serve(server))
        plan = (("haproxy", front, split), ("modelrouter", m_http, router))
        return rest_cells("guide", plan, [v1, v2], body, n, hey)


def _ok(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


if __name__ == "__main__":
    main()
