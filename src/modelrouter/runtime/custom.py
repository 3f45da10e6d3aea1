"""A model class of the user's, named by import path (``package.module:ClassName``).

The class either derives from :class:`~modelrouter.runtime.base.ModelRuntime` (full control), or
follows this small contract::

    class MyModel:
        def __init__(self, path: str | None, parameters: dict): ...
        def load(self) -> None: ...                        # optional
        def predict(self, inputs: dict[str, np.ndarray]) -> np.ndarray | dict[str, np.ndarray]
        outputs = ["predict"]                              # optional: names predict can return
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelrouter.errors import ConfigError
from modelrouter.protocol.types import ModelSignature, Tensor, TensorSpec, datatype_of
from modelrouter.runtime.base import LocalRuntime


def import_object(path: str) -> Any:
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ConfigError(f"implementation {path!r} must look like package.module:ClassName")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(
            f"cannot import {module_name!r} for implementation {path!r}: {exc}"
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"module {module_name!r} has no {attr!r}") from None


class CustomRuntime(LocalRuntime):
    format = "custom"

    def load(self) -> None:
        assert self.spec.implementation is not None
        cls = import_object(self.spec.implementation)
        self._obj: Any = cls(str(self.path) if self.path else None, dict(self.spec.parameters))
        if hasattr(self._obj, "load"):
            self._obj.load()
        if not callable(getattr(self._obj, "predict", None)):
            raise TypeError(f"{self.spec.implementation} has no predict(inputs) method")
        outputs = getattr(self._obj, "outputs", ("predict",))
        self._outputs = (outputs,) if isinstance(outputs, str) else tuple(outputs)
        if not self._outputs:
            raise TypeError(f"{self.spec.implementation}.outputs names no output")
        self.default_outputs = self._outputs[:1]

    def output_names(self) -> Sequence[str]:
        return self._outputs

    def predict(self, inputs: list[Tensor], outputs: Sequence[str]) -> list[Tensor]:
        result = self._obj.predict({t.name: t.data for t in inputs})
        produced = result if isinstance(result, dict) else {self._outputs[0]: result}
        tensors = []
        for name in outputs:
            if name not in produced:
                raise TypeError(f"predict() returned no output '{name}'")
            array = np.asarray(produced[name])
            tensors.append(Tensor(name, datatype_of(array), list(array.shape), array))
        return tensors

    def signature(self) -> ModelSignature:
        sig = getattr(self._obj, "signature", None)
        if isinstance(sig, ModelSignature):
            return sig
        return ModelSignature(
            (), tuple(TensorSpec(n, "FP64", (-1,)) for n in self._outputs), platform="custom"
        )
