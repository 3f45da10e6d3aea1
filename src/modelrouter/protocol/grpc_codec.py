"""Open Inference Protocol v2 over gRPC: protobuf messages <-> the shared protocol types.

Both directions of both roles: the gRPC server decodes ``ModelInferRequest`` and encodes
``ModelInferResponse``; the remote runtime encodes requests and decodes responses. Decoding
validates as :mod:`modelrouter.protocol.v2` does for JSON (datatype names, shape against element
count, value ranges, raw chunk sizes), and every problem is an
:class:`~modelrouter.errors.InvalidInput` naming the tensor and the field.

Tensor data travels either typed (``contents.fp32_contents`` ...) or raw
(``raw_input_contents`` / ``raw_output_contents``: one little-endian chunk per tensor, all or
none). A response is raw when its request was (as Triton answers tritonclient) or when an
output has no typed field (FP16); else typed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from modelrouter.errors import InvalidInput
from modelrouter.protocol.pb import messages
from modelrouter.protocol.types import (
    DTYPES,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
)
from modelrouter.protocol.v2 import _binary_data, _from_binary, check_finite, check_shape

CONTENTS_FIELD: dict[str, str] = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}
"""The typed ``InferTensorContents`` list of each datatype; FP16 has none (raw only)."""

_ALL_FIELDS = tuple(sorted(set(CONTENTS_FIELD.values())))
_NARROW = frozenset(("INT8", "INT16", "UINT8", "UINT16"))


# ----------------------------------------------------------------------------- parameters


def parameters_to_dict(params: Any, where: str) -> dict[str, Any] | None:
    """An ``InferParameter`` map as plain values (``None`` when empty)."""
    if not params:
        return None
    out: dict[str, Any] = {}
    for key, value in params.items():
        which = value.WhichOneof("parameter_choice")
        if which is None:
            raise InvalidInput(f"{where}parameters[{key!r}] has no value")
        out[key] = getattr(value, which)
    return out


def fill_parameters(target: Any, params: dict[str, Any] | None) -> None:
    """Set an ``InferParameter`` map from plain values; other values travel as JSON text."""
    if not params:
        return
    for key, value in params.items():
        if value is None:
            continue
        p = target[str(key)]
        if isinstance(value, bool):
            p.bool_param = value
        elif isinstance(value, int) and -(2**63) <= value < 2**63:
            p.int64_param = value
        elif isinstance(value, int) and 0 <= value < 2**64:
            p.uint64_param = value
        elif isinstance(value, float):
            p.double_param = value
        elif isinstance(value, str):
            p.string_param = value
        else:
            p.string_param = orjson.dumps(value, default=str).decode()


# ----------------------------------------------------------------------------- tensors


def _check_header(name: str, datatype: str, shape: Any, where: str) -> tuple[np.dtype[Any], int]:
    dtype = DTYPES.get(datatype)
    if dtype is None:
        raise InvalidInput(
            f"{where} '{name}': unknown datatype {datatype!r} (one of {', '.join(DTYPES)})"
        )
    try:
        _, count = check_shape(name, shape)
    except InvalidInput as exc:
        raise InvalidInput(exc.message.replace("input '", f"{where} '", 1)) from None
    return dtype, count


def tensor_from_typed(
    name: str, datatype: str, shape: list[int], contents: Any, params: Any, where: str
) -> Tensor:
    """A tensor from ``contents``: the list of its datatype, every other list empty."""
    dtype, count = _check_header(name, datatype, shape, where)
    expected = CONTENTS_FIELD.get(datatype)
    for field in _ALL_FIELDS:
        if field != expected and len(getattr(contents, field)):
            raise InvalidInput(
                f"{where} '{name}': datatype {datatype} "
                + (f"takes contents.{expected}" if expected else "needs raw contents")
                + f", got contents.{field}"
            )
    values = getattr(contents, expected) if expected else ()
    if len(values) != count:
        raise InvalidInput(
            f"{where} '{name}': contents.{expected or 'raw'} has {len(values)} elements "
            f"but shape {shape} needs {count}"
        )
    if datatype == "BYTES":
        array = np.empty(count, dtype=object)
        array[:] = list(values)
    elif datatype in _NARROW:
        wide = np.array(values, dtype=np.int64)
        info = np.iinfo(dtype)
        if count and (wide.min() < info.min or wide.max() > info.max):
            raise InvalidInput(
                f"{where} '{name}': a value is out of range for {datatype} [{info.min}, {info.max}]"
            )
        array = wide.astype(dtype)
    else:
        array = np.array(values, dtype=dtype)
    return Tensor(
        name,
        datatype,
        shape,
        array.reshape(shape),
        parameters_to_dict(params, f"{where} '{name}' "),
    )


def tensor_from_raw(
    name: str, datatype: str, shape: list[int], raw: bytes, params: Any, where: str
) -> Tensor:
    """A tensor from its raw little-endian chunk (length-prefixed elements for BYTES)."""
    dtype, count = _check_header(name, datatype, shape, where)
    try:
        array = _from_binary(name, datatype, dtype, memoryview(raw), count)
    except InvalidInput as exc:
        raise InvalidInput(
            exc.message.replace("input '", f"{where} '", 1).replace(
                "binary_data_size", "raw contents"
            )
        ) from None
    return Tensor(
        name,
        datatype,
        shape,
        array.reshape(shape),
        parameters_to_dict(params, f"{where} '{name}' "),
    )


def _tensors(items: Any, raw: Any, where: str, raw_field: str) -> list[Tensor]:
    if raw and len(raw) != len(items):
        raise InvalidInput(
            f"{raw_field} has {len(raw)} entries but there are {len(items)} {where}s: "
            "give raw data for every tensor or for none"
        )
    out = []
    for i, t in enumerate(items):
        if not t.name:
            raise InvalidInput(f"{where}s[{i}].name is empty")
        shape = list(t.shape)
        if raw:
            # an empty contents message beside raw data is harmless (MLServer sends one)
            if t.HasField("contents") and any(len(getattr(t.contents, f)) for f in _ALL_FIELDS):
                raise InvalidInput(f"{where} '{t.name}': both contents and {raw_field} are set")
            out.append(tensor_from_raw(t.name, t.datatype, shape, raw[i], t.parameters, where))
        else:
            out.append(
                tensor_from_typed(t.name, t.datatype, shape, t.contents, t.parameters, where)
            )
    return out


def _fill_tensor(msg: Any, t: Tensor, raw: list[bytes] | None) -> None:
    msg.name = t.name
    msg.datatype = t.datatype
    msg.shape.extend(t.shape)
    fill_parameters(msg.parameters, t.parameters)
    if raw is not None:
        raw.append(_binary_data(t))
        return
    field = CONTENTS_FIELD[t.datatype]
    values = t.data.ravel()
    if t.datatype == "BYTES":
        getattr(msg.contents, field).extend(
            v if isinstance(v, bytes) else str(v).encode() for v in values
        )
    else:
        getattr(msg.contents, field).extend(values.tolist())


def _needs_raw(tensors: list[Tensor]) -> bool:
    return any(t.datatype not in CONTENTS_FIELD for t in tensors)


# ----------------------------------------------------------------------------- server side


def decode_request(msg: Any, allow_non_finite: bool = False) -> InferenceRequest:
    """A ``ModelInferRequest`` as the protocol's request type; floating point inputs must be
    finite unless ``allow_non_finite`` (the model's ``allowNonFinite``).

    ``document`` holds what body-matching rules and sticky keys read, in the JSON body's
    shape: ``id`` and ``parameters`` (tensor data is not copied there)."""
    if not msg.inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    inputs = _tensors(msg.inputs, msg.raw_input_contents, "input", "raw_input_contents")
    if not allow_non_finite:
        for t in inputs:
            check_finite(t.name, t.data)
    params = parameters_to_dict(msg.parameters, "")
    outputs = None
    if msg.outputs:
        outputs = []
        for j, o in enumerate(msg.outputs):
            if not o.name:
                raise InvalidInput(f"outputs[{j}].name is empty")
            outputs.append(
                RequestedOutput(o.name, parameters_to_dict(o.parameters, f"output '{o.name}' "))
            )
    req_id = msg.id or None
    document: dict[str, Any] = {"id": req_id, "parameters": params or {}}
    request = InferenceRequest(inputs, req_id, params, outputs, document)
    return request


def wants_raw(msg: Any) -> bool:
    """Whether the client sent raw tensor data (so it gets raw data back)."""
    return bool(msg.raw_input_contents)


def encode_response(resp: InferenceResponse, raw: bool) -> Any:
    """A ``ModelInferResponse``; raw contents when asked for or when a datatype needs it."""
    msg = messages().ModelInferResponse()
    msg.model_name = resp.model_name
    if resp.model_version is not None:
        msg.model_version = resp.model_version
    if resp.id is not None:
        msg.id = resp.id
    fill_parameters(msg.parameters, resp.parameters)
    chunks: list[bytes] | None = [] if raw or _needs_raw(resp.outputs) else None
    for t in resp.outputs:
        _fill_tensor(msg.outputs.add(), t, chunks)
    if chunks is not None:
        msg.raw_output_contents.extend(chunks)
    return msg


# ----------------------------------------------------------------------------- client side


def encode_request(
    req: InferenceRequest, model: str, version: str | None = None, raw: bool = True
) -> Any:
    """A ``ModelInferRequest`` for a remote server (raw contents by default: the cheapest)."""
    msg = messages().ModelInferRequest()
    msg.model_name = model
    if version:
        msg.model_version = version
    if req.id is not None:
        msg.id = req.id
    fill_parameters(msg.parameters, req.parameters)
    chunks: list[bytes] | None = [] if raw or _needs_raw(req.inputs) else None
    for t in req.inputs:
        _fill_tensor(msg.inputs.add(), t, chunks)
    if chunks is not None:
        msg.raw_input_contents.extend(chunks)
    for o in req.outputs or ():
        out = msg.outputs.add()
        out.name = o.name
        fill_parameters(out.parameters, o.parameters)
    return msg


def decode_response(msg: Any) -> tuple[list[Tensor], dict[str, Any] | None]:
    """Outputs and parameters of a ``ModelInferResponse`` a remote server sent."""
    outputs = _tensors(msg.outputs, msg.raw_output_contents, "output", "raw_output_contents")
    return outputs, parameters_to_dict(msg.parameters, "")
