"""The request path in-process: what one inference costs in Python, without HTTP or sockets.

    .venv/bin/python bench/request_path.py [--quick] [--requests N] [--concurrency C]

Drives ``POST /v2/models/bench/infer`` (one row of 20 FP64 features, the body bench/serving.py
sends) straight into each ASGI app with ``C`` concurrent tasks on one event loop, and reports
microseconds of the process's CPU per request (best of the rounds):

- **bare**: bench/bare_app.py (Starlette + orjson + ``model.predict``), the floor;
- **modelrouter**: the gateway app from :func:`modelrouter.app.create_app` with a
  ``batcher: {enabled: false}`` config as bench/serving.py generates it (decision audit on,
  SQLite store, telemetry on), its background tasks running;
- **modelrouter, Starlette stack**: the same app with the inference fast path bypassed (its
  requests go through Starlette's middleware and router), to show what the fast path saves;
- **bare + HTTP**: the bare app behind uvicorn's httptools protocol, as below;
- **modelrouter + HTTP, ASGI** and **modelrouter + HTTP, native**: the gateway app behind
  uvicorn's httptools protocol (request bytes in, response bytes out, to a transport that only
  counts them: no socket), first as plain uvicorn runs it (every route through ASGI), then as
  the gateway runs it (:mod:`modelrouter.api.native`: the inference routes served by the
  protocol, one write per response). The difference is what the native path saves;
- **predict alone**: ``model.predict`` on the row, in the runtime's ``config_context``: the
  part no server can save.

The CPU time includes the audit writer's SQLite thread (a real cost of the request path). The
ratios are bare / modelrouter (1.0x means as cheap as the bare app), the rows with HTTP against
the bare app with HTTP. The timed rounds run under the gateway's garbage-collection policy
(:mod:`modelrouter.gcpolicy`, entered once everything is up, as a serving gateway does;
``--gc-policy off`` leaves CPython's defaults); the ``gc µs`` column is the part of each row
spent in the cycle collector (``gc.callbacks``), over the row's best round.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import joblib
import numpy as np
import orjson
from sklearn.linear_model import LogisticRegression

from _common import format_table, print_block, write_json

N_FEATURES = 20
SEED = 20261123

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def build_model(folder: Path) -> tuple[Path, bytes]:
    """bench/serving.py's model (same seed and data) and one timed request body."""
    rng = np.random.default_rng(SEED)
    x = rng.normal(size=(5000, N_FEATURES))
    w = rng.normal(size=N_FEATURES)
    y = ((x @ w + rng.normal(scale=2.0, size=5000)) > 0).astype(np.int64)
    model = LogisticRegression(max_iter=1000, random_state=0).fit(x, y)
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    row = rng.normal(size=(1, N_FEATURES))
    body = orjson.dumps(
        {
            "inputs": [
                {"name": "input-0", "datatype": "FP64", "shape": [1, 20], "data": row.tolist()}
            ]
        }
    )
    return folder / "model.joblib", body


def scope_for(path: str, body: bytes) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"hey/0.0.1"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"accept-encoding", b"gzip"),
        ],
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "state": {},
    }


async def one(app: App, path: str, body: bytes) -> int:
    status = 0
    delivered = False

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if delivered:
            await asyncio.sleep(3600)  # as a server does: nothing more until a disconnect
        delivered = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope_for(path, body), receive, send)
    return status


class _Transport(asyncio.Transport):
    """Where a protocol writes: responses counted, the waiter woken when one is whole."""

    def __init__(self) -> None:
        super().__init__()
        self.buf = b""
        self.status = 0
        self.waiter: asyncio.Future[int] | None = None

    def write(self, data: Any) -> None:
        self.buf += bytes(data)
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buf[:end].lower()
        at = head.find(b"content-length: ")
        length = int(head[at + 16 : head.index(b"\r\n", at)]) if at >= 0 else 0
        if len(self.buf) >= end + 4 + length:
            self.status = int(self.buf[9:12])
            self.buf = b""
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_result(self.status)

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def http_app(asgi: Any, protocol: type[Any]) -> App:
    """An :data:`App` that sends each request as bytes through ``protocol`` (an httptools
    protocol class) serving ``asgi``, one connection per concurrent task, kept alive."""
    import uvicorn
    from uvicorn.server import ServerState

    config = uvicorn.Config(asgi, lifespan="off", access_log=False, log_level="warning")
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Tue, 01 Dec 2026 11:00:00 GMT"), (b"server", b"uvicorn")]
    idle: list[tuple[Any, _Transport]] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body = (await receive())["body"]
        if idle:
            proto, transport = idle.pop()
        else:
            proto = protocol(config, state, {}, asyncio.get_running_loop())
            transport = _Transport()
            proto.connection_made(transport)
        head = [f"POST {scope['path']} HTTP/1.1".encode()]
        head += [name + b": " + value for name, value in scope["headers"]]
        transport.waiter = asyncio.get_running_loop().create_future()
        proto.data_received(b"\r\n".join(head) + b"\r\n\r\n" + body)
        status = await transport.waiter
        idle.append((proto, transport))
        await send({"type": "http.response.start", "status": status, "headers": []})

    return app


class GcClock:
    """CPU seconds spent in the cycle collector, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.process_time()
        else:
            self.seconds += time.process_time() - self._start


GC = GcClock()


async def drive(app: App, path: str, body: bytes, n: int, c: int) -> tuple[float, float]:
    """CPU seconds of this process (all its threads) per request, ``n`` requests by ``c``
    tasks, and the part of it in the cycle collector."""
    left = n

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status = await one(app, path, body)
            if status != 200:
                raise SystemExit(f"{path}: status {status}")

    start, in_gc = time.process_time(), GC.seconds
    await asyncio.gather(*(worker() for _ in range(c)))
    return (time.process_time() - start) / n, (GC.seconds - in_gc) / n


def gateway_config(folder: Path, model_dir: Path) -> Path:
    config = folder / "modelrouter.yaml"
    config.write_text(
        "server:\n"
        "  name: bench\n"
        "models:\n"
        "  bench:\n"
        "    versions:\n"
        f"      v1: {{storageUri: {model_dir}, modelFormat: sklearn}}\n"
        "    batcher: {enabled: false}\n"
    )
    return config


async def measure(
    args: argparse.Namespace, work: Path
) -> tuple[dict[str, float], dict[str, float]]:
    model_file, body = build_model(work / "model")
    os.environ["BARE_MODEL"] = str(model_file)
    os.environ["BARE_MODEL_NAME"] = "bench"
    import bare_app
    from modelrouter.api.edge import EdgeMiddleware
    from modelrouter.app import build_services, create_app, running
    from modelrouter.config.loader import load_config

    loaded = load_config(gateway_config(work, model_file.parent))
    services = build_services(loaded)
    gateway: Any = create_app(loaded, services, lifespan=False)
    # a tree from before the fast path (PYTHONPATH=older/src) has Starlette under the edge
    starlette = getattr(gateway.app, "app", None)
    stack = EdgeMiddleware(starlette, gateway.limits) if starlette is not None else None

    import sklearn

    model = joblib.load(model_file)
    row = np.asarray(orjson.loads(body)["inputs"][0]["data"], dtype=np.float64)

    async def predict_alone(scope: Any, receive: Any, send: Any) -> None:
        with sklearn.config_context(skip_parameter_validation=True, assume_finite=True):
            model.predict(row)
        await send({"type": "http.response.start", "status": 200, "headers": []})

    apps: dict[str, App] = {
        "bare": bare_app.app,
        "modelrouter": gateway,
        "predict alone": predict_alone,
    }
    if stack is not None:
        apps["modelrouter, Starlette stack"] = stack
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    apps["bare + HTTP"] = http_app(bare_app.app, HttpToolsProtocol)
    apps["modelrouter + HTTP, ASGI"] = http_app(gateway, HttpToolsProtocol)
    with contextlib.suppress(ImportError):  # a tree from before the native path has none
        from modelrouter.api.native import gateway_http_protocol

        apps["modelrouter + HTTP, native"] = http_app(
            gateway, gateway_http_protocol(gateway, 32768)
        )
    path = "/v2/models/bench/infer"
    best = {name: float("inf") for name in apps}
    in_gc = dict.fromkeys(apps, 0.0)
    async with running(services):
        for app in apps.values():  # warm-up, and a check that each answers 200
            await drive(app, path, body, min(200, args.requests), args.concurrency)
        with contextlib.ExitStack() as stack:
            if args.gc_policy == "gateway":
                with contextlib.suppress(ImportError):  # a tree from before the policy
                    from modelrouter import gcpolicy

                    stack.enter_context(gcpolicy.frozen())
            for _ in range(args.rounds):
                for name, app in apps.items():
                    cost, collecting = await drive(app, path, body, args.requests, args.concurrency)
                    if cost < best[name]:
                        best[name], in_gc[name] = cost, collecting
                await services.audit.flush()
    return best, in_gc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", "-n", type=int, default=3000)
    parser.add_argument("--concurrency", "-c", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="300 requests, 2 rounds")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--gc-policy",
        choices=("gateway", "off"),
        default="gateway",
        help="the timed rounds under modelrouter.gcpolicy (as served), or CPython's defaults",
    )
    args = parser.parse_args()
    if args.quick:
        args.requests, args.rounds = 300, 2
    with tempfile.TemporaryDirectory(prefix="request-path-") as tmp:
        best, in_gc = asyncio.run(measure(args, Path(tmp)))

    def floor(name: str) -> float:
        """What ``name`` compares with: the bare app, behind the same HTTP layer or none."""
        return best["bare + HTTP"] if "+ HTTP" in name else best["bare"]

    rows = [
        [name, f"{cost * 1e6:,.0f}", f"{in_gc[name] * 1e6:,.1f}", f"{floor(name) / cost:.2f}x"]
        for name, cost in best.items()
    ]
    print_block(
        f"CPU per request, in-process, c={args.concurrency}, best of {args.rounds} rounds "
        f"of {args.requests}, gc policy {args.gc_policy}",
        format_table(["app", "µs/request", "gc µs", "bare / app"], rows),
    )
    if args.json is not None:
        with contextlib.suppress(OSError):
            write_json(
                args.json,
                {
                    "us_per_request": {k: v * 1e6 for k, v in best.items()},
                    "gc_us_per_request": {k: v * 1e6 for k, v in in_gc.items()},
                },
            )


if __name__ == "__main__":
    main()
