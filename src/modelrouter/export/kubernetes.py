"""``modelrouter export kubernetes``: one config as the manifests of one of three shapes.

- ``--models in-process``: the gateway, its models loaded in its pods;
- ``--models kserve`` (default): the gateway in front of one InferenceService per version, each
  version in the gateway's config rewritten as a remote OIP v2 endpoint at its in-cluster
  address;
- ``--mesh istio``: mesh-only, no gateway: InferenceServices, and a VirtualService and
  DestinationRules for what Istio can express (``--rollouts flagger`` adds Flagger Canaries).

Refusals are :class:`~modelrouter.errors.ConfigError` naming the field or the option; whatever
is carried over only in part is a note.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from modelrouter._version import __version__
from modelrouter.config.loader import LoadedConfig, parse_config
from modelrouter.config.schema import Config
from modelrouter.errors import ConfigError
from modelrouter.export import flagger, gateway, istio, kserve
from modelrouter.export.names import dns_label, predictor_service, service_host
from modelrouter.export.storage import Upload, relocate
from modelrouter.export.yamlio import Manifest, dump, write_tree

LOOPBACK = ("127.0.0.1", "localhost", "::1", "0.0.0.0")


@dataclass(frozen=True, slots=True)
class ExportOptions:
    namespace: str = "default"
    replicas: int | None = None
    """Gateway pods; default 2 with a PostgreSQL store, else 1."""
    storage_prefix: str | None = None
    mesh: Literal["none", "istio"] = "none"
    models: Literal["kserve", "in-process"] = "kserve"
    rollouts: Literal["none", "flagger"] = "none"
    image: str = f"modelrouter:{__version__}"


@dataclass(slots=True)
class ExportResult:
    files: dict[str, list[Manifest]]
    uploads: list[Upload] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What is carried over only in part, or left to the user."""
    secrets: list[str] = field(default_factory=list)
    """The ``kubectl create secret`` commands the manifests expect (placeholders, no values)."""
    gateway_config: str | None = None

    def write(self, out: Path, namespace: str) -> list[Path]:
        return write_tree(out, {k: v for k, v in self.files.items() if v}, namespace)


def _store_kind(config: Config) -> str:
    if config.server.storeEnv is not None:
        return "env"
    return config.server.store.split("://", 1)[0]


def _check_options(config: Config, opts: ExportOptions) -> int:
    if opts.replicas is not None and opts.replicas < 1:
        raise ConfigError("must be at least 1", field="--replicas")
    if opts.mesh == "istio" and opts.models == "in-process":
        raise ConfigError(
            "the mesh routes between services, and with --models in-process the versions live"
            " inside the gateway: use --models kserve with --mesh istio",
            field="--mesh",
        )
    if opts.rollouts == "flagger" and opts.mesh != "istio":
        raise ConfigError(
            "Flagger shifts the mesh's weights: give --mesh istio (behind the gateway, the"
            " gateway's own controller runs the rollouts)",
            field="--rollouts",
        )
    kind = _store_kind(config)
    shared = kind in ("postgresql", "postgres", "env")
    replicas = opts.replicas if opts.replicas is not None else (2 if shared else 1)
    if opts.mesh == "none" and replicas > 1 and not shared:
        raise ConfigError(
            f"{replicas} replicas need a postgresql:// store: a {kind} store is private to"
            " each pod, so the replicas would not share routing, rollouts or the audit log",
            field="server.store",
        )
    return replicas


def _loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in LOOPBACK


def export_kubernetes(loaded: LoadedConfig, opts: ExportOptions) -> ExportResult:
    config = loaded.config
    replicas = _check_options(config, opts)
    ns = opts.namespace
    result = ExportResult(files={})
    isvcs: list[Manifest] = []
    hosts: dict[str, dict[str, str]] = {}
    data: dict[str, Any] = config.model_dump(mode="json", exclude_unset=True)
    in_gateway: set[str] = set()
    taken: dict[str, str] = {}
    for model, spec in config.models.items():
        hosts[model] = {}
        mdata = data["models"][model]
        for version, vs in spec.versions.items():
            where = f"models.{model}.versions.{version}"
            if vs.endpoint is not None:
                if _loopback(vs.endpoint):
                    result.notes.append(
                        f"{where}.endpoint: {vs.endpoint} is a loopback address; in a pod that"
                        " is the pod itself"
                    )
                parts = urlsplit(vs.endpoint)
                port = parts.port or (443 if parts.scheme == "https" else 80)
                hosts[model][version] = f"{parts.hostname or vs.endpoint}:{port}"
                if opts.mesh == "istio":
                    result.notes.append(
                        f"{where}: the mesh sends this version's traffic to {vs.endpoint} as it"
                        " is (no path rewrite to its remoteName; an outside host needs a"
                        " ServiceEntry)"
                    )
                continue
            if vs.format not in kserve.KSERVE_FORMATS or opts.models == "in-process":
                if opts.mesh == "istio":
                    raise ConfigError(
                        f"modelFormat {vs.format} has no KServe server, and the mesh-only shape"
                        " has no gateway to run it in",
                        field=f"{where}.modelFormat",
                    )
                in_gateway.add(model)
                if vs.storageUri is not None:
                    if opts.storage_prefix is not None and not opts.storage_prefix.startswith(
                        "s3://"
                    ):
                        raise ConfigError(
                            "models loaded by the gateway's pods are read from s3:// (or"
                            " models:/); give an s3:// prefix",
                            field="--storage-prefix",
                        )
                    uri, uploads = relocate(
                        vs.storageUri, loaded.base_dir, opts.storage_prefix, model, version
                    )
                    mdata["versions"][version]["storageUri"] = uri
                    result.uploads += uploads
                if vs.format == "custom":
                    result.notes.append(
                        f"{where}: modelFormat custom runs in the gateway's pods; the image must"
                        f" contain {vs.implementation}"
                    )
                continue
            assert vs.storageUri is not None
            if vs.storageUri.startswith(("models:/", "runs:/")):
                result.notes.append(
                    f"{where}.storageUri: KServe's storage initializer does not resolve"
                    f" {vs.storageUri.split(':')[0]}:/ URIs by itself; give it a storage"
                    " container for MLflow, or the artifact's s3:// location"
                )
            uri, uploads = relocate(
                vs.storageUri, loaded.base_dir, opts.storage_prefix, model, version
            )
            result.uploads += uploads
            isvc = kserve.isvc_name(model, version)
            if isvc in taken:
                raise ConfigError(
                    f"its InferenceService would be named {isvc!r}, like that of {taken[isvc]}:"
                    " rename one of the two",
                    field=where,
                )
            taken[isvc] = where
            hosts[model][version] = service_host(predictor_service(isvc), ns)
            mesh = opts.mesh == "istio"
            isvcs.append(
                kserve.inference_service(
                    model,
                    version,
                    vs,
                    uri,
                    ns,
                    spec.batcher if spec.batcher and spec.batcher.enabled is not False else None,
                    raw_deployment=opts.rollouts == "flagger",
                    served_name=model if mesh else None,
                )
            )
            remote, notes = kserve.remote_version(model, version, vs, ns)
            mdata["versions"][version] = remote
            result.notes += notes
        if model not in in_gateway:
            mdata.pop("batcher", None)  # it moved to the InferenceServices
    result.files["inferenceservices.yaml"] = isvcs
    if opts.mesh == "istio":
        _mesh(config, opts, hosts, result)
    else:
        _gateway(config, data, opts, replicas, result)
    return result


def _gateway(
    config: Config, data: dict[str, Any], opts: ExportOptions, replicas: int, result: ExportResult
) -> None:
    server = data.setdefault("server", {})
    server.setdefault("http", {})["host"] = "0.0.0.0"
    if server.get("grpc") is not None:
        server["grpc"]["host"] = "0.0.0.0"
    server["cacheDir"] = gateway.CACHE_DIR
    name = dns_label(config.server.name)
    kind = _store_kind(config)
    store_secret = kind in ("postgresql", "postgres", "env")
    if kind in ("postgresql", "postgres"):
        server.pop("store", None)
        server["storeEnv"] = gateway.STORE_ENV
        parts = urlsplit(config.server.store)
        where = f"{parts.hostname or 'HOST'}:{parts.port or 5432}{parts.path or '/DB'}"
        result.secrets.append(
            f"kubectl -n {opts.namespace} create secret generic {name}-store"
            f" --from-literal=url='postgresql://USER:PASSWORD@{where}'"
        )
    elif kind == "env":
        result.notes.append(
            f"server.storeEnv: the pods read the store URL from {gateway.STORE_ENV} (Secret"
            f" {name}-store); it must be a postgresql:// URL"
        )
        server["storeEnv"] = gateway.STORE_ENV
        result.secrets.append(
            f"kubectl -n {opts.namespace} create secret generic {name}-store"
            " --from-literal=url='postgresql://USER:PASSWORD@HOST:5432/DB'"
        )
    elif kind == "sqlite":
        server["store"] = f"sqlite:///{gateway.DATA_DIR}/modelrouter.db"
        result.notes.append(
            "server.store: SQLite lives in the pod (an emptyDir): the audit log and routing"
            " changes are lost with it; use a postgresql:// store to keep them and to scale"
        )
    else:
        result.notes.append("server.store: memory:// forgets everything when the pod restarts")
    tracking = config.server.mlflow.trackingUri
    if tracking is not None and tracking.startswith("http") and _loopback(tracking):
        result.notes.append(
            f"server.mlflow.trackingUri: {tracking} is a loopback address; point it at the"
            " tracking server the pods can reach"
        )
    if config.server.prometheus is not None and _loopback(config.server.prometheus.url):
        result.notes.append(
            f"server.prometheus.url: {config.server.prometheus.url} is a loopback address;"
            " point it at the cluster's Prometheus"
        )
    for rname, r in config.rollouts.items():
        for i, w in enumerate(r.webhooks):
            if _loopback(w.url):
                result.notes.append(
                    f"rollouts.{rname}.webhooks.{i}.url: {w.url} is a loopback address"
                )
    admin_env = config.server.auth.adminTokenEnv
    result.secrets.insert(
        0,
        f"kubectl -n {opts.namespace} create secret generic {name}-admin-token"
        ' --from-literal=token="$(openssl rand -hex 24)"',
    )
    text = dump(data)
    parse_config(text)  # the rewritten config must load as it is: a bug here must not ship
    result.gateway_config = text
    shutdown = config.server.shutdown
    budget = config.server.modelMemoryBudget
    memory = f"{(budget // 2**20) + 256}Mi" if budget else "512Mi"
    plan = gateway.GatewayPlan(
        name=name,
        namespace=opts.namespace,
        replicas=replicas,
        image=opts.image,
        http_port=config.server.http.port or 8080,
        grpc_port=config.server.grpc.port if config.server.grpc is not None else None,
        admin_token_env=admin_env,
        store_secret=store_secret,
        drain=shutdown.drain,
        shutdown_timeout=shutdown.timeout,
        config_hash=hashlib.sha256(text.encode()).hexdigest(),
        memory_request=memory,
    )
    manifests = [
        gateway.config_map(plan, text),
        gateway.deployment(plan),
        gateway.service(plan),
        gateway.disruption_budget(plan),
    ]
    if store_secret:
        manifests.append(gateway.autoscaler(plan))
    result.files["gateway.yaml"] = manifests


def _mesh(
    config: Config,
    opts: ExportOptions,
    hosts: dict[str, dict[str, str]],
    result: ExportResult,
) -> None:
    mesh: list[Manifest] = []
    canaries: list[Manifest] = []
    flagged: set[str] = set()
    for name, r in config.rollouts.items():
        if opts.rollouts != "flagger":
            result.notes.append(
                f"rollouts.{name}: nothing runs it in the mesh-only shape; --rollouts flagger"
                " exports what Flagger can run"
            )
            continue
        why = flagger.cannot(name, r)
        if why:
            result.notes.append(f"rollouts.{name}: not exported to Flagger: {'; '.join(why)}")
            continue
        prometheus = config.server.prometheus.url if config.server.prometheus else None
        docs, notes = flagger.canary_manifests(
            name,
            r,
            config.models[r.model],
            kserve.isvc_name(r.model, r.primary),
            opts.namespace,
            prometheus,
        )
        canaries += docs
        result.notes += notes
        flagged.add(r.model)
    for model, spec in config.models.items():
        if model in flagged:
            continue  # Flagger writes this model's VirtualService
        docs, notes = istio.mesh_manifests(model, spec, hosts[model], opts.namespace)
        mesh += docs
        result.notes += notes
    result.files["istio.yaml"] = mesh
    result.files["flagger.yaml"] = canaries
