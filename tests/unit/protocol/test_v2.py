"""Open Inference Protocol v2 over JSON and Triton's binary tensor data extension."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from tritonclient.utils import (
    deserialize_bytes_tensor,
    np_to_triton_dtype,
    serialize_byte_tensor,
    triton_to_np_dtype,
)

from modelrouter.errors import InvalidInput
from modelrouter.protocol import v2
from modelrouter.protocol.types import (
    DTYPES,
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
    datatype_of,
)

NUMERIC = {
    "BOOL": np.bool_,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}


def json_body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return orjson.dumps({"inputs": list(inputs), **extra})


def tensor(name: str, datatype: str, shape: list[int], data: Any) -> dict[str, Any]:
    return {"name": name, "datatype": datatype, "shape": shape, "data": data}


def raw_bytes(array: np.ndarray, datatype: str) -> bytes:
    """The binary extension's encoding of ``array``: little-endian, BYTES length-prefixed."""
    if datatype == "BYTES":
        return b"".join(struct.pack("<I", len(b)) + b for b in array.ravel())
    return np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()


def binary_body(tensors: list[tuple[str, str, np.ndarray]], **extra: Any) -> tuple[bytes, str]:
    """A binary-extension request body and its Inference-Header-Content-Length."""
    inputs = []
    tail = b""
    for name, datatype, array in tensors:
        raw = raw_bytes(array, datatype)
        inputs.append(
            {
                "name": name,
                "datatype": datatype,
                "shape": list(array.shape),
                "parameters": {"binary_data_size": len(raw)},
            }
        )
        tail += raw
    head = orjson.dumps({"inputs": inputs, **extra})
    return head + tail, str(len(head))


def decode_one(body: bytes, header: str | None = None, allow_non_finite: bool = False) -> Tensor:
    req = v2.decode_request(body, header, allow_non_finite=allow_non_finite)
    assert len(req.inputs) == 1
    return req.inputs[0]


def invalid(body: bytes, header: str | None = None) -> str:
    with pytest.raises(InvalidInput) as info:
        v2.decode_request(body, header)
    assert info.value.status.http == 400
    return info.value.message


# --------------------------------------------------------------------------- datatypes


def test_datatype_table_matches_tritonclient() -> None:
    for datatype, dtype in DTYPES.items():
        assert np.dtype(triton_to_np_dtype(datatype)) == dtype, datatype
        if datatype != "BYTES":
            assert np_to_triton_dtype(dtype) == datatype
            assert datatype_of(np.zeros(1, dtype)) == datatype
    assert datatype_of(np.array(["a"])) == "BYTES"
    assert datatype_of(np.array([b"a"])) == "BYTES"
    with pytest.raises(TypeError, match="complex128"):
        datatype_of(np.zeros(1, np.complex128))


JSON_VALUES: dict[str, list[Any]] = {
    "BOOL": [True, False, False, True, True, False],
    "INT8": [-128, 127, 0, -1, 5, 6],
    "INT16": [-32768, 32767, 0, -1, 5, 6],
    "INT32": [-(2**31), 2**31 - 1, 0, -1, 5, 6],
    "INT64": [-(2**63), 2**63 - 1, 0, -1, 5, 6],
    "UINT8": [0, 255, 1, 2, 3, 4],
    "UINT16": [0, 65535, 1, 2, 3, 4],
    "UINT32": [0, 2**32 - 1, 1, 2, 3, 4],
    "UINT64": [0, 2**64 - 1, 2**63, 2, 3, 4],
    "FP16": [0.5, -1.25, 65504.0, 0, 1, 2],
    "FP32": [0.5, -1.25, 3.4028234663852886e38, 0, 1e-3, 2],
    "FP64": [0.1, -1.25, 1e308, 0, 1, 2],
}


@pytest.mark.parametrize("datatype", list(JSON_VALUES))
def test_decode_json_flat(datatype: str) -> None:
    values = JSON_VALUES[datatype]
    t = decode_one(json_body(tensor("x", datatype, [2, 3], values)))
    expected = np.array(values, dtype=NUMERIC[datatype]).reshape(2, 3)
    assert (t.name, t.datatype, t.shape) == ("x", datatype, [2, 3])
    assert t.data.dtype == np.dtype(NUMERIC[datatype])
    assert t.data.shape == (2, 3)
    np.testing.assert_array_equal(t.data, expected)
    if datatype in ("INT64", "UINT64"):  # exact, not through a float
        assert [int(v) for v in t.data.ravel()] == values


@pytest.mark.parametrize("datatype", list(JSON_VALUES))
def test_decode_json_nested(datatype: str) -> None:
    values = JSON_VALUES[datatype]
    nested = [values[:3], values[3:]]
    t = decode_one(json_body(tensor("x", datatype, [2, 3], nested)))
    assert t.data.dtype == np.dtype(NUMERIC[datatype])
    np.testing.assert_array_equal(t.data, np.array(nested, dtype=NUMERIC[datatype]))


def test_decode_json_nested_three_dims_into_other_shape() -> None:
    t = decode_one(json_body(tensor("x", "FP32", [4, 2], [[[1, 2], [3, 4]], [[5, 6], [7, 8]]])))
    assert t.data.shape == (4, 2)
    assert t.data.dtype == np.float32
    assert t.data.ravel().tolist() == [1, 2, 3, 4, 5, 6, 7, 8]


@pytest.mark.parametrize(
    ("shape", "data"), [([3], ["a", "bc", "é"]), ([3, 1], [["a"], ["bc"], ["é"]])]
)
def test_decode_json_bytes(shape: list[int], data: list[Any]) -> None:
    t = decode_one(json_body(tensor("s", "BYTES", shape, data)))
    assert t.data.dtype == object
    assert t.data.shape == tuple(shape)
    assert t.data.ravel().tolist() == [b"a", b"bc", "é".encode()]


@pytest.mark.parametrize("datatype", [*NUMERIC, "BYTES"])
def test_decode_json_empty(datatype: str) -> None:
    t = decode_one(json_body(tensor("x", datatype, [0, 3], [])))
    assert t.data.shape == (0, 3)
    assert t.data.dtype == DTYPES[datatype]


def test_decode_json_scalar_shape() -> None:
    t = decode_one(json_body(tensor("x", "INT32", [], [7])))
    assert t.data.shape == ()
    assert int(t.data) == 7


BINARY_ARRAYS: dict[str, np.ndarray] = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    **{
        dt: np.array([[0, 1, 2], [3, 100, 127]], dtype=NUMERIC[dt])
        for dt in NUMERIC
        if dt not in ("BOOL",)
    },
    "BYTES": np.array([[b"ab", b"", b"\x00\xff"], [b"xyz", "é".encode(), b"q"]], dtype=object),
}
BINARY_ARRAYS["INT64"] = np.array([[-(2**63), 2**63 - 1, 0], [-1, 1, 2]], dtype=np.int64)
BINARY_ARRAYS["UINT64"] = np.array([[2**64 - 1, 2**63, 0], [1, 2, 3]], dtype=np.uint64)
BINARY_ARRAYS["FP16"] = np.array([[0.5, -1.5, np.inf], [np.nan, 65504, -0.0]], dtype=np.float16)


@pytest.mark.parametrize("datatype", list(BINARY_ARRAYS))
def test_decode_binary(datatype: str) -> None:
    array = BINARY_ARRAYS[datatype]
    body, header = binary_body([("x", datatype, array)])
    # FP16 carries inf and nan: the round trip needs them allowed (see test_non_finite_*)
    t = decode_one(body, header, allow_non_finite=True)
    assert (t.datatype, t.shape) == (datatype, [2, 3])
    assert t.data.dtype == DTYPES[datatype]
    assert t.data.shape == (2, 3)
    np.testing.assert_array_equal(t.data, array)
    assert t.parameters == {"binary_data_size": len(raw_bytes(array, datatype))}


def test_binary_bytes_encoding_matches_tritonclient() -> None:
    array = BINARY_ARRAYS["BYTES"]
    assert raw_bytes(array, "BYTES") == serialize_byte_tensor(array).item()


def test_decode_binary_and_json_inputs_mixed() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    raw = a.tobytes()
    head = orjson.dumps(
        {
            "inputs": [
                tensor("json", "INT8", [2], [1, 2]),
                {
                    "name": "bin",
                    "datatype": "FP32",
                    "shape": [2, 3],
                    "parameters": {"binary_data_size": len(raw)},
                },
                {
                    "name": "bytes",
                    "datatype": "BYTES",
                    "shape": [1],
                    "parameters": {"binary_data_size": 6},
                },
            ]
        }
    )
    req = v2.decode_request(head + raw + b"\x02\x00\x00\x00hi", str(len(head)))
    assert [t.name for t in req.inputs] == ["json", "bin", "bytes"]
    assert req.inputs[0].data.tolist() == [1, 2]
    np.testing.assert_array_equal(req.inputs[1].data, a)
    assert req.inputs[2].data.tolist() == [b"hi"]


def test_header_without_binary_data_is_plain_json() -> None:
    body = json_body(tensor("x", "FP64", [1], [1.5]))
    assert decode_one(body, str(len(body))).data.tolist() == [1.5]


# --------------------------------------------------------------------------- request fields


def test_request_id_parameters_and_outputs() -> None:
    req = v2.decode_request(
        json_body(
            tensor("x", "FP64", [1], [1.0]),
            id="42",
            parameters={"priority": 2, "tags": ["a"]},
            outputs=[
                {"name": "predict"},
                {"name": "predict_proba", "parameters": {"binary_data": True}},
            ],
        )
    )
    assert req.id == "42"
    assert req.parameters == {"priority": 2, "tags": ["a"]}
    assert req.output_names == ["predict", "predict_proba"]
    assert req.outputs is not None
    assert [o.binary for o in req.outputs] == [False, True]


def test_request_without_outputs() -> None:
    req = v2.decode_request(json_body(tensor("x", "FP64", [1], [1.0])))
    assert req.id is None
    assert req.parameters is None
    assert req.outputs is None
    assert req.output_names is None


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("inp", "fragments"),
    [
        (tensor("x", "FP128", [1], [1.0]), ["input 'x'", "unknown datatype 'FP128'", "FP64"]),
        (tensor("x", "fp32", [1], [1.0]), ["unknown datatype 'fp32'"]),
        (tensor("x", 5, [1], [1.0]), ["unknown datatype 5"]),
        ({"name": "x", "shape": [1], "data": [1.0]}, ["unknown datatype None"]),
        (tensor("x", "FP32", [2, 3], [1, 2, 3, 4, 5]), ["has 5 elements but shape needs 6"]),
        (tensor("x", "FP32", [2], [[1, 2], [3, 4]]), ["has 4 elements but shape needs 2"]),
        (tensor("x", "BYTES", [3], ["a", "b"]), ["has 2 elements but shape needs 3"]),
        (tensor("x", "FP32", [2], ["1", "2"]), ["datatype FP32 needs numbers"]),
        (tensor("x", "INT32", [2], ["1", 2]), ["needs integer values"]),
        (tensor("x", "FP64", [2], [1, None]), ["datatype FP64 needs numbers"]),
        (tensor("x", "FP64", [1], [{"v": 1}]), ["datatype FP64 needs numbers"]),
        (tensor("x", "INT32", [1], [2.7]), ["datatype INT32 needs integer values"]),
        (tensor("x", "INT64", [2], [1, 2.0]), ["datatype INT64 needs integer values"]),
        (tensor("x", "UINT8", [2], [1, 0.5]), ["datatype UINT8 needs integer values"]),
        (tensor("x", "INT8", [1], [128]), ["out of range for INT8 [-128, 127]"]),
        (tensor("x", "INT8", [1], [-129]), ["out of range for INT8"]),
        (tensor("x", "UINT8", [1], [256]), ["out of range for UINT8 [0, 255]"]),
        (tensor("x", "UINT8", [1], [-1]), ["out of range for UINT8"]),
        (tensor("x", "UINT16", [1], [65536]), ["out of range for UINT16"]),
        (tensor("x", "INT32", [1], [2**31]), ["out of range for INT32"]),
        (tensor("x", "UINT32", [1], [2**32]), ["out of range for UINT32"]),
        (tensor("x", "INT64", [2], [1, 2**63]), ["out of range for INT64"]),
        (tensor("x", "UINT64", [2], [2**63, -1]), ["out of range for UINT64"]),
        (tensor("x", "FP16", [1], [70000.0]), ["out of range for FP16"]),
        (tensor("x", "FP32", [2], [1.0, -1e39]), ["out of range for FP32"]),
        (tensor("x", "INT32", [2], [True, False]), ["datatype INT32 needs integer values"]),
        (tensor("x", "FP32", [2], [True, False]), ["datatype FP32 needs numbers"]),
        (tensor("x", "BOOL", [2], [1, 0]), ["datatype BOOL needs true/false values"]),
        (tensor("x", "BOOL", [2], ["true", "false"]), ["BOOL needs true/false"]),
        (tensor("x", "BOOL", [2], [True, 1]), ["BOOL needs true/false"]),
        (tensor("x", "BYTES", [2], ["a", 3]), ["datatype BYTES needs strings, got 3"]),
        (tensor("x", "FP32", [2, 2], [[1, 2], [3]]), ["ragged"]),
        (tensor("x", "INT32", [3], [[1, 2], 3]), ["ragged"]),
        (tensor("x", "BYTES", [2], [["a", "b"], ["c"]]), ["input 'x'"]),
        (tensor("x", "FP32", [1], 1.0), ["data must be a list"]),
        ({"name": "x", "datatype": "FP32", "shape": [1]}, ["'data' is missing"]),
        (tensor("x", "FP32", [-1], [1.0]), ["shape must be a list of non-negative integers"]),
        (tensor("x", "FP32", [1.0], [1.0]), ["shape must be"]),
        (tensor("x", "FP32", [True], [1.0]), ["shape must be"]),
        (tensor("x", "FP32", "1", [1.0]), ["shape must be"]),
        ({"datatype": "FP32", "shape": [1], "data": [1.0]}, ["inputs[0].name must be a string"]),
        ([1, 2], ["inputs[0] must be an object"]),
        ({**tensor("x", "FP32", [1], [1.0]), "parameters": []}, ["parameters must be an object"]),
    ],
)
def test_bad_input(inp: Any, fragments: list[str]) -> None:
    message = invalid(json_body(inp))
    for fragment in fragments:
        assert fragment in message
    if isinstance(inp, dict) and isinstance(inp.get("name"), str):
        assert f"input '{inp['name']}'" in message


def test_error_names_the_second_input() -> None:
    message = invalid(
        json_body(tensor("ok", "FP32", [1], [1.0]), tensor("bad", "INT8", [1], [1000]))
    )
    assert message.startswith("input 'bad': ")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{bad", "malformed JSON body"),
        (b"", "malformed JSON body"),
        (b'{"inputs": [}', "malformed JSON body"),
        (b"\xff\xfe", "malformed JSON body"),
        (b'{"inputs": [1e400]}', "malformed JSON body"),
        (b'{"inputs": [NaN]}', "malformed JSON body"),
        (b"[]", "must be a JSON object with 'inputs'"),
        (b'"inputs"', "must be a JSON object"),
        (b"{}", "'inputs' must be a non-empty list"),
        (b'{"inputs": []}', "'inputs' must be a non-empty list"),
        (b'{"inputs": {"name": "x"}}', "'inputs' must be a non-empty list"),
    ],
)
def test_bad_body(body: bytes, fragment: str) -> None:
    assert fragment in invalid(body)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"id": 42}, "'id' must be a string"),
        ({"parameters": [1]}, "'parameters' must be an object"),
        ({"outputs": {"name": "predict"}}, "'outputs' must be a list"),
        ({"outputs": [{"nom": "predict"}]}, "outputs[0] must be an object with a string 'name'"),
        ({"outputs": ["predict"]}, "outputs[0] must be an object"),
        ({"outputs": [{"name": "p", "parameters": 1}]}, "outputs[0].parameters must be an object"),
    ],
)
def test_bad_request_fields(extra: dict[str, Any], fragment: str) -> None:
    assert fragment in invalid(json_body(tensor("x", "FP32", [1], [1.0]), **extra))


def test_binary_size_does_not_match_shape() -> None:
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP64",
                    "shape": [4],
                    "parameters": {"binary_data_size": 24},
                }
            ]
        }
    )
    message = invalid(head + np.zeros(3).tobytes(), str(len(head)))
    assert message == "input 'x': binary_data_size is 24 bytes but shape and FP64 need 32"


def test_binary_data_shorter_than_declared() -> None:
    body, header = binary_body([("x", "FP64", np.zeros(3))])
    assert "binary_data_size 24 exceeds the binary data" in invalid(body[:-1], header)


def test_binary_data_longer_than_declared() -> None:
    body, header = binary_body([("x", "FP64", np.zeros(3))])
    message = invalid(body + b"\x00", header)
    assert "binary data has 25 bytes" in message
    assert "add up to 24" in message


def test_binary_data_without_header() -> None:
    body, _ = binary_body([("x", "FP64", np.zeros(3))])
    assert "no Inference-Header-Content-Length header" in invalid(body, None)


def test_binary_data_size_without_header_or_tail() -> None:
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "datatype": "FP64",
                    "shape": [1],
                    "parameters": {"binary_data_size": 8},
                }
            ]
        }
    )
    message = invalid(head, None)
    assert "input 'x' has binary_data_size" in message
    assert "Inference-Header-Content-Length" in message


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        ("abc", "must be an integer, got 'abc'"),
        ("-1", "does not fit a body"),
        ("100000", "does not fit a body"),
        ("10", "malformed JSON body"),
    ],
)
def test_bad_header(header: str, fragment: str) -> None:
    body, _ = binary_body([("x", "FP64", np.zeros(3))])
    assert fragment in invalid(body, header)


@pytest.mark.parametrize("size", [-1, 1.5, "8", None])
def test_bad_binary_data_size(size: Any) -> None:
    params = {"binary_data_size": size} if size is not None else {}
    head = orjson.dumps(
        {"inputs": [{"name": "x", "datatype": "FP64", "shape": [1], "parameters": params}]}
    )
    message = invalid(head + b"\x00" * 8, str(len(head)))
    assert "input 'x'" in message


@pytest.mark.parametrize(
    ("tail", "count", "fragment"),
    [
        (b"\x05\x00\x00\x00ab", 1, "truncated BYTES element"),
        (b"\x02\x00", 1, "truncated BYTES element length"),
        (b"\x01\x00\x00\x00a\x01\x00\x00\x00b", 3, "binary data has 2 elements but shape needs 3"),
        (b"\x01\x00\x00\x00a\x01\x00\x00\x00b", 1, "binary data has 2 elements but shape needs 1"),
    ],
)
def test_bad_binary_bytes(tail: bytes, count: int, fragment: str) -> None:
    head = orjson.dumps(
        {
            "inputs": [
                {
                    "name": "s",
                    "datatype": "BYTES",
                    "shape": [count],
                    "parameters": {"binary_data_size": len(tail)},
                }
            ]
        }
    )
    message = invalid(head + tail, str(len(head)))
    assert message.startswith("input 's': ")
    assert fragment in message


# --------------------------------------------------------------------------- responses


def _response() -> InferenceResponse:
    return InferenceResponse(
        "churn",
        "v2",
        [
            Tensor.from_array("predict", np.array([0, 1], dtype=np.int64)),
            Tensor.from_array("predict_proba", np.array([[0.25, 0.75], [0.5, 0.5]])),
            Tensor.from_array("label", np.array([b"stay", "é".encode()], dtype=object)),
        ],
        id="req-1",
        parameters={"routed_by": "default"},
    )


def test_encode_response_json() -> None:
    body, json_len = v2.encode_response(_response())
    assert json_len is None
    assert orjson.loads(body) == {
        "model_name": "churn",
        "model_version": "v2",
        "id": "req-1",
        "parameters": {"routed_by": "default"},
        "outputs": [
            {"name": "predict", "datatype": "INT64", "shape": [2], "data": [0, 1]},
            {
                "name": "predict_proba",
                "datatype": "FP64",
                "shape": [2, 2],
                "data": [0.25, 0.75, 0.5, 0.5],
            },
            {"name": "label", "datatype": "BYTES", "shape": [2], "data": ["stay", "é"]},
        ],
    }


def test_encode_response_without_version_or_id() -> None:
    body, _ = v2.encode_response(
        InferenceResponse("m", None, [Tensor.from_array("y", np.array([True]))])
    )
    assert orjson.loads(body) == {
        "model_name": "m",
        "outputs": [{"name": "y", "datatype": "BOOL", "shape": [1], "data": [True]}],
    }


def split_response(body: bytes, json_len: int) -> tuple[dict[str, Any], dict[str, bytes]]:
    doc = orjson.loads(body[:json_len])
    chunks = {}
    pos = json_len
    for o in doc["outputs"]:
        size = (o.get("parameters") or {}).get("binary_data_size")
        if size is not None:
            chunks[o["name"]] = body[pos : pos + size]
            pos += size
    assert pos == len(body)
    return doc, chunks


def test_encode_response_binary_all() -> None:
    resp = _response()
    body, json_len = v2.encode_response(resp, frozenset(t.name for t in resp.outputs))
    assert json_len is not None
    doc, chunks = split_response(body, json_len)
    assert all("data" not in o for o in doc["outputs"])
    assert np.frombuffer(chunks["predict"], "<i8").tolist() == [0, 1]
    proba = np.frombuffer(chunks["predict_proba"], "<f8").reshape(doc["outputs"][1]["shape"])
    np.testing.assert_array_equal(proba, [[0.25, 0.75], [0.5, 0.5]])
    labels = deserialize_bytes_tensor(chunks["label"])
    assert labels.tolist() == [b"stay", "é".encode()]


def test_encode_response_binary_some() -> None:
    body, json_len = v2.encode_response(_response(), frozenset({"predict_proba"}))
    assert json_len is not None
    doc, chunks = split_response(body, json_len)
    outputs = {o["name"]: o for o in doc["outputs"]}
    assert outputs["predict"]["data"] == [0, 1]
    assert outputs["label"]["data"] == ["stay", "é"]
    assert outputs["predict_proba"]["parameters"] == {"binary_data_size": 32}
    assert list(chunks) == ["predict_proba"]


def test_encode_non_contiguous_and_big_endian() -> None:
    transposed = np.arange(6, dtype=np.float64).reshape(2, 3).T
    big = np.array([1, 256], dtype=">i4")
    resp = InferenceResponse(
        "m", "1", [Tensor.from_array("t", transposed), Tensor.from_array("b", big)]
    )
    body, json_len = v2.encode_response(resp, frozenset({"t", "b"}))
    assert json_len is not None
    _, chunks = split_response(body, json_len)
    np.testing.assert_array_equal(np.frombuffer(chunks["t"], "<f8").reshape(3, 2), transposed)
    assert np.frombuffer(chunks["b"], "<i4").tolist() == [1, 256]
    text, _ = v2.encode_response(resp)
    assert orjson.loads(text)["outputs"][0]["data"] == [0.0, 3.0, 1.0, 4.0, 2.0, 5.0]


def test_non_utf8_bytes_output_needs_binary() -> None:
    resp = InferenceResponse(
        "m", "1", [Tensor.from_array("raw", np.array([b"\xff\xfe"], dtype=object))]
    )
    with pytest.raises(InvalidInput, match="output 'raw' holds bytes that are not UTF-8"):
        v2.encode_response(resp)
    body, json_len = v2.encode_response(resp, frozenset({"raw"}))
    assert json_len is not None
    assert body[json_len:] == b"\x02\x00\x00\x00\xff\xfe"


def _request(parameters: dict[str, Any] | None, outputs: list[RequestedOutput] | None) -> Any:
    return InferenceRequest([], parameters=parameters, outputs=outputs)


PRODUCED = [Tensor.from_array(n, np.zeros(1)) for n in ("predict", "predict_proba")]


@pytest.mark.parametrize(
    ("parameters", "outputs", "expected"),
    [
        (None, None, None),
        ({"binary_data_output": False}, None, None),
        ({"binary_data_output": True}, None, {"predict", "predict_proba"}),
        (None, [RequestedOutput("predict_proba", {"binary_data": True})], {"predict_proba"}),
        (None, [RequestedOutput("predict_proba", {"binary_data": False})], None),
        (None, [RequestedOutput("predict")], None),
        (
            {"binary_data_output": True},
            [RequestedOutput("predict", {"binary_data": False}), RequestedOutput("predict_proba")],
            {"predict_proba"},
        ),
    ],
)
def test_binary_output_names(
    parameters: dict[str, Any] | None,
    outputs: list[RequestedOutput] | None,
    expected: set[str] | None,
) -> None:
    names = v2.binary_output_names(_request(parameters, outputs), PRODUCED)
    assert names == (frozenset(expected) if expected is not None else None)


# --------------------------------------------------------------------------- client side


def test_encode_request_round_trips_and_drops_binary_flag() -> None:
    req = InferenceRequest(
        [Tensor.from_array("x", np.array([[1.5, 2.0]])), Tensor.from_array("s", np.array([b"a"]))],
        id="7",
        parameters={"binary_data_output": True, "priority": 1},
        outputs=[RequestedOutput("predict", {"binary_data": True})],
    )
    doc = orjson.loads(v2.encode_request(req))
    assert doc["parameters"] == {"priority": 1}
    assert doc["outputs"] == [{"name": "predict"}]
    back = v2.request_from_dict(doc)
    assert back.id == "7"
    np.testing.assert_array_equal(back.inputs[0].data, [[1.5, 2.0]])
    assert back.inputs[1].data.tolist() == [b"a"]
    only_flag = InferenceRequest(req.inputs, parameters={"binary_data_output": True})
    assert "parameters" not in orjson.loads(v2.encode_request(only_flag))


def test_response_from_dict() -> None:
    body, _ = v2.encode_response(_response())
    outputs, params = v2.response_from_dict(orjson.loads(body))
    assert [t.name for t in outputs] == ["predict", "predict_proba", "label"]
    assert outputs[1].data.shape == (2, 2)
    assert params == {"routed_by": "default"}
    with pytest.raises(InvalidInput, match="no 'outputs' list"):
        v2.response_from_dict({"error": "boom"})


# --------------------------------------------------------------------------- property


@st.composite
def tensors(draw: st.DrawFn, *, for_json: bool) -> tuple[str, np.ndarray]:
    datatype = draw(st.sampled_from(list(DTYPES)))
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
    if datatype == "BYTES":
        element = st.text(max_size=6).map(str.encode) if for_json else st.binary(max_size=6)
        array = draw(hnp.arrays(object, shape, elements=element))
    else:
        dtype = np.dtype(NUMERIC[datatype])
        elements = None
        if dtype.kind == "f":
            elements = st.floats(
                width=dtype.itemsize * 8, allow_nan=not for_json, allow_infinity=not for_json
            )
        array = draw(hnp.arrays(dtype, shape, elements=elements))
    return datatype, array


def _json_data(array: np.ndarray, nested: bool) -> Any:
    if array.dtype == object:
        array = np.vectorize(lambda b: b.decode(), otypes=[object])(array)
    if nested and array.ndim > 0:
        return array.tolist()
    return array.ravel().tolist()


@settings(max_examples=150, deadline=None)
@given(
    st.lists(tensors(for_json=True), min_size=1, max_size=3),
    st.sampled_from(["codec", "flat", "nested"]),
)
def test_json_round_trip(drawn: list[tuple[str, np.ndarray]], style: str) -> None:
    if style == "codec":
        req = InferenceRequest(
            [Tensor(f"in{i}", dt, list(a.shape), a) for i, (dt, a) in enumerate(drawn)]
        )
        body = v2.encode_request(req)
    else:
        body = json_body(
            *(
                tensor(f"in{i}", dt, list(a.shape), _json_data(a, style == "nested"))
                for i, (dt, a) in enumerate(drawn)
            )
        )
    decoded = v2.decode_request(body)
    for (datatype, array), t in zip(drawn, decoded.inputs, strict=True):
        assert t.datatype == datatype
        assert t.data.dtype == DTYPES[datatype]
        assert t.data.shape == array.shape
        np.testing.assert_array_equal(t.data, array)


@settings(max_examples=150, deadline=None)
@given(st.lists(tensors(for_json=False), min_size=1, max_size=3))
def test_binary_round_trip(drawn: list[tuple[str, np.ndarray]]) -> None:
    body, header = binary_body([(f"in{i}", dt, a) for i, (dt, a) in enumerate(drawn)])
    decoded = v2.decode_request(body, header, allow_non_finite=True)  # nan and inf are drawn
    for (datatype, array), t in zip(drawn, decoded.inputs, strict=True):
        assert t.datatype == datatype
        assert t.data.dtype == DTYPES[datatype]
        assert t.data.shape == array.shape
        np.testing.assert_array_equal(t.data, array)


@settings(max_examples=100, deadline=None)
@given(st.lists(tensors(for_json=False), min_size=1, max_size=3), st.data())
def test_response_binary_round_trip(
    drawn: list[tuple[str, np.ndarray]], data: st.DataObject
) -> None:
    outputs = [Tensor(f"out{i}", dt, list(a.shape), a) for i, (dt, a) in enumerate(drawn)]
    binary = frozenset(t.name for t in outputs if t.datatype == "BYTES" or data.draw(st.booleans()))
    text_outputs = [t for t in outputs if t.name not in binary]
    for t in text_outputs:
        if t.data.dtype.kind == "f":  # JSON cannot carry nan or inf
            t.data = np.nan_to_num(t.data, nan=0.0, posinf=1.0, neginf=-1.0)
    body, json_len = v2.encode_response(InferenceResponse("m", "1", outputs), binary or None)
    if not binary:
        assert json_len is None
        json_len = len(body)
    assert json_len is not None
    doc, chunks = split_response(body, json_len)
    for t, o in zip(outputs, doc["outputs"], strict=True):
        assert (o["name"], o["datatype"], o["shape"]) == (t.name, t.datatype, t.shape)
        if t.name in binary:
            if t.datatype == "BYTES":
                got = deserialize_bytes_tensor(chunks[t.name]).reshape(t.shape)
            else:
                got = np.frombuffer(chunks[t.name], t.data.dtype.newbyteorder("<")).reshape(t.shape)
        else:
            got = np.array(o["data"], dtype=t.data.dtype).reshape(t.shape)
        np.testing.assert_array_equal(got, t.data)


# --------------------------------------------------------------------------- hostile shapes


@pytest.mark.parametrize(
    ("shape", "fragment"),
    [
        ([0, 2**63], "describes more than 2147483647 elements"),
        ([0, 10**12, 10**12, 10**12], "describes more than 2147483647 elements"),
        ([1] * 100, "shape has 100 dimensions; at most 32"),
        ([2**31], "describes more than 2147483647 elements"),
    ],
)
def test_absurd_shapes_are_refused_naming_the_input(shape: list[int], fragment: str) -> None:
    doc = {"inputs": [{"name": "big", "datatype": "FP32", "shape": shape, "data": []}]}
    with pytest.raises(InvalidInput) as err:
        v2.decode_request(orjson.dumps(doc))
    assert "input 'big'" in err.value.message
    assert fragment in err.value.message


def test_empty_tensor_with_a_sane_shape_still_decodes() -> None:
    doc = {"inputs": [{"name": "e", "datatype": "FP32", "shape": [0, 10], "data": []}]}
    assert v2.decode_request(orjson.dumps(doc)).inputs[0].data.shape == (0, 10)


@pytest.mark.parametrize("datatype", ["FP16", "FP32", "FP64"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_binary_floats_are_refused_unless_allowed(datatype: str, bad: float) -> None:
    array = np.array([[1.0, bad]], dtype=DTYPES[datatype])
    body, header = binary_body([("x", datatype, array)])
    with pytest.raises(InvalidInput) as err:
        v2.decode_request(body, header)
    assert "input 'x'" in err.value.message
    assert "allowNonFinite" in err.value.message
    t = decode_one(body, header, allow_non_finite=True)
    np.testing.assert_array_equal(t.data, array)
