"""The app factory: everything is built here, nothing at import."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import ASGIApp

from modelrouter.api.rest import create_rest_app, repository_lifespan
from modelrouter.config.loader import LoadedConfig
from modelrouter.dataplane import DataPlane
from modelrouter.runtime.repository import ModelRepository


@dataclass(slots=True)
class Services:
    repository: ModelRepository
    dataplane: DataPlane


def build_services(loaded: LoadedConfig) -> Services:
    repository = ModelRepository(loaded.config, loaded.base_dir)
    return Services(repository, DataPlane(loaded.config, repository))


def create_app(loaded: LoadedConfig, services: Services | None = None) -> ASGIApp:
    """The ASGI app for a config. Models load in the app's lifespan, before it serves."""
    services = services or build_services(loaded)
    return create_rest_app(
        services.dataplane,
        loaded.config.server.http.maxRequestSize,
        lifespan=repository_lifespan(services.dataplane),
    )
