"""The config file: pydantic models, loading with field and line errors, durations."""

from modelrouter.config.durations import parse_duration, parse_size
from modelrouter.config.loader import LoadedConfig, load_config, parse_config
from modelrouter.config.schema import (
    BatcherSpec,
    Config,
    ModelSpec,
    RouteRule,
    ServerSettings,
    VersionSpec,
)

__all__ = [
    "BatcherSpec",
    "Config",
    "LoadedConfig",
    "ModelSpec",
    "RouteRule",
    "ServerSettings",
    "VersionSpec",
    "load_config",
    "parse_config",
    "parse_duration",
    "parse_size",
]
