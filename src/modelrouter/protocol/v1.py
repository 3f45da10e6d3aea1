"""KServe v1 prediction protocol: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from modelrouter.errors import InvalidInput
from modelrouter.protocol.types import InferenceRequest, Tensor, datatype_of
from modelrouter.protocol.v2 import MAX_DIMS, loads

V1_INPUT_NAME = "input-0"


def decode_request(body: bytes) -> InferenceRequest:
    doc = loads(body)
    if not isinstance(doc, dict):
        raise InvalidInput("the request body must be a JSON object with 'instances'")
    instances = doc.get("instances", doc.get("inputs"))
    if not isinstance(instances, list) or not instances:
        raise InvalidInput("'instances' must be a non-empty list")
    try:
        array = np.asarray(instances)
    except (ValueError, TypeError):
        raise InvalidInput(
            "'instances' is ragged or nested too deep: every instance must have the same "
            f"shape, of at most {MAX_DIMS} dimensions"
        ) from None
    if array.ndim > MAX_DIMS:
        raise InvalidInput(
            f"'instances' has {array.ndim} dimensions; at most {MAX_DIMS} are allowed"
        )
    kind = array.dtype.kind
    if kind in "US":
        array = np.asarray([str(v).encode() for v in array.ravel()], dtype=object).reshape(
            array.shape
        )
    elif kind not in "biuf":
        raise InvalidInput("'instances' must hold numbers, booleans or strings")
    params = doc.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise InvalidInput("'parameters' must be an object")
    req_id = doc.get("id")
    tensor = Tensor(V1_INPUT_NAME, datatype_of(array), list(array.shape), array)
    return InferenceRequest(
        [tensor], req_id if isinstance(req_id, str) else None, params, None, doc
    )


def encode_response(outputs: list[Tensor]) -> bytes:
    """``predictions`` holds the first output, one entry per instance."""
    first = outputs[0]
    data: Any = first.data
    if first.datatype != "BYTES":
        if not (data.flags.c_contiguous and data.dtype.isnative):
            # orjson takes C-contiguous native arrays only; a model may well return x[:, 1]
            data = np.array(data, dtype=data.dtype.newbyteorder("="), order="C")
    else:
        data = [v.decode(errors="replace") if isinstance(v, bytes) else v for v in data.ravel()]
        data = np.asarray(data, dtype=object).reshape(first.shape).tolist()
    return orjson.dumps({"predictions": data}, option=orjson.OPT_SERIALIZE_NUMPY)
