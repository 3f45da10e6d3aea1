"""ONNX models (``model.onnx``) run by onnxruntime on the CPU.

Request inputs are matched to the model's inputs by name, or by position when the names do not
match and the counts are equal (clients often send ``input-0``). Each is cast to the element type
the model declares, and checked against its rank and fixed dimensions, so a bad request is a 400
naming the input instead of an onnxruntime error. Every output of the session is returned by
default; a request may name a subset, and only those are computed.

ONNX sequence-of-map outputs (what skl2onnx's ZipMap makes of ``predict_proba``) have no
Open Inference Protocol datatype: they are converted to a ``[rows, classes]`` FP32 tensor whose
columns follow the model's class order (the order of ``output_label``'s classes). Exporting with
``options={"zipmap": False}`` avoids that per-row conversion. Other non-tensor outputs are
refused when the model loads.

``parameters: {nthread: N}`` sets onnxruntime's intra-op thread count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import InvalidArgument

from modelrouter.errors import InvalidInput, ModelLoadError
from modelrouter.protocol.types import ModelSignature, Tensor, TensorSpec, datatype_of
from modelrouter.runtime.base import LocalRuntime, find_model_file

SUFFIXES = (".onnx",)

ONNX_TO_DATATYPE: dict[str, str] = {
    "tensor(bool)": "BOOL",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
    "tensor(string)": "BYTES",
}
"""ONNX tensor type -> Open Inference Protocol datatype."""

_NUMPY: dict[str, np.dtype[Any]] = {
    "tensor(bool)": np.dtype(np.bool_),
    "tensor(int8)": np.dtype(np.int8),
    "tensor(int16)": np.dtype(np.int16),
    "tensor(int32)": np.dtype(np.int32),
    "tensor(int64)": np.dtype(np.int64),
    "tensor(uint8)": np.dtype(np.uint8),
    "tensor(uint16)": np.dtype(np.uint16),
    "tensor(uint32)": np.dtype(np.uint32),
    "tensor(uint64)": np.dtype(np.uint64),
    "tensor(float16)": np.dtype(np.float16),
    "tensor(float)": np.dtype(np.float32),
    "tensor(double)": np.dtype(np.float64),
    "tensor(string)": np.dtype(object),
}

_ZIPMAP = re.compile(r"^seq\(map\((int64|string),tensor\((float|double)\)\)\)$")

_ORT_MESSAGE = re.compile(r"^\[ONNXRuntimeError\] : \d+ : [A-Z_]+ : ")


def onnx_message(exc: BaseException) -> str:
    """onnxruntime's error text without its ``[ONNXRuntimeError] : 2 : INVALID_ARGUMENT :``."""
    return " ".join(_ORT_MESSAGE.sub("", str(exc)).split())


class _Input:
    __slots__ = ("dtype", "name", "onnx_type", "shape")

    def __init__(self, name: str, onnx_type: str, shape: tuple[int | None, ...]) -> None:
        self.name = name
        self.onnx_type = onnx_type
        self.dtype = _NUMPY[onnx_type]
        self.shape = shape


class OnnxRuntime(LocalRuntime):
    format = "onnx"
    row_independent = True

    def load(self) -> None:
        assert self.path is not None
        file = find_model_file(self.path, SUFFIXES, "ONNX model")
        options = ort.SessionOptions()
        nthread = self.spec.parameters.get("nthread")
        if nthread is not None:
            if type(nthread) is not int or nthread < 1:
                raise ModelLoadError(f"parameters.nthread must be a positive integer: {nthread!r}")
            options.intra_op_num_threads = nthread
        try:
            session = ort.InferenceSession(
                str(file), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own pybind11 exception types
            raise ModelLoadError(f"cannot load ONNX model {file}: {onnx_message(exc)}") from None
        inputs = []
        for node in session.get_inputs():
            if node.type not in _NUMPY:
                raise ModelLoadError(
                    f"ONNX model {file.name}: input '{node.name}' has type {node.type}, which "
                    "the Open Inference Protocol cannot carry"
                )
            inputs.append(_Input(node.name, node.type, _dims(node.shape)))
        outputs: dict[str, tuple[str, tuple[int, ...]]] = {}
        zipmaps: set[str] = set()
        for node in session.get_outputs():
            if node.type in ONNX_TO_DATATYPE:
                outputs[node.name] = (ONNX_TO_DATATYPE[node.type], _spec_shape(node.shape))
            elif _ZIPMAP.match(node.type):
                outputs[node.name] = ("FP32", (-1, -1))
                zipmaps.add(node.name)
            else:
                raise ModelLoadError(
                    f"ONNX model {file.name}: output '{node.name}' has type {node.type}, which "
                    "the Open Inference Protocol cannot carry; export it as a tensor (for "
                    'skl2onnx: to_onnx(model, X, options={"zipmap": False}))'
                )
        self._session = session
        self._inputs = inputs
        self._by_name = {i.name: i for i in inputs}
        self._outputs = outputs
        self._zipmaps = frozenset(zipmaps)
        self.default_outputs = tuple(outputs)

    def output_names(self) -> Sequence[str]:
        return self.default_outputs

    def predict(self, inputs: list[Tensor], outputs: Sequence[str]) -> list[Tensor]:
        feed = {spec.name: _cast(tensor, spec) for tensor, spec in self._match(inputs)}
        try:
            results = self._session.run(list(outputs), feed)
        except InvalidArgument as exc:
            raise InvalidInput(f"the ONNX model refused the inputs: {onnx_message(exc)}") from None
        tensors = []
        for name, value in zip(outputs, results, strict=True):
            array = _unzip(value) if name in self._zipmaps else np.asarray(value)
            tensors.append(Tensor.from_array(name, array))
        return tensors

    def _match(self, inputs: list[Tensor]) -> list[tuple[Tensor, _Input]]:
        """Pair request inputs with model inputs: by name, else by position."""
        if all(t.name in self._by_name for t in inputs):
            pairs = [(t, self._by_name[t.name]) for t in inputs]
            missing = [i.name for i in self._inputs if i.name not in {t.name for t in inputs}]
            if missing:
                raise InvalidInput(
                    f"missing input(s) {', '.join(missing)}; the model takes "
                    f"{', '.join(i.name for i in self._inputs)}"
                )
            if len({t.name for t in inputs}) != len(inputs):
                raise InvalidInput("an input name appears twice")
            return pairs
        if len(inputs) == len(self._inputs):
            return list(zip(inputs, self._inputs, strict=True))
        raise InvalidInput(
            f"the model takes {len(self._inputs)} input(s) "
            f"({', '.join(i.name for i in self._inputs)}), the request has {len(inputs)} "
            f"({', '.join(t.name for t in inputs)})"
        )

    def signature(self) -> ModelSignature:
        inputs = tuple(
            TensorSpec(i.name, ONNX_TO_DATATYPE[i.onnx_type], _spec_shape(i.shape))
            for i in self._inputs
        )
        outputs = tuple(TensorSpec(n, dt, shape) for n, (dt, shape) in self._outputs.items())
        return ModelSignature(inputs, outputs, platform="onnxruntime_onnx")


def _dims(shape: Sequence[Any] | None) -> tuple[int | None, ...]:
    """Fixed dimensions as ints; symbolic (``"N"``) and unknown ones as None."""
    return tuple(d if isinstance(d, int) and d >= 0 else None for d in (shape or ()))


def _spec_shape(shape: Sequence[Any] | None) -> tuple[int, ...]:
    return tuple(-1 if d is None else d for d in _dims(shape))


def _cast(tensor: Tensor, spec: _Input) -> np.ndarray:
    data = tensor.data
    if spec.onnx_type == "tensor(string)":
        if data.dtype != object:
            raise InvalidInput(f"input '{tensor.name}' must be BYTES for {spec.name} (string)")
        data = np.array(
            [v.decode() if isinstance(v, bytes) else str(v) for v in data.ravel()], dtype=object
        ).reshape(data.shape)
    elif data.dtype == object:
        raise InvalidInput(
            f"input '{tensor.name}' is BYTES but {spec.name} takes "
            f"{ONNX_TO_DATATYPE[spec.onnx_type]}"
        )
    elif data.dtype != spec.dtype:
        data = _convert(tensor.name, data, spec)
    if spec.shape and data.ndim == len(spec.shape) - 1 and _fits(data.shape, spec.shape[1:]):
        data = data.reshape((1, *data.shape))  # one row sent without its batch dimension
    if data.ndim != len(spec.shape) or not _fits(data.shape, spec.shape):
        raise InvalidInput(
            f"input '{tensor.name}' has shape {list(data.shape)}, the model's {spec.name} "
            f"takes {list(_spec_shape(spec.shape))} (-1: any size)"
        )
    return data


def _convert(name: str, data: np.ndarray, spec: _Input) -> np.ndarray:
    """``data`` in the model's element type, refusing what would change a value (2.5 into an
    integer input, 300 into UINT8), as the protocol's own decoding does."""
    target = spec.dtype
    datatype = ONNX_TO_DATATYPE[spec.onnx_type]
    if target.kind == "f":
        with np.errstate(over="ignore"):
            narrowed = data.astype(target)
        if np.isinf(narrowed).any() and np.isfinite(data).all():
            raise InvalidInput(f"input '{name}': a value is out of range for {datatype}")
        return narrowed
    if target.kind == "b":
        raise InvalidInput(f"input '{name}': {spec.name} takes BOOL, got {datatype_of(data)}")
    whole = data.dtype.kind != "f" or bool(np.isfinite(data).all())
    with np.errstate(invalid="ignore", over="ignore"):
        cast = data.astype(target)
    if not whole or not np.array_equal(cast, data):
        raise InvalidInput(
            f"input '{name}': {spec.name} takes {datatype}, and some values "
            f"({datatype_of(data)}) are not whole numbers in its range"
        )
    return cast


def _fits(shape: Sequence[int], dims: Sequence[int | None]) -> bool:
    return len(shape) == len(dims) and all(
        d is None or d == s for s, d in zip(shape, dims, strict=True)
    )


def _unzip(rows: Any) -> np.ndarray:
    """A ZipMap output (one ``{class: probability}`` per row) as ``[rows, classes]``."""
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    keys = list(rows[0])
    return np.array([[row[k] for k in keys] for row in rows], dtype=np.float32)
