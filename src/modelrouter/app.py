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
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.types import ASGIApp

from modelrouter.api.admin import AdminApi
from modelrouter.api.feedback import FeedbackApi
from modelrouter.api.metrics import MetricsApi
from modelrouter.api.repository import RepositoryApi
from modelrouter.api.rest import create_rest_app
from modelrouter.api.rollouts import RolloutsApi
from modelrouter.api.store_status import StoreStatusApi
from modelrouter.audit.writer import AuditWriter
from modelrouter.config.loader import LoadedConfig, load_config
from modelrouter.config.schema import Config
from modelrouter.dataplane import DataPlane
from modelrouter.errors import ConfigError, StoreError
from modelrouter.rollout.controller import AliasSetter, RolloutManager, build_manager
from modelrouter.routing.state import RoutingState
from modelrouter.runtime.aliases import AliasCoordinator
from modelrouter.runtime.intents import IntentFollower
from modelrouter.runtime.repository import ModelRepository
from modelrouter.shadow import ShadowRunner
from modelrouter.shadow_process import BATCH_SIZE, ProcessShadows
from modelrouter.sources.mlflow import is_mlflow_uri, parse_mlflow_uri
from modelrouter.store import Store, open_store
from modelrouter.store_guard import StoreGuard
from modelrouter.telemetry.service import Telemetry

log = logging.getLogger(__name__)


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
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    rollouts: RolloutManager | None = None
    guard: StoreGuard | None = None
    intents: IntentFollower | None = None
    aliases: AliasCoordinator | None = None


def build_services(loaded: LoadedConfig, store: Store | None = None) -> Services:
    config = loaded.config
    server = config.server
    store = store or open_store(
        store_url(server.store, loaded.base_dir), timeout=server.storeTimeout
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
    workers = server.shadow.workers
    if server.shadow.executor == "process":
        dataplane.shadow_processes = ProcessShadows(loaded.base_dir)
        # calls travel to the worker process in batches: let enough of them be in flight
        workers = max(workers, BATCH_SIZE)
    shadow = ShadowRunner(dataplane.call_version, server.shadow.maxQueue, workers, telemetry)
    dataplane.shadow = shadow
    services = Services(loaded, store, repository, routing, shadow, audit, dataplane, telemetry)
    services.guard = StoreGuard(store, routing, server.storeCheckInterval)
    services.intents = IntentFollower(repository, store, server.storePollInterval)
    services.guard.listeners.append(services.intents.on_store_fault)
    services.aliases = AliasCoordinator(repository, store, server.mlflow.pollInterval)
    services.rollouts = build_manager(
        config,
        store,
        routing,
        telemetry.windows,
        telemetry.metrics,
        alias_setter=mlflow_alias_setter(config, repository),
    )
    return services


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
    """Reload routing rules when the config file changes; an invalid file is refused."""
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
            changed = await services.routing.apply_config(loaded.config)
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
        if changed:
            log.info("config file %s: new routing for %s", source, ", ".join(changed))


async def prune_periodically(services: Services) -> None:
    retention = services.loaded.config.server.audit.retention
    if retention is None:
        return
    while True:
        try:
            n = await services.store.prune_audit(retention.maxAge, retention.maxCount)
            if n:
                log.info("audit retention pruned %d records", n)
        except Exception:
            log.exception("audit retention failed")
        await asyncio.sleep(retention.interval)


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
        if services.dataplane.shadow_processes is not None:
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
        await services.repository.load_all()
        if services.aliases is not None:  # one gateway watches MLflow, every one follows
            services.tasks.append(asyncio.create_task(services.aliases.run()))
        if services.rollouts is not None:
            services.rollouts.start()
        try:
            yield
        finally:
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
                services.dataplane.shadow_processes.close()
            await services.audit.close()
            await services.repository.close()
    finally:
        await services.store.close()


def create_app(loaded: LoadedConfig, services: Services | None = None) -> ASGIApp:
    """The ASGI app for a config. Models load in the app's lifespan, before it serves."""
    services = services or build_services(loaded)
    config = loaded.config
    token = os.environ.get(config.server.auth.adminTokenEnv) or None
    intents = services.intents
    assert intents is not None, "build_services sets the intent follower"
    admin = AdminApi(services.dataplane, services.routing, services.store, token, intents=intents)
    repository_api = RepositoryApi(services.repository, token, intents=intents)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with running(services):
            yield

    return create_rest_app(
        services.dataplane,
        config.server.http.maxRequestSize,
        lifespan=lifespan,
        extra_routes=[
            *admin.routes(),
            *repository_api.routes(),
            *MetricsApi(services.telemetry.metrics).routes(),
            *FeedbackApi(services.telemetry.feedback_service, token).routes(),
            *(
                StoreStatusApi(services.guard, services.audit, admin.authorize).routes()
                if services.guard
                else []
            ),
            *(
                RolloutsApi(services.rollouts, admin.authorize).routes()
                if services.rollouts
                else []
            ),
        ],
    )
