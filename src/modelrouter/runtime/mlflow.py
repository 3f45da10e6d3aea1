"""Local MLflow model directories (with an ``MLmodel`` file), served through ``mlflow.pyfunc``.

MLflow is imported inside :meth:`MLflowRuntime.load`: importing it takes seconds, and a gateway
that serves no MLflow model should not pay for it.

When the model's input schema is column-based (what ``infer_signature`` makes of a DataFrame),
the request becomes a pandas DataFrame with those columns: from one 2-D ``[rows, columns]``
input in schema order, or from one 1-D input per column, matched by name. Numeric columns are
cast to the schema's type when that loses nothing (JSON integers for a ``double`` column, or
whole floats for a ``long`` one), so clients need not match MLflow's types exactly; anything
else is left to MLflow's own schema enforcement, whose complaints become 400s. Without a
schema, or with a tensor-based one, the model gets the numpy array (or a dict of arrays when
there are several inputs).

Only local directories are loaded here; resolving ``models:/`` and ``runs:/`` URIs to one is the
sources package's job. :func:`select_flavor` picks a native runtime for a registry model whose
flavor allows it.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from modelrouter.errors import InvalidInput, ModelLoadError
from modelrouter.protocol.types import (
    InferenceRequest,
    ModelSignature,
    Tensor,
    TensorSpec,
    datatype_of,
)
from modelrouter.runtime.base import LocalRuntime

MLFLOW_TO_DATATYPE: dict[str, str] = {
    "boolean": "BOOL",
    "integer": "INT32",
    "long": "INT64",
    "float": "FP32",
    "double": "FP64",
    "string": "BYTES",
    "binary": "BYTES",
    "datetime": "BYTES",
}
"""MLflow schema ``DataType`` name -> Open Inference Protocol datatype."""

_BAD_INPUT_CODES = frozenset({"INVALID_PARAMETER_VALUE", "BAD_REQUEST"})


class _Column:
    __slots__ = ("dtype", "name", "required", "type_name")

    def __init__(self, spec: Any) -> None:
        self.name: str = spec.name
        self.required: bool = bool(getattr(spec, "required", True))
        try:
            self.type_name: str = spec.type.name
            self.dtype: np.dtype[Any] = np.dtype(spec.type.to_numpy())
        except AttributeError:  # array, object and map columns
            self.type_name, self.dtype = str(spec.type), np.dtype(object)


class MLflowRuntime(LocalRuntime):
    """Output ``predict``: the pyfunc model's prediction as a numpy array.

    Request parameters named in the model's params schema (``infer_signature(..., params=)``)
    are passed to ``predict(data, params=...)``.
    """

    format = "mlflow"

    def load(self) -> None:
        assert self.path is not None
        if not (self.path / "MLmodel").is_file():
            what = "does not exist" if not self.path.exists() else "has no MLmodel file"
            raise ModelLoadError(
                f"{self.path} {what}: an MLflow model is a directory with an MLmodel file "
                "(as mlflow.<flavor>.save_model writes it)"
            )
        try:
            import mlflow.pyfunc
            from mlflow.exceptions import MlflowException
        except ImportError as exc:
            raise ModelLoadError(
                f"modelFormat 'mlflow' needs mlflow ({exc}): pip install 'modelrouter[mlflow]'"
            ) from None
        self._mlflow_error: type[Exception] = MlflowException
        try:
            self._model: Any = mlflow.pyfunc.load_model(str(self.path))
        except MlflowException as exc:
            raise ModelLoadError(f"cannot load MLflow model {self.path}: {exc.message}") from None
        except Exception as exc:  # the flavor's own loader: pickle, joblib, a missing package
            raise ModelLoadError(
                f"cannot load MLflow model {self.path}: {type(exc).__name__}: {exc}"
            ) from None
        metadata = self._model.metadata
        self._flavor = _main_flavor(metadata)
        self._columns: list[_Column] | None = None
        self._input_specs: tuple[TensorSpec, ...] = ()
        self._output_spec = TensorSpec("predict", "FP64", (-1,))
        self._params: frozenset[str] = frozenset()
        signature = metadata.signature
        if signature is None:
            return
        schema = signature.inputs
        if schema is not None:
            if schema.is_tensor_spec():
                self._input_specs = tuple(
                    _tensor_spec(spec.name or f"input-{i}", spec.type, spec.shape)
                    for i, spec in enumerate(schema.inputs)
                )
            else:
                self._columns = [_Column(c) for c in schema.inputs]
                self._input_specs = tuple(
                    TensorSpec(c.name, MLFLOW_TO_DATATYPE.get(c.type_name, "BYTES"), (-1,))
                    for c in self._columns
                )
        outputs = signature.outputs
        if outputs is not None and len(outputs.inputs) == 1:
            spec = outputs.inputs[0]
            if outputs.is_tensor_spec():
                self._output_spec = _tensor_spec("predict", spec.type, spec.shape)
            else:
                datatype = MLFLOW_TO_DATATYPE.get(_Column(spec).type_name, "BYTES")
                self._output_spec = TensorSpec("predict", datatype, (-1,))
        if signature.params is not None:
            self._params = frozenset(p.name for p in signature.params.params)

    def output_names(self) -> Sequence[str]:
        return ("predict",)

    def predict(self, inputs: list[Tensor], outputs: Sequence[str]) -> list[Tensor]:
        return self._predict(inputs, outputs, None)

    def predict_request(self, request: InferenceRequest, outputs: Sequence[str]) -> list[Tensor]:
        """Passes on the request parameters the model's params schema declares."""
        given = request.parameters
        params = {k: v for k, v in given.items() if k in self._params} if given else None
        return self._predict(request.inputs, outputs, params or None)

    def _predict(
        self, inputs: list[Tensor], outputs: Sequence[str], params: dict[str, Any] | None
    ) -> list[Tensor]:
        data = self._frame(inputs) if self._columns is not None else _arrays(inputs)
        try:
            raw = self._model.predict(data, params=params) if params else self._model.predict(data)
        except self._mlflow_error as exc:
            if getattr(exc, "error_code", "") in _BAD_INPUT_CODES:
                message = _short(getattr(exc, "message", str(exc)))
                raise InvalidInput(f"the MLflow model refused the input: {message}") from None
            raise
        array = _to_numpy(raw)
        return [Tensor.from_array(name, array) for name in outputs]

    def _frame(self, inputs: list[Tensor]) -> Any:
        pd: Any = importlib.import_module("pandas")  # untyped, and loaded with mlflow anyway
        assert self._columns is not None
        columns = self._columns
        by_name = {c.name: c for c in columns}
        if len(inputs) > 1 or (len(inputs) == 1 and inputs[0].name in by_name):
            return pd.DataFrame(_named_columns(inputs, columns, by_name))
        t = inputs[0]
        x = t.data
        if x.ndim == 1:
            x = x.reshape(-1, 1) if len(columns) == 1 else x.reshape(1, -1)
        if x.ndim != 2:
            raise InvalidInput(
                f"input '{t.name}' must be 2-D [rows, columns] (columns: "
                f"{', '.join(by_name)}), has shape {t.shape}"
            )
        if x.shape[1] != len(columns):
            raise InvalidInput(
                f"the model expects {len(columns)} columns per row ({', '.join(by_name)}), "
                f"got {x.shape[1]}"
            )
        return pd.DataFrame({c.name: _column(x[:, i], c) for i, c in enumerate(columns)})

    def signature(self) -> ModelSignature:
        return ModelSignature(
            self._input_specs,
            (self._output_spec,),
            platform=f"mlflow_{self._flavor}" if self._flavor else "mlflow",
        )


def _named_columns(
    inputs: list[Tensor], columns: list[_Column], by_name: dict[str, _Column]
) -> dict[str, np.ndarray]:
    """One DataFrame column per 1-D input, in schema order."""
    unknown = [t.name for t in inputs if t.name not in by_name]
    if unknown:
        raise InvalidInput(
            f"unknown input(s) {', '.join(unknown)}: the model's columns are {', '.join(by_name)}"
        )
    given = {t.name: t for t in inputs}
    if len(given) != len(inputs):
        raise InvalidInput("an input name appears twice")
    missing = [c.name for c in columns if c.required and c.name not in given]
    if missing:
        raise InvalidInput(f"missing column input(s): {', '.join(missing)}")
    rows = None
    data: dict[str, np.ndarray] = {}
    for c in columns:
        t = given.get(c.name)
        if t is None:
            continue
        if t.data.ndim > 2 or (t.data.ndim == 2 and t.data.shape[1] != 1):
            raise InvalidInput(
                f"input '{t.name}' must be one column [rows] or [rows, 1], got shape {t.shape}"
            )
        col = t.data.reshape(-1)
        if rows is not None and col.shape[0] != rows:
            raise InvalidInput(f"input '{t.name}' has {col.shape[0]} rows, others {rows}")
        rows = col.shape[0]
        data[c.name] = _column(col, c)
    return data


def _column(values: np.ndarray, column: _Column) -> np.ndarray:
    """``values`` in the column's numeric type when the cast loses nothing, else unchanged
    (MLflow's schema enforcement then decides)."""
    target = column.dtype
    kind = values.dtype.kind
    if target.kind not in "fiu":
        if column.type_name == "string" and kind == "O":
            return np.array(
                [v.decode() if isinstance(v, bytes) else v for v in values], dtype=object
            )
        return values
    if kind == "O":
        raise InvalidInput(
            f"column '{column.name}' is {column.type_name}, the request sent BYTES for it"
        )
    if values.dtype == target or kind not in "fiu":
        return values
    if target.kind == "f":
        return values.astype(target)
    if kind in "iu":
        info = np.iinfo(target)
        if values.size and (values.min() < info.min or values.max() > info.max):
            return values
        return values.astype(target)
    cast = values.astype(target)
    return cast if np.array_equal(cast, values) else values


def _arrays(inputs: list[Tensor]) -> Any:
    if len(inputs) == 1:
        return inputs[0].data
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        raise InvalidInput("an input name appears twice")
    return {t.name: t.data for t in inputs}


def _to_numpy(raw: Any) -> np.ndarray:
    """A prediction (array, pandas Series or DataFrame, list) as a numpy array."""
    if isinstance(raw, dict):
        raise TypeError(
            f"predict() returned a dict (keys: {', '.join(map(str, raw))}), which is not one "
            "tensor; return an array, a Series or a DataFrame"
        )
    to_numpy = getattr(raw, "to_numpy", None)
    array = np.asarray(to_numpy() if callable(to_numpy) else raw)
    if array.dtype.kind == "U":
        array = array.astype(object)
    return array


def _tensor_spec(name: str, dtype: Any, shape: Any) -> TensorSpec:
    try:
        datatype = datatype_of(np.empty(0, dtype=dtype))
    except TypeError:
        datatype = "BYTES"
    dims = tuple(int(d) for d in shape) if shape is not None else (-1,)
    return TensorSpec(name, datatype, dims)


def _main_flavor(metadata: Any) -> str:
    flavors = [f for f in getattr(metadata, "flavors", {}) if f != "python_function"]
    return str(flavors[0]) if flavors else ""


def _short(message: str) -> str:
    """MLflow's schema errors quote the whole DataFrame first; keep the reason."""
    head, sep, reason = message.rpartition("Error: ")
    return reason.strip() if sep and head.startswith("Failed to enforce schema") else message


# --------------------------------------------------------------------------- flavor selection

NATIVE_SKLEARN_SERIALIZATIONS = frozenset({"pickle", "cloudpickle"})


def select_flavor(folder: Path) -> tuple[str, Path]:
    """The runtime (``modelFormat``) and file for an MLflow model folder, from its ``MLmodel``.

    A native runtime (no MLflow import, no pandas on the request path) when a flavor names a
    file it reads: ``onnx``; ``xgboost`` saved as JSON or UBJSON; ``lightgbm`` saved as a
    booster (not a pickle); ``sklearn`` pickled (not skops). Anything else, or a model whose
    signature has named columns (it expects a DataFrame), is served by ``mlflow.pyfunc``."""
    pyfunc = ("mlflow", folder)
    try:
        doc = yaml.safe_load((folder / "MLmodel").read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ModelLoadError(f"{folder / 'MLmodel'} cannot be read: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("flavors"), dict):
        raise ModelLoadError(f"{folder / 'MLmodel'} has no flavors: it is not an MLflow model")
    if _has_columns(doc.get("signature")):
        return pyfunc
    flavors: dict[str, Any] = doc["flavors"]

    def file(name: str, key: str) -> Path | None:
        conf = flavors.get(name)
        value = conf.get(key) if isinstance(conf, dict) else None
        return folder / value if isinstance(value, str) and (folder / value).is_file() else None

    if (onnx := file("onnx", "data")) is not None:
        return "onnx", onnx
    xgb = file("xgboost", "data")
    if xgb is not None and xgb.suffix in (".json", ".ubj"):
        return "xgboost", xgb
    lgb = file("lightgbm", "data")
    if lgb is not None and lgb.suffix not in (".pkl", ".pickle"):
        return "lightgbm", lgb
    skl = file("sklearn", "pickled_model")
    sk_conf = flavors.get("sklearn")
    serialization = sk_conf.get("serialization_format") if isinstance(sk_conf, dict) else None
    if skl is not None and serialization in NATIVE_SKLEARN_SERIALIZATIONS:
        return "sklearn", skl
    return pyfunc


def _has_columns(signature: Any) -> bool:
    """Whether an MLmodel signature's inputs are named columns rather than tensors."""
    if not isinstance(signature, dict) or not signature.get("inputs"):
        return False
    try:
        inputs = json.loads(signature["inputs"])
    except (TypeError, ValueError):
        return False
    return isinstance(inputs, list) and any(
        isinstance(i, dict) and i.get("type") != "tensor" for i in inputs
    )
