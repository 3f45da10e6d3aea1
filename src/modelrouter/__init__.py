"""modelrouter: serve many ML models and route every request between their versions."""

from modelrouter._version import __version__
from modelrouter.app import Services, build_services, create_app
from modelrouter.config import Config, LoadedConfig, load_config, parse_config
from modelrouter.errors import ModelRouterError
from modelrouter.protocol import InferenceRequest, InferenceResponse, Tensor

__all__ = [
    "Config",
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
