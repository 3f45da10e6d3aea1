"""REST transport: KServe v1 and Open Inference Protocol v2 over Starlette.

Handlers translate the wire format and call :class:`~modelrouter.dataplane.DataPlane`; errors
become ``{"error": "..."}`` with the status from :data:`modelrouter.errors.STATUS`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from modelrouter.api.auth import bearer_matches
from modelrouter.api.edge import EdgeMiddleware, HeaderLimits
from modelrouter.api.inference import (
    JSON,
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
from modelrouter.api.openapi import openapi_document
from modelrouter.dataplane import DataPlane
from modelrouter.errors import ModelRouterError
from modelrouter.protocol import v2

log = logging.getLogger(__name__)

REQUEST_ID = "x-request-id"
MODEL_VERSION = "x-model-version"

Handler = Callable[[Request], Awaitable[Response]]


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status, headers, JSON)


def error_response(message: str, status: int) -> Response:
    return Response(error_body(message), status, None, JSON)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading them all.

    A body with ``Content-Encoding: gzip`` or ``deflate`` (as tritonclient sends with
    ``request_compression_algorithm``) is decompressed, and the limit applies to the result too.
    """
    head = body_head(request.scope["headers"], limit)
    if head.declared is not None:
        body = await request.body()
    else:
        chunks = []
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise too_large(limit)
            chunks.append(chunk)
        body = b"".join(chunks)
    return decode_body(body, head.encoding, limit)


def reply_response(reply: Reply) -> Response:
    """A handler core's :class:`Reply` as Starlette's response."""
    if reply.version is None:
        return Response(reply.body, reply.status, None, reply.content_type)
    headers = {MODEL_VERSION: reply.version}
    if reply.json_length is not None:
        headers[v2.BINARY_HEADER] = str(reply.json_length)
    return Response(reply.body, reply.status, headers, reply.content_type)


def asgi_endpoint(handler: Endpoint, max_body: int) -> Handler:
    """A handler core's endpoint as a Starlette one: the body read through ASGI."""

    async def endpoint(request: Request) -> Response:
        body = await read_body(request, max_body)
        scope = request.scope
        call = Call(
            request.path_params,
            body,
            scope["headers"],
            scope["query_string"],
            request.state.request_id,
        )
        return reply_response(await handler(call))

    return endpoint


class RestApi:
    """The route handlers, bound to one data plane."""

    def __init__(self, dataplane: DataPlane, max_body: int, admin_token: str | None = None) -> None:
        self.dp = dataplane
        self.max_body = max_body
        self.admin_token = admin_token
        self.core = InferenceCore(dataplane, max_body)

    def _is_admin(self, request: Request) -> bool:
        """Whether the caller sent the admin token: only then do load errors show in full."""
        return self.admin_token is not None and bearer_matches(request, self.admin_token)

    # ------------------------------------------------------------------ v2 health, metadata

    async def live(self, request: Request) -> Response:
        return json_response({"live": self.dp.live()})

    async def ready(self, request: Request) -> Response:
        ok = self.dp.ready()
        return json_response({"ready": ok}, 200 if ok else 503)

    async def server_metadata(self, request: Request) -> Response:
        return json_response(self.dp.server_metadata())

    async def model_metadata(self, request: Request) -> Response:
        p = request.path_params
        doc, v = self.dp.model_metadata(p["name"], p.get("version"))
        return json_response(doc, headers={MODEL_VERSION: v})

    async def model_ready(self, request: Request) -> Response:
        p = request.path_params
        ok, v = self.dp.model_ready(p["name"], p.get("version"))
        doc: dict[str, Any] = {"name": p["name"], "ready": ok}
        if not ok:
            doc["error"] = self.dp.not_ready_reason(p["name"], v, self._is_admin(request))
        return json_response(doc, 200 if ok else 503, {MODEL_VERSION: v})

    # ------------------------------------------------------------------ KServe v1

    async def v1_models(self, request: Request) -> Response:
        return json_response({"models": list(self.dp.repository.models)})

    async def v1_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        ok, v = self.dp.model_ready(name)
        return json_response({"name": name, "ready": ok}, headers={MODEL_VERSION: v})

    def inference_routes(self) -> list[Route]:
        """The routes that take nearly all traffic, served by :class:`InferenceFastPath`."""
        return [
            Route(path, asgi_endpoint(handler, self.max_body), methods=["POST"])
            for path, handler in self.core.routes()
        ]

    def routes(self, inference: Sequence[Route] | None = None) -> list[Route]:
        """Every route: ``inference`` (default :meth:`inference_routes`) first, as Starlette
        tries routes in order and these take nearly all traffic."""
        return [
            *(self.inference_routes() if inference is None else inference),
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
            Route("/v2", self.server_metadata, methods=["GET"]),
            Route("/v2/", self.server_metadata, methods=["GET"]),
            Route("/v2/models/{name}", self.model_metadata, methods=["GET"]),
            Route("/v2/models/{name}/ready", self.model_ready, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}", self.model_metadata, methods=["GET"]),
            Route("/v2/models/{name}/versions/{version}/ready", self.model_ready, methods=["GET"]),
            Route("/v1/models", self.v1_models, methods=["GET"]),
            Route("/v1/models/{name}", self.v1_model, methods=["GET"]),
        ]


async def _modelrouter_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ModelRouterError)
    return reply_response(error_reply(exc, request.method, request.url.path))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"no such endpoint: {request.method} {request.url.path}"
    elif exc.status_code == 405:
        message = f"method {request.method} not allowed on {request.url.path}"
    else:
        message = str(exc.detail)
    return error_response(message, exc.status_code)


async def _unexpected(request: Request, exc: Exception) -> Response:
    return reply_response(error_reply(exc, request.method, request.url.path))


EXCEPTION_HANDLERS: dict[type[Exception], Callable[[Request, Exception], Awaitable[Response]]] = {
    ModelRouterError: _modelrouter_error,
    HTTPException: _http_error,
    Exception: _unexpected,
}
"""Starlette's handlers for the app, and the fast path's (most specific class first)."""


class InferenceFastPath:
    """Pure ASGI: the inference routes without Starlette's five layers around a handler.

    Starlette sends every request through ``ServerErrorMiddleware``, ``ExceptionMiddleware``,
    the router (trying routes in order), the route, and ``request_response``, each adding a
    wrapped ``send``; on a loaded gateway that was several percent of the CPU. A ``POST``
    that fully matches one of ``routes`` (Starlette's own matching: same path parameters,
    root path) is served here with exactly what those layers do for it: the handler's
    :class:`~modelrouter.errors.ModelRouterError` or ``HTTPException`` becomes its JSON
    error; any other exception answers the 500 and is re-raised for the server to log.
    Everything else (other methods, paths, a trailing slash, lifespan) goes to ``app``.
    """

    def __init__(
        self, app: Starlette, routes: Sequence[Route], core: InferenceCore | None = None
    ) -> None:
        self.app = app
        self.fast_routes = tuple(routes)
        self.core = core
        """The handlers behind ``routes``, for a server that serves them without ASGI."""

    @property
    def routes(self) -> list[BaseRoute]:
        """Every route served (the fast ones are among them, first)."""
        return self.app.routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            for route in self.fast_routes:
                match, child = route.matches(scope)
                if match is Match.FULL:
                    scope["app"] = self.app
                    scope.setdefault("router", self.app.router)
                    scope.update(child)
                    await self._serve(route, scope, receive, send)
                    return
        await self.app(scope, receive, send)

    @staticmethod
    async def _serve(route: Route, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        handler: Handler = route.endpoint
        try:
            response = await handler(request)
        except (ModelRouterError, HTTPException) as exc:
            on_error = _modelrouter_error if isinstance(exc, ModelRouterError) else _http_error
            response = await on_error(request, exc)
            exc.__traceback__ = None  # as Starlette: a reused exception keeps no frames
        except Exception as exc:
            failure = await _unexpected(Request(scope), exc)
            await failure(scope, receive, send)
            raise
        await response(scope, receive, send)


def create_rest_app(
    dataplane: DataPlane,
    max_body: int,
    lifespan: Callable[[Starlette], Any] | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    header_limits: HeaderLimits | None = None,
    admin_token: str | None = None,
) -> ASGIApp:
    api = RestApi(dataplane, max_body, admin_token)
    inference = api.inference_routes()
    routes = [*api.routes(inference), *extra_routes]
    document: bytes = b""

    async def openapi(request: Request) -> Response:
        return Response(document, 200, None, JSON)

    routes.append(Route("/openapi.json", openapi, methods=["GET"]))
    document = orjson.dumps(openapi_document(served_operations(routes)))
    app = Starlette(routes=routes, exception_handlers=dict(EXCEPTION_HANDLERS), lifespan=lifespan)
    app.state.dataplane = dataplane
    return EdgeMiddleware(InferenceFastPath(app, inference, api.core), header_limits)


def served_operations(routes: Sequence[BaseRoute]) -> list[tuple[str, str]]:
    """``(method, path)`` of every route (HEAD, which Starlette adds to GET, left out)."""
    out = []
    for route in routes:
        if isinstance(route, Route):
            out += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return out
