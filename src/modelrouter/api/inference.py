"""The inference routes' handler core, one for both ways a request arrives.

``POST /v2/models/{name}/infer``, ``/v2/models/{name}/versions/{version}/infer`` and
``/v1/models/{name}:predict`` take nearly all traffic. The gateway serves them at the HTTP
protocol level (:mod:`modelrouter.api.native`); an ASGI server running
:func:`modelrouter.app.create_app` serves them through Starlette (:mod:`modelrouter.api.rest`).
Both read the body their own way and hand it here: bytes and headers in, a :class:`Reply` out,
with the same errors from the one table (:func:`error_reply`).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.datastructures import QueryParams

from modelrouter.dataplane import DataPlane
from modelrouter.errors import InvalidInput, ModelRouterError, PayloadTooLarge
from modelrouter.protocol import v1, v2
from modelrouter.protocol.types import InferenceRequest
from modelrouter.routing.decide import RequestContext

log = logging.getLogger("modelrouter.api.rest")  # the name the ASGI handlers always logged as

JSON = "application/json"
OCTET = "application/octet-stream"
Headers = Sequence[tuple[bytes, bytes]]
"""A request's headers as the server parsed them: lower-cased names, raw values, in order."""

_CONTENT_ENCODING = b"content-encoding"
_CONTENT_LENGTH = b"content-length"
_BINARY = v2.BINARY_HEADER.encode()
ENCODINGS = frozenset(("identity", "gzip", "x-gzip", "deflate"))


@dataclass(frozen=True, slots=True)
class Reply:
    """What a handler answers: written as it is by either transport."""

    status: int
    body: bytes
    content_type: str = JSON
    version: str | None = None
    """``x-model-version``: the version that answered (successful inference only)."""
    json_length: int | None = None
    """``Inference-Header-Content-Length``: the JSON part of a binary-extension body."""


def header(headers: Headers, name: bytes) -> str | None:
    """The first value of header ``name`` (lower case), decoded as Starlette does (latin-1)."""
    for k, v in headers:
        if k == name:
            return v.decode("latin-1")
    return None


@dataclass(frozen=True, slots=True)
class BodyHead:
    """What the headers say of the body, checked before any of it is read."""

    encoding: str
    declared: int | None


def body_head(headers: Iterable[tuple[bytes, bytes]], limit: int) -> BodyHead:
    """Content-Encoding and Content-Length, refusing an unknown coding, a bad length or a
    declared body over ``limit`` before a byte of it is read."""
    encoding = "identity"
    declared: str | None = None
    seen_encoding = False
    for k, v in headers:
        if k == _CONTENT_ENCODING and not seen_encoding:
            encoding = v.decode("latin-1").strip().lower()
            seen_encoding = True
        elif k == _CONTENT_LENGTH and declared is None:
            declared = v.decode("latin-1")
    if encoding not in ENCODINGS:
        raise InvalidInput(
            f"Content-Encoding {encoding!r} is not supported (use gzip, deflate or identity)"
        )
    if declared is None:
        return BodyHead(encoding, None)
    try:
        size = int(declared)
    except ValueError:
        raise InvalidInput("Content-Length is not an integer") from None
    if size > limit:
        raise PayloadTooLarge(f"request body of {size} bytes exceeds the limit of {limit}")
    return BodyHead(encoding, size)


def too_large(limit: int) -> PayloadTooLarge:
    """A body without a declared length that grew past ``limit`` while it was read."""
    return PayloadTooLarge(f"request body exceeds the limit of {limit} bytes")


def decode_body(body: bytes, encoding: str, limit: int) -> bytes:
    """The body as the handlers read it: decompressed unless ``identity``."""
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


def parse_cookies(header: str) -> dict[str, str]:
    out = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            out[name] = value.strip('"')
    return out


class LazyHeaders(Mapping[str, str]):
    """A request's headers by lower-case name (the last value of a repeated one, decoded as
    latin-1), decoded the first time a rule reads one: most rules (a weighted split, a body
    match) never do, and decoding them all was a few microseconds per routed request."""

    __slots__ = ("_names", "_raw")

    def __init__(self, raw: Headers) -> None:
        self._raw = raw
        self._names: dict[str, str] | None = None

    def _decoded(self) -> dict[str, str]:
        names = self._names
        if names is None:
            names = self._names = {k.decode("latin-1"): v.decode("latin-1") for k, v in self._raw}
        return names

    def __getitem__(self, name: str) -> str:
        return self._decoded()[name]

    def get(self, name: str, default: Any = None) -> Any:
        return self._decoded().get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._decoded()

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return f"LazyHeaders({self._decoded()!r})"


def _last(headers: Headers, name: bytes) -> bytes | None:
    found = None
    for k, v in headers:
        if k == name:
            found = v
    return found


def context(headers: Headers, query_string: bytes, req: InferenceRequest) -> RequestContext:
    """What routing rules see: lower-cased headers, query parameters, cookies, the body."""
    query = QueryParams(query_string) if query_string else {}
    cookie = _last(headers, b"cookie")
    cookies = parse_cookies(cookie.decode("latin-1")) if cookie else {}
    return RequestContext(LazyHeaders(headers), query, cookies, req.document)


@dataclass(frozen=True, slots=True)
class Call:
    """One inference call as the transport received it (the body already read whole)."""

    params: dict[str, Any]
    """The route's path parameters: ``name``, and ``version`` on the pinned route."""
    body: bytes
    headers: Headers
    query_string: bytes
    request_id: str


Endpoint = Callable[[Call], Awaitable[Reply]]


class InferenceCore:
    """The three inference handlers, bound to one data plane. They raise
    :class:`~modelrouter.errors.ModelRouterError` for a refused request; each transport
    turns it (and anything unexpected) into :func:`error_reply`."""

    def __init__(self, dataplane: DataPlane, max_body: int) -> None:
        self.dp = dataplane
        self.max_body = max_body

    def routes(self) -> list[tuple[str, Endpoint]]:
        """``(path, handler)`` of the inference routes, in Starlette's path syntax."""
        return [
            ("/v2/models/{name}/infer", self.infer_v2),
            ("/v2/models/{name}/versions/{version}/infer", self.infer_v2),
            ("/v1/models/{name}:predict", self.v1_predict),
        ]

    def _context(
        self, call: Call, req: InferenceRequest, model: str, version: str | None
    ) -> RequestContext | None:
        """What the model's rules look at; nothing to build for a pinned call or a model
        without rules."""
        if version is not None or not self.dp.has_rules(model):
            return None
        return context(call.headers, call.query_string, req)

    async def infer_v2(self, call: Call) -> Reply:
        name: str = call.params["name"]
        version: str | None = call.params.get("version")
        req = v2.decode_request(
            call.body,
            header(call.headers, _BINARY),
            allow_non_finite=self.dp.allows_non_finite(name),
        )
        if req.id is None:
            req.id = call.request_id
        outcome = await self.dp.infer(
            name, req, version, self._context(call, req, name, version), call.request_id
        )
        resp = outcome.response
        payload, json_len = v2.encode_response(resp, v2.binary_output_names(req, resp.outputs))
        if json_len is None:
            return Reply(200, payload, JSON, outcome.version)
        return Reply(200, payload, OCTET, outcome.version, json_len)

    async def v1_predict(self, call: Call) -> Reply:
        name: str = call.params["name"]
        req = v1.decode_request(call.body)
        if req.id is None:
            req.id = call.request_id
        outcome = await self.dp.infer(
            name, req, None, self._context(call, req, name, None), call.request_id
        )
        return Reply(200, v1.encode_response(outcome.response.outputs), JSON, outcome.version)


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message})


def error_reply(exc: Exception, method: str, path: str) -> Reply:
    """The JSON error for what a handler raised: a :class:`ModelRouterError` gets its status
    from :data:`modelrouter.errors.STATUS` (a 5xx is logged); anything else is a bug, logged
    with its traceback, and the caller gets a 500 naming only the exception's type."""
    if isinstance(exc, ModelRouterError):
        status = exc.status.http
        if status >= 500:
            log.warning("%s %s -> %d: %s", method, path, status, exc.internal)
        return Reply(status, error_body(exc.message))
    log.exception("unexpected error on %s %s", method, path, exc_info=exc)
    return Reply(500, error_body(f"internal error: {type(exc).__name__}"))
