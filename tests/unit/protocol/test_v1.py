"""KServe v1: ``{"instances": [...]}`` in, ``{"predictions": [...]}`` out."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import pytest

from modelrouter.errors import InvalidInput
from modelrouter.protocol import v1
from modelrouter.protocol.types import Tensor


def decode(doc: Any) -> Tensor:
    req = v1.decode_request(orjson.dumps(doc))
    assert len(req.inputs) == 1
    t = req.inputs[0]
    assert t.name == v1.V1_INPUT_NAME
    return t


@pytest.mark.parametrize(
    ("instances", "datatype", "dtype", "shape"),
    [
        ([[1.5, 2], [3, 4]], "FP64", np.float64, (2, 2)),
        ([[1, 2, 3]], "INT64", np.int64, (1, 3)),
        ([1, 2, 3], "INT64", np.int64, (3,)),
        ([[[1.0], [2.0]], [[3.0], [4.0]]], "FP64", np.float64, (2, 2, 1)),
        ([True, False], "BOOL", np.bool_, (2,)),
    ],
)
def test_numeric_instances(
    instances: list[Any], datatype: str, dtype: type, shape: tuple[int, ...]
) -> None:
    t = decode({"instances": instances})
    assert t.datatype == datatype
    assert t.data.dtype == np.dtype(dtype)
    assert t.data.shape == shape
    assert t.shape == list(shape)
    assert t.data.tolist() == instances


def test_string_instances_are_bytes() -> None:
    t = decode({"instances": [["good", "é"], ["bad", ""]]})
    assert t.datatype == "BYTES"
    assert t.data.dtype == object
    assert t.data.tolist() == [[b"good", "é".encode()], [b"bad", b""]]


def test_inputs_is_an_alias_id_and_parameters() -> None:
    req = v1.decode_request(
        orjson.dumps({"inputs": [[1.0, 2.0]], "id": "r1", "parameters": {"segment": "beta"}})
    )
    assert req.inputs[0].data.tolist() == [[1.0, 2.0]]
    assert req.id == "r1"
    assert req.parameters == {"segment": "beta"}
    assert req.outputs is None


def test_non_string_id_is_ignored() -> None:
    assert v1.decode_request(orjson.dumps({"instances": [1], "id": 5})).id is None


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "malformed JSON body"),
        (b"[[1, 2]]", "must be a JSON object with 'instances'"),
        (b"{}", "'instances' must be a non-empty list"),
        (b'{"instances": []}', "'instances' must be a non-empty list"),
        (b'{"instances": {"a": 1}}', "'instances' must be a non-empty list"),
        (b'{"instances": [[1, 2], [3]]}', "'instances' is ragged"),
        (b'{"instances": [1, null]}', "must hold numbers, booleans or strings"),
        (b'{"instances": [{"tenure": 3}]}', "must hold numbers, booleans or strings"),
        (b'{"instances": [1], "parameters": [1]}', "'parameters' must be an object"),
    ],
)
def test_bad_requests(body: bytes, fragment: str) -> None:
    with pytest.raises(InvalidInput) as info:
        v1.decode_request(body)
    assert fragment in info.value.message
    assert info.value.status.http == 400


def test_predictions_are_the_first_output() -> None:
    outputs = [
        Tensor.from_array("predict", np.array([1, 0])),
        Tensor.from_array("predict_proba", np.array([[0.2, 0.8], [0.9, 0.1]])),
    ]
    assert orjson.loads(v1.encode_response(outputs)) == {"predictions": [1, 0]}


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (np.array([[0.25, 0.75], [0.5, 0.5]]), [[0.25, 0.75], [0.5, 0.5]]),
        (np.array([True, False]), [True, False]),
        (np.array([1, 2], dtype=np.uint8), [1, 2]),
        (np.array([0.5], dtype=np.float16), [0.5]),
        (np.arange(6.0).reshape(2, 3)[:, 1], [1.0, 4.0]),  # a column: not contiguous
        (np.arange(6.0).reshape(2, 3).T, [[0.0, 3.0], [1.0, 4.0], [2.0, 5.0]]),
        (np.array([1, 256], dtype=">i4"), [1, 256]),  # big-endian
        (np.array([b"stay", b"\xff"], dtype=object), ["stay", "\ufffd"]),
        (np.array([["a"], ["b"]]), [["a"], ["b"]]),
    ],
)
def test_encode_predictions(array: np.ndarray, expected: Any) -> None:
    body = v1.encode_response([Tensor.from_array("predict", array)])
    assert orjson.loads(body) == {"predictions": expected}
