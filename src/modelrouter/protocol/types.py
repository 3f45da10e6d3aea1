"""Protocol types shared by every transport: tensors, requests, responses, metadata.

Plain slotted dataclasses rather than pydantic: they are built on every request, and the codecs
validate while they convert, once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
"""Open Inference Protocol datatype -> numpy dtype (BYTES is an object array of ``bytes``)."""

_KIND_TO_DATATYPE = {
    ("b", 1): "BOOL",
    ("i", 1): "INT8",
    ("i", 2): "INT16",
    ("i", 4): "INT32",
    ("i", 8): "INT64",
    ("u", 1): "UINT8",
    ("u", 2): "UINT16",
    ("u", 4): "UINT32",
    ("u", 8): "UINT64",
    ("f", 2): "FP16",
    ("f", 4): "FP32",
    ("f", 8): "FP64",
}


def datatype_of(array: np.ndarray) -> str:
    """The protocol datatype for a numpy array; strings and objects are BYTES."""
    dt = array.dtype
    found = _KIND_TO_DATATYPE.get((dt.kind, dt.itemsize))
    if found is not None:
        return found
    if dt.kind in "OSU":
        return "BYTES"
    raise TypeError(f"no Open Inference Protocol datatype for numpy dtype {dt}")


@dataclass(slots=True)
class Tensor:
    """A named tensor. ``data`` is a numpy array already in ``shape``."""

    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray
    parameters: dict[str, Any] | None = None

    @classmethod
    def from_array(cls, name: str, array: np.ndarray) -> Tensor:
        return cls(name, datatype_of(array), list(array.shape), array)


@dataclass(slots=True)
class RequestedOutput:
    name: str
    parameters: dict[str, Any] | None = None

    @property
    def binary(self) -> bool:
        return bool(self.parameters and self.parameters.get("binary_data"))


@dataclass(slots=True)
class InferenceRequest:
    inputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[RequestedOutput] | None = None
    document: dict[str, Any] | None = None
    """The JSON body as received, for rules that match on body fields."""

    @property
    def output_names(self) -> list[str] | None:
        return None if self.outputs is None else [o.name for o in self.outputs]


@dataclass(slots=True)
class InferenceResponse:
    model_name: str
    model_version: str | None
    outputs: list[Tensor]
    id: str | None = None
    parameters: dict[str, Any] | None = None


@dataclass(slots=True, frozen=True)
class TensorSpec:
    """Metadata of one input or output: shape uses -1 for a variable dimension."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(slots=True, frozen=True)
class ModelSignature:
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    platform: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
