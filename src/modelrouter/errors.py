"""The one error hierarchy of modelrouter.

No web framework is imported here. Each error carries a ``code``; :data:`STATUS` maps every
code to an HTTP status and a gRPC status name, and both transports use that one table::

    ModelRouterError                      internal          500  INTERNAL
    ├── InvalidInput                      invalid_input     400  INVALID_ARGUMENT
    │   └── UnknownOutput                 invalid_input     400  INVALID_ARGUMENT
    ├── PayloadTooLarge                   payload_too_large 413  RESOURCE_EXHAUSTED
    ├── HeadersTooLarge                   headers_too_large 431  RESOURCE_EXHAUSTED
    ├── UriTooLong                        uri_too_long      414  INVALID_ARGUMENT
    ├── NotFound                          not_found         404  NOT_FOUND
    │   ├── ModelNotFound                 not_found         404  NOT_FOUND
    │   └── VersionNotFound               not_found         404  NOT_FOUND
    ├── Unauthorized                      unauthorized      401  UNAUTHENTICATED
    ├── ModelNotReady                     not_ready         503  UNAVAILABLE
    ├── InferenceFailed                   inference_failed  500  INTERNAL
    ├── UpstreamError                     upstream_error    502  UNAVAILABLE
    ├── UpstreamTimeout                   upstream_timeout  504  DEADLINE_EXCEEDED
    ├── StoreError                        store_error       503  UNAVAILABLE
    ├── Conflict                          conflict          409  ABORTED
    ├── Overloaded                        overloaded        429  RESOURCE_EXHAUSTED
    ├── FaultInjected                     fault_injected    (its httpStatus)  UNAVAILABLE
    └── ConfigError                       config_error      400  INVALID_ARGUMENT
        └── ModelLoadError                load_error        500  INTERNAL
"""

from __future__ import annotations

from typing import NamedTuple


class Status(NamedTuple):
    http: int
    grpc: str


STATUS: dict[str, Status] = {
    "internal": Status(500, "INTERNAL"),
    "invalid_input": Status(400, "INVALID_ARGUMENT"),
    "payload_too_large": Status(413, "RESOURCE_EXHAUSTED"),
    "headers_too_large": Status(431, "RESOURCE_EXHAUSTED"),
    "uri_too_long": Status(414, "INVALID_ARGUMENT"),
    "not_found": Status(404, "NOT_FOUND"),
    "unauthorized": Status(401, "UNAUTHENTICATED"),
    "not_ready": Status(503, "UNAVAILABLE"),
    "inference_failed": Status(500, "INTERNAL"),
    "upstream_error": Status(502, "UNAVAILABLE"),
    "upstream_timeout": Status(504, "DEADLINE_EXCEEDED"),
    "store_error": Status(503, "UNAVAILABLE"),
    "conflict": Status(409, "ABORTED"),
    "overloaded": Status(429, "RESOURCE_EXHAUSTED"),
    "fault_injected": Status(503, "UNAVAILABLE"),
    "config_error": Status(400, "INVALID_ARGUMENT"),
    "load_error": Status(500, "INTERNAL"),
}


class ModelRouterError(Exception):
    """Base of every error modelrouter raises on purpose."""

    code = "internal"

    def __init__(self, message: str, internal: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.internal = internal if internal is not None else message
        """The full text, for the server log and the audit log (read with the admin token);
        ``message`` is what the caller gets, which leaves out load errors (file paths,
        internal URLs, artifact bytes)."""

    @property
    def status(self) -> Status:
        return STATUS[self.code]


class InvalidInput(ModelRouterError):
    """The request is malformed: bad JSON, wrong datatype, shape and data disagree."""

    code = "invalid_input"


class UnknownOutput(InvalidInput):
    """The request asks for an output the model does not have."""


class PayloadTooLarge(ModelRouterError):
    code = "payload_too_large"


class HeadersTooLarge(ModelRouterError):
    """Too many request headers, one too large, or all of them together."""

    code = "headers_too_large"


class UriTooLong(ModelRouterError):
    """The path and query string together are longer than the header limit allows."""

    code = "uri_too_long"


class NotFound(ModelRouterError):
    code = "not_found"


class ModelNotFound(NotFound):
    def __init__(self, model: str) -> None:
        super().__init__(f"model '{model}' not found")
        self.model = model


class VersionNotFound(NotFound):
    def __init__(self, model: str, version: str) -> None:
        super().__init__(f"version '{version}' of model '{model}' not found")
        self.model = model
        self.version = version


class Unauthorized(ModelRouterError):
    code = "unauthorized"


class ModelNotReady(ModelRouterError):
    code = "not_ready"


class InferenceFailed(ModelRouterError):
    """The model itself raised while predicting; the message is the model's."""

    code = "inference_failed"


class UpstreamError(ModelRouterError):
    """A remote Open Inference Protocol server failed or could not be reached."""

    code = "upstream_error"


class UpstreamTimeout(ModelRouterError):
    code = "upstream_timeout"


class StoreError(ModelRouterError):
    """The shared store (SQLite or PostgreSQL) failed or cannot be reached; retrying may help."""

    code = "store_error"


class Conflict(ModelRouterError):
    """An optimistic update lost a race: the object changed since the caller read it."""

    code = "conflict"


class RolloutConflict(Conflict):
    """A rollout's state changed since its controller read it (a command was queued, another
    gateway stepped it): the step must be decided again, not retried as it is."""


class Overloaded(ModelRouterError):
    """A bounded resource is full (e.g. every event-stream slot is taken); retry later."""

    code = "overloaded"


class FaultInjected(ModelRouterError):
    """A rule's ``fault.abort`` fired (Istio fault injection): the status is the rule's."""

    code = "fault_injected"

    def __init__(self, http_status: int, model: str, rule: str | None) -> None:
        super().__init__(
            f"fault injected by rule '{rule}' of model '{model}': abort with {http_status}"
        )
        self.http_status = http_status

    @property
    def status(self) -> Status:
        return Status(self.http_status, STATUS[self.code].grpc)


class ConfigError(ModelRouterError):
    """The config file is invalid. ``field`` is a dotted path, ``line`` 1-based when known."""

    code = "config_error"

    def __init__(self, message: str, field: str | None = None, line: int | None = None) -> None:
        where = ""
        if field:
            where += f"{field}: "
        if line is not None:
            where = f"line {line}: " + where
        super().__init__(where + message)
        self.field = field
        self.line = line
        self.detail = message


class ModelLoadError(ConfigError):
    code = "load_error"
