"""The inference fast path answers exactly as the Starlette app it bypasses."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message

from modelrouter.api.rest import EXCEPTION_HANDLERS, InferenceFastPath
from modelrouter.errors import InvalidInput, PayloadTooLarge


async def infer(request: Request) -> Response:
    p = request.path_params
    what = p["name"]
    if what == "invalid":
        raise InvalidInput("input 'x': bad")
    if what == "large":
        raise PayloadTooLarge("too big")
    if what == "http":
        raise HTTPException(409, "conflict here")
    if what == "crash":
        raise RuntimeError("boom")
    body = await request.body()
    text = f"{what}|{p.get('version')}|{request.state.request_id}|{len(body)}|{request.url.path}"
    return Response(text.encode(), 200, {"x-model-version": "v9"}, "text/plain")


async def other(request: Request) -> Response:
    return Response(b"other", 200, None, "text/plain")


def routes() -> list[Route]:
    return [
        Route("/v2/models/{name}/infer", infer, methods=["POST"]),
        Route("/v2/models/{name}/versions/{version}/infer", infer, methods=["POST"]),
        Route("/v1/models/{name}:predict", infer, methods=["POST"]),
    ]


def apps() -> tuple[ASGIApp, ASGIApp]:
    def starlette() -> Starlette:
        return Starlette(
            routes=[*routes(), Route("/v2/health/live", other, methods=["GET"])],
            exception_handlers=dict(EXCEPTION_HANDLERS),
        )

    plain = starlette()
    fast_app = starlette()
    return plain, InferenceFastPath(fast_app, fast_app.routes[:3])  # type: ignore[arg-type]


async def call(app: ASGIApp, method: str, path: str, body: bytes = b"x" * 10) -> dict[str, Any]:
    """One request; the answer, and the exception the app raised (as a server sees it)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"t"), (b"content-length", str(len(body)).encode())],
        "server": ("127.0.0.1", 80),
        "client": ("127.0.0.1", 5000),
        "state": {"request_id": "rid-1"},
    }
    sent: list[Message] = []
    chunks = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> Message:
        return chunks.pop(0) if chunks else {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)

    raised = None
    try:
        await app(scope, receive, send)
    except Exception as exc:
        raised = f"{type(exc).__name__}: {exc}"
    start = next((m for m in sent if m["type"] == "http.response.start"), {})
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return {
        "status": start.get("status"),
        "headers": sorted(start.get("headers", ())),
        "body": body_out,
        "raised": raised,
    }


CASES = [
    ("POST", "/v2/models/m/infer"),
    ("POST", "/v2/models/m/versions/v2/infer"),
    ("POST", "/v1/models/m:predict"),
    ("POST", "/v2/models/invalid/infer"),
    ("POST", "/v2/models/large/versions/v1/infer"),
    ("POST", "/v2/models/http/infer"),
    ("POST", "/v2/models/crash/infer"),
    ("GET", "/v2/models/m/infer"),  # 405 from Starlette
    ("PUT", "/v1/models/m:predict"),
    ("POST", "/v2/models/m/infer/"),  # trailing slash: Starlette's redirect
    ("POST", "/v2/models/a/b/infer"),  # 404
    ("POST", "/v2/health/live"),  # 405 on a route the fast path does not serve
    ("GET", "/v2/health/live"),
]


@pytest.mark.parametrize(("method", "path"), CASES)
def test_every_answer_is_the_starlette_apps(method: str, path: str) -> None:
    plain, fast = apps()
    want = asyncio.run(call(plain, method, path))
    got = asyncio.run(call(fast, method, path))
    assert got == want


def test_the_fast_path_serves_the_inference_routes_itself() -> None:
    _, fast = apps()
    assert isinstance(fast, InferenceFastPath)

    class Refuse:
        router = fast.app.router

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            raise AssertionError(f"{scope['method']} {scope['path']} reached Starlette")

    fast.app = Refuse()  # type: ignore[assignment]
    ok = asyncio.run(call(fast, "POST", "/v2/models/m/versions/v2/infer"))
    assert ok["status"] == 200
    assert ok["body"] == b"m|v2|rid-1|10|/v2/models/m/versions/v2/infer"
    bad = asyncio.run(call(fast, "POST", "/v2/models/invalid/infer"))
    assert (bad["status"], bad["body"], bad["raised"]) == (
        400,
        b'{"error":"input \'x\': bad"}',
        None,
    )
    crash = asyncio.run(call(fast, "POST", "/v2/models/crash/infer"))
    assert crash["status"] == 500
    assert crash["raised"] == "RuntimeError: boom"  # re-raised, for the server to log
    missed = asyncio.run(call(fast, "GET", "/v2/models/m/infer"))
    assert missed["raised"] is not None
    assert "reached Starlette" in missed["raised"]
