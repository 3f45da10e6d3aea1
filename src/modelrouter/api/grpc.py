"""gRPC transport: Open Inference Protocol v2 ``inference.GRPCInferenceService`` on grpc.aio.

The servicer only translates, as the REST handlers do: messages become the shared protocol
types (:mod:`modelrouter.protocol.grpc_codec`), the data plane routes and runs them, and every
:class:`~modelrouter.errors.ModelRouterError` leaves with the gRPC status of the one table in
:mod:`modelrouter.errors` (applied in one place, :func:`_unary`).

What routing sees is what it sees over REST: request metadata are the headers (``x-user-id``,
``x-region``, ``x-segment`` rules apply unchanged; a ``cookie`` entry gives cookies), and the
request's ``id`` and ``parameters`` are the body fields (``body: {parameters.region: ...}``).
A ``model_version`` pins the call (no rules). Every answer carries ``x-model-version`` (the
version that served) and ``x-request-id`` in its trailing metadata.

:func:`start_grpc` / :meth:`GrpcHandle.stop` start and stop the server, a pair the gateway's
lifecycle calls.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from modelrouter.api.auth import authorization_matches
from modelrouter.api.edge import REQUEST_ID_RULE, valid_request_id
from modelrouter.api.inference import parse_cookies
from modelrouter.config.schema import GrpcServer
from modelrouter.control import ControlPlane
from modelrouter.control.service import check_load_parameters
from modelrouter.dataplane import DataPlane
from modelrouter.errors import ConfigError, InvalidInput, ModelRouterError, NotFound, Unauthorized
from modelrouter.protocol import grpc_codec
from modelrouter.protocol.pb import RPCS, SERVICE, messages
from modelrouter.routing.decide import RequestContext

if TYPE_CHECKING:
    from modelrouter.app import Services

log = logging.getLogger(__name__)

REQUEST_ID = "x-request-id"
MODEL_VERSION = "x-model-version"
REPOSITORY_ACTOR = "grpc-repository"

Context = grpc.aio.ServicerContext[Any, Any]
Rpc = Callable[[Any, Context], Awaitable[Any]]


class RepositoryCalls:
    """The control-plane calls behind the repository RPCs: the very calls of the REST
    repository API (:class:`~modelrouter.control.ControlPlane`), nothing of their own."""

    def __init__(self, control: ControlPlane) -> None:
        self.control = control

    async def index(self, full: bool) -> list[dict[str, Any]]:
        return await self.control.repository_index(full=full)

    async def change(self, model: str, load: bool, actor: str, full: bool) -> None:
        """Load or unload every version of ``model`` (Triton's calls name no version)."""
        act = self.control.load_model if load else self.control.unload_model
        await act(model, actor, full=full)


def _metadata(context: Context) -> dict[str, str]:
    """Request metadata as lower-case headers (binary ``-bin`` entries are left out)."""
    return {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}


class InferenceServicer:
    """The RPC handlers, bound to one data plane and the repository calls."""

    def __init__(self, dataplane: DataPlane, repository: RepositoryCalls, token: str | None):
        self.dp = dataplane
        self.repository = repository
        self.token = token
        self.m = messages()

    # ------------------------------------------------------------------ health, metadata

    async def ServerLive(self, request: Any, context: Context) -> Any:
        return self.m.ServerLiveResponse(live=self.dp.live())

    async def ServerReady(self, request: Any, context: Context) -> Any:
        return self.m.ServerReadyResponse(ready=self.dp.ready())

    async def ModelReady(self, request: Any, context: Context) -> Any:
        """Not ready (rather than NOT_FOUND) for an unknown model or version, as Triton."""
        try:
            ok, version = self.dp.model_ready(_model_name(request.name), request.version or None)
        except NotFound:
            return self.m.ModelReadyResponse(ready=False)
        context.set_trailing_metadata(((MODEL_VERSION, version),))
        return self.m.ModelReadyResponse(ready=ok)

    async def ServerMetadata(self, request: Any, context: Context) -> Any:
        doc = self.dp.server_metadata()
        return self.m.ServerMetadataResponse(
            name=doc["name"], version=doc["version"], extensions=doc["extensions"]
        )

    async def ModelMetadata(self, request: Any, context: Context) -> Any:
        doc, version = self.dp.model_metadata(_model_name(request.name), request.version or None)
        msg = self.m.ModelMetadataResponse(
            name=doc["name"], versions=doc["versions"], platform=doc["platform"]
        )
        for key in ("inputs", "outputs"):
            for spec in doc[key]:
                getattr(msg, key).add(
                    name=spec["name"], datatype=spec["datatype"], shape=spec["shape"]
                )
        context.set_trailing_metadata(((MODEL_VERSION, version),))
        return msg

    # ------------------------------------------------------------------ inference

    async def ModelInfer(self, request: Any, context: Context) -> Any:
        model = _model_name(request.model_name)
        headers = _metadata(context)
        rid = headers.get(REQUEST_ID) or os.urandom(16).hex()
        if not valid_request_id(rid):
            rid = os.urandom(16).hex()
            context.set_trailing_metadata(((REQUEST_ID, rid),))
            raise InvalidInput(REQUEST_ID_RULE)
        context.set_trailing_metadata(((REQUEST_ID, rid),))
        req = grpc_codec.decode_request(request, self.dp.allows_non_finite(model))
        if req.id is None:
            req.id = rid
        version = request.model_version or None
        ctx = None
        if version is None and self.dp.has_rules(model):
            cookie = headers.get("cookie")
            ctx = RequestContext(headers, {}, parse_cookies(cookie) if cookie else {}, req.document)
        outcome = await self.dp.infer(model, req, version, ctx, rid)
        context.set_trailing_metadata(((MODEL_VERSION, outcome.version), (REQUEST_ID, rid)))
        return grpc_codec.encode_response(outcome.response, grpc_codec.wants_raw(request))

    # ------------------------------------------------------------------ repository

    def _authorize(self, context: Context) -> str:
        headers = _metadata(context)
        if self.token and not authorization_matches(headers.get("authorization", ""), self.token):
            raise Unauthorized(
                "the repository API needs the admin token (metadata authorization: Bearer <token>)"
            )
        return headers.get("x-actor") or REPOSITORY_ACTOR

    def _full(self, context: Context) -> bool:
        """Whether load errors show in full: only to a caller with the admin token."""
        auth = _metadata(context).get("authorization", "")
        return self.token is not None and authorization_matches(auth, self.token)

    async def RepositoryIndex(self, request: Any, context: Context) -> Any:
        msg = self.m.RepositoryIndexResponse()
        for item in await self.repository.index(self._full(context)):
            if request.ready and item["state"] != "READY":
                continue
            msg.models.add(
                name=item["name"],
                version=item["version"],
                state=item["state"],
                reason=item.get("reason") or "",
            )
        return msg

    async def RepositoryModelLoad(self, request: Any, context: Context) -> Any:
        await self._change(request, context, load=True)
        return self.m.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(self, request: Any, context: Context) -> Any:
        await self._change(request, context, load=False)
        return self.m.RepositoryModelUnloadResponse()

    async def _change(self, request: Any, context: Context, load: bool) -> None:
        actor = self._authorize(context)
        model = _model_name(request.model_name)
        check_load_parameters(dict.fromkeys(request.parameters.keys()))
        await self.repository.change(model, load, actor, self._full(context))


def _model_name(name: str) -> str:
    if not name:
        raise InvalidInput("the model name is empty")
    return name


def _unary(rpc: Rpc) -> Rpc:
    """One RPC with the error table applied: a modelrouter error ends the call with its gRPC
    status and message; anything else is INTERNAL, logged, its text kept from the client."""

    async def call(request: Any, context: Context) -> Any:
        try:
            return await rpc(request, context)
        except ModelRouterError as exc:
            code, message = grpc.StatusCode[exc.status.grpc], exc.message
            if exc.status.http >= 500:
                log.warning("gRPC %s -> %s: %s", rpc.__name__, code.name, message)
        except Exception as exc:
            log.exception("unexpected error in gRPC %s", rpc.__name__)
            code, message = grpc.StatusCode.INTERNAL, f"internal error: {type(exc).__name__}"
        await context.abort(code, message)

    call.__name__ = rpc.__name__
    return call


def generic_handler(servicer: InferenceServicer) -> grpc.GenericRpcHandler:
    """Every RPC of :data:`~modelrouter.protocol.pb.RPCS` on ``servicer``, with its messages."""
    m = messages()
    handlers = {
        name: grpc.unary_unary_rpc_method_handler(
            _unary(getattr(servicer, name)),
            request_deserializer=getattr(m, request).FromString,
            response_serializer=getattr(m, response).SerializeToString,
        )
        for name, (request, response) in RPCS.items()
    }
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


@dataclass(slots=True)
class GrpcHandle:
    """A running gRPC server: where it listens, and how to stop it."""

    server: grpc.aio.Server
    host: str
    port: int

    async def stop(self, grace: float | None = 5.0) -> None:
        """Refuse new calls, let running ones finish for ``grace`` seconds, then cancel."""
        await self.server.stop(grace)


async def start_grpc(services: Services, settings: GrpcServer) -> GrpcHandle:
    """Start the gRPC server for ``services`` (in the running event loop)."""
    config = services.loaded.config
    token = os.environ.get(config.server.auth.adminTokenEnv) or None
    calls = RepositoryCalls(services.control)
    servicer = InferenceServicer(services.dataplane, calls, token)
    size = settings.maxMessageSize
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", size),
            ("grpc.max_send_message_length", size),
            # a second gateway on the same port must fail, not share it silently; the
            # workers of one `serve --workers N` share it, as they share the REST port
            ("grpc.so_reuseport", 1 if services.grpc_reuse_port else 0),
        ]
    )
    server.add_generic_rpc_handlers((generic_handler(servicer),))
    address = f"{settings.host}:{settings.port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as exc:
        raise ConfigError(f"cannot listen on {address}: {exc}", "server.grpc.port") from None
    if port == 0:
        raise ConfigError(f"cannot listen on {address}", "server.grpc.port")
    await server.start()
    log.info("gRPC inference service on %s:%d", settings.host, port)
    return GrpcHandle(server, settings.host, port)
