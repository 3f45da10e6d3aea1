"""LightGBM boosters saved with ``Booster.save_model`` (``model.txt``, or ``model.bst`` as KServe
and MLServer name it).

``predict`` is ``booster.predict``, as KServe's lgbserver and MLServer's mlserver-lightgbm
answer: probabilities of the positive class for ``binary``, one column per class for
``multiclass``, values for regression. ``parameters: {nthread: N}`` caps the threads one
prediction uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightgbm as lgb
import numpy as np

from modelrouter.errors import ModelLoadError
from modelrouter.protocol.types import ModelSignature, Tensor, TensorSpec
from modelrouter.runtime.base import LocalRuntime, feature_matrix, find_model_file

SUFFIXES = (".txt", ".bst")


class LightGBMRuntime(LocalRuntime):
    format = "lightgbm"
    row_independent = True

    def load(self) -> None:
        assert self.path is not None
        file = find_model_file(self.path, SUFFIXES, "LightGBM model")
        try:
            booster = lgb.Booster(model_file=str(file))
        except lgb.basic.LightGBMError as exc:
            raise ModelLoadError(f"cannot load LightGBM model {file}: {exc}") from None
        nthread = self.spec.parameters.get("nthread")
        if nthread is not None and (type(nthread) is not int or nthread < 1):
            raise ModelLoadError(f"parameters.nthread must be a positive integer: {nthread!r}")
        self._threads: dict[str, Any] = {} if nthread is None else {"num_threads": nthread}
        self._booster = booster
        self._n_features: int = booster.num_feature()
        self._n_outputs: int = booster.num_model_per_iteration()
        objective = booster.params.get("objective")
        self._objective = str(objective) if objective is not None else ""

    def output_names(self) -> Sequence[str]:
        return ("predict",)

    def predict(self, inputs: list[Tensor], outputs: Sequence[str]) -> list[Tensor]:
        x = feature_matrix(inputs, self._n_features)
        array = np.asarray(self._booster.predict(x, **self._threads))
        return [Tensor.from_array(name, array) for name in outputs]

    def signature(self) -> ModelSignature:
        shape = (-1,) if self._n_outputs <= 1 else (-1, self._n_outputs)
        extra = {"objective": self._objective} if self._objective else {}
        return ModelSignature(
            (TensorSpec("input-0", "FP64", (-1, self._n_features)),),
            (TensorSpec("predict", "FP64", shape),),
            platform="lightgbm",
            extra=extra,
        )
