"""The native inference path: matched as Starlette matches, answered in one write, and every
other request left to the ASGI app."""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from uvicorn.server import ServerState

from modelrouter.api.edge import HeaderLimits, bounded_http_protocol
from modelrouter.api.inference import Call, Endpoint, InferenceCore, Reply
from modelrouter.api.native import NativeRoutes, native_http_protocol
from modelrouter.errors import InvalidInput


class EchoCore(InferenceCore):
    """Handlers that echo what they were given, or fail as told."""

    def __init__(self) -> None:
        super().__init__(None, 1024)  # type: ignore[arg-type]

    def routes(self) -> list[tuple[str, Endpoint]]:
        return [
            ("/v2/models/{name}/infer", self.echo),
            ("/v2/models/{name}/versions/{version}/infer", self.echo),
            ("/v1/models/{name}:predict", self.echo),
        ]

    async def echo(self, call: Call) -> Reply:
        name = call.params["name"]
        if name == "invalid":
            raise InvalidInput("input 'x': bad")
        if name == "crash":
            raise RuntimeError("boom")
        text = f"{name}|{call.params.get('version')}|{call.request_id}|{call.body.decode()}"
        return Reply(200, text.encode(), "text/plain", "v9")


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 5000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def serve(data: bytes) -> tuple[Transport, list[bytes]]:
    """Feed ``data`` to a native protocol; the transport and what reached the ASGI app."""
    asgi_paths: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        asgi_paths.append(scope["raw_path"])
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def main() -> Transport:
        config = uvicorn.Config(app, log_level="warning", proxy_headers=False)
        config.load()
        state = ServerState()
        cls = native_http_protocol(
            bounded_http_protocol(32768), NativeRoutes(EchoCore(), HeaderLimits())
        )
        protocol = cls(config, state, {}, asyncio.get_running_loop())
        transport = Transport()
        protocol.connection_made(transport)
        protocol.data_received(data)
        for _ in range(20):
            await asyncio.sleep(0)
            if state.tasks:
                await asyncio.gather(*state.tasks)
        protocol.connection_lost(None)
        return transport

    return asyncio.run(main()), asgi_paths


def post(path: str, body: bytes = b"hello", extra: str = "") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def test_an_inference_request_is_answered_in_one_write_without_asgi() -> None:
    pinned = post("/v2/models/m%20x/versions/v1/infer", extra="x-request-id: r1\r\n")
    transport, asgi = serve(pinned)
    assert asgi == []
    assert len(transport.writes) == 1
    head, body = transport.writes[0].split(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nx-model-version: v9\r\ncontent-length: 15\r\ncontent-type: text/plain\r\n" in head
    assert head.endswith(b"\r\nx-request-id: r1")
    assert body == b"m x|v1|r1|hello"
    assert b"connection:" not in head  # kept alive


def test_pipelined_requests_each_get_one_write_in_order() -> None:
    transport, asgi = serve(
        post("/v2/models/a/infer", b"1") + post("/v1/models/b:predict", b"2") + post("/x", b"3")
    )
    assert asgi == [b"/x"]
    assert [w.rsplit(b"\r\n\r\n", 1)[1][:1] for w in transport.writes[:2]] == [b"a", b"b"]


def test_errors_come_from_the_one_table_and_a_bug_is_a_500_without_its_text() -> None:
    transport, _ = serve(post("/v2/models/invalid/infer"))
    assert transport.writes[0].startswith(b"HTTP/1.1 400 ")
    assert transport.writes[0].endswith(b'{"error":"input \'x\': bad"}')
    transport, _ = serve(post("/v2/models/crash/infer"))
    assert transport.writes[0].startswith(b"HTTP/1.1 500 ")
    assert transport.writes[0].endswith(b'{"error":"internal error: RuntimeError"}')
    assert b"boom" not in transport.writes[0]


def test_what_is_not_an_exact_route_match_goes_to_the_asgi_app() -> None:
    for path in (
        "/v2/models/a/infer/",
        "/v2/models/a/b/infer",
        "/v2/models//infer",
        "/v2/models/a%2Fversions%2Fv1/infer",  # the edge refuses it, through ASGI
    ):
        _, asgi = serve(post(path))
        assert asgi == [path.encode()], path
    _, asgi = serve(b"GET /v2/models/a/infer HTTP/1.1\r\nHost: t\r\n\r\n")
    assert asgi == [b"/v2/models/a/infer"]
    # a request the edge refuses: the ASGI app (its edge) answers it, as before
    _transport, asgi = serve(post("/v2/models/a/infer", extra="x-request-id: bad id\r\n"))
    assert asgi == [b"/v2/models/a/infer"]


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read() -> None:
    transport, _ = serve(
        b"POST /v2/models/a/infer HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n"
    )
    assert transport.writes[0].startswith(b"HTTP/1.1 413 ")
    assert b"request body of 5000 bytes exceeds the limit of 1024" in transport.writes[0]
