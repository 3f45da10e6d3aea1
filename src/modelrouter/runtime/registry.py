"""Runtime plugins by ``modelFormat``. Imports are lazy: xgboost is imported only if used.

A version from the MLflow registry with no ``modelFormat`` gets the runtime its ``MLmodel``
flavors call for (:func:`modelrouter.runtime.mlflow.select_flavor`); ``modelFormat: mlflow``
always means the pyfunc runtime.
"""

from __future__ import annotations

import dataclasses
import importlib
from pathlib import Path
from typing import Any

from modelrouter.config.schema import VersionSpec
from modelrouter.errors import ConfigError
from modelrouter.protocol.types import ModelSignature
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
    "remote-grpc": "modelrouter.runtime.remote_grpc:RemoteGrpcRuntime",
}


INTERNAL_FORMATS = frozenset({"remote-grpc"})
"""Formats a config never names: ``remote-grpc`` is ``endpoint`` with ``protocol: grpc``."""


def known_formats() -> list[str]:
    return sorted(set(RUNTIMES) - INTERNAL_FORMATS)


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


def create_runtime(
    model: str,
    version: str,
    spec: VersionSpec,
    base_dir: Path,
    path: Path | None = None,
    info: dict[str, Any] | None = None,
) -> ModelRuntime:
    """The runtime for one version; raises :class:`ConfigError` for an unknown format or URI.

    ``path`` is where a source fetched the files (else ``storageUri`` must be local); ``info``
    (the resolved MLflow version, its tags) is added to the runtime's metadata parameters."""
    fmt = spec.format
    if path is None and spec.storageUri:
        path = resolve_storage_uri(spec.storageUri, base_dir)
    if spec.modelFormat is None and path is not None and (path / "MLmodel").is_file():
        from modelrouter.runtime.mlflow import select_flavor

        fmt, path = select_flavor(path)
    cls = runtime_class(fmt)
    if info:
        cls = _with_info(cls)
    runtime = cls(model, version, spec, path)
    if info:
        runtime.source_info = dict(info)  # type: ignore[attr-defined]
    return runtime


_INFO_CLASSES: dict[type[ModelRuntime], type[ModelRuntime]] = {}


def _with_info(cls: type[ModelRuntime]) -> type[ModelRuntime]:
    """A subclass of ``cls`` whose signature carries ``source_info`` in its parameters. A
    subclass, not a wrapper: nothing is added to the inference path."""
    sub = _INFO_CLASSES.get(cls)
    if sub is None:

        def signature(self: Any) -> ModelSignature:
            sig = cls.signature(self)
            return dataclasses.replace(sig, extra={**sig.extra, **self.source_info})

        sub = type(
            cls.__name__,
            (cls,),
            {"signature": signature, "__module__": cls.__module__, "__doc__": cls.__doc__},
        )
        _INFO_CLASSES[cls] = sub
    return sub
