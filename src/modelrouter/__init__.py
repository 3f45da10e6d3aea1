"""modelrouter: serve many ML models and route every request between their versions.

The public names below are imported on first use (PEP 562), so ``import modelrouter.routing``
or the shadow worker process does not pay for Starlette, httpx and numpy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from modelrouter._version import __version__

if TYPE_CHECKING:
    from modelrouter.app import Services, build_services, create_app
    from modelrouter.config import Config, LoadedConfig, load_config, parse_config
    from modelrouter.errors import ModelRouterError
    from modelrouter.protocol import InferenceRequest, InferenceResponse, Tensor
    from modelrouter.server import Gateway

_LAZY = {
    "Config": "modelrouter.config",
    "Gateway": "modelrouter.server",
    "InferenceRequest": "modelrouter.protocol",
    "InferenceResponse": "modelrouter.protocol",
    "LoadedConfig": "modelrouter.config",
    "ModelRouterError": "modelrouter.errors",
    "Services": "modelrouter.app",
    "Tensor": "modelrouter.protocol",
    "build_services": "modelrouter.app",
    "create_app": "modelrouter.app",
    "load_config": "modelrouter.config",
    "parse_config": "modelrouter.config",
}

__all__ = [
    "Config",
    "Gateway",
    "InferenceRequest",
    "InferenceResponse",
    "LoadedConfig",
    "ModelRouterError",
    "Services",
    "Tensor",
    "__version__",
    "build_services",
    "create_app",
    "load_config",
    "parse_config",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'modelrouter' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
