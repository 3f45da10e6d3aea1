"""The inference routes served by the HTTP protocol itself, one socket write per response.

Through ASGI, a request is a scope, a receive and a send callable, four layers of wrapping
(proxy headers, the edge, the fast path, Starlette's response), two ``send`` calls, and two
socket writes: the head (every header checked against uvicorn's patterns) and the body. On a
loaded gateway the writes alone were a fifth of the CPU. :func:`native_http_protocol` makes
uvicorn's httptools protocol (with the head bound of
:func:`~modelrouter.api.edge.bounded_http_protocol`) serve a ``POST`` whose decoded path
matches one of the inference routes (Starlette's own patterns, no root path) itself: it reads
the body from the request cycle, calls the same handler core as the ASGI path
(:class:`~modelrouter.api.inference.InferenceCore`), and writes the status line, headers and
body in one ``transport.write``, then completes the cycle as uvicorn's ``send`` does
(keep-alive, ``Connection: close``, pipelining, the keep-alive timer, flow control, nothing
written to a closed connection). The task is one of the server's, so a graceful shutdown
waits for it.

Everything else (other routes and methods, a request the edge refuses, the 503 over
``limit_concurrency``) goes to the ASGI app as before, which answers it as it always did.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.routing import compile_path
from uvicorn.protocols.http.httptools_impl import (
    HEADER_VALUE_RE,
    STATUS_LINE,
    RequestResponseCycle,
)
from uvicorn.protocols.utils import get_client_addr, get_path_with_query_string

from modelrouter.api.edge import (
    EdgeMiddleware,
    HeaderLimits,
    bounded_http_protocol,
    check_head,
    new_request_id,
)
from modelrouter.api.inference import (
    Call,
    Endpoint,
    InferenceCore,
    Reply,
    body_head,
    decode_body,
    error_body,
    error_reply,
    too_large,
)
from modelrouter.api.rest import InferenceFastPath
from modelrouter.errors import ModelRouterError

log = logging.getLogger(__name__)

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class NativeRoutes:
    """The inference routes, matched as Starlette matches them, and their handler core."""

    def __init__(self, core: InferenceCore, limits: HeaderLimits) -> None:
        self.core = core
        self.limits = limits
        self._routes = []
        for path, handler in core.routes():
            regex, _, convertors = compile_path(path)
            self._routes.append((regex.match, convertors, handler))

    @classmethod
    def of(cls, app: Any) -> NativeRoutes | None:
        """The routes of an app :func:`modelrouter.api.rest.create_rest_app` made; None for
        any other app (then nothing is served natively)."""
        if not isinstance(app, EdgeMiddleware):
            return None
        inner = app.app
        if not isinstance(inner, InferenceFastPath) or inner.core is None:
            return None
        return cls(inner.core, app.limits)

    def match(self, path: str) -> tuple[Endpoint, dict[str, Any]] | None:
        """The handler and path parameters of ``path`` (decoded, as in the ASGI scope)."""
        for match, convertors, handler in self._routes:
            m = match(path)
            if m is not None:
                params = {k: convertors[k].convert(v) for k, v in m.groupdict().items()}
                return handler, params
        return None


class _HeadCache:
    """The response head's bytes that do not change per request: uvicorn's default headers
    (``date``, ``server``), re-encoded only when uvicorn replaces them (once a second)."""

    __slots__ = ("encoded", "source")

    def __init__(self) -> None:
        self.source: object = None
        self.encoded = b""

    def defaults(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        if headers is not self.source:
            self.encoded = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
            self.source = headers
        return self.encoded


_CONTENT_TYPES: dict[str, bytes] = {}


def _content_type(value: str) -> bytes:
    encoded = _CONTENT_TYPES.get(value)
    if encoded is None:
        encoded = _CONTENT_TYPES.setdefault(value, b"content-type: " + value.encode() + b"\r\n")
    return encoded


def response_head(reply: Reply, request_id: bytes, defaults: bytes, keep_alive: bool) -> bytes:
    """Status line and headers, in the order the ASGI path writes them (uvicorn's defaults,
    then Starlette's: ``x-model-version``, the binary extension's length, content-length and
    type; then the edge's ``x-request-id``). Raises ValueError for a version name that cannot
    be a header value."""
    parts = [STATUS_LINE[reply.status], defaults]
    if reply.version is not None:
        version = reply.version.encode("latin-1")
        if HEADER_VALUE_RE.search(version):
            raise ValueError(f"version {reply.version!r} cannot be sent as x-model-version")
        parts += (b"x-model-version: ", version, b"\r\n")
        if reply.json_length is not None:
            parts.append(b"inference-header-content-length: %d\r\n" % reply.json_length)
    parts.append(b"content-length: %d\r\n" % len(reply.body))
    parts.append(_content_type(reply.content_type))
    parts += (b"x-request-id: ", request_id, b"\r\n")
    if not keep_alive:
        parts.append(b"connection: close\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


class NativeServer:
    """One protocol instance's way of serving an inference request from its cycle."""

    def __init__(self, routes: NativeRoutes, proxy: Callable[[dict[str, Any]], Awaitable[None]]):
        self.routes = routes
        self.limit = routes.core.max_body
        self.head = _HeadCache()
        self.proxy = proxy
        """uvicorn's proxy-headers rewrite of the scope's client, for the access log line."""

    def start(self, cycle: RequestResponseCycle) -> Callable[[], Awaitable[None]] | None:
        """What serves ``cycle`` natively; None when the ASGI app must (another route, or a
        request the edge refuses: the app answers it exactly as before)."""
        scope: Any = cycle.scope
        if scope["method"] != "POST" or scope["root_path"]:
            return None
        found = self.routes.match(scope["path"])
        if found is None:
            return None
        try:
            rid = check_head(scope, self.routes.limits)
        except ModelRouterError:
            return None
        handler, params = found
        request_id = rid or new_request_id()

        def serve() -> Awaitable[None]:
            return self.serve(cycle, handler, params, request_id)

        return serve

    async def serve(
        self,
        cycle: RequestResponseCycle,
        handler: Endpoint,
        params: dict[str, Any],
        request_id: bytes,
    ) -> None:
        scope: Any = cycle.scope
        try:
            try:
                body = await self._read_body(cycle)
                if body is None:
                    return  # the client went away before its body was in
                call = Call(
                    params, body, scope["headers"], scope["query_string"], request_id.decode()
                )
                reply = await handler(call)
            except ModelRouterError as exc:
                reply = error_reply(exc, scope["method"], scope["path"])
                exc.__traceback__ = None  # as Starlette: a reused exception keeps no frames
            except Exception as exc:
                reply = error_reply(exc, scope["method"], scope["path"])
            await self._write(cycle, reply, request_id)
        except BaseException as exc:  # a bug in this module, or the server cancelling us
            if not isinstance(exc, asyncio.CancelledError):
                log.error("native inference path failed", exc_info=exc)
            if not cycle.response_started and not cycle.disconnected:
                failure = Reply(500, error_body(f"internal error: {type(exc).__name__}"))
                cycle.keep_alive = False
                with_close = response_head(failure, request_id, b"", False) + failure.body
                cycle.response_started = True
                cycle.transport.write(with_close)
                cycle.response_complete = True
                cycle.transport.close()
            elif not cycle.response_complete:
                cycle.transport.close()
        finally:
            cycle.on_response = lambda: None  # as uvicorn's run_asgi: no cycle kept alive

    async def _read_body(self, cycle: RequestResponseCycle) -> bytes | None:
        """The whole body (decompressed), refusing more than the limit as soon as it is
        known; None when the connection was lost first."""
        limit = self.limit
        head = body_head(cycle.scope["headers"], limit)
        parts: list[bytes | bytearray] = []
        size = 0
        while True:
            chunk = cycle.body
            if chunk:
                cycle.body = bytearray()
                size += len(chunk)
                if size > limit:
                    raise too_large(limit)
                parts.append(chunk)
            if not cycle.more_body or cycle.disconnected:
                break
            if cycle.waiting_for_100_continue:
                cycle.waiting_for_100_continue = False
                if not cycle.transport.is_closing():
                    cycle.transport.write(_CONTINUE)
            cycle.flow.resume_reading()
            await cycle.message_event.wait()
            cycle.message_event.clear()
        if cycle.disconnected:
            return None
        body = bytes(parts[0]) if len(parts) == 1 else b"".join(parts)
        return decode_body(body, head.encoding, limit)

    async def _write(self, cycle: RequestResponseCycle, reply: Reply, request_id: bytes) -> None:
        """The response in one write, then the cycle completed as uvicorn's ``send`` does."""
        if cycle.flow.write_paused and not cycle.disconnected:
            await cycle.flow.drain()
        if cycle.disconnected:
            return
        try:
            head = response_head(
                reply, request_id, self.head.defaults(cycle.default_headers), cycle.keep_alive
            )
        except ValueError as exc:
            reply = error_reply(exc, cycle.scope["method"], cycle.scope["path"])
            head = response_head(
                reply, request_id, self.head.defaults(cycle.default_headers), cycle.keep_alive
            )
        cycle.response_started = True
        cycle.waiting_for_100_continue = False
        if cycle.access_log:
            await self._access_log(cycle, reply.status)
        cycle.transport.write(head + reply.body)
        cycle.response_complete = True
        cycle.message_event.set()
        if not cycle.keep_alive:
            cycle.transport.close()
        cycle.on_response()

    async def _access_log(self, cycle: RequestResponseCycle, status: int) -> None:
        scope: Any = dict(cycle.scope)
        await self.proxy(scope)
        cycle.access_logger.info(
            '%s - "%s %s HTTP/%s" %d',
            get_client_addr(scope),
            scope["method"],
            get_path_with_query_string(scope),
            scope["http_version"],
            status,
        )


def native_http_protocol(base: type[Any], routes: NativeRoutes) -> type[Any]:
    """``base`` (an httptools protocol class) serving ``routes`` natively."""
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    class NativeHttpToolsProtocol(base):  # type: ignore[misc]
        _native: NativeServer | None = None
        """Shared by every connection: made on the first, from the server's config."""

        def _native_server(self) -> NativeServer:
            if self._native is None:
                config = self.config

                async def nothing(scope: Any, receive: Any, send: Any) -> None:
                    return None

                rewrite = ProxyHeadersMiddleware(nothing, config.forwarded_allow_ips)

                async def proxy(scope: dict[str, Any]) -> None:
                    if config.proxy_headers:
                        await rewrite(scope, None, None)  # type: ignore[arg-type]

                type(self)._native = NativeServer(routes, proxy)
            assert self._native is not None
            return self._native

        def _start_asgi_task(self, cycle: RequestResponseCycle, app: Any) -> None:
            serve = self._native_server().start(cycle) if app is self.app else None
            if serve is None:
                super()._start_asgi_task(cycle, app)
                return
            if self.config.reset_contextvars:
                task = self.loop.create_task(serve(), context=contextvars.Context())
            else:
                task = self.loop.create_task(serve())
            task.add_done_callback(self.tasks.discard)
            self.tasks.add(task)

    return NativeHttpToolsProtocol


def gateway_http_protocol(app: Any, max_head: int) -> type[Any] | None:
    """The protocol class the gateway gives uvicorn: the bounded head of
    :func:`~modelrouter.api.edge.bounded_http_protocol`, and the inference routes of ``app``
    served natively when ``app`` is :func:`~modelrouter.api.rest.create_rest_app`'s. None
    without httptools."""
    bounded: type[Any] | None = bounded_http_protocol(max_head)
    routes = NativeRoutes.of(app)
    if bounded is None or routes is None:
        return bounded
    return native_http_protocol(bounded, routes)
