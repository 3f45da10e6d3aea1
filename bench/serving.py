"""Serving overhead: modelrouter against MLServer and a bare Starlette app, one model, one run.

    .venv/bin/python bench/serving.py            # the full run (a few minutes)
    .venv/bin/python bench/serving.py --quick    # smoke run: every step, few requests

Trains a LogisticRegression on 20 features (fixed seed), saves it with joblib, and serves that one
file with each server on a free loopback port:

- ``modelrouter``: ``.venv/bin/modelrouter serve`` with a generated config;
- ``mlserver``: MLServer + mlserver-sklearn from their own virtualenv (bench/.peers/mlserver,
  made on the first run), with its defaults, and again with ``parallel_workers: 0``;
- ``bare``: bench/bare_app.py, Starlette + orjson + ``model.predict`` under uvicorn.

Every server must answer 200 with the right predictions on a set of check rows before it is
timed. Then ``hey`` sends single-row Open Inference Protocol v2 requests at each concurrency
(1 and 32 by default), in rounds that alternate the order of the servers; each cell is the median
over rounds. Two rows use nghttp2's ``h2load`` instead (a C client that costs the shared cores
about a fifth of hey's CPU per request): ``modelrouter-grpc`` (gRPC ``ModelInfer``, raw contents,
8 streams per connection; each run proven by bench/grpc_load.py's checks) and ``modelrouter-h1``
(REST JSON over ``h2load --h1``), the same-tool pair the gRPC target compares. Prints the
table and the ratios against the targets, and writes bench/results/serving.json.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
from sklearn.linear_model import LogisticRegression

from _common import (
    KSERVE_SERVER,
    PEERS,
    RESULTS,
    ROOT,
    VENV_BIN,
    BenchError,
    LoadResult,
    ServerProcess,
    Target,
    ensure_h2load,
    ensure_hey,
    ensure_tool,
    ensure_venv,
    format_table,
    free_ports,
    git_revision,
    h2load_version,
    hey_count,
    hey_version,
    http_post_json,
    kserve_requirements,
    log,
    median_result,
    mlserver_requirements,
    print_block,
    run_h2load,
    run_hey,
    serve,
    terminate_on_sigterm,
    venv_package_version,
    warn_if_busy,
    write_json,
)
from grpc_load import check_answers, frame, infer_message, timed_grpc

MODEL_NAME = "bench"
N_FEATURES = 20
SEED = 20261123

SERVERS = (
    "modelrouter",
    "modelrouter-unbatched",
    "modelrouter-w2",
    "mlserver",
    "mlserver-w0",
    "kserve",
    "modelrouter-guide",
    "guide",
    "bare",
    "modelrouter-h1",
    "modelrouter-grpc",
)
LABELS = {
    "kserve": "KServe ModelServer (v2 endpoint)",
    "modelrouter-guide": "modelrouter, v1/v2 90/10 rule",
    "guide": "2 KServe ModelServers + haproxy 90/10",
    "modelrouter": "modelrouter (defaults: batching, audit, telemetry)",
    "modelrouter-unbatched": "modelrouter, batcher: {enabled: false}",
    "modelrouter-w2": "modelrouter --workers 2",
    "mlserver": "MLServer (defaults)",
    "mlserver-w0": "MLServer (parallel_workers: 0)",
    "bare": "bare Starlette+orjson",
    "modelrouter-h1": "modelrouter, REST JSON (h2load --h1)",
    "modelrouter-grpc": "modelrouter, gRPC raw contents (h2load)",
}
GRPC_KEYS = frozenset({"modelrouter-grpc"})
"""Served and loaded over Open Inference Protocol gRPC instead of REST JSON."""
H2LOAD_KEYS = frozenset({"modelrouter-h1", "modelrouter-grpc"})
"""Loaded by h2load instead of hey."""
MIN_GRPC_VS_REST = 1.3
"""The issue's target: gRPC at least 1.3x REST JSON req/s at the highest concurrency."""

# Targets shown beside the ratios.
MIN_VS_MLSERVER = 1.5
MIN_VS_BARE = 0.9
"""DESIGN section 8: the unbatched gateway, audit and telemetry on, against the bare app."""
MAX_P50_ABOVE_BARE_MS = 1.0
MIN_BATCHED_VS_BARE = 2.5
"""DESIGN section 8: batching (the default) at the highest concurrency, against the bare app."""
MAX_IDLE_COST_MS = 0.3
"""A lone request (c=1) through the batcher: p50 at most this much above unbatched."""
MIN_VS_GUIDE = 2.0
"""DESIGN section 8: one modelrouter with a 90/10 rule against the guide's topology (a KServe
ModelServer per version behind a weighted L7 proxy: haproxy stands in for the mesh's Envoy)."""
MIN_WORKERS_GAIN = 1.0
"""Two workers must not serve less than one process (on 2 cores, hey takes part of them)."""


# ----------------------------------------------------------------------------- the model


@dataclass
class Model:
    file: Path
    """model.joblib; its folder is the modelrouter storageUri."""
    check_rows: np.ndarray
    """Rows sent one by one to every server before timing, with both classes among them."""
    expected: list[float]
    """``predict`` of the check rows, from the model in this process."""
    timed_body: bytes
    """The body hey sends: one row of the check rows."""
    timed_expected: float


def v2_body(row: np.ndarray) -> bytes:
    x = np.asarray(row, dtype=np.float64).reshape(1, -1)
    doc = {
        "inputs": [
            {"name": "input-0", "datatype": "FP64", "shape": list(x.shape), "data": x.tolist()}
        ]
    }
    return orjson.dumps(doc)


def build_model(folder: Path, n_check: int = 32) -> Model:
    """Train and save the benchmark model: deterministic for a given scikit-learn version."""
    rng = np.random.default_rng(SEED)
    n = 5000
    x = rng.normal(size=(n, N_FEATURES))
    w = rng.normal(size=N_FEATURES)
    y = ((x @ w + rng.normal(scale=2.0, size=n)) > 0).astype(np.int64)
    model = LogisticRegression(max_iter=1000, random_state=0).fit(x, y)
    folder.mkdir(parents=True, exist_ok=True)
    file = folder / "model.joblib"
    joblib.dump(model, file)

    check = rng.normal(size=(n_check, N_FEATURES))
    expected = model.predict(check).astype(np.float64)
    if len(set(expected.tolist())) < 2:
        raise BenchError("check rows should cover both classes; change SEED")
    timed = 0
    return Model(
        file=file,
        check_rows=check,
        expected=expected.tolist(),
        timed_body=v2_body(check[timed]),
        timed_expected=float(expected[timed]),
    )


# ----------------------------------------------------------------------------- the servers


def infer_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/infer"


def ready_url(port: int) -> str:
    return f"http://127.0.0.1:{port}/v2/models/{MODEL_NAME}/ready"


def modelrouter_server(
    work: Path,
    model: Model,
    port: int,
    name: str = "modelrouter",
    extra: str = "",
    args: Sequence[str] = (),
    grpc_port: int | None = None,
) -> ServerProcess:
    """modelrouter with its defaults; ``extra`` adds lines under the model (a batcher),
    ``args`` to ``serve`` (``--workers 2``); ``grpc_port`` turns on ``server.grpc``."""
    folder = work / name
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "modelrouter.yaml"
    config.write_text(
        "# Generated by bench/serving.py\n"
        "server:\n"
        "  name: bench\n"
        f"  http: {{host: 127.0.0.1, port: {port}}}\n"
        + (f"  grpc: {{host: 127.0.0.1, port: {grpc_port}}}\n" if grpc_port else "")
        + "models:\n"
        f"  {MODEL_NAME}:\n"
        "    versions:\n"
        f"      v1: {{storageUri: {model.file.parent}, modelFormat: sklearn}}\n" + extra
    )
    argv = [str(VENV_BIN / "modelrouter"), "serve", str(config), "--port", str(port)]
    argv += ["--log-level", "warning", *args]
    return ServerProcess(name, argv, folder / "server.log", ready_url(port), cwd=folder)


def guide_rule(model: Model) -> str:
    """Config lines under the model: a second version (the same file) and a 90/10 rule."""
    return (
        f"      v2: {{storageUri: {model.file.parent}, modelFormat: sklearn}}\n"
        "    http:\n"
        "      - name: default\n"
        "        route: [{destination: v1, weight: 90}, {destination: v2, weight: 10}]\n"
    )


def kserve_argv(kserve_bin: Path, http_port: int, grpc_port: int) -> list[str]:
    return [
        str(kserve_bin / "python"),
        str(KSERVE_SERVER),
        f"--http_port={http_port}",
        f"--grpc_port={grpc_port}",
    ]


def kserve_server(work: Path, model: Model, kserve_bin: Path | None) -> ServerProcess:
    """One KServe ModelServer (its defaults) with a ``kserve.Model`` loading the joblib file."""
    assert kserve_bin is not None
    folder = work / "kserve"
    folder.mkdir(parents=True, exist_ok=True)
    http_port, grpc_port = free_ports(2)
    env = {"PEER_MODEL_NAME": MODEL_NAME, "PEER_MODEL_FILE": str(model.file)}
    argv = kserve_argv(kserve_bin, http_port, grpc_port)
    return ServerProcess("kserve", argv, folder / "server.log", ready_url(http_port), folder, env)


def guide_server(
    work: Path, model: Model, kserve_bin: Path | None, haproxy: str | None
) -> ServerProcess:
    """The guide's topology: a KServe ModelServer per version (v1, v2: the same file) and
    haproxy in front splitting 90/10 (weighted round robin, keep-alive to both). One process
    tree: a shell starts both servers, then becomes haproxy, so RSS covers all three."""
    assert kserve_bin is not None
    assert haproxy is not None
    folder = work / "guide"
    folder.mkdir(parents=True, exist_ok=True)
    front, p1, g1, p2, g2 = free_ports(5)
    (folder / "haproxy.cfg").write_text(
        "# Generated by bench/serving.py: the guide's weighted split\n"
        "global\n  maxconn 4096\n"
        "defaults\n  mode http\n  option http-keep-alive\n  timeout connect 5s\n"
        "  timeout client 60s\n  timeout server 60s\n"
        f"frontend models\n  bind 127.0.0.1:{front}\n  default_backend versions\n"
        "backend versions\n  balance roundrobin\n  http-reuse always\n"
        f"  server v1 127.0.0.1:{p1} weight 90\n"
        f"  server v2 127.0.0.1:{p2} weight 10\n"
    )
    script = " ".join(kserve_argv(kserve_bin, p1, g1)) + " > v1.log 2>&1 &\n"
    script += " ".join(kserve_argv(kserve_bin, p2, g2)) + " > v2.log 2>&1 &\n"
    script += f"exec {haproxy} -db -f haproxy.cfg\n"
    env = {"PEER_MODEL_NAME": MODEL_NAME, "PEER_MODEL_FILE": str(model.file)}
    argv = ["bash", "-c", script]
    return ServerProcess("guide", argv, folder / "haproxy.log", ready_url(front), folder, env)


def mlserver_server(
    work: Path, model: Model, mlserver_bin: Path | None, key: str, extra: dict[str, Any]
) -> ServerProcess:
    """MLServer from its own virtualenv; ``extra`` goes into settings.json."""
    assert mlserver_bin is not None
    folder = work / key
    model_dir = folder / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    http_port, grpc_port, metrics_port = free_ports(3)
    settings = {
        "host": "127.0.0.1",
        "http_port": http_port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        **extra,
    }
    (folder / "settings.json").write_bytes(orjson.dumps(settings, option=orjson.OPT_INDENT_2))
    model_settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_sklearn.SKLearnModel",
        "parameters": {"uri": str(model.file), "version": "v1"},
    }
    (model_dir / "model-settings.json").write_bytes(
        orjson.dumps(model_settings, option=orjson.OPT_INDENT_2)
    )
    argv = [str(mlserver_bin / "mlserver"), "start", str(folder)]
    return ServerProcess(LABELS[key], argv, folder / "server.log", ready_url(http_port), cwd=folder)


def bare_server(work: Path, model: Model, port: int) -> ServerProcess:
    folder = work / "bare"
    folder.mkdir(parents=True, exist_ok=True)
    argv = [str(VENV_BIN / "python"), "-m", "uvicorn", "--app-dir", str(ROOT / "bench")]
    argv += ["bare_app:app", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--no-access-log", "--log-level", "warning"]
    env = {"BARE_MODEL": str(model.file), "BARE_MODEL_NAME": MODEL_NAME}
    return ServerProcess("bare", argv, folder / "server.log", ready_url(port), cwd=folder, env=env)


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def tree_rss_mb(pid: int) -> tuple[float, int]:
    """Resident memory of ``pid`` and every process under it (a gateway, its workers, their
    shadow worker processes), in MB, and how many processes that is (Linux /proc)."""
    total, count, todo, seen = 0, 0, [pid], set()
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
                count += 1
        todo += _children(p)
    return total / 1024, count


def port_of(server: ServerProcess) -> int:
    return int(server.ready_url.split(":")[2].split("/")[0])


# ----------------------------------------------------------------------------- checks


def predictions(body: bytes) -> list[float]:
    """The ``predict`` output of a v2 response (or its only output), as floats."""
    doc = orjson.loads(body)
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(outputs, list) or not outputs:
        raise BenchError(f"response has no outputs: {body[:300]!r}")
    named = [o for o in outputs if o.get("name") == "predict"]
    out = named[0] if named else outputs[0] if len(outputs) == 1 else None
    if out is None:
        raise BenchError(f"response has no 'predict' output: {body[:300]!r}")
    data = np.asarray(out.get("data"), dtype=np.float64).ravel()
    return [float(v) for v in data]


def check_server(key: str, server: ServerProcess, model: Model) -> None:
    """Every check row, one request each, must come back 200 with the model's prediction; so
    must the exact body hey will send."""
    url = infer_url(port_of(server))
    cases = [
        (v2_body(row), [exp]) for row, exp in zip(model.check_rows, model.expected, strict=True)
    ]
    cases.append((model.timed_body, [model.timed_expected]))
    for i, (body, want) in enumerate(cases):
        status, text = http_post_json(url, body)
        if status != 200:
            raise BenchError(f"{LABELS[key]}: check request {i} got {status}: {text[:300]!r}")
        got = predictions(text)
        if got != want:
            raise BenchError(f"{LABELS[key]}: check request {i} predicted {got}, expected {want}")
    log(f"{LABELS[key]}: {len(cases)} check requests answered correctly")


def metrics_url(server: ServerProcess) -> str:
    return f"http://127.0.0.1:{port_of(server)}/metrics"


@dataclass
class Load:
    """How the cells of one server are loaded: hey by default, h2load for ``H2LOAD_KEYS``."""

    hey: str
    h2load: str | None
    body_file: Path
    grpc_body_file: Path
    model: Model

    def run(
        self, key: str, server: ServerProcess, requests: int, c: int, grpc_target: str | None
    ) -> LoadResult:
        """One timed run; on failure, say whether the server died and show its log."""
        url = infer_url(port_of(server))
        try:
            if grpc_target is not None:
                assert self.h2load is not None
                return timed_grpc(
                    grpc_target,
                    MODEL_NAME,
                    self.grpc_body_file,
                    requests,
                    c,
                    h2load=self.h2load,
                    check=lambda: self.check_grpc(grpc_target),
                    metrics_url=metrics_url(server),
                )
            if key in H2LOAD_KEYS:
                assert self.h2load is not None
                return run_h2load(
                    url,
                    self.body_file,
                    requests,
                    c,
                    h2load=self.h2load,
                    h1=True,
                    headers={"content-type": "application/json"},
                ).result
            return run_hey(url, self.body_file, requests, c, hey=self.hey)
        except BenchError as exc:
            state = "still running" if server.alive() else "no longer running"
            raise BenchError(
                f"{server.name} ({state}): {exc}\nlog {server.log_path}:\n{server.tail()}"
            ) from None

    def check_grpc(self, target: str) -> int:
        """The check rows over gRPC (a real client), then the timed row: its framed answer
        size is what every timed call must receive."""
        m = self.model
        check_answers(target, MODEL_NAME, m.check_rows, m.expected)
        _, size = check_answers(target, MODEL_NAME, m.check_rows[:1], [m.timed_expected])
        return size


# ----------------------------------------------------------------------------- report


def load_tool(key: str) -> str:
    """Which load generator measured the cells of ``key``."""
    if key in GRPC_KEYS:
        return "h2load"
    return "h2load --h1" if key in H2LOAD_KEYS else "hey"


def ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def targets(cells: dict[tuple[str, int], LoadResult], conc: Sequence[int]) -> list[Target]:
    def rps(key: str, c: int) -> float:
        r = cells.get((key, c))
        return r.rps if r else math.nan

    out = []
    for peer in ("mlserver", "mlserver-w0"):
        for c in conc:
            out.append(
                Target(
                    f"modelrouter / {LABELS[peer]} req/s, c={c}",
                    ratio(rps("modelrouter", c), rps(peer, c)),
                    ">=",
                    MIN_VS_MLSERVER,
                )
            )
    for c in conc:
        if ("kserve", c) in cells:
            out.append(
                Target(
                    f"modelrouter / {LABELS['kserve']} req/s, c={c}",
                    ratio(rps("modelrouter", c), rps("kserve", c)),
                    ">=",
                    MIN_VS_GUIDE,
                )
            )
        if ("guide", c) in cells:
            out.append(
                Target(
                    f"modelrouter 90/10 / guide's topology req/s, c={c}",
                    ratio(rps("modelrouter-guide", c), rps("guide", c)),
                    ">=",
                    MIN_VS_GUIDE,
                )
            )
    for c in conc:
        out.append(
            Target(
                f"modelrouter unbatched / bare req/s, c={c}",
                ratio(rps("modelrouter-unbatched", c), rps("bare", c)),
                ">=",
                MIN_VS_BARE,
            )
        )
    high = max(conc)
    if ("modelrouter-w2", high) in cells:
        out.append(
            Target(
                f"modelrouter --workers 2 / modelrouter req/s, c={high}",
                ratio(rps("modelrouter-w2", high), rps("modelrouter", high)),
                ">=",
                MIN_WORKERS_GAIN,
            )
        )
    out.append(
        Target(
            f"modelrouter (batched) / bare req/s, c={high}",
            ratio(rps("modelrouter", high), rps("bare", high)),
            ">=",
            MIN_BATCHED_VS_BARE,
        )
    )
    if ("modelrouter-grpc", high) in cells:
        for rest in ("modelrouter-h1", "modelrouter"):
            if (rest, high) in cells:
                out.append(
                    Target(
                        f"modelrouter gRPC (h2load) / REST JSON ({load_tool(rest)}) req/s, "
                        f"c={high}",
                        ratio(rps("modelrouter-grpc", high), rps(rest, high)),
                        ">=",
                        MIN_GRPC_VS_REST,
                    )
                )
    low = min(conc)
    mr, bare = cells.get(("modelrouter", low)), cells.get(("bare", low))
    unbatched = cells.get(("modelrouter-unbatched", low))
    diff = mr.p50_ms - bare.p50_ms if mr and bare else math.nan
    out.append(Target(f"p50 modelrouter - bare, c={low}", diff, "<", MAX_P50_ABOVE_BARE_MS, "ms"))
    idle = mr.p50_ms - unbatched.p50_ms if mr and unbatched else math.nan
    out.append(Target(f"p50 batched - unbatched, c={low}", idle, "<", MAX_IDLE_COST_MS, "ms"))
    return out


def report(
    cells: dict[tuple[str, int], LoadResult],
    keys: Sequence[str],
    conc: Sequence[int],
    meta: dict[str, Any],
    json_path: Path,
    rss: dict[str, tuple[float, int]],
) -> list[Target]:
    rows = []
    for key in keys:
        mb, procs = rss.get(key, (math.nan, 0))
        for c in conc:
            r = cells[(key, c)]
            rows.append(
                [
                    LABELS[key],
                    c,
                    f"{r.rps:,.0f}",
                    f"{r.p50_ms:.2f}",
                    f"{r.p99_ms:.2f}",
                    f"{mb:,.0f} ({procs})",
                ]
            )
    print_block(
        f"Single-row v2 infer, LogisticRegression on {N_FEATURES} features; "
        f"{meta['requests']} requests per cell, median of {meta['rounds']} round(s); "
        "RSS: the server with all its processes (count), after the rounds",
        format_table(
            ["server", "concurrency", "req/s", "p50 ms", "p99 ms", "RSS MB (procs)"],
            rows,
            "lrrrrr",
        ),
    )
    tgs = targets(cells, conc)
    if "guide" in rss and "modelrouter-guide" in rss:
        tgs.append(
            Target(
                "RSS modelrouter 90/10 / guide's topology",
                ratio(rss["modelrouter-guide"][0], rss["guide"][0]),
                "<",
                1.0,
            )
        )
    print_block(
        "Ratios (targets)",
        format_table(["ratio", "value", "target", "verdict"], [t.row() for t in tgs], "lrll"),
    )
    doc = {
        "benchmark": "serving",
        "meta": meta,
        "rows": [
            {
                "server": key,
                "label": LABELS[key],
                **cells[(key, c)].to_json(),
                "rss_mb": round(rss[key][0], 1) if key in rss else None,
                "processes": rss[key][1] if key in rss else None,
            }
            for key in keys
            for c in conc
        ],
        "targets": [t.to_json() for t in tgs],
    }
    write_json(json_path, doc)
    print(f"\nwrote {json_path}")
    return tgs


# ----------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("-n", "--requests", type=int, default=5000, help="requests per cell per round")
    p.add_argument("--warmup", type=int, default=1000, help="warm-up requests per server")
    p.add_argument("--rounds", type=int, default=3, help="rounds; each cell is their median")
    p.add_argument(
        "-c",
        "--concurrency",
        type=lambda s: [int(v) for v in s.split(",")],
        default=[1, 32],
        help="comma-separated concurrency levels (default 1,32)",
    )
    p.add_argument(
        "--servers",
        type=lambda s: s.split(","),
        default=list(SERVERS),
        help=f"comma-separated subset of {','.join(SERVERS)}",
    )
    p.add_argument("--quick", action="store_true", help="smoke run: 300 requests, 1 round")
    p.add_argument("--json", type=Path, default=RESULTS / "serving.json", help="results file")
    p.add_argument(
        "--workdir",
        type=Path,
        default=RESULTS / "serving-work",
        help="model, configs and server logs (remade each run)",
    )
    p.add_argument(
        "--strict", action="store_true", help="exit 1 when a target is missed (default: 0)"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.requests, args.warmup, args.rounds = 300, 100, 1
    unknown = set(args.servers) - set(SERVERS)
    if unknown:
        p.error(f"unknown servers {sorted(unknown)}; choose among {', '.join(SERVERS)}")
    if args.requests < max(args.concurrency) or args.rounds < 1:
        p.error("need --requests >= the highest concurrency and --rounds >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    terminate_on_sigterm()
    keys = [k for k in SERVERS if k in args.servers]
    conc: list[int] = args.concurrency
    started = time.time()
    load_before = warn_if_busy()

    hey = ensure_hey()
    h2load = ensure_h2load() if H2LOAD_KEYS & set(keys) else None
    mlserver_bin: Path | None = None
    if {"mlserver", "mlserver-w0"} & set(keys):
        mlserver_bin = ensure_venv(PEERS / "mlserver", mlserver_requirements())
    kserve_bin: Path | None = None
    if {"kserve", "guide"} & set(keys):
        kserve_bin = ensure_venv(PEERS / "kserve", kserve_requirements())
    haproxy = ensure_tool("haproxy") if "guide" in keys else None

    work: Path = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    model = build_model(work / "model")
    body_file = work / "request.json"
    body_file.write_bytes(model.timed_body)
    grpc_body_file = work / "request.grpc"
    grpc_body_file.write_bytes(frame(infer_message(MODEL_NAME, model.check_rows[0])))
    load = Load(hey, h2load, body_file, grpc_body_file, model)
    log(f"model saved to {model.file}")

    grpc_ports = dict(zip(sorted(GRPC_KEYS), free_ports(len(GRPC_KEYS)), strict=True))

    def grpc_target(key: str) -> str | None:
        return f"127.0.0.1:{grpc_ports[key]}" if key in GRPC_KEYS else None

    builders = {
        "modelrouter": lambda: modelrouter_server(work, model, free_ports(1)[0]),
        "modelrouter-w2": lambda: modelrouter_server(
            work, model, free_ports(1)[0], "modelrouter-w2", args=("--workers", "2")
        ),
        "modelrouter-unbatched": lambda: modelrouter_server(
            work,
            model,
            free_ports(1)[0],
            "modelrouter-unbatched",
            "    batcher: {enabled: false}\n",
        ),
        "mlserver": lambda: mlserver_server(work, model, mlserver_bin, "mlserver", {}),
        "mlserver-w0": lambda: mlserver_server(
            work, model, mlserver_bin, "mlserver-w0", {"parallel_workers": 0}
        ),
        "kserve": lambda: kserve_server(work, model, kserve_bin),
        "modelrouter-guide": lambda: modelrouter_server(
            work, model, free_ports(1)[0], "modelrouter-guide", guide_rule(model)
        ),
        "guide": lambda: guide_server(work, model, kserve_bin, haproxy),
        "bare": lambda: bare_server(work, model, free_ports(1)[0]),
        "modelrouter-h1": lambda: modelrouter_server(
            work, model, free_ports(1)[0], "modelrouter-h1"
        ),
        "modelrouter-grpc": lambda: modelrouter_server(
            work,
            model,
            free_ports(1)[0],
            "modelrouter-grpc",
            grpc_port=grpc_ports["modelrouter-grpc"],
        ),
    }
    runs: dict[tuple[str, int], list[LoadResult]] = {(k, c): [] for k in keys for c in conc}
    with ExitStack() as stack:
        servers: dict[str, ServerProcess] = {}
        for key in keys:
            log(f"starting {LABELS[key]}")
            servers[key] = stack.enter_context(serve(builders[key](), timeout=180))
            check_server(key, servers[key], model)
        for key in keys:
            log(f"warming up {LABELS[key]} ({args.warmup} requests)")
            for c in conc:
                n_warm = max(args.warmup // len(conc), c)
                load.run(key, servers[key], n_warm, c, grpc_target(key))
        for rnd in range(args.rounds):
            # Rotate the order each round so no server always runs first or last.
            order = keys[rnd % len(keys) :] + keys[: rnd % len(keys)]
            for key in order:
                for c in conc:
                    if not servers[key].alive():
                        raise BenchError(f"{LABELS[key]} died; log {servers[key].log_path}")
                    r = load.run(key, servers[key], args.requests, c, grpc_target(key))
                    runs[(key, c)].append(r)
                    log(
                        f"round {rnd + 1}/{args.rounds} {LABELS[key]} c={c}: {r.rps:,.0f} req/s, "
                        f"p50 {r.p50_ms:.2f} ms, p99 {r.p99_ms:.2f} ms"
                    )
        rss: dict[str, tuple[float, int]] = {}
        for key, server in servers.items():
            if server.proc is not None:
                rss[key] = tree_rss_mb(server.proc.pid)
        log("stopping servers")

    cells = {cell: median_result(rs) for cell, rs in runs.items()}
    meta: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "seconds": round(time.time() - started, 1),
        "git": git_revision(),
        "host": platform.node(),
        "load_average_before": round(load_before, 2),
        "cpus": _cpu_count(),
        "python": platform.python_version(),
        "hey": hey_version(),
        "h2load": h2load_version(h2load) if h2load else None,
        "load_tools": {key: load_tool(key) for key in keys},
        "requests_per_cell": {c: hey_count(args.requests, c) for c in conc},
        "requests": args.requests,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "concurrency": conc,
        "quick": args.quick,
        "versions": {
            p: importlib.metadata.version(p)
            for p in ("modelrouter", "scikit-learn", "starlette", "uvicorn", "orjson", "numpy")
        },
    }
    if kserve_bin is not None:
        meta["versions"]["kserve"] = venv_package_version(kserve_bin, "kserve")
    if haproxy is not None:
        meta["versions"]["haproxy"] = subprocess.run(
            [haproxy, "-v"], capture_output=True, text=True
        ).stdout.split("\n")[0]
    if mlserver_bin is not None:
        meta["versions"]["mlserver"] = venv_package_version(mlserver_bin, "mlserver")
        meta["versions"]["mlserver scikit-learn"] = venv_package_version(
            mlserver_bin, "scikit-learn"
        )
    tgs = report(cells, keys, conc, meta, args.json, rss)
    failed = [t for t in tgs if t.ok is False]
    return 1 if args.strict and failed else 0


def _cpu_count() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        log(f"FAILED: {exc}")
        sys.exit(2)
