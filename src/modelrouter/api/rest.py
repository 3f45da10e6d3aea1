"""REST transport: KServe v1 and Open Inference Protocol v2 over Starlette.

Handlers translate the wire format and call :class:`~modelrouter.dataplane.DataPlane`; errors
become ``{"error": "..."}`` with the status from :data:`modelrouter.errors.STATUS`.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from modelrouter.api.auth import bearer_matches
from modelrouter.api.edge import EdgeMiddleware, HeaderLimits
from modelrouter.api.openapi import openapi_document
from modelrouter.dataplane import DataPlane
from modelrouter.errors import InvalidInput, ModelRouterError, PayloadTooLarge
from modelrouter.protocol import v1, v2
from modelrouter.protocol.types import InferenceRequest
from modelrouter.routing.decide import RequestContext

log = logging.getLogger(__name__)

JSON = "application/json"
OCTET = "application/octet-stream"
REQUEST_ID = "x-request-id"
MODEL_VERSION = "x-model-version"

Handler = Callable[[Request], Awaitable[Response]]


def json_response(doc: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(doc), status, headers, JSON)


def error_response(message: str, status: int) -> Response:
    return Response(orjson.dumps({"error": message}), status, None, JSON)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes before reading them all.

    A body with ``Content-Encoding: gzip`` or ``deflate`` (as tritonclient sends with
    ``request_compression_algorithm``) is decompressed, and the limit applies to the result too.
    """
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", "x-gzip", "deflate"):
        raise InvalidInput(
            f"Content-Encoding {encoding!r} is not supported (use gzip, deflate or identity)"
        )
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidInput("Content-Length is not an integer") from None
        if size > limit:
            raise PayloadTooLarge(f"request body of {size} bytes exceeds the limit of {limit}")
        body = await request.body()
    else:
        chunks = []
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > limit:
                raise PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")
            chunks.append(chunk)
        body = b"".join(chunks)
    return body if encoding == "identity" else decompress(body, encoding, limit)


def decompress(body: bytes, encoding: str, limit: int) -> bytes:
    """A gzip (possibly multi-member) or zlib body, never inflating past ``limit`` bytes."""
    out = bytearray()
    rest = body
    while rest:
        # 32 + MAX_WBITS reads both gzip and zlib headers
        inflater = zlib.decompressobj(32 + zlib.MAX_WBITS)
        try:
            out += inflater.decompress(rest, limit + 1 - len(out))
        except zlib.error as exc:
            raise InvalidInput(f"the {encoding} request body is corrupt: {exc}") from None
        if len(out) > limit or inflater.unconsumed_tail:
            raise PayloadTooLarge(
                f"request body exceeds the limit of {limit} bytes once decompressed"
            )
        if not inflater.eof:
            raise InvalidInput(f"the {encoding} request body is truncated")
        rest = inflater.unused_data
    return bytes(out)


def context(request: Request, req: InferenceRequest) -> RequestContext:
    """What routing rules see: lower-cased headers, query parameters, cookies, the body."""
    headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}
    query = request.query_params if request.scope["query_string"] else {}
    cookie = headers.get("cookie")
    return RequestContext(headers, query, parse_cookies(cookie) if cookie else {}, req.document)


def parse_cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            out[name] = value.strip('"')
    return out


class RestApi:
    """The route handlers, bound to one data plane."""

    def __init__(self, dataplane: DataPlane, max_body: int, admin_token: str | None = None) -> None:
        self.dp = dataplane
        self.max_body = max_body
        self.admin_token = admin_token

    def _is_admin(self, request: Request) -> bool:
        """Whether the caller sent the admin token: only then do load errors show in full."""
        return self.admin_token is not None and bearer_matches(request, self.admin_token)

    def _context(
        self, request: Request, req: InferenceRequest, model: str, version: str | None
    ) -> RequestContext | None:
        """What the model's rules look at; nothing to build for a pinned call or a model
        without rules."""
        if version is not None or not self.dp.has_rules(model):
            return None
        return context(request, req)

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

    # ------------------------------------------------------------------ v2 infer

    async def infer_v2(self, request: Request) -> Response:
        p = request.path_params
        body = await read_body(request, self.max_body)
        req = v2.decode_request(
            body,
            request.headers.get(v2.BINARY_HEADER),
            allow_non_finite=self.dp.allows_non_finite(p["name"]),
        )
        if req.id is None:
            req.id = request.state.request_id
        outcome = await self.dp.infer(
            p["name"],
            req,
            p.get("version"),
            self._context(request, req, p["name"], p.get("version")),
            request.state.request_id,
        )
        resp = outcome.response
        payload, json_len = v2.encode_response(resp, v2.binary_output_names(req, resp.outputs))
        headers = {MODEL_VERSION: outcome.version}
        if json_len is None:
            return Response(payload, 200, headers, JSON)
        headers[v2.BINARY_HEADER] = str(json_len)
        return Response(payload, 200, headers, OCTET)

    # ------------------------------------------------------------------ KServe v1

    async def v1_models(self, request: Request) -> Response:
        return json_response({"models": list(self.dp.repository.models)})

    async def v1_model(self, request: Request) -> Response:
        name = request.path_params["name"]
        ok, v = self.dp.model_ready(name)
        return json_response({"name": name, "ready": ok}, headers={MODEL_VERSION: v})

    async def v1_predict(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = await read_body(request, self.max_body)
        req = v1.decode_request(body)
        if req.id is None:
            req.id = request.state.request_id
        outcome = await self.dp.infer(
            name, req, None, self._context(request, req, name, None), request.state.request_id
        )
        return Response(
            v1.encode_response(outcome.response.outputs),
            200,
            {MODEL_VERSION: outcome.version},
            JSON,
        )

    def routes(self) -> list[Route]:
        # inference first: Starlette tries routes in order, and these take nearly all traffic
        return [
            Route("/v2/models/{name}/infer", self.infer_v2, methods=["POST"]),
            Route("/v2/models/{name}/versions/{version}/infer", self.infer_v2, methods=["POST"]),
            Route("/v1/models/{name}:predict", self.v1_predict, methods=["POST"]),
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
    status = exc.status.http
    if status >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, status, exc.internal)
    return error_response(exc.message, status)


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
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(f"internal error: {type(exc).__name__}", 500)


def create_rest_app(
    dataplane: DataPlane,
    max_body: int,
    lifespan: Callable[[Starlette], Any] | None = None,
    extra_routes: Sequence[BaseRoute] = (),
    header_limits: HeaderLimits | None = None,
    admin_token: str | None = None,
) -> ASGIApp:
    api = RestApi(dataplane, max_body, admin_token)
    routes = [*api.routes(), *extra_routes]
    document: bytes = b""

    async def openapi(request: Request) -> Response:
        return Response(document, 200, None, JSON)

    routes.append(Route("/openapi.json", openapi, methods=["GET"]))
    document = orjson.dumps(openapi_document(served_operations(routes)))
    app = Starlette(
        routes=routes,
        exception_handlers={
            ModelRouterError: _modelrouter_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
        lifespan=lifespan,
    )
    app.state.dataplane = dataplane
    return EdgeMiddleware(app, header_limits)


def served_operations(routes: Sequence[BaseRoute]) -> list[tuple[str, str]]:
    """``(method, path)`` of every route (HEAD, which Starlette adds to GET, left out)."""
    out = []
    for route in routes:
        if isinstance(route, Route):
            out += [(m, route.path) for m in sorted(route.methods or ()) if m != "HEAD"]
    return out
