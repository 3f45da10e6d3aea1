"""scikit-learn models saved with joblib or pickle (and anything else with ``predict``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from modelrouter.protocol.types import ModelSignature, Tensor, TensorSpec, datatype_of
from modelrouter.runtime.base import LocalRuntime, feature_matrix, find_model_file

SUFFIXES = (".joblib", ".pkl", ".pickle")


class SklearnRuntime(LocalRuntime):
    """Outputs ``predict`` (default) and ``predict_proba`` when the estimator has it."""

    format = "sklearn"
    row_independent = True

    def load(self) -> None:
        assert self.path is not None
        file = find_model_file(self.path, SUFFIXES, "joblib or pickle model")
        import joblib
        import sklearn

        from modelrouter.runtime import sklearn_checks

        self._sklearn: Any = sklearn
        sklearn_checks.install()  # an ndarray is not a dataframe: say so without narwhals

        # joblib reads plain pickles too, and ``joblib.dump(model, "model.pkl")`` is common
        model = joblib.load(file)
        if not hasattr(model, "predict"):
            raise TypeError(f"{file.name} holds a {type(model).__name__}, which has no predict()")
        self._model: Any = model
        self._n_features: int | None = getattr(model, "n_features_in_", None)
        self._outputs = (
            ("predict", "predict_proba") if hasattr(model, "predict_proba") else ("predict",)
        )

    def output_names(self) -> Sequence[str]:
        return self._outputs

    def predict(self, inputs: list[Tensor], outputs: Sequence[str]) -> list[Tensor]:
        x = feature_matrix(inputs, self._n_features)
        result = []
        # a fitted estimator's hyper-parameters do not change between calls: checking them on
        # every predict is about a sixth of a small model's predict time. When the matrix is
        # finite (checked here, for 1.5 us), scikit-learn need not look again: its own check
        # costs about a tenth of a small predict. A non-finite matrix (a model with
        # allowNonFinite), or one not of bool, integer or float, gets scikit-learn's check,
        # which refuses or accepts NaN as the estimator does.
        kind = x.dtype.kind
        finite = kind in "biu" or (kind == "f" and bool(np.isfinite(x).all()))
        with self._sklearn.config_context(skip_parameter_validation=True, assume_finite=finite):
            for name in outputs:
                array = np.asarray(getattr(self._model, name)(x))
                result.append(Tensor(name, datatype_of(array), list(array.shape), array))
        return result

    def signature(self) -> ModelSignature:
        n = self._n_features if self._n_features is not None else -1
        inputs = (TensorSpec("input-0", "FP64", (-1, n)),)
        classes = getattr(self._model, "classes_", None)
        outs = [TensorSpec("predict", _label_datatype(classes), (-1,))]
        if "predict_proba" in self._outputs:
            n_classes = len(classes) if classes is not None else -1
            outs.append(TensorSpec("predict_proba", "FP64", (-1, n_classes)))
        return ModelSignature(inputs, tuple(outs), platform="sklearn")


def _label_datatype(classes: Any) -> str:
    if classes is None:
        return "FP64"
    return datatype_of(np.asarray(classes))
