"""XGBoost boosters saved with ``save_model`` (``model.json``, ``model.ubj`` or ``model.bst``).

The outputs follow MLServer's mlserver-xgboost and KServe's xgbserver, which load the booster
into XGBoost's scikit-learn wrappers: a classifier answers ``predict`` with class labels and
``predict_proba`` with probabilities, a regressor (or ranker, or anything else) ``predict`` with
the booster's prediction. The labels and probabilities are computed here from the booster's own
``inplace_predict``, exactly as ``XGBClassifier`` does, without the wrapper's per-call overhead.

``parameters: {nthread: N}`` in the version's config caps the threads one prediction uses.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

import numpy as np
import xgboost as xgb

from modelrouter.errors import ModelLoadError
from modelrouter.protocol.types import ModelSignature, Tensor, TensorSpec
from modelrouter.runtime.base import LocalRuntime, feature_matrix, find_model_file

SUFFIXES = (".json", ".ubj", ".bst")

_LOG_PREFIX = re.compile(r"^\[[0-9:]+\] [^ ]+:\d+: ")

_PROBABILISTIC = frozenset(
    {"binary:logistic", "binary:logitraw", "multi:softprob", "multi:softmax"}
)
"""Classifier objectives whose class probabilities can be computed; ``binary:hinge`` has none."""


def xgboost_message(exc: BaseException) -> str:
    """XGBoost's error text without its timestamp, source location and C++ stack trace."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _LOG_PREFIX.sub("", first)


class XGBoostRuntime(LocalRuntime):
    """Outputs ``predict`` (default) and, for ``binary:*`` / ``multi:*`` objectives with
    probabilities, ``predict_proba``."""

    format = "xgboost"
    row_independent = True

    def load(self) -> None:
        assert self.path is not None
        file = find_model_file(self.path, SUFFIXES, "XGBoost model")
        try:
            booster = xgb.Booster(model_file=str(file))
            config = json.loads(booster.save_config())
        except xgb.core.XGBoostError as exc:
            raise ModelLoadError(
                f"cannot load XGBoost model {file}: {xgboost_message(exc)}"
            ) from None
        nthread = self.spec.parameters.get("nthread")
        if nthread is not None:
            if type(nthread) is not int or nthread < 1:
                raise ModelLoadError(f"parameters.nthread must be a positive integer: {nthread!r}")
            booster.set_param({"nthread": nthread})
        learner = config["learner"]
        self._booster = booster
        self._objective: str = learner["objective"]["name"]
        params = learner["learner_model_param"]
        self._n_classes = int(params.get("num_class", "0"))
        self._n_targets = int(params.get("num_target", "1"))
        self._n_features = booster.num_features()
        self._classifier = self._objective.startswith(("binary:", "multi:"))
        self._outputs: tuple[str, ...] = (
            ("predict", "predict_proba") if self._objective in _PROBABILISTIC else ("predict",)
        )

    def output_names(self) -> Sequence[str]:
        return self._outputs

    def predict(self, inputs: list[Tensor], outputs: Sequence[str]) -> list[Tensor]:
        x = feature_matrix(inputs, self._n_features)
        result = []
        for name in outputs:
            array = self._proba(x) if name == "predict_proba" else self._predict(x)
            result.append(Tensor.from_array(name, array))
        return result

    def _raw(self, x: np.ndarray, margin: bool = False) -> np.ndarray:
        return np.asarray(
            self._booster.inplace_predict(x, predict_type="margin" if margin else "value")
        )

    def _predict(self, x: np.ndarray) -> np.ndarray:
        if not self._classifier:
            return self._raw(x)
        if self._objective in ("multi:softmax", "binary:hinge"):
            return self._raw(x).astype(np.int64)
        if self._objective == "binary:logitraw":
            return (self._raw(x) > 0).astype(np.int64)
        values = self._raw(x)
        if values.ndim == 2 and self._objective == "multi:softprob":
            return np.asarray(np.argmax(values, axis=1), dtype=np.int64)
        # binary:logistic: one probability per row, or per row and label (multi-label)
        return (values > 0.5).astype(np.int64)

    def _proba(self, x: np.ndarray) -> np.ndarray:
        if self._objective == "multi:softmax":
            margin = self._raw(x, margin=True)
            exp: np.ndarray = np.exp(margin - margin.max(axis=1, keepdims=True))
            return np.asarray(exp / exp.sum(axis=1, keepdims=True))
        if self._objective == "binary:logitraw":
            p = np.asarray(1.0 / (1.0 + np.exp(-self._raw(x))))
        else:
            p = self._raw(x)
        if p.ndim == 1:
            return np.column_stack((1.0 - p, p))
        return p

    def signature(self) -> ModelSignature:
        inputs = (TensorSpec("input-0", "FP32", (-1, self._n_features)),)
        if self._classifier:
            outs = [TensorSpec("predict", "INT64", self._label_shape())]
            if "predict_proba" in self._outputs:
                outs.append(TensorSpec("predict_proba", "FP32", (-1, self._n_proba())))
        else:
            shape = (-1,) if self._n_targets <= 1 else (-1, self._n_targets)
            outs = [TensorSpec("predict", "FP32", shape)]
        return ModelSignature(
            inputs, tuple(outs), platform="xgboost", extra={"objective": self._objective}
        )

    def _label_shape(self) -> tuple[int, ...]:
        if self._objective.startswith("binary:") and self._n_targets > 1:
            return (-1, self._n_targets)
        return (-1,)

    def _n_proba(self) -> int:
        if self._objective.startswith("multi:"):
            return self._n_classes
        return 2 if self._n_targets <= 1 else self._n_targets
