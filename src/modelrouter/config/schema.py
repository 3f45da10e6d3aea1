"""The config file as pydantic models.

Field names follow KServe (``storageUri``, ``modelFormat``), Istio (``match``, ``route``,
``mirror``, ``mirrorPercentage``, ``retries``, ``fault``) and Flagger so that users recognise them.
Every model forbids unknown fields and is frozen once loaded.
"""

from __future__ import annotations

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

from modelrouter.config.durations import ByteSize, Duration
from modelrouter.config.rollouts import RolloutSpec, check_rollouts

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$"
"""Model and version names appear in URLs: letters, digits, ``_``, ``.``, ``-``."""

REMOTE_SCHEMES = ("http://", "https://")


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
    accessLog: bool = False
    """One log line per request. Off by default: it costs on the hot path."""


class GrpcServer(Strict):
    host: str = "127.0.0.1"
    port: int = Field(8081, ge=0, le=65535)


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


class AuditSettings(Strict):
    enabled: bool = True
    """One record per routing decision; changes and admin actions are always recorded."""
    durable: bool = False
    """Acknowledge a request only once its decision record is committed to the store."""
    batchSize: int = Field(512, ge=1)
    flushInterval: Duration = 0.05
    maxQueue: int = Field(100_000, ge=1)
    retention: RetentionSettings | None = None


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


class ServerSettings(Strict):
    name: str = "modelrouter"
    http: HttpServer = HttpServer()
    grpc: GrpcServer | None = None
    store: str = "sqlite:///./modelrouter.db"
    """Relative SQLite paths resolve against the config file's folder."""
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
        if not v.startswith(("sqlite://", "postgresql://", "postgres://", "memory://")):
            raise ValueError(
                f"unsupported store {v!r}: use sqlite:///path, postgresql://... or memory://"
            )
        return v


# --------------------------------------------------------------------------- models


class VersionSpec(Strict):
    """One version of a model: a file to load (``storageUri``) or a remote server (``endpoint``)."""

    storageUri: str | None = None
    modelFormat: str | None = None
    """sklearn, xgboost, lightgbm, onnx, mlflow, custom."""
    implementation: str | None = None
    """For ``modelFormat: custom``: ``package.module:ClassName``."""
    endpoint: str | None = None
    """Base URL of a remote Open Inference Protocol v2 server."""
    remoteName: str | None = None
    remoteVersion: str | None = None
    protocol: Literal["v2"] = "v2"
    timeout: Duration | None = None
    executor: Literal["inline", "thread"] = "inline"
    """Where an in-process model predicts: on the event loop (lowest latency for small models)
    or in a worker thread (keeps the server responsive for slow models)."""
    parameters: dict[str, Any] = Field(default_factory=dict)
    """Free-form settings passed to the runtime."""

    @model_validator(mode="after")
    def _one_source(self) -> VersionSpec:
        if self.endpoint is not None:
            if self.storageUri is not None:
                raise ValueError("give either storageUri or endpoint, not both")
            if not self.endpoint.startswith(REMOTE_SCHEMES):
                raise ValueError(
                    f"endpoint must be an http:// or https:// URL, got {self.endpoint!r}"
                )
            if self.modelFormat not in (None, "remote"):
                raise ValueError("a version with an endpoint takes no modelFormat")
            return self
        if self.remoteName or self.remoteVersion:
            raise ValueError("remoteName and remoteVersion need an endpoint")
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
            return "remote"
        return self.modelFormat or "mlflow"


class BatcherSpec(Strict):
    maxBatchSize: int = Field(64, ge=1)
    maxLatency: Duration = 0.005


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

    @field_validator("regex")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"invalid regex {v!r}: {exc}") from exc
        return v


class MatchBlock(Strict):
    """All conditions of a block must hold (AND); a rule matches when any block holds (OR)."""

    headers: dict[str, StringMatch] = Field(default_factory=dict)
    queryParams: dict[str, StringMatch] = Field(default_factory=dict)
    withoutHeaders: dict[str, StringMatch] = Field(default_factory=dict)
    body: dict[str, StringMatch] = Field(default_factory=dict)
    """Dotted paths into the JSON body, e.g. ``parameters.region`` or ``user.segment``."""


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
    match: list[MatchBlock] = Field(default_factory=list)
    route: list[RouteDestination] = Field(min_length=1)
    sticky: StickySpec | None = None
    salt: str | None = None
    """Seed of the sticky hash; defaults to ``model/rule`` so experiments are independent."""
    mirror: MirrorDestination | None = None
    mirrorPercentage: Percentage | None = None
    mirrors: list[MirrorPolicy] = Field(default_factory=list)
    timeout: Duration | None = None
    retries: Retries | None = None
    fallback: list[str] = Field(default_factory=list)
    fault: Fault | None = None

    @model_validator(mode="after")
    def _weights(self) -> RouteRule:
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
    http: list[RouteRule] = Field(default_factory=list)

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
                if dest in routed:
                    raise ValueError(
                        f"{field}: version {dest!r} mirrors itself (it is also routed)"
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
