"""A model served elsewhere, proxied over Open Inference Protocol v2 **gRPC**
(``protocol: grpc``): KServe, MLServer, Triton, another modelrouter.

One ``grpc.aio`` channel per version (HTTP/2: every concurrent call shares one connection),
opened in :meth:`RemoteGrpcRuntime.aload`, which also fetches the remote model's metadata, so
an endpoint that is down or a model it does not serve leaves the version FAILED with the reason.
Requests go with raw tensor contents (``raw_input_contents``: no per-element encoding), or
typed ones with ``parameters: {rawContents: false}``; the request id travels as
``x-request-id`` metadata.

Upstream failures become modelrouter errors at this edge, as for the REST remote runtime:
DEADLINE_EXCEEDED (or no answer within ``timeout``, default 30s) is
:class:`~modelrouter.errors.UpstreamTimeout`; INVALID_ARGUMENT is the client's
:class:`~modelrouter.errors.InvalidInput`; RESOURCE_EXHAUSTED is
:class:`~modelrouter.errors.PayloadTooLarge`; anything else (UNAVAILABLE: refused or reset;
NOT_FOUND: the remote model is gone; INTERNAL ...) is an
:class:`~modelrouter.errors.UpstreamError`, a failure of this version that fallbacks see.

``parameters: {maxMessageSize: BYTES}`` bounds messages both ways (default 16 MiB).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import grpc

from modelrouter.config.schema import VersionSpec
from modelrouter.errors import (
    ConfigError,
    InvalidInput,
    ModelNotReady,
    ModelRouterError,
    PayloadTooLarge,
    UpstreamError,
    UpstreamTimeout,
)
from modelrouter.protocol import grpc_codec
from modelrouter.protocol.pb import RPCS, messages, method_path
from modelrouter.protocol.types import InferenceRequest, ModelSignature, Tensor
from modelrouter.runtime.base import ModelRuntime
from modelrouter.runtime.remote import DEFAULT_TIMEOUT, _signature, header_id

DEFAULT_MAX_MESSAGE = 16 * 1024 * 1024
_TLS_SCHEMES = ("grpcs", "https")


def grpc_target(endpoint: str) -> tuple[str, bool]:
    """``host:port`` and whether TLS is used, from ``grpc://host:port`` (or http, grpcs, https)."""
    parts = urlsplit(endpoint)
    if not parts.hostname or parts.port is None:
        raise ConfigError(f"a gRPC endpoint needs a host and a port: {endpoint!r}")
    if parts.path.strip("/") or parts.query:
        raise ConfigError(f"a gRPC endpoint takes no path: {endpoint!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{parts.port}", parts.scheme in _TLS_SCHEMES


class RemoteGrpcRuntime(ModelRuntime):
    format = "remote-grpc"

    def __init__(
        self, model: str, version: str, spec: VersionSpec, path: Path | None = None
    ) -> None:
        super().__init__(model, version, spec, path)
        self.endpoint = (spec.endpoint or "").rstrip("/")
        self.remote_name = spec.remoteName or model
        self.remote_version = spec.remoteVersion or ""
        self.timeout = spec.timeout if spec.timeout is not None else DEFAULT_TIMEOUT
        self._channel: grpc.aio.Channel | None = None
        self._calls: dict[str, Any] = {}
        self._signature = ModelSignature(platform="remote")
        self._raw = True

    @property
    def target(self) -> str:
        """``remote model 'x' version 'y' (gRPC)``, for messages callers see: the endpoint is
        an internal address, so it appears only in load errors (shown to the admin) and logs."""
        version = f" version '{self.remote_version}'" if self.remote_version else ""
        # no endpoint: an internal address appears only in load errors (admin) and logs
        return f"remote model '{self.remote_name}'{version} (gRPC)"

    def load(self) -> None:
        """Check the settings; the network part is in :meth:`aload`."""
        self._address, self._tls = grpc_target(self.endpoint)
        params = self.spec.parameters
        size = params.get("maxMessageSize", DEFAULT_MAX_MESSAGE)
        if type(size) is not int or size < 1:
            raise ConfigError(f"parameters.maxMessageSize must be a positive integer: {size!r}")
        raw = params.get("rawContents", True)
        if not isinstance(raw, bool):
            raise ConfigError(f"parameters.rawContents must be true or false: {raw!r}")
        self._raw = raw
        self._options = [
            ("grpc.max_send_message_length", size),
            ("grpc.max_receive_message_length", size),
        ]

    async def aload(self) -> None:
        self.load()
        if self._tls:
            channel = grpc.aio.secure_channel(
                self._address, grpc.ssl_channel_credentials(), options=self._options
            )
        else:
            channel = grpc.aio.insecure_channel(self._address, options=self._options)
        m = messages()
        calls = {
            rpc: channel.unary_unary(
                method_path(rpc),
                request_serializer=getattr(m, RPCS[rpc][0]).SerializeToString,
                response_deserializer=getattr(m, RPCS[rpc][1]).FromString,
            )
            for rpc in ("ModelMetadata", "ModelInfer")
        }
        try:
            meta = await self._call(
                calls["ModelMetadata"],
                m.ModelMetadataRequest(name=self.remote_name, version=self.remote_version),
                None,
            )
            doc = {
                "platform": meta.platform,
                "inputs": [_spec(t) for t in meta.inputs],
                "outputs": [_spec(t) for t in meta.outputs],
            }
            self._signature = _signature(doc, self.target)
        except ModelRouterError as exc:
            await channel.close()
            exc.internal = f"{exc.internal} (endpoint {self.endpoint})"
            raise
        except BaseException:
            await channel.close()
            raise
        self._channel = channel
        self._calls = calls

    def signature(self) -> ModelSignature:
        return self._signature

    async def infer(self, request: InferenceRequest) -> list[Tensor]:
        call = self._calls.get("ModelInfer")
        if call is None:
            raise ModelNotReady(f"{self.target} is not connected")
        msg = grpc_codec.encode_request(
            request, self.remote_name, self.remote_version, raw=self._raw
        )
        metadata = None if request.id is None else (("x-request-id", header_id(request.id)),)
        response = await self._call(call, msg, metadata)
        try:
            outputs, _ = grpc_codec.decode_response(response)
        except InvalidInput as exc:
            raise UpstreamError(f"{self.target} sent an invalid response: {exc.message}") from None
        return outputs

    async def _call(self, call: Any, msg: Any, metadata: Any) -> Any:
        try:
            return await call(msg, timeout=self.timeout, metadata=metadata)
        except grpc.aio.AioRpcError as exc:
            raise self._status_error(exc) from None

    def _status_error(self, exc: grpc.aio.AioRpcError) -> ModelRouterError:
        code = exc.code()
        details = exc.details() or code.name
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return UpstreamTimeout(f"{self.target} did not answer within {self.timeout:g}s")
        if code == grpc.StatusCode.INVALID_ARGUMENT:
            return InvalidInput(f"remote '{self.remote_name}': {details}")
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return PayloadTooLarge(f"remote '{self.remote_name}': {details}")
        if code == grpc.StatusCode.UNAVAILABLE:
            return UpstreamError(f"{self.target} is unavailable: {details}")
        return UpstreamError(f"{self.target} answered {code.name}: {details}")

    async def close(self) -> None:
        channel, self._channel = self._channel, None
        self._calls = {}
        if channel is not None:
            await channel.close()


def _spec(t: Any) -> dict[str, Any]:
    return {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
