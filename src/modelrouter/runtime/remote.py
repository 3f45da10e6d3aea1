"""A model served elsewhere (KServe, MLServer, Triton, another modelrouter), proxied over Open
Inference Protocol v2 REST.

One keep-alive connection pool per version (:class:`~modelrouter.runtime.http1.Http1Pool`,
chosen by measurement: about a tenth of httpx's CPU per call, see ``bench/proxy_clients.py``),
opened in :meth:`RemoteRuntime.aload` and closed in :meth:`RemoteRuntime.close`. ``aload``
fetches the remote model's metadata: an endpoint that is down, or a model it does not serve,
leaves the version FAILED with the reason instead of failing each request later.

Upstream failures become modelrouter errors at this edge:

- no answer within ``timeout`` (default 30s): :class:`~modelrouter.errors.UpstreamTimeout` (504);
- connection refused, reset, DNS: :class:`~modelrouter.errors.UpstreamError` naming the endpoint;
- 400 / 422 (the request itself is wrong): :class:`~modelrouter.errors.InvalidInput` with the
  upstream's message, so the client sees a 400 as it would talking to the server directly;
- 413: :class:`~modelrouter.errors.PayloadTooLarge`;
- any other status (404: the remote model is gone, 401/403: our credentials, 5xx):
  :class:`~modelrouter.errors.UpstreamError` (502), a failure of this version that fallbacks
  and rollouts should see as such, not as the client's fault; 504 stays a timeout.

``parameters: {maxConnections: N}`` bounds the pool (default 100, all kept alive).

The request ``id`` travels in the JSON body as given (JSON escapes anything), and as the
``x-request-id`` header only when it is safe there (what a modelrouter gateway accepts:
1-128 characters of ``A-Z a-z 0-9 . _ : + = -``); any other id (CRLF, non-ASCII, too long) is
sent as ``sha256-<32 hex>`` of it, so no client id can break, bloat or be refused upstream.
"""

from __future__ import annotations

import hashlib
import re
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import orjson

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
from modelrouter.protocol.types import InferenceRequest, ModelSignature, Tensor, TensorSpec
from modelrouter.protocol.v2 import encode_request, response_from_dict
from modelrouter.runtime.base import ModelRuntime
from modelrouter.runtime.http1 import ConnectionFailed, Http1Pool, HttpResponse

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_CONNECTIONS = 100
_JSON_HEADERS = {"content-type": "application/json"}
_SAFE_ID = re.compile(r"[A-Za-z0-9._:+=\-]{1,128}").fullmatch


def header_id(request_id: str) -> str:
    """``request_id`` as a safe ``x-request-id`` value: itself when it is 1-128 characters of
    ``A-Z a-z 0-9 . _ : + = -``, else ``sha256-<32 hex>`` of it (stable, so the upstream's
    logs of one request can still be joined)."""
    if _SAFE_ID(request_id):
        return request_id
    digest = hashlib.sha256(request_id.encode("utf-8", "surrogatepass")).hexdigest()
    return "sha256-" + digest[:32]


class RemoteRuntime(ModelRuntime):
    format = "remote"

    def __init__(
        self, model: str, version: str, spec: VersionSpec, path: Path | None = None
    ) -> None:
        super().__init__(model, version, spec, path)
        self.endpoint = (spec.endpoint or "").rstrip("/")
        self.remote_name = spec.remoteName or model
        self.remote_version = spec.remoteVersion
        prefix = urlsplit(self.endpoint).path.rstrip("/")
        base = f"{prefix}/v2/models/{quote(self.remote_name, safe='')}"
        if self.remote_version:
            base += f"/versions/{quote(self.remote_version, safe='')}"
        self._metadata_path = base
        self._infer_path = base + "/infer"
        self.timeout = spec.timeout if spec.timeout is not None else DEFAULT_TIMEOUT
        self._client: Http1Pool | None = None
        self._infer_head = b""
        self._signature = ModelSignature(platform="remote")

    @property
    def target(self) -> str:
        """``remote model 'x' version 'y'``, for messages callers see: the endpoint is an
        internal address, so it appears only in load errors (shown to the admin) and logs."""
        version = f" version '{self.remote_version}'" if self.remote_version else ""
        return f"remote model '{self.remote_name}'{version}"

    def load(self) -> None:
        """Check the settings; the network part is in :meth:`aload`."""
        if not self.endpoint:
            raise ConfigError(f"model '{self.model}' version '{self.version}' has no endpoint")
        limit = self.spec.parameters.get("maxConnections", DEFAULT_MAX_CONNECTIONS)
        if type(limit) is not int or limit < 1:
            raise ConfigError(f"parameters.maxConnections must be a positive integer: {limit!r}")
        self._max_connections = limit
        parts = urlsplit(self.endpoint)
        if not parts.hostname:
            raise ConfigError(f"endpoint {self.endpoint!r} has no host")
        self._host = parts.hostname
        self._tls = parts.scheme == "https"
        self._port = parts.port or (443 if self._tls else 80)

    async def aload(self) -> None:
        self.load()
        # Idle connections are dropped before uvicorn's 5s keep-alive closes them (MLServer,
        # KServe and modelrouter all serve with uvicorn), so a request rarely races that close.
        client = Http1Pool(
            self._host,
            self._port,
            tls=ssl.create_default_context() if self._tls else None,
            max_connections=self._max_connections,
            keepalive_expiry=4.0,
        )
        try:
            try:
                head = client.head("GET", self._metadata_path)
                self._infer_head = client.head("POST", self._infer_path, _JSON_HEADERS)
            except ValueError:  # not latin-1: the endpoint's path cannot go in a request line
                raise ConfigError(
                    f"endpoint {self.endpoint!r} has a path HTTP cannot send"
                ) from None
            doc = await self._send(client, "GET", self._metadata_path, head, None)
            self._signature = _signature(doc, self.target)
        except ModelRouterError as exc:
            await client.aclose()
            # a load error: shown only to the admin, so it may name the address
            exc.internal = f"{exc.internal} (endpoint {self.endpoint})"
            raise
        except BaseException:
            await client.aclose()
            raise
        self._client = client

    def signature(self) -> ModelSignature:
        return self._signature

    async def infer(self, request: InferenceRequest) -> list[Tensor]:
        client = self._client
        if client is None:
            raise ModelNotReady(f"{self.target} is not connected")
        head = self._infer_head
        if request.id is not None:  # header_id's answer is safe in a header as it is
            head += b"x-request-id: %s\r\n" % header_id(request.id).encode("ascii")
        doc = await self._send(client, "POST", self._infer_path, head, encode_request(request))
        try:
            outputs, _ = response_from_dict(doc)
        except InvalidInput as exc:
            raise UpstreamError(f"{self.target} sent an invalid response: {exc.message}") from None
        return outputs

    async def _send(
        self,
        client: Http1Pool,
        method: str,
        path: str,
        head: bytes,
        body: bytes | None,
    ) -> Any:
        """One call (``head`` from :meth:`Http1Pool.head`); the decoded JSON body of a 200,
        else the matching modelrouter error.

        ``timeout`` bounds the whole call: waiting for a connection, connecting, sending,
        waiting, reading.
        """
        try:
            response = await client.send(head, body, self.timeout)
        except TimeoutError:
            raise UpstreamTimeout(
                f"{self.target} did not answer {method} {path} within {self.timeout:g}s"
            ) from None
        except (ConnectionFailed, OSError) as exc:
            detail = str(exc) or type(exc).__name__
            raise UpstreamError(
                f"{self.target} is unreachable ({method} {path}): {detail}"
            ) from None
        if response.status != 200:
            raise self._status_error(method, path, response)
        try:
            return orjson.loads(response.body)
        except orjson.JSONDecodeError:
            raise UpstreamError(
                f"{self.target} answered {method} {path} with a body that is not JSON"
            ) from None

    def _status_error(self, method: str, path: str, response: HttpResponse) -> ModelRouterError:
        status = response.status
        message = _error_message(response)
        if status in (400, 422):
            return InvalidInput(f"remote '{self.remote_name}': {message}")
        if status == 413:
            return PayloadTooLarge(f"remote '{self.remote_name}': {message}")
        if status == 504:
            return UpstreamTimeout(f"{self.target} timed out (504): {message}")
        return UpstreamError(f"{self.target} answered {method} {path} with {status}: {message}")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()


def _error_message(response: HttpResponse) -> str:
    """The ``error`` of an Open Inference Protocol error body, else the start of the text."""
    try:
        doc = orjson.loads(response.body)
    except orjson.JSONDecodeError:
        doc = None
    if isinstance(doc, dict):
        error = doc.get("error", doc.get("detail"))
        if isinstance(error, str) and error:
            return error
    text = response.body.decode("utf-8", "replace").strip()
    return text[:300] if text else f"HTTP {response.status}, no message"


def _signature(doc: Any, target: str) -> ModelSignature:
    """The remote model's metadata as a signature (entries without a name are skipped)."""
    if not isinstance(doc, dict):
        raise UpstreamError(f"{target} sent model metadata that is not a JSON object")

    def specs(key: str) -> tuple[TensorSpec, ...]:
        items = doc.get(key)
        out = []
        for item in items if isinstance(items, list) else ():
            if not isinstance(item, dict) or not isinstance(item.get("name"), str):
                continue
            datatype = item.get("datatype")
            shape = item.get("shape")
            dims = tuple(d for d in shape if type(d) is int) if isinstance(shape, list) else ()
            out.append(
                TensorSpec(item["name"], datatype if isinstance(datatype, str) else "", dims)
            )
        return tuple(out)

    platform = doc.get("platform")
    return ModelSignature(
        specs("inputs"),
        specs("outputs"),
        platform=platform if isinstance(platform, str) and platform else "remote",
    )
