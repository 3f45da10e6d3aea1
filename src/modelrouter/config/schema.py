"""The config file as pydantic models.

Field names follow KServe (``storageUri``, ``modelFormat``), Istio (``match``, ``route``,
``mirror``, ``mirrorPercentage``, ``retries``, ``fault``) and Flagger so that users recognise them.
Every model forbids unknown fields and is frozen once loaded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from modelrouter.config import limits
from modelrouter.config.durations import ByteSize, Duration
from modelrouter.config.regex import compile_regex
from modelrouter.config.rollouts import RolloutSpec, check_rollouts
from modelrouter.errors import ConfigError

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
"""Model and version names appear in URLs: letters, digits, ``_``, ``.``, ``-``."""

REMOTE_SCHEMES = ("http://", "https://")
GRPC_SCHEMES = ("grpc://", "grpcs://", "http://", "https://")
"""A gRPC endpoint: ``grpc://`` or ``http://`` in plain text, ``grpcs://`` or ``https://`` TLS."""
STORE_SCHEMES = ("sqlite://", "postgresql://", "postgres://", "memory://")


def _name_check(kind: str) -> Callable[[Any], Any]:
    def check(name: Any) -> Any:
        if not isinstance(name, str):
            raise ValueError(f"{kind} name {name!r} must be a string: quote it ('{name}')")
        if not re.match(NAME_PATTERN, name):
            raise ValueError(f"invalid {kind} name {name!r}: use letters, digits, _ . -")
        return name

    return check


ModelName = Annotated[str, BeforeValidator(_name_check("model"))]
VersionName = Annotated[str, BeforeValidator(_name_check("version"))]
RuleName = Annotated[str, BeforeValidator(_name_check("rule"))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- server


class HttpServer(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=0, le=65535)
    maxRequestSize: ByteSize = Field(16 * 1024 * 1024, gt=0)
    """Bodies larger than this are refused with 413."""
    maxHeaderCount: int = Field(100, ge=1)
    """Requests with more headers than this are refused with 431."""
    maxHeaderSize: ByteSize = Field(8 * 1024, gt=0)
    """Bytes of one header (name and value); a larger one is refused with 431."""
    maxHeaderListSize: ByteSize = Field(32 * 1024, gt=0)
    """Bytes of all headers together; more is refused with 431 (the server stops reading a
    request head that grows past this)."""
    accessLog: bool = False
    """One log line per request. Off by default: it costs on the hot path."""


class GrpcServer(Strict):
    """The Open Inference Protocol gRPC endpoint (``inference.GRPCInferenceService``)."""

    host: str = "127.0.0.1"
    port: int = Field(8081, ge=0, le=65535)
    """0 picks a free port (tests)."""
    maxMessageSize: ByteSize = Field(16 * 1024 * 1024, gt=0, le=2**31 - 1)
    """Largest request or response message; a larger request gets RESOURCE_EXHAUSTED."""


class AuthSettings(Strict):
    adminTokenEnv: str = "MODELROUTER_ADMIN_TOKEN"
    """Name of the environment variable that holds the admin API's bearer token."""


class PrometheusSettings(Strict):
    url: str


class RetentionSettings(Strict):
    maxAge: Duration | None = None
    """Audit records older than this are pruned (e.g. ``30d`` written as ``720h``)."""
    maxCount: int | None = Field(None, ge=1)
    """At most this many audit records are kept."""
    interval: Duration = 3600.0
    """How often the gateway prunes."""


class CheckpointSettings(Strict):
    """Signed checkpoints of the audit head, written outside the store (see docs/audit.md)."""

    sink: str = Field(min_length=1)
    """A file path (appended to; relative to the config file) or ``s3://bucket/key``."""
    keyFile: str | None = None
    """PEM file of the Ed25519 private key (``modelrouter audit keygen``); relative to the
    config file."""
    keyEnv: str | None = None
    """Name of an environment variable holding the private key (PEM, or 32 bytes base64)."""
    interval: Duration = Field(60.0, gt=0)
    """How often the head is signed (only when it moved since the last checkpoint)."""
    keep: int = Field(10_000, ge=1)
    """An S3 sink keeps the newest this many checkpoints (S3 cannot append)."""

    @model_validator(mode="after")
    def _one_key(self) -> CheckpointSettings:
        if (self.keyFile is None) == (self.keyEnv is None):
            raise ValueError("checkpoints: give keyFile or keyEnv (exactly one)")
        return self


class AuditSettings(Strict):
    enabled: bool = True
    """One record per routing decision; changes and admin actions are always recorded."""
    durable: bool = False
    """Acknowledge a request only once its decision record is committed to the store."""
    batchSize: int = Field(512, ge=1)
    flushInterval: Duration = 0.05
    maxQueue: int = Field(100_000, ge=1)
    retention: RetentionSettings | None = None
    checkpoints: CheckpointSettings | None = None
    """Optional: sign the head every interval and write it to an outside sink."""


class ShadowSettings(Strict):
    maxQueue: int = Field(1000, ge=1)
    """Mirrored calls waiting to run; beyond this they are dropped and counted."""
    workers: int = Field(2, ge=1)
    executor: Literal["process", "thread"] = "process"
    """Where shadow copies of in-process models predict: a worker process (another core; the
    primary's throughput is kept) or a thread of the gateway (no second copy of the model in
    memory, but it competes with the primaries for the interpreter)."""


class MlflowSettings(Strict):
    trackingUri: str | None = None
    """The MLflow tracking server for ``models:/`` and ``runs:/`` URIs; default: the
    ``MLFLOW_TRACKING_URI`` environment variable."""
    pollInterval: Duration = Field(30.0, gt=0)
    """How often ``models:/name@alias`` versions check whether their alias moved."""


class TelemetrySettings(Strict):
    """Per-version rolling windows (requests, errors, latency, feedback, shadow agreement)."""

    flushInterval: Duration = Field(2.0, gt=0)
    """How often the gateway appends what it counted to the store, where every gateway's
    counts are summed (what a rollout controller reads)."""
    window: Duration = Field(600.0, gt=0)
    """How much recent history each gateway keeps in memory (1 s buckets)."""
    retention: Duration = Field(3600.0, gt=0)
    """Rows older than this are pruned from the store."""
    gatewayId: str | None = None
    """This gateway's name in the store's rows; default ``host:pid``."""


class ShutdownSettings(Strict):
    """What a gateway does on SIGTERM (see docs/operations.md)."""

    drain: Duration = Field(5.0, ge=0)
    """Readiness answers 503 at once, and the gateway keeps serving this long, so that load
    balancers (a Kubernetes endpoint, a preStop hook) stop sending before it stops accepting."""
    timeout: Duration = Field(20.0, ge=0)
    """After the drain: how long requests in flight may take to finish before they are
    cancelled. Then the audit log is flushed and the shadow worker stopped."""


class ServerSettings(Strict):
    name: str = "modelrouter"
    http: HttpServer = HttpServer()
    workers: int = Field(1, ge=1, le=64)
    """Gateway processes serving the one port (``serve --workers`` overrides it). Each is a
    follower of the store; a worker that dies is restarted; ``/metrics`` of any worker reports
    the sum over all of them."""
    shutdown: ShutdownSettings = ShutdownSettings()
    grpc: GrpcServer | None = None
    store: str = "sqlite:///./modelrouter.db"
    """Relative SQLite paths resolve against the config file's folder."""
    storeEnv: str | None = None
    """Name of an environment variable holding the store URL; when set it replaces ``store``,
    so a PostgreSQL password can come from a Kubernetes Secret instead of the config file."""
    storePollInterval: Duration = 0.5
    """How often a SQLite store is polled for routing changes of other gateways."""
    storeTimeout: Duration = Field(2.0, gt=0)
    """How long a request waits for the store: connecting to PostgreSQL, and a durable audit
    record's commit (beyond it the request gets a 503 instead of hanging)."""
    storeCheckInterval: Duration = Field(1.0, gt=0)
    """How often the gateway checks that the store still holds what it saw (a dropped and
    recreated or restored database is re-initialised, with a gap record in the audit log)."""
    watchConfig: bool = True
    """Reload routing rules when the config file changes (an invalid file is refused)."""
    prometheus: PrometheusSettings | None = None
    auth: AuthSettings = AuthSettings()
    audit: AuditSettings = AuditSettings()
    shadow: ShadowSettings = ShadowSettings()
    mlflow: MlflowSettings = MlflowSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    modelMemoryBudget: ByteSize | None = Field(None, gt=0)
    """Resident model versions may take at most this much (e.g. ``2GiB``, measured as their
    artifact size on disk); idle versions are evicted least recently used first."""
    lazyLoading: bool = False
    """Load a version on its first request instead of at start."""
    cacheDir: str | None = None
    """Where downloaded artifacts (S3, HTTP, MLflow) are kept; default
    ``~/.cache/modelrouter``. Relative paths resolve against the config file's folder."""

    @field_validator("store")
    @classmethod
    def _store_scheme(cls, v: str) -> str:
        if not v.startswith(STORE_SCHEMES):
            raise ValueError(
                f"unsupported store {v!r}: use sqlite:///path, postgresql://... or memory://"
            )
        return v

    def store_location(self) -> str:
        """The store URL: the ``storeEnv`` variable's value when it is set, else ``store``."""
        if self.storeEnv is None:
            return self.store
        value = os.environ.get(self.storeEnv, "")
        if not value:
            raise ConfigError(
                f"the environment variable {self.storeEnv} is not set", field="server.storeEnv"
            )
        if not value.startswith(STORE_SCHEMES):
            raise ConfigError(
                f"the environment variable {self.storeEnv} does not hold a store URL "
                "(sqlite:///path, postgresql://... or memory://)",
                field="server.storeEnv",
            )
        return value


# --------------------------------------------------------------------------- models


class OutlierDetection(Strict):
    """Istio's ``outlierDetection``, on one version: a version that keeps failing is ejected,
    and the rule's fallback answers at once instead of waiting out timeouts."""

    consecutiveErrors: int = Field(5, ge=1)
    """Failures in a row (errors and timeouts, not bad requests) that eject the version."""
    interval: Duration = Field(10.0, gt=0)
    """The sweep period: an ejected version is returned at the first sweep after its
    ejection time, so within ``ejectionTime + interval``."""
    baseEjectionTime: Duration = Field(30.0, gt=0)
    """Ejection time of a first ejection; the n-th ejection in a row lasts n times this."""
    maxEjectionPercent: float = Field(10.0, ge=0, le=100)
    """At most this share of a model's versions are ejected at once (at least one is)."""


class VersionSpec(Strict):
    """One version of a model: a file to load (``storageUri``) or a remote server (``endpoint``)."""

    storageUri: str | None = None
    modelFormat: str | None = None
    """sklearn, xgboost, lightgbm, onnx, mlflow, custom."""
    implementation: str | None = None
    """For ``modelFormat: custom``: ``package.module:ClassName``."""
    endpoint: str | None = None
    """Base URL of a remote Open Inference Protocol v2 server (``http://host:port``; for
    ``protocol: grpc`` also ``grpc://host:port``, ``grpcs://`` for TLS)."""
    remoteName: str | None = None
    remoteVersion: str | None = None
    protocol: Literal["v2", "grpc"] = "v2"
    """How a remote version is called: ``v2`` (Open Inference Protocol REST) or ``grpc``
    (the same protocol over gRPC, ``inference.GRPCInferenceService``)."""
    timeout: Duration | None = None
    executor: Literal["inline", "thread"] = "inline"
    """Where an in-process model predicts: on the event loop (lowest latency for small models)
    or in a worker thread (keeps the server responsive for slow models)."""
    parameters: dict[str, Any] = Field(default_factory=dict)
    """Free-form settings passed to the runtime."""
    outlierDetection: OutlierDetection | None = None
    """Eject this version from routed traffic while it keeps failing (Istio's field)."""
    outputNames: dict[str, str] = Field(default_factory=dict)
    """The names clients see for the runtime's outputs, e.g. ``{predict: output-0}`` (what
    KServe's servers call them): responses and model metadata carry the new name, and a
    request asking for ``output-0`` gets the runtime's ``predict``."""

    @field_validator("outputNames")
    @classmethod
    def _output_names(cls, v: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for source, name in v.items():
            if not name or not re.match(NAME_PATTERN, name):
                raise ValueError(
                    f"{source}: invalid output name {name!r}: use letters, digits, _ . -"
                )
            if name in seen:
                raise ValueError(f"{source}: output name {name!r} is also given to {seen[name]!r}")
            seen[name] = source
        return v

    @model_validator(mode="after")
    def _one_source(self) -> VersionSpec:
        if self.modelFormat == "remote-grpc":
            raise ValueError(
                "modelFormat 'remote-grpc' is not for configs: give an endpoint and protocol: grpc"
            )
        if self.endpoint is not None:
            if self.storageUri is not None:
                raise ValueError("give either storageUri or endpoint, not both")
            if self.protocol == "grpc":
                if not self.endpoint.startswith(GRPC_SCHEMES):
                    raise ValueError(
                        "endpoint of a protocol: grpc version must be grpc://host:port "
                        f"(grpcs:// for TLS), got {self.endpoint!r}"
                    )
            elif not self.endpoint.startswith(REMOTE_SCHEMES):
                hint = " (add protocol: grpc)" if self.endpoint.startswith("grpc") else ""
                raise ValueError(
                    f"endpoint must be an http:// or https:// URL, got {self.endpoint!r}{hint}"
                )
            if self.modelFormat not in (None, "remote"):
                raise ValueError("a version with an endpoint takes no modelFormat")
            return self
        if self.remoteName or self.remoteVersion:
            raise ValueError("remoteName and remoteVersion need an endpoint")
        if self.protocol != "v2":
            raise ValueError("protocol is for a version with an endpoint")
        if self.modelFormat == "custom":
            if not self.implementation:
                raise ValueError("modelFormat custom needs implementation: package.module:Class")
            return self
        if self.implementation is not None:
            raise ValueError("implementation is only for modelFormat: custom")
        if self.storageUri is None:
            raise ValueError("a version needs a storageUri or an endpoint")
        if self.modelFormat is None and not self.storageUri.startswith(("models:/", "runs:/")):
            raise ValueError("modelFormat is required (sklearn, xgboost, lightgbm, onnx, mlflow)")
        return self

    @property
    def is_remote(self) -> bool:
        return self.endpoint is not None

    @property
    def format(self) -> str:
        if self.endpoint is not None:
            return "remote-grpc" if self.protocol == "grpc" else "remote"
        return self.modelFormat or "mlflow"


class BatcherSpec(Strict):
    """How concurrent requests to an in-process version share one ``predict``.

    On by default for the row-independent built-in runtimes (sklearn, xgboost, lightgbm,
    onnx); ``enabled: false`` turns it off, and a custom class opts in with ``enabled: true``
    (or any ``batcher`` block). A lone request never waits: see :mod:`modelrouter.runtime.batcher`.
    """

    enabled: bool | None = None
    """None: on for the built-in row-independent runtimes, off for the others."""
    maxBatchSize: int = Field(64, ge=1)
    maxLatency: Duration = 0.005
    """The longest a queued request waits behind a running predict before it starts anyway."""


class StringMatch(Strict):
    """Istio's StringMatch: exactly one of exact, prefix, regex."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StringMatch:
        given = [k for k in ("exact", "prefix", "regex") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of exact, prefix, regex")
        return self

    @field_validator("exact", "prefix", "regex")
    @classmethod
    def _bounded(cls, v: str | None) -> str | None:
        if v is not None and len(v) > limits.MAX_PATTERN_LENGTH:
            raise ValueError(
                f"{len(v)} characters; a value may have at most {limits.MAX_PATTERN_LENGTH}"
            )
        return v

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            compile_regex(v)  # RegexError is a ValueError naming the reason
        return v


def _names(kind: str, keys: Any) -> Any:
    for k in keys:
        if not k or len(k) > limits.MAX_PATTERN_LENGTH:
            raise ValueError(
                f"{kind} name {k[:80]!r}: must have 1-{limits.MAX_PATTERN_LENGTH} characters"
            )


class MatchBlock(Strict):
    """All conditions of a block must hold (AND); a rule matches when any block holds (OR)."""

    headers: dict[str, StringMatch] = Field(default_factory=dict)
    queryParams: dict[str, StringMatch] = Field(default_factory=dict)
    withoutHeaders: dict[str, StringMatch] = Field(default_factory=dict)
    body: dict[str, StringMatch] = Field(default_factory=dict)
    """Dotted paths into the JSON body, e.g. ``parameters.region`` or ``user.segment``."""

    @field_validator("headers", "withoutHeaders", "queryParams")
    @classmethod
    def _keys(cls, v: dict[str, StringMatch]) -> dict[str, StringMatch]:
        _names("header or query parameter", v)
        return v

    @field_validator("body")
    @classmethod
    def _paths(cls, v: dict[str, StringMatch]) -> dict[str, StringMatch]:
        for path in v:
            limits.check_body_path(path)
        return v

    @property
    def size(self) -> int:
        return len(self.headers) + len(self.withoutHeaders) + len(self.queryParams) + len(self.body)


class RouteDestination(Strict):
    destination: str
    weight: int | None = Field(None, ge=0)


class StickySpec(Strict):
    """Where the sticky key comes from: exactly one of header, cookie, queryParam, body."""

    header: str | None = None
    cookie: str | None = None
    queryParam: str | None = None
    body: str | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> StickySpec:
        given = [k for k in ("header", "cookie", "queryParam", "body") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("give exactly one of header, cookie, queryParam, body")
        if self.body is not None:
            limits.check_body_path(self.body)
        else:
            _names(given[0], [getattr(self, given[0])])
        return self


class Percentage(Strict):
    value: float = Field(ge=0, le=100)


class MirrorDestination(Strict):
    destination: str


class MirrorPolicy(Strict):
    """Istio's ``mirrors`` entry: a destination with its own percentage."""

    destination: str
    percentage: Percentage = Percentage(value=100)


class Retries(Strict):
    attempts: int = Field(ge=0)
    perTryTimeout: Duration | None = None


class FaultDelay(Strict):
    fixedDelay: Duration
    percentage: Percentage = Percentage(value=100)


class FaultAbort(Strict):
    httpStatus: int = Field(ge=400, le=599)
    percentage: Percentage = Percentage(value=100)


class Fault(Strict):
    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class RouteRule(Strict):
    name: RuleName
    match: list[MatchBlock] = Field(default_factory=list, max_length=limits.MAX_MATCH_BLOCKS)
    route: list[RouteDestination] = Field(min_length=1)
    sticky: StickySpec | None = None
    salt: str | None = None
    """Seed of the sticky hash; defaults to ``model/rule`` so experiments are independent."""
    mirror: MirrorDestination | None = None
    mirrorPercentage: Percentage | None = None
    mirrors: list[MirrorPolicy] = Field(default_factory=list, max_length=limits.MAX_LIST)
    timeout: Duration | None = None
    retries: Retries | None = None
    fallback: list[str] = Field(default_factory=list, max_length=limits.MAX_LIST)
    fault: Fault | None = None

    @model_validator(mode="after")
    def _weights(self) -> RouteRule:
        conditions = sum(b.size for b in self.match)
        if conditions > limits.MAX_CONDITIONS:
            raise ValueError(
                f"match: {conditions} conditions; a rule may have at most "
                f"{limits.MAX_CONDITIONS} over all its blocks"
            )
        weights = [d.weight for d in self.route]
        if len(self.route) > 1 and any(w is None for w in weights):
            raise ValueError("route: give a weight to every destination when there are several")
        if len(self.route) > 1 and sum(w or 0 for w in weights) == 0:
            raise ValueError("route: weights are all zero; at least one must be positive")
        if len(self.route) == 1 and self.route[0].weight == 0:
            raise ValueError("route: the only destination has weight 0")
        names = [d.destination for d in self.route]
        if len(set(names)) != len(names):
            raise ValueError("route: a destination appears twice")
        if self.mirrorPercentage is not None and self.mirror is None:
            raise ValueError("mirrorPercentage needs mirror")
        return self


class ModelSpec(Strict):
    versions: dict[VersionName, VersionSpec] = Field(min_length=1)
    """Ordered: without rules, all traffic goes to the first version."""
    batcher: BatcherSpec | None = None
    allowNonFinite: bool = False
    """Accept NaN and infinite floating point inputs (binary tensor data only: JSON cannot
    carry them). Off: such a request is refused with a 400 naming the input, before routing."""
    http: list[RouteRule] = Field(default_factory=list, max_length=limits.MAX_RULES)

    @model_validator(mode="after")
    def _rules_name_known_versions(self) -> ModelSpec:
        known = set(self.versions)
        seen: set[str] = set()
        for i, rule in enumerate(self.http):
            where = f"http.{i}"
            if rule.name in seen:
                raise ValueError(f"{where}.name: rule name {rule.name!r} is used twice")
            seen.add(rule.name)
            for j, d in enumerate(rule.route):
                if d.destination not in known:
                    raise ValueError(
                        f"{where}.route.{j}.destination: unknown version {d.destination!r}"
                        f" (known: {', '.join(sorted(known))})"
                    )
            routed = {d.destination for d in rule.route}
            mirrors = (
                [(f"{where}.mirror.destination", rule.mirror.destination)] if rule.mirror else []
            )
            mirrors += [
                (f"{where}.mirrors.{j}.destination", m.destination)
                for j, m in enumerate(rule.mirrors)
            ]
            for field, dest in mirrors:
                if dest not in known:
                    raise ValueError(f"{field}: unknown version {dest!r}")
                # Mirroring a routed version (Istio and Flagger's "shadow the canary") copies
                # only the requests the split sent to the other versions; a rule's only
                # destination would never be copied.
                if routed == {dest}:
                    raise ValueError(
                        f"{field}: version {dest!r} is the rule's only destination, so it "
                        "would never be mirrored (a mirror of a routed version gets copies of "
                        "the requests the split sends to the other versions)"
                    )
            for j, fb in enumerate(rule.fallback):
                if fb not in known:
                    raise ValueError(f"{where}.fallback.{j}: unknown version {fb!r}")
        return self

    @property
    def default_version(self) -> str:
        return next(iter(self.versions))


class Config(Strict):
    server: ServerSettings = ServerSettings()
    models: dict[ModelName, ModelSpec] = Field(default_factory=dict)
    rollouts: dict[RuleName, RolloutSpec] = Field(default_factory=dict)
    """Progressive delivery: see :mod:`modelrouter.config.rollouts`."""

    @model_validator(mode="after")
    def _rollouts_point_at_rules(self) -> Config:
        check_rollouts(self.rollouts, self.models)
        return self
