"""gRPC load for the Open Inference Protocol: ``ModelInfer`` timed by ``h2load``, proven by a
real client and by the server's own counters.

The benchmarks (bench/serving.py, bench/proxy.py) time gRPC with nghttp2's ``h2load``
(:func:`timed_grpc`): it POSTs one framed ``ModelInferRequest`` (raw contents, as tritonclient
sends them) over HTTP/2, ``c // 8`` connections with 8 streams each, and costs the shared cores
about a tenth of what a Python client does (0.04 against 0.43 ms of CPU per call, measured).
h2load does not read gRPC trailers, so a timed run counts only when

- a real gRPC client gets the right answers before and after it (:func:`check_answers`);
- every response carried the bytes of a correct answer (h2load's DATA bytes: an error has
  none);
- the server counted exactly the calls sent, all with status 200 (its ``/metrics``,
  :func:`served`).

Run as a script, it is the Python load generator this used to be (``grpc.aio``, one channel per
8 callers), kept to compare tools::

    .venv/bin/python bench/grpc_load.py HOST:PORT MODEL -n 5000 -c 32 [--rows 1 --features 10]

It prints one JSON line: requests, seconds, rps, p50/p90/p99/mean/max in ms, and the count of
each status; any non-OK status fails the run (exit 1) unless ``--allow-errors``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BenchError, LoadResult, run_h2load
from modelrouter.protocol.pb import messages, method_path

CALLERS_PER_CHANNEL = 8


# ----------------------------------------------------------------------------- h2load


def infer_message(model: str, rows: np.ndarray) -> bytes:
    """A serialized ``ModelInferRequest``: one FP64 tensor ``input-0``, raw contents."""
    x = np.asarray(rows, dtype="<f8")
    x = x.reshape(1, -1) if x.ndim == 1 else x
    req = messages().ModelInferRequest(model_name=model)
    req.inputs.add(name="input-0", datatype="FP64", shape=list(x.shape))
    req.raw_input_contents.append(x.tobytes())
    return bytes(req.SerializeToString())


def frame(message: bytes) -> bytes:
    """A gRPC length-prefixed message: no compression flag, 4-byte big-endian length."""
    return b"\0" + len(message).to_bytes(4, "big") + message


def check_answers(
    target: str, model: str, rows: np.ndarray, expected: Sequence[float] | None = None
) -> tuple[list[float], int]:
    """Each row in its own call from a real gRPC client (grpcio, status and trailers read):
    every call must end OK with a ``predict`` output, equal to ``expected`` when given. Returns
    the predictions and the framed size of the last response (what each timed call must get)."""
    m = messages()
    got: list[float] = []
    size = 0
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            method_path("ModelInfer"),
            request_serializer=lambda b: b,
            response_deserializer=lambda b: b,
        )
        for i, row in enumerate(rows):
            try:
                raw = call(infer_message(model, row), timeout=20)
            except grpc.RpcError as exc:
                raise BenchError(f"gRPC check call {i} to {target}: {exc}") from None
            resp = m.ModelInferResponse.FromString(raw)
            got.append(_prediction(resp, target))
            size = len(frame(raw))
    if expected is not None and got != [float(v) for v in expected]:
        raise BenchError(f"gRPC answers of {target}: {got}, expected {list(expected)}")
    return got, size


def _prediction(resp: Any, target: str) -> float:
    names = [o.name for o in resp.outputs]
    i = names.index("predict") if "predict" in names else 0 if len(names) == 1 else -1
    if i < 0:
        raise BenchError(f"{target} answered without a 'predict' output: {names}")
    out = resp.outputs[i]
    if resp.raw_output_contents:
        dtype = {"FP64": "<f8", "FP32": "<f4", "INT64": "<i8", "INT32": "<i4"}[out.datatype]
        values = np.frombuffer(resp.raw_output_contents[i], dtype=dtype)
    else:
        contents = out.contents
        values = np.asarray(
            list(contents.fp64_contents or contents.fp32_contents or contents.int64_contents)
            or list(contents.int_contents)
        )
    if values.size != 1:
        raise BenchError(f"{target} answered {values.size} values for one row")
    return float(values[0])


_COUNTER = re.compile(r"^modelrouter_requests_total\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+]+)$")


def served(metrics_url: str, model: str) -> dict[str, int]:
    """Requests a modelrouter gateway counted for ``model``, by status (its ``/metrics``)."""
    with urllib.request.urlopen(metrics_url, timeout=10) as resp:
        text = resp.read().decode()
    counts: dict[str, int] = {}
    for line in text.splitlines():
        found = _COUNTER.match(line)
        if found is None:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found.group("labels")))
        if labels.get("model") != model:
            continue
        status = labels.get("status", "?")
        counts[status] = counts.get(status, 0) + int(float(found.group("value")))
    return counts


def timed_grpc(
    target: str,
    model: str,
    body_file: Path,
    requests: int,
    c: int,
    *,
    h2load: str,
    check: Callable[[], int],
    metrics_url: str,
    metrics_model: str | None = None,
) -> LoadResult:
    """One h2load run of ``ModelInfer`` (``body_file``: a framed request) against ``target``,
    that counts only if proven right: ``check`` (a real client's calls; it returns the framed
    size of a correct response) passes before and after, every response brought that many
    bytes, and the modelrouter at ``metrics_url`` counted exactly the calls sent for
    ``metrics_model`` (default ``model``), all 200. Any gRPC error fails the run."""
    size = check()
    before = served(metrics_url, metrics_model or model)
    run = run_h2load(
        f"http://{target}/inference.GRPCInferenceService/ModelInfer",
        body_file,
        requests,
        c,
        h2load=h2load,
        headers={"content-type": "application/grpc", "te": "trailers"},
    )
    after = served(metrics_url, metrics_model or model)
    n = run.result.requests
    delta = {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
    if delta != {"200": n}:
        raise BenchError(f"{target}: {n} calls sent, the server counted {delta} (by status)")
    if run.data_bytes != n * size:
        raise BenchError(
            f"{target}: responses brought {run.data_bytes} bytes, {n} correct answers make "
            f"{n * size}: some calls ended with an error"
        )
    check()
    return run.result


# ----------------------------------------------------------------------------- Python client


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
