"""Open Inference Protocol v2 over JSON, with Triton's binary tensor data extension.

Decoding validates as it converts, once: datatype names, shape against the number of elements,
value kinds against the datatype (no silent truncation of 2.7 into an INT32, no overflow wrap),
the binary chunk sizes, and the limits below (a shape of at most :data:`MAX_DIMS` dimensions
describing at most :data:`MAX_ELEMENTS` elements; floating point values that are finite unless
the model allows otherwise). Every problem is an :class:`~modelrouter.errors.InvalidInput` whose
message names the input.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson

from modelrouter.errors import InvalidInput
from modelrouter.protocol.types import (
    DTYPES,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
)

BINARY_HEADER = "inference-header-content-length"
"""Request and response header of the binary data extension: length of the JSON part."""

_INT_KINDS = frozenset("iu")
_FLOAT_OK = frozenset("fiu")
_STR_KINDS = frozenset("OSU")
_OPT = orjson.OPT_SERIALIZE_NUMPY
_UINT64_MAX = 2**64 - 1
_INT_RANGES = {
    name: (int(np.iinfo(dt).min), int(np.iinfo(dt).max))
    for name, dt in DTYPES.items()
    if dt.kind in _INT_KINDS
}
"""Integer datatype -> its smallest and largest value (``np.iinfo`` costs a call each time)."""

MAX_DIMS = 32
"""Dimensions of one tensor's shape (numpy's own limit is 64)."""
MAX_ELEMENTS = 2**31 - 1
"""Elements one tensor's shape may describe. A zero dimension counts as one here, so that
``[0, 10**12, 10**12]`` is refused as absurd rather than accepted as empty."""


def loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"malformed JSON body: {exc}") from None


def split_binary(body: bytes, header_length: str | None) -> tuple[bytes, memoryview | None]:
    """Split a binary-extension body into its JSON part and the binary tail."""
    if header_length is None:
        return body, None
    try:
        n = int(header_length)
    except ValueError:
        raise InvalidInput(
            f"Inference-Header-Content-Length must be an integer, got {header_length!r}"
        ) from None
    if n < 0 or n > len(body):
        raise InvalidInput(
            f"Inference-Header-Content-Length {n} does not fit a body of {len(body)} bytes"
        )
    return body[:n], memoryview(body)[n:]


def decode_request(
    body: bytes, header_length: str | None = None, *, allow_non_finite: bool = False
) -> InferenceRequest:
    """A v2 request body. ``allow_non_finite`` lets binary floating point inputs carry NaN
    and infinities (JSON cannot), for models that expect them (``allowNonFinite``)."""
    json_part, binary = split_binary(body, header_length)
    try:
        doc = loads(json_part)
    except InvalidInput:
        if header_length is None and b'"binary_data_size"' in body:
            raise InvalidInput(
                "the body carries binary tensor data (binary_data_size) but the request has no "
                "Inference-Header-Content-Length header"
            ) from None
        raise
    if not isinstance(doc, dict):
        raise InvalidInput("the request body must be a JSON object with 'inputs'")
    return request_from_dict(doc, binary, allow_non_finite)


def request_from_dict(
    doc: dict[str, Any], binary: memoryview | None = None, allow_non_finite: bool = False
) -> InferenceRequest:
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise InvalidInput("'inputs' must be a non-empty list of tensors")
    offset = 0
    inputs = []
    for i, raw in enumerate(raw_inputs):
        tensor, offset = _decode_input(raw, i, binary, offset, allow_non_finite)
        inputs.append(tensor)
    if binary is not None and offset != len(binary):
        raise InvalidInput(
            f"binary data has {len(binary)} bytes but the inputs' binary_data_size "
            f"add up to {offset}"
        )
    req_id = doc.get("id")
    if req_id is not None and not isinstance(req_id, str):
        raise InvalidInput("'id' must be a string")
    params = doc.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise InvalidInput("'parameters' must be an object")
    outputs = None
    raw_outputs = doc.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise InvalidInput("'outputs' must be a list")
        outputs = []
        for j, o in enumerate(raw_outputs):
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise InvalidInput(f"outputs[{j}] must be an object with a string 'name'")
            op = o.get("parameters")
            if op is not None and not isinstance(op, dict):
                raise InvalidInput(f"outputs[{j}].parameters must be an object")
            outputs.append(RequestedOutput(o["name"], op))
    return InferenceRequest(inputs, req_id, params, outputs, doc)


def check_shape(name: str, shape: Any) -> tuple[list[int], int]:
    """A valid shape and its element count; :class:`InvalidInput` naming the input else."""
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise InvalidInput(f"input '{name}': shape must be a list of non-negative integers")
    if len(shape) > MAX_DIMS:
        raise InvalidInput(
            f"input '{name}': shape has {len(shape)} dimensions; at most {MAX_DIMS} are allowed"
        )
    extent = 1
    for d in shape:
        extent *= d or 1
        if extent > MAX_ELEMENTS:
            raise InvalidInput(
                f"input '{name}': shape {_short(shape)} describes more than {MAX_ELEMENTS} elements"
            )
    return shape, math.prod(shape)


def check_finite(name: str, array: np.ndarray) -> None:
    """:class:`InvalidInput` naming the input when a floating point array holds NaN or an
    infinity (the binary extension and gRPC can carry them; JSON cannot)."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InvalidInput(
            f"input '{name}': holds NaN or infinite values; the model does not accept them "
            "(set allowNonFinite: true on the model to allow them)"
        )


def _short(shape: list[int]) -> str:
    text = str(shape)
    return text if len(text) <= 80 else text[:77] + "...]"


def _decode_input(
    raw: Any,
    i: int,
    binary: memoryview | None,
    offset: int,
    allow_non_finite: bool = False,
) -> tuple[Tensor, int]:
    if not isinstance(raw, dict):
        raise InvalidInput(f"inputs[{i}] must be an object")
    name = raw.get("name")
    if not isinstance(name, str):
        raise InvalidInput(f"inputs[{i}].name must be a string")
    datatype = raw.get("datatype")
    dtype = DTYPES.get(datatype) if isinstance(datatype, str) else None
    if dtype is None or not isinstance(datatype, str):
        raise InvalidInput(
            f"input '{name}': unknown datatype {datatype!r} (one of {', '.join(DTYPES)})"
        )
    shape, count = check_shape(name, raw.get("shape"))
    params = raw.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise InvalidInput(f"input '{name}': parameters must be an object")
    size = params.get("binary_data_size") if params else None
    if size is not None:
        if binary is None:
            raise InvalidInput(
                f"input '{name}' has binary_data_size but the request has no "
                "Inference-Header-Content-Length header"
            )
        if type(size) is not int or size < 0 or offset + size > len(binary):
            raise InvalidInput(f"input '{name}': binary_data_size {size!r} exceeds the binary data")
        chunk = binary[offset : offset + size]
        array = _from_binary(name, datatype, dtype, chunk, count)
        if not allow_non_finite:
            check_finite(name, array)
        offset += size
    else:
        if "data" not in raw:
            raise InvalidInput(f"input '{name}': 'data' is missing")
        array = _from_json(name, datatype, dtype, raw["data"], count)
    if list(array.shape) != shape:
        array = array.reshape(shape)
    return Tensor(name, datatype, shape, array, params), offset


def _from_json(name: str, datatype: str, dtype: np.dtype[Any], data: Any, count: int) -> np.ndarray:
    if not isinstance(data, list):
        raise InvalidInput(f"input '{name}': data must be a list")
    if datatype == "BYTES":
        return _bytes_from_json(name, data, count)
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):
        raise InvalidInput(f"input '{name}': data is ragged or mixes types") from None
    if array.size != count:
        raise InvalidInput(
            f"input '{name}': data has {array.size} elements but shape needs {count}"
        )
    kind = array.dtype.kind
    if count == 0:
        return array.astype(dtype)
    if datatype == "BOOL":
        if kind != "b":
            raise InvalidInput(f"input '{name}': datatype BOOL needs true/false values")
        return array
    if dtype.kind in _INT_KINDS:
        if kind == "f":
            # numpy makes floats of ints beyond int64: UINT64 values >= 2**63, or out of range
            array = _big_ints(name, datatype, data)
        elif kind not in _INT_KINDS:
            raise InvalidInput(f"input '{name}': datatype {datatype} needs integer values")
        if array.dtype == dtype:
            return array  # numpy chose this very type for the values: they fit (int64 mostly)
        lo, hi = _INT_RANGES[datatype]
        if array.min() < lo or array.max() > hi:
            raise InvalidInput(
                f"input '{name}': a value is out of range for {datatype} [{lo}, {hi}]"
            )
        return array.astype(dtype, copy=False)
    if kind not in _FLOAT_OK:
        raise InvalidInput(f"input '{name}': datatype {datatype} needs numbers")
    if dtype.itemsize < 8:
        with np.errstate(over="ignore"):
            narrow = array.astype(dtype)
        # JSON has no inf or nan, so a non-finite value here is an overflow
        if not np.isfinite(narrow).all():
            top = float(np.finfo(dtype).max)
            raise InvalidInput(
                f"input '{name}': a value is out of range for {datatype} [{-top:g}, {top:g}]"
            )
        return narrow
    return array.astype(dtype, copy=False)


def _big_ints(name: str, datatype: str, data: list[Any]) -> np.ndarray:
    """Exact integers as an object array, for values numpy would turn into floats."""
    values = np.asarray(data, dtype=object)
    if not all(type(v) is int for v in values.flat):
        raise InvalidInput(f"input '{name}': datatype {datatype} needs integer values")
    if datatype != "UINT64" or not all(0 <= v <= _UINT64_MAX for v in values.flat):
        info = np.iinfo(DTYPES[datatype])
        raise InvalidInput(
            f"input '{name}': a value is out of range for {datatype} [{info.min}, {info.max}]"
        )
    return values.astype(np.uint64)


def _bytes_from_json(name: str, data: list[Any], count: int) -> np.ndarray:
    try:
        nested = np.asarray(data, dtype=object)
    except ValueError:
        raise InvalidInput(f"input '{name}': data is ragged") from None
    flat = nested.ravel()
    if flat.size != count:
        raise InvalidInput(f"input '{name}': data has {flat.size} elements but shape needs {count}")
    out = np.empty(count, dtype=object)
    for k, v in enumerate(flat):
        if isinstance(v, str):
            out[k] = v.encode()
        elif isinstance(v, bytes):
            out[k] = v
        else:
            raise InvalidInput(f"input '{name}': datatype BYTES needs strings, got {v!r}")
    return out


def _from_binary(
    name: str, datatype: str, dtype: np.dtype[Any], chunk: memoryview, count: int
) -> np.ndarray:
    if datatype == "BYTES":
        items = []
        pos = 0
        raw = bytes(chunk)
        while pos < len(raw):
            if pos + 4 > len(raw):
                raise InvalidInput(f"input '{name}': truncated BYTES element length")
            (n,) = struct.unpack_from("<I", raw, pos)
            pos += 4
            if pos + n > len(raw):
                raise InvalidInput(f"input '{name}': truncated BYTES element")
            items.append(raw[pos : pos + n])
            pos += n
        if len(items) != count:
            raise InvalidInput(
                f"input '{name}': binary data has {len(items)} elements but shape needs {count}"
            )
        out = np.empty(count, dtype=object)
        out[:] = items
        return out
    expected = count * dtype.itemsize
    if len(chunk) != expected:
        raise InvalidInput(
            f"input '{name}': binary_data_size is {len(chunk)} bytes but shape and {datatype} "
            f"need {expected}"
        )
    return np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)


# ----------------------------------------------------------------------------- responses


def _json_data(t: Tensor) -> Any:
    arr = t.data
    if t.datatype == "BYTES":
        out = []
        for v in arr.ravel():
            if isinstance(v, bytes):
                try:
                    out.append(v.decode())
                except UnicodeDecodeError:
                    raise InvalidInput(
                        f"output '{t.name}' holds bytes that are not UTF-8: request it with "
                        "binary_data: true"
                    ) from None
            else:
                out.append(str(v))
        return out
    if not arr.dtype.isnative:  # orjson serializes native byte order only
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr.ravel()


def _binary_data(t: Tensor) -> bytes:
    if t.datatype == "BYTES":
        parts = []
        for v in t.data.ravel():
            b = v if isinstance(v, bytes) else str(v).encode()
            parts.append(struct.pack("<I", len(b)))
            parts.append(b)
        return b"".join(parts)
    arr = np.ascontiguousarray(t.data)
    if arr.dtype.byteorder == ">":
        arr = arr.astype(arr.dtype.newbyteorder("<"))
    return arr.tobytes()


def encode_response(
    resp: InferenceResponse, binary_outputs: frozenset[str] | None = None
) -> tuple[bytes, int | None]:
    """JSON (and binary tail) of a response; the int is the JSON length when binary is used."""
    outputs = []
    tails: list[bytes] = []
    for t in resp.outputs:
        o: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": t.shape}
        params = dict(t.parameters) if t.parameters else None
        if binary_outputs is not None and t.name in binary_outputs:
            raw = _binary_data(t)
            params = params or {}
            params["binary_data_size"] = len(raw)
            tails.append(raw)
        else:
            o["data"] = _json_data(t)
        if params:
            o["parameters"] = params
        outputs.append(o)
    doc: dict[str, Any] = {"model_name": resp.model_name}
    if resp.model_version is not None:
        doc["model_version"] = resp.model_version
    if resp.id is not None:
        doc["id"] = resp.id
    if resp.parameters:
        doc["parameters"] = resp.parameters
    doc["outputs"] = outputs
    head = orjson.dumps(doc, option=_OPT)
    if not tails:
        return head, None
    return head + b"".join(tails), len(head)


def binary_output_names(req: InferenceRequest, produced: list[Tensor]) -> frozenset[str] | None:
    """Which outputs the client wants as binary: per output, or all with binary_data_output."""
    everything = bool(req.parameters and req.parameters.get("binary_data_output"))
    names = {t.name for t in produced} if everything else set()
    if req.outputs:
        for o in req.outputs:
            if o.parameters and "binary_data" in o.parameters:
                if o.binary:
                    names.add(o.name)
                else:
                    names.discard(o.name)
    return frozenset(names) if names else None


def encode_request(req: InferenceRequest) -> bytes:
    """JSON body of a request, as a client (the remote runtime) sends it."""
    doc: dict[str, Any] = {
        "inputs": [
            {"name": t.name, "datatype": t.datatype, "shape": t.shape, "data": _json_data(t)}
            | ({"parameters": t.parameters} if t.parameters else {})
            for t in req.inputs
        ]
    }
    if req.id is not None:
        doc["id"] = req.id
    if req.parameters:
        doc["parameters"] = {
            k: v for k, v in req.parameters.items() if k != "binary_data_output"
        } or None
        if doc["parameters"] is None:
            del doc["parameters"]
    if req.outputs is not None:
        doc["outputs"] = [{"name": o.name} for o in req.outputs]
    return orjson.dumps(doc, option=_OPT)


def response_from_dict(doc: Any) -> tuple[list[Tensor], dict[str, Any] | None]:
    """Outputs of a response body a remote server sent."""
    if not isinstance(doc, dict) or not isinstance(doc.get("outputs"), list):
        raise InvalidInput("response has no 'outputs' list")
    outputs = []
    for i, raw in enumerate(doc["outputs"]):
        t, _ = _decode_input(raw, i, None, 0)
        outputs.append(t)
    params = doc.get("parameters")
    return outputs, params if isinstance(params, dict) else None
