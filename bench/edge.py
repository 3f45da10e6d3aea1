"""What the hostile-input checks cost per request, against peers measured in the same run.

    .venv/bin/python bench/edge.py [--quick]

Part 1 drives one ASGI request through three wrappers of a no-op app, in-process, with the
headers a typical client sends: no middleware (the floor), the request-id middleware as it
was before the header limits (the peer), and :class:`~modelrouter.api.edge.EdgeMiddleware`
(request id, header count and sizes, request-id alphabet, encoded-slash check).

Part 2 times one routing-rule regex on a header value: Python's ``re`` (backtracking) against
RE2 as the routing table calls it, on a normal value, and ``(a+)+b`` on growing runs of ``a``
(``re`` doubles with every character; RE2 stays linear).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import format_table, print_block
from modelrouter.api.edge import EdgeMiddleware
from modelrouter.config.regex import fullmatcher

HEADERS = [
    (b"host", b"127.0.0.1:8080"),
    (b"user-agent", b"python-httpx/0.28.1"),
    (b"accept", b"*/*"),
    (b"content-type", b"application/json"),
    (b"content-length", b"187"),
    (b"x-user-id", b"user-4242"),
]


class PeerRequestId:
    """The request-id middleware before this change (take or make the id, echo it)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        rid = None
        for k, val in scope["headers"]:
            if k == b"x-request-id":
                rid = val
                break
        if not rid:
            rid = os.urandom(16).hex().encode()
        scope.setdefault("state", {})["request_id"] = rid.decode("latin-1")

        async def send_with_id(message: Any) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", rid)]
            await send(message)

        await self.app(scope, receive, send_with_id)


async def app(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def receive() -> Any:
    return {"type": "http.request", "body": b""}


async def send(message: Any) -> None:
    return None


def per_request_us(asgi: Any, n: int) -> float:
    async def run() -> float:
        best = float("inf")
        for _ in range(5):
            start = time.perf_counter()
            for _ in range(n):
                scope = {
                    "type": "http",
                    "path": "/v2/models/churn/infer",
                    "raw_path": b"/v2/models/churn/infer",
                    "headers": HEADERS,
                }
                await asgi(scope, receive, send)
            best = min(best, (time.perf_counter() - start) / n)
        return best * 1e6

    return asyncio.run(run())


def regex_us(fn: Any, text: str, n: int) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(n):
            fn(text)
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: few iterations")
    args = parser.parse_args()
    n = 2_000 if args.quick else 50_000

    floor = per_request_us(app, n)
    peer = per_request_us(PeerRequestId(app), n)
    edge = per_request_us(EdgeMiddleware(app), n)
    rows = [
        ["no middleware (floor)", f"{floor:.2f}", "-", "-"],
        ["request id only (before)", f"{peer:.2f}", f"{peer - floor:.2f}", "1.00x"],
        ["EdgeMiddleware (after)", f"{edge:.2f}", f"{edge - floor:.2f}", f"{edge / peer:.2f}x"],
    ]
    print_block(
        "one ASGI request through the edge, 6 headers (best of 5)",
        format_table(["wrapper", "µs per request", "µs over floor", "vs before"], rows),
    )

    std = re.compile(r"eu-[a-z]+-[0-9]").fullmatch
    linear = fullmatcher(r"eu-[a-z]+-[0-9]")
    m = n
    rows = [
        [
            "eu-[a-z]+-[0-9] on 'eu-west-1'",
            f"{regex_us(std, 'eu-west-1', m):.2f}",
            f"{regex_us(linear, 'eu-west-1', m):.2f}",
        ]
    ]
    evil_std = re.compile("(a+)+b").fullmatch
    evil = fullmatcher("(a+)+b")
    for length in (12, 16, 20):
        text = "a" * length
        reps = 3 if length >= 20 else 20
        rows.append(
            [
                f"(a+)+b on {length} x 'a'",
                f"{regex_us(evil_std, text, reps):.0f}",
                f"{regex_us(evil, text, reps):.2f}",
            ]
        )
    rows.append(
        ["(a+)+b on 8000 x 'a' (max header)", "(not run)", f"{regex_us(evil, 'a' * 8000, 20):.1f}"]
    )
    print_block(
        "one rule regex on a header value",
        format_table(["pattern and value", "re µs", "RE2 µs"], rows),
    )


if __name__ == "__main__":
    main()
