"""Which client should the remote runtime proxy with? CPU per call of each, in one run.

    .venv/bin/python bench/proxy_clients.py [-n 3000]

One upstream per protocol, each in its own process: the bare Starlette app (bench/bare_app.py)
for HTTP, a modelrouter gateway with ``server.grpc`` for gRPC, both serving the example churn
model. This process then sends single-row Open Inference Protocol v2 requests with each client
on uvloop, at concurrency 1 and 32, and measures its own CPU time per call (``process_time``:
what the client costs the gateway) and the wall-clock rate. Compare rows of one run only.

Clients: httpx.AsyncClient (what the remote runtime used), aiohttp, httpcore's pool directly,
modelrouter's own HTTP/1.1 pool (``modelrouter.runtime.http1``), and a grpc.aio channel with
modelrouter's messages (raw tensor contents).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import orjson
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    RESULTS,
    VENV_BIN,
    ServerProcess,
    format_table,
    free_port,
    free_ports,
    log,
    print_block,
    serve,
    warn_if_busy,
    write_json,
)

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = ROOT / "examples" / "churn" / "models" / "churn" / "v1"
ROW = [12, 89.5, 3, 1, 1, 1, 34, 1, 2, 2]
BODY = orjson.dumps(
    {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 10], "data": [ROW]}]}
)
PATH = "/v2/models/churn/infer"

Call = Callable[[], Awaitable[Any]]


def upstreams(work: Path) -> tuple[ServerProcess, ServerProcess, int, int]:
    http_port = free_port()
    argv = [str(VENV_BIN / "python"), "-m", "uvicorn", "--app-dir", str(ROOT / "bench")]
    argv += ["bare_app:app", "--port", str(http_port), "--no-access-log", "--log-level", "warning"]
    bare = ServerProcess(
        "bare",
        argv,
        work / "bare.log",
        f"http://127.0.0.1:{http_port}/v2/models/churn/ready",
        env={"BARE_MODEL": str(MODEL_DIR / "model.joblib"), "BARE_MODEL_NAME": "churn"},
    )
    gw_http, gw_grpc = free_ports(2)
    config = work / "grpc-upstream.yaml"
    config.write_text(
        "server:\n  store: memory://\n  watchConfig: false\n  audit: {enabled: false}\n"
        f"  grpc: {{port: {gw_grpc}}}\n"
        "models:\n  churn:\n    versions:\n"
        f"      v1: {{storageUri: {MODEL_DIR}, modelFormat: sklearn}}\n"
    )
    argv = [str(VENV_BIN / "modelrouter"), "serve", str(config), "--port", str(gw_http)]
    argv += ["--log-level", "warning"]
    gateway = ServerProcess(
        "modelrouter-grpc",
        argv,
        work / "grpc-upstream.log",
        f"http://127.0.0.1:{gw_http}/v2/health/ready",
    )
    return bare, gateway, http_port, gw_grpc


async def measure(
    make: Callable[[], Awaitable[tuple[Call, Callable[[], Awaitable[None]]]]],
    n: int,
    concurrency: int,
) -> tuple[float, float]:
    """(CPU µs per call in this process, calls per second)."""
    call, close = await make()
    try:
        for _ in range(200):  # warm up: connections, caches
            await call()
        per_worker = n // concurrency

        async def worker() -> None:
            for _ in range(per_worker):
                await call()

        cpu, wall = time.process_time(), time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        total = per_worker * concurrency
        return cpu / total * 1e6, total / wall
    finally:
        await close()


def clients(http_port: int, grpc_port: int) -> dict[str, Callable[[], Awaitable[Any]]]:
    base = f"http://127.0.0.1:{http_port}"
    headers = {"content-type": "application/json"}

    async def httpx_client() -> tuple[Call, Any]:
        import httpx

        c = httpx.AsyncClient(base_url=base, limits=httpx.Limits(max_connections=100))

        async def call() -> Any:
            r = await c.post(PATH, content=BODY, headers=headers)
            assert r.status_code == 200
            return orjson.loads(r.content)

        return call, c.aclose

    async def aiohttp_client() -> tuple[Call, Any]:
        import aiohttp

        s = aiohttp.ClientSession(base)

        async def call() -> Any:
            async with s.post(PATH, data=BODY, headers=headers) as r:
                assert r.status == 200
                return orjson.loads(await r.read())

        return call, s.close

    async def httpcore_client() -> tuple[Call, Any]:
        import httpcore

        pool = httpcore.AsyncConnectionPool(max_connections=100)
        url = base + PATH

        async def call() -> Any:
            r = await pool.request("POST", url, headers=headers, content=BODY)
            assert r.status == 200
            return orjson.loads(r.content)

        return call, pool.aclose

    async def http1_client() -> tuple[Call, Any]:
        from modelrouter.runtime.http1 import Http1Pool

        pool = Http1Pool("127.0.0.1", http_port)

        async def call() -> Any:
            r = await pool.request("POST", PATH, BODY, headers)
            assert r.status == 200
            return orjson.loads(r.body)

        return call, pool.aclose

    async def grpc_client() -> tuple[Call, Any]:
        import grpc
        import numpy as np

        from modelrouter.protocol import grpc_codec
        from modelrouter.protocol.pb import messages, method_path
        from modelrouter.protocol.types import InferenceRequest, Tensor

        m = messages()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{grpc_port}")
        infer = channel.unary_unary(
            method_path("ModelInfer"),
            request_serializer=m.ModelInferRequest.SerializeToString,
            response_deserializer=m.ModelInferResponse.FromString,
        )
        x = np.array([ROW], dtype=np.float64)

        async def call() -> Any:
            req = InferenceRequest([Tensor.from_array("input-0", x)])
            msg = grpc_codec.encode_request(req, "churn")
            return grpc_codec.decode_response(await infer(msg, timeout=10))

        return call, channel.close

    return {
        "httpx": httpx_client,
        "aiohttp": aiohttp_client,
        "httpcore": httpcore_client,
        "modelrouter http1": http1_client,
        "grpc.aio (modelrouter upstream)": grpc_client,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--requests", type=int, default=3000)
    args = parser.parse_args()
    warn_if_busy()
    work = RESULTS / "proxy-clients-work"
    work.mkdir(parents=True, exist_ok=True)
    rows: list[list[str]] = []
    doc: dict[str, Any] = {"requests": args.requests, "results": {}}
    bare, gateway, http_port, grpc_port = upstreams(work)
    with ExitStack() as stack:
        stack.enter_context(serve(bare))
        stack.enter_context(serve(gateway))
        loop = uvloop.new_event_loop()
        asyncio.set_event_loop(loop)
        baseline: dict[int, float] = {}
        for name, make in clients(http_port, grpc_port).items():
            cells: list[str] = [name]
            for c in (1, 32):
                log(f"{name} c={c}")
                cpu_us, rate = loop.run_until_complete(measure(make, args.requests, c))
                baseline.setdefault(c, cpu_us)
                doc["results"][f"{name} c={c}"] = {"cpu_us": cpu_us, "rps": rate}
                cells += [f"{cpu_us:.0f}", f"{cpu_us / baseline[c]:.2f}x", f"{rate:.0f}"]
            rows.append(cells)
        loop.close()
    header = ["client", "c=1 CPU µs/call", "vs httpx", "c=1 req/s"]
    header += ["c=32 CPU µs/call", "vs httpx", "c=32 req/s"]
    print_block("Client CPU per proxied call (this process only)", format_table(header, rows))
    write_json(RESULTS / "proxy_clients.json", doc)


if __name__ == "__main__":
    main()
