"""A gRPC load generator for the Open Inference Protocol: ``hey`` for ``ModelInfer``.

    .venv/bin/python bench/grpc_load.py HOST:PORT MODEL -n 5000 -c 32 [--rows 1 --features 10]

Sends ``n`` single-tensor FP64 requests (raw contents, as tritonclient sends them) from ``c``
concurrent calls on one HTTP/2 channel per 8 callers, in its own process (it shares the cores
with the servers, as hey does), and prints one JSON line: requests, seconds, rps, p50/p90/p99/
mean/max in ms, and the count of each status. Any non-OK status fails the run (exit 1) unless
``--allow-errors``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from modelrouter.protocol.pb import messages, method_path

CALLERS_PER_CHANNEL = 8


def percentile(values: list[float], q: float) -> float:
    pos = (len(values) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (pos - lo)


async def run(
    target: str, model: str, n: int, c: int, rows: int, features: int
) -> dict[str, object]:
    m = messages()
    req = m.ModelInferRequest(model_name=model)
    req.inputs.add(name="input-0", datatype="FP64", shape=[rows, features])
    x = np.random.default_rng(1).normal(size=(rows, features))
    req.raw_input_contents.append(x.astype("<f8").tobytes())
    payload = req.SerializeToString()
    channels = [grpc.aio.insecure_channel(target) for _ in range(max(1, c // CALLERS_PER_CHANNEL))]
    calls = [
        ch.unary_unary(
            method_path("ModelInfer"),
            request_serializer=lambda b: b,
            response_deserializer=m.ModelInferResponse.FromString,
        )
        for ch in channels
    ]
    latencies: list[float] = []
    status: dict[str, int] = {}
    per_caller = n // c

    async def caller(i: int) -> None:
        call = calls[i % len(calls)]
        for _ in range(per_caller):
            start = time.perf_counter()
            try:
                await call(payload, timeout=20)
                code = "OK"
            except grpc.aio.AioRpcError as exc:
                code = exc.code().name
            latencies.append((time.perf_counter() - start) * 1000)
            status[code] = status.get(code, 0) + 1

    for _ in range(min(200, n)):  # warm up the channels
        await calls[0](payload, timeout=20)
    began = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(c)))
    seconds = time.perf_counter() - began
    for ch in channels:
        await ch.close()
    latencies.sort()
    return {
        "requests": len(latencies),
        "concurrency": c,
        "seconds": seconds,
        "rps": len(latencies) / seconds,
        "p50_ms": percentile(latencies, 50),
        "p90_ms": percentile(latencies, 90),
        "p99_ms": percentile(latencies, 99),
        "mean_ms": statistics.fmean(latencies),
        "max_ms": latencies[-1],
        "status": status,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("target")
    parser.add_argument("model")
    parser.add_argument("-n", type=int, default=5000)
    parser.add_argument("-c", type=int, default=1)
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--allow-errors", action="store_true")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args.target, args.model, args.n, args.c, args.rows, args.features))
    print(json.dumps(result))
    statuses = result["status"]
    assert isinstance(statuses, dict)
    if not args.allow_errors and set(statuses) != {"OK"}:
        sys.exit(1)


if __name__ == "__main__":
    main()
