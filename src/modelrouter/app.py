"""The app factory: everything is built here, nothing at import.

``create_app(loaded, services)`` returns the ASGI app; its lifespan opens the store, seeds and
loads the routing table, starts the audit writer, the shadow runner, the store watch and the
config-file watch, loads every model version, and stops all of it in reverse on shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.types import ASGIApp

from modelrouter.api.admin import AdminApi
from modelrouter.api.edge import HeaderLimits
from modelrouter.api.events import EventHub, EventsApi
from modelrouter.api.feedback import FeedbackApi
from modelrouter.api.live_view import LiveView
from modelrouter.api.metrics import MetricsApi
from modelrouter.api.repository import RepositoryApi
from modelrouter.api.rest import create_rest_app
from modelrouter.api.rollouts import RolloutsApi
from modelrouter.api.store_status import StoreStatusApi
from modelrouter.api.ui import DashboardPages
from modelrouter.audit.checkpoints import CheckpointWriter, configured_signer
from modelrouter.audit.writer import AuditWriter
from modelrouter.config.loader import LoadedConfig, load_config
from modelrouter.config.schema import Config
from modelrouter.control import ControlPlane
from modelrouter.dataplane import DataPlane
from modelrouter.errors import ConfigError, StoreError
from modelrouter.outlier import EjectionEvent, Listener
from modelrouter.rollout.controller import AliasSetter, RolloutManager, build_manager
from modelrouter.routing.state import RoutingState
from modelrouter.runtime.aliases import AliasCoordinator
from modelrouter.runtime.intents import IntentFollower
from modelrouter.runtime.repository import ModelRepository
from modelrouter.shadow.process import BATCH_SIZE, ProcessShadows
from modelrouter.shadow.runner import ShadowRunner
from modelrouter.sources.mlflow import is_mlflow_uri, parse_mlflow_uri
from modelrouter.store import Store, open_store
from modelrouter.store_guard import StoreGuard
from modelrouter.telemetry.service import Telemetry

if TYPE_CHECKING:
    from modelrouter.api.grpc import GrpcHandle

log = logging.getLogger(__name__)

GRPC_GRACE = 5.0
"""Seconds running gRPC calls get to finish when the gateway stops."""


def store_url(url: str, base_dir: Path) -> str:
    """A relative SQLite path in the config resolves against the config file's folder."""
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url[len(prefix) :].startswith("/"):
        return f"{prefix}{(base_dir / url[len(prefix) :]).resolve()}"
    return url


@dataclass(slots=True)
class Services:
    loaded: LoadedConfig
    store: Store
    repository: ModelRepository
    routing: RoutingState
    shadow: ShadowRunner
    audit: AuditWriter
    dataplane: DataPlane
    telemetry: Telemetry
    control: ControlPlane
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    rollouts: RolloutManager | None = None
    guard: StoreGuard | None = None
    intents: IntentFollower | None = None
    aliases: AliasCoordinator | None = None
    grpc: GrpcHandle | None = None
    """The gRPC server while it runs (``server.grpc`` set)."""
    events: EventHub | None = None
    """The dashboard's event stream producer (``GET /api/v1/events``)."""
    grpc_reuse_port: bool = False
    """Share the gRPC port with the other workers of ``serve --workers N`` (SO_REUSEPORT);
    off for a lone gateway, so a second one on the same port fails instead of sharing it."""


def build_services(loaded: LoadedConfig, store: Store | None = None) -> Services:
    config = loaded.config
    server = config.server
    store = store or open_store(
        store_url(server.store_location(), loaded.base_dir), timeout=server.storeTimeout
    )
    repository = ModelRepository(config, loaded.base_dir)
    routing = RoutingState(config, store)
    audit = AuditWriter(
        store,
        batch_size=server.audit.batchSize,
        flush_interval=server.audit.flushInterval,
        max_queue=server.audit.maxQueue,
        durable_timeout=server.storeTimeout,
    )
    telemetry = Telemetry(store, server.telemetry)
    telemetry.metrics.watch_repository(repository)
    dataplane = DataPlane(config, repository, routing, None, audit, telemetry)
    telemetry.metrics.watch_batchers(dataplane.batch_counts)
    if dataplane.outliers.enabled:
        dataplane.outliers.listener = ejection_listener(audit, telemetry)
    workers = server.shadow.workers
    if server.shadow.executor == "process":
        dataplane.shadow_processes = ProcessShadows(loaded.base_dir)
        # calls travel to the worker process in batches: let enough of them be in flight
        workers = max(workers, BATCH_SIZE)
    shadow = ShadowRunner(dataplane.call_version, server.shadow.maxQueue, workers, telemetry)
    dataplane.shadow = shadow
    rollouts = build_manager(
        config,
        store,
        routing,
        telemetry.windows,
        telemetry.metrics,
        alias_setter=mlflow_alias_setter(config, repository),
    )
    guard = StoreGuard(store, routing, server.storeCheckInterval)
    intents = IntentFollower(repository, store, server.storePollInterval)
    guard.listeners.append(intents.on_store_fault)
    control = ControlPlane(
        store,
        routing,
        repository,
        rollouts=rollouts,
        feedback=telemetry.feedback_service,
        windows=telemetry.windows,
        shadow=shadow,
        window_seconds=server.telemetry.window,
        intents=intents,
    )
    return Services(
        loaded,
        store,
        repository,
        routing,
        shadow,
        audit,
        dataplane,
        telemetry,
        control,
        rollouts=rollouts,
        guard=guard,
        intents=intents,
        aliases=AliasCoordinator(repository, store, server.mlflow.pollInterval),
    )


def ejection_listener(audit: AuditWriter, telemetry: Telemetry) -> Listener:
    """Each ejection and return: a log line, the metrics, an audit record (always recorded,
    even with decision records off: it is a change of what serves)."""

    def tell(event: EjectionEvent) -> None:
        log.warning(
            "outlier detection: model %s version %s %s (%s)",
            event.model,
            event.version,
            event.action,
            event.reason,
        )
        telemetry.metrics.outlier(event.model, event.version, event.action == "ejected")
        audit.submit(event.audit_record())

    return tell


def mlflow_alias_setter(config: Config, repository: ModelRepository) -> AliasSetter:
    """How a rollout's ``promotion: {mlflowAlias: NAME}`` moves the alias: to the registered
    version the promoted version was loaded from (``models:/name/N`` or ``models:/name@a``),
    with the registry's retries; failures are the rollout's to report, never a crash."""

    async def set_alias(model: str, version: str, alias: str) -> None:
        uri = config.models[model].versions[version].storageUri or ""
        if not is_mlflow_uri(uri):
            raise ConfigError(
                f"version '{version}' of model '{model}' is not from the MLflow registry "
                f"(storageUri {uri!r})"
            )
        target = parse_mlflow_uri(uri)
        if target.name is None:
            raise ConfigError(f"{uri!r} is a run, not a registered model: no alias to move")
        registry = repository.sources.mlflow()
        resolved = await asyncio.to_thread(registry.resolve, target)
        if resolved.version is None:
            raise ConfigError(f"{uri!r} resolves to no registered version")
        await asyncio.to_thread(registry.set_alias, target.name, alias, resolved.version)

    return set_alias


async def watch_config_file(services: Services, interval: float = 1.0) -> None:
    """Follow the config file: routing rules (what the file owns) and ``rollouts:``; an
    invalid file is refused and the old state keeps serving."""
    source = services.loaded.source
    if source is None:
        return
    last = source.stat().st_mtime_ns if source.exists() else 0
    while True:
        await asyncio.sleep(interval)
        try:
            mtime = source.stat().st_mtime_ns
        except OSError:
            continue
        if mtime == last:
            continue
        previous, last = last, mtime
        try:
            loaded = await asyncio.to_thread(load_config, source)
            done = await services.control.reload_config(loaded.config)
        except ConfigError as exc:
            log.error("config file %s refused, the old routing keeps serving: %s", source, exc)
            continue
        except StoreError as exc:
            # the file is fine, the store is not: try again on the next tick, or the edit
            # would only apply after the file's next change
            last = previous
            log.warning("config file %s: cannot write its routing yet (%s); retrying", source, exc)
            continue
        except Exception:
            log.exception("reloading %s failed; the old routing keeps serving", source)
            continue
        if done["routing"]:
            log.info("config file %s: new routing for %s", source, ", ".join(done["routing"]))
        for what in ("started", "restarted", "stopped"):
            if done[what]:
                log.info("config file %s: rollouts %s: %s", source, what, ", ".join(done[what]))


RETENTION_LEASE = "audit-retention"


async def prune_periodically(services: Services, owner: str | None = None) -> None:
    """Audit retention, run by one gateway of those sharing the store (N workers, N machines):
    each prune appends its own record, so N pruners would leave N records per interval. The
    holder of the ``audit-retention`` lease prunes; another takes over when it expires."""
    retention = services.loaded.config.server.audit.retention
    if retention is None:
        return
    owner = owner or f"{socket.gethostname()}:{os.getpid()}"
    ttl = retention.interval * 2 + 30
    try:
        while True:
            try:
                if await services.store.try_lock(RETENTION_LEASE, owner, ttl):
                    n = await services.store.prune_audit(retention.maxAge, retention.maxCount)
                    if n:
                        log.info("audit retention pruned %d records", n)
            except Exception:
                log.exception("audit retention failed")
            await asyncio.sleep(retention.interval)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.shield(services.store.release_lock(RETENTION_LEASE, owner))


def mirrors_anything(services: Services) -> bool:
    """Whether a rule of the live routing table mirrors traffic."""
    return any(r.mirrors for m in services.routing.table.models.values() for r in m.rules)


def checkpoint_writer(loaded: LoadedConfig, store: Store) -> CheckpointWriter | None:
    """The background signer of ``server.audit.checkpoints``, or None."""
    settings = loaded.config.server.audit.checkpoints
    signer = configured_signer(settings, loaded.base_dir)
    if settings is None or signer is None:
        return None
    key, sink = signer
    return CheckpointWriter(store, sink, key, settings.interval)


@contextlib.asynccontextmanager
async def running(services: Services) -> AsyncIterator[None]:
    """Start everything the gateway runs in the background; stop it all on exit."""
    server = services.loaded.config.server
    await services.store.open()
    try:
        await services.routing.start()
        watch = await services.store.watch(services.routing.refresh, server.storePollInterval)
        services.audit.start()
        services.shadow.start()
        if services.dataplane.shadow_processes is not None and mirrors_anything(services):
            # spawned now rather than on the first mirrored call (it imports for a second or
            # two); without a mirror it is spawned only if one is added later
            services.dataplane.shadow_processes.start()
        services.tasks.append(asyncio.create_task(services.telemetry.run()))
        if server.watchConfig:
            services.tasks.append(asyncio.create_task(watch_config_file(services)))
        services.tasks.append(asyncio.create_task(prune_periodically(services)))
        if services.guard is not None:
            services.tasks.append(asyncio.create_task(services.guard.run()))
        if services.intents is not None:
            await services.intents.prime()  # held versions are not loaded at all
            services.tasks.append(asyncio.create_task(services.intents.run()))
        signer = checkpoint_writer(services.loaded, services.store)
        if signer is not None:
            services.tasks.append(asyncio.create_task(signer.run()))
        await services.repository.load_all()
        if services.aliases is not None:  # one gateway watches MLflow, every one follows
            services.tasks.append(asyncio.create_task(services.aliases.run()))
        if services.rollouts is not None:
            services.rollouts.start()
        try:
            if server.grpc is not None:
                from modelrouter.api.grpc import start_grpc  # grpc loads only when configured

                services.grpc = await start_grpc(services, server.grpc)
            yield
        finally:
            if services.events is not None:
                await services.events.close()  # the dashboards' streams end first
            if services.grpc is not None:
                await services.grpc.stop(GRPC_GRACE)
                services.grpc = None
            if services.rollouts is not None:
                await services.rollouts.stop()
            for t in services.tasks:
                t.cancel()
            for t in services.tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            services.tasks.clear()
            try:
                await services.telemetry.flush()
            except Exception as exc:
                log.warning("telemetry: last flush failed: %s", exc)
            await watch.stop()
            await services.shadow.close()
            if services.dataplane.shadow_processes is not None:
                await services.dataplane.shadow_processes.close()
            await services.audit.close()
            if signer is not None:
                await signer.close()  # a last checkpoint, of everything flushed
            await services.repository.close()
    finally:
        await services.store.close()


def create_app(
    loaded: LoadedConfig, services: Services | None = None, lifespan: bool = True
) -> ASGIApp:
    """The ASGI app for a config. Models load in the app's lifespan, before it serves; with
    ``lifespan=False`` the caller runs :func:`running` itself (the
    :class:`~modelrouter.server.Gateway` does)."""
    services = services or build_services(loaded)
    config = loaded.config
    token = os.environ.get(config.server.auth.adminTokenEnv) or None
    admin = AdminApi(services.control, token)
    repository_api = RepositoryApi(services.control, token)
    if services.events is None:
        services.events = event_hub(services)

    @contextlib.asynccontextmanager
    async def with_services(app: Starlette) -> AsyncIterator[None]:
        async with running(services):
            yield

    http = config.server.http
    return create_rest_app(
        services.dataplane,
        http.maxRequestSize,
        lifespan=with_services if lifespan else None,
        extra_routes=[
            *admin.routes(),
            *repository_api.routes(),
            *MetricsApi(services.telemetry.metrics).routes(),
            *FeedbackApi(services.control, token).routes(),
            *RolloutsApi(services.control, admin.authorize).routes(),
            *EventsApi(services.events, admin.authorize).routes(),
            *DashboardPages().routes(),
            *(
                StoreStatusApi(services.guard, services.audit, admin.authorize).routes()
                if services.guard
                else []
            ),
        ],
        header_limits=HeaderLimits(http.maxHeaderCount, http.maxHeaderSize, http.maxHeaderListSize),
        admin_token=token,
    )


def event_hub(services: Services) -> EventHub:
    """The dashboard's event stream: control-plane reads and this gateway's request counters;
    its streams end when the gateway drains (the runner sets the flag on SIGTERM)."""
    view = LiveView(services.control, lambda: services.telemetry.metrics.request_stats.counts)
    return EventHub(view, draining=lambda: services.dataplane.draining)
