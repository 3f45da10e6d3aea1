"""Runtime plugins by ``modelFormat``. Imports are lazy: xgboost is imported only if used."""

from __future__ import annotations

import importlib
from pathlib import Path

from modelrouter.config.schema import VersionSpec
from modelrouter.errors import ConfigError
from modelrouter.runtime.base import ModelRuntime
from modelrouter.sources import resolve_storage_uri

RUNTIMES: dict[str, str] = {
    "sklearn": "modelrouter.runtime.sklearn:SklearnRuntime",
    "xgboost": "modelrouter.runtime.xgboost:XGBoostRuntime",
    "lightgbm": "modelrouter.runtime.lightgbm:LightGBMRuntime",
    "onnx": "modelrouter.runtime.onnx:OnnxRuntime",
    "mlflow": "modelrouter.runtime.mlflow:MLflowRuntime",
    "custom": "modelrouter.runtime.custom:CustomRuntime",
    "remote": "modelrouter.runtime.remote:RemoteRuntime",
}


def known_formats() -> list[str]:
    return sorted(RUNTIMES)


def runtime_class(fmt: str) -> type[ModelRuntime]:
    target = RUNTIMES.get(fmt)
    if target is None:
        raise ConfigError(f"unknown modelFormat {fmt!r} (one of {', '.join(known_formats())})")
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"modelFormat {fmt!r} needs a package that is not installed ({exc.name}): "
            f"pip install 'modelrouter[{fmt}]'"
        ) from exc
    cls: type[ModelRuntime] = getattr(module, attr)
    return cls


def create_runtime(model: str, version: str, spec: VersionSpec, base_dir: Path) -> ModelRuntime:
    """The runtime for one version; raises :class:`ConfigError` for an unknown format or URI."""
    cls = runtime_class(spec.format)
    path = resolve_storage_uri(spec.storageUri, base_dir) if spec.storageUri else None
    return cls(model, version, spec, path)
