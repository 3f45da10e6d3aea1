"""Routing benchmarks: decide() in microseconds, and what audit and mirroring cost a gateway.

    .venv/bin/python bench/routing.py [--quick] [--requests N]

Part 1 times the pure ``decide()`` in-process on three tables (one sticky rule; ten rules on
headers; ten rules on headers and body fields), against a hand-written if-chain for the same
ten header rules as the floor a Python router can reach. Target: under 5 microseconds for a
10-rule table.

Part 2 serves the example churn model with four gateway configs (audit off/on, no mirror or a
100% mirror to a second copy of the model) and loads each with ``hey`` at concurrency 1 and 32.
Target: audit on and mirror on within 5% of off. A mirror runs a second prediction on the same
two cores, so at saturation (c=32) its cost is the shadow model's CPU time, not the router's.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    LoadResult,
    ServerProcess,
    Target,
    ensure_hey,
    format_table,
    free_port,
    print_block,
    run_hey,
    serve,
    terminate_on_sigterm,
    write_json,
)
from modelrouter.config import parse_config
from modelrouter.routing import RequestContext, compile_table, decide

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "examples" / "churn" / "models" / "churn"
BIN = Path(sys.executable).parent


def table_yaml(rules: str) -> str:
    return f"""
models:
  churn:
    versions:
      v1: {{storageUri: /x, modelFormat: sklearn}}
      v2: {{storageUri: /y, modelFormat: sklearn}}
      v3: {{storageUri: /z, modelFormat: sklearn}}
    http:
{rules}
"""


DEFAULT_RULE = """      - name: default
        route: [{destination: v1, weight: 90}, {destination: v2, weight: 10}]
        sticky: {header: x-user-id}
        mirror: {destination: v3}"""


def header_rules(n: int) -> str:
    return "\n".join(
        f"""      - name: r{i}
        match: [{{headers: {{x-region: {{exact: region-{i}}}}}}}]
        route: [{{destination: v2}}]"""
        for i in range(n)
    )


def mixed_rules(n: int) -> str:
    return "\n".join(
        f"""      - name: r{i}
        match:
          - headers: {{x-region: {{exact: region-{i}}}}}
          - body: {{parameters.segment: {{prefix: seg-{i}}}}}
        route: [{{destination: v2}}]"""
        for i in range(n)
    )


def time_call(fn: Callable[[], object], number: int) -> float:
    """Best of five runs, in microseconds per call."""
    runs = timeit.repeat(fn, number=number, repeat=5)
    return min(runs) / number * 1e6


def bench_decide(number: int) -> list[tuple[str, float]]:
    ctx = RequestContext(
        headers={"x-user-id": "user-42", "content-type": "application/json", "x-region": "us"},
        body={"parameters": {"segment": "gold"}},
        rand=random.Random(1).random,
    )
    rows = []
    for label, rules in (
        ("1 rule: sticky 90/10 + mirror", DEFAULT_RULE),
        ("10 rules: 9 on headers + sticky default", header_rules(9) + "\n" + DEFAULT_RULE),
        ("10 rules: 9 on headers OR body + sticky", mixed_rules(9) + "\n" + DEFAULT_RULE),
    ):
        table = compile_table(parse_config(table_yaml(rules)).models, 1)
        assert decide(table, "churn", ctx).rule_name == "default"
        us = time_call(lambda t=table: decide(t, "churn", ctx), number)
        rows.append((label, us))

    regions = [f"region-{i}" for i in range(9)]

    def if_chain() -> str:
        region = ctx.headers.get("x-region")
        for r in regions:
            if region == r:
                return "v2"
        return "v1" if hash(ctx.headers.get("x-user-id")) % 10000 < 9000 else "v2"

    rows.append(("floor: hand-written if-chain, 9 headers + hash", time_call(if_chain, number)))
    return rows


# ----------------------------------------------------------------------------- gateway


def gateway_config(port: int, store: Path, audit: bool, mirror: bool) -> str:
    mirror_lines = (
        "        mirror: {destination: shadow}\n        mirrorPercentage: {value: 100}\n"
        if mirror
        else ""
    )
    return f"""
server:
  http: {{port: {port}}}
  store: sqlite:///{store}
  watchConfig: false
  audit: {{enabled: {str(audit).lower()}}}
models:
  churn:
    versions:
      v1: {{storageUri: {MODELS / "v1"}, modelFormat: sklearn}}
      shadow: {{storageUri: {MODELS / "v1"}, modelFormat: sklearn}}
    http:
      - name: default
        route: [{{destination: v1}}]
        sticky: {{header: x-user-id}}
{mirror_lines}"""


BODY = (
    b'{"inputs":[{"name":"input-0","shape":[1,10],"datatype":"FP64",'
    b'"data":[12,89.5,3,1,1,1,34,1,2,2]}]}'
)


def bench_gateway(requests: int, work: Path) -> dict[tuple[str, int], LoadResult]:
    hey = ensure_hey()
    body = work / "body.json"
    body.write_bytes(BODY)
    results: dict[tuple[str, int], LoadResult] = {}
    for label, audit, mirror in (
        ("audit off, no mirror", False, False),
        ("audit on, no mirror", True, False),
        ("audit off, 100% mirror", False, True),
        ("audit on, 100% mirror", True, True),
    ):
        port = free_port()
        cfg = work / f"{label.replace(' ', '_').replace(',', '').replace('%', '')}.yaml"
        cfg.write_text(gateway_config(port, work / f"{cfg.stem}.db", audit, mirror))
        server = ServerProcess(
            label,
            [str(BIN / "modelrouter"), "serve", str(cfg), "--log-level", "warning"],
            work / f"{cfg.stem}.log",
            f"http://127.0.0.1:{port}/v2/health/ready",
        )
        url = f"http://127.0.0.1:{port}/v2/models/churn/infer"
        with serve(server):
            run_hey(
                url, body, max(200, requests // 10), 4, hey=hey, headers={"x-user-id": "u1"}
            )  # warm-up
            for c in (1, 32):
                results[(label, c)] = run_hey(
                    url, body, requests, c, hey=hey, headers={"x-user-id": "u1"}
                )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few iterations")
    parser.add_argument("--requests", type=int, default=None, help="requests per hey run")
    parser.add_argument("--skip-gateway", action="store_true", help="only time decide()")
    args = parser.parse_args()
    terminate_on_sigterm()
    number = 2_000 if args.quick else 50_000
    requests = args.requests or (400 if args.quick else 4000)

    decide_rows = bench_decide(number)
    floor = decide_rows[-1][1]
    print_block(
        "decide() per call (best of 5)",
        format_table(
            ["table", "µs", "vs if-chain"],
            [[label, f"{us:.2f}", f"{us / floor:.1f}x"] for label, us in decide_rows],
        ),
    )
    targets = [Target(f"decide(), {label}", us, "<", 5.0, "µs") for label, us in decide_rows[1:3]]
    doc: dict[str, object] = {"decide": [{"table": t, "us": round(us, 3)} for t, us in decide_rows]}

    if not args.skip_gateway:
        if not (MODELS / "v1").exists():
            sys.exit("build the example models first: make models")
        with tempfile.TemporaryDirectory(prefix="mr-bench-") as tmp:
            results = bench_gateway(requests, Path(tmp))
        rows = [
            [label, c, f"{r.rps:.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}"]
            for (label, c), r in results.items()
        ]
        print_block(
            "gateway, single-row v2 requests",
            format_table(["config", "c", "req/s", "p50 ms", "p99 ms"], rows),
        )
        base = {c: results[("audit off, no mirror", c)] for c in (1, 32)}
        for label in ("audit on, no mirror", "audit off, 100% mirror", "audit on, 100% mirror"):
            for c in (1, 32):
                targets.append(
                    Target(
                        f"{label} / off, c={c} req/s",
                        results[(label, c)].rps / base[c].rps,
                        ">=",
                        0.95,
                    )
                )
        doc["gateway"] = {f"{k[0]} c={k[1]}": v.to_json() for k, v in results.items()}
    print_block(
        "targets", format_table(["what", "value", "target", ""], [t.row() for t in targets])
    )
    doc["targets"] = [t.to_json() for t in targets]
    write_json(ROOT / "bench" / "results" / "routing.json", doc)


if __name__ == "__main__":
    main()
