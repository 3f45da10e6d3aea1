"""Protocol types <-> protobuf messages, both roles, typed and raw."""

from __future__ import annotations

import numpy as np
import pytest

from modelrouter.errors import InvalidInput
from modelrouter.protocol import grpc_codec
from modelrouter.protocol.pb import messages
from modelrouter.protocol.types import InferenceRequest, InferenceResponse, RequestedOutput, Tensor


def _request(raw: bool) -> InferenceRequest:
    return InferenceRequest(
        [
            Tensor.from_array("a", np.arange(6, dtype=np.int16).reshape(2, 3)),
            Tensor.from_array("b", np.array([b"x", b"yz"], dtype=object)),
            Tensor.from_array("c", np.array([[0.5], [1.5]], dtype=np.float16)),
        ],
        "r-1",
        {"flag": True, "n": 3, "big": 2**64 - 1, "f": 0.25, "s": "eu", "obj": {"k": 1}},
        [RequestedOutput("out", {"binary_data": True})],
    )


@pytest.mark.parametrize("raw", [True, False])
def test_request_round_trip(raw: bool) -> None:
    sent = _request(raw)
    msg = grpc_codec.encode_request(sent, "m", "v2", raw=raw)
    wire = messages().ModelInferRequest.FromString(msg.SerializeToString())
    # FP16 has no typed field: the whole request goes raw
    assert len(wire.raw_input_contents) == 3
    got = grpc_codec.decode_request(wire)
    assert (wire.model_name, wire.model_version, got.id) == ("m", "v2", "r-1")
    for a, b in zip(sent.inputs, got.inputs, strict=True):
        assert (a.name, a.datatype, a.shape) == (b.name, b.datatype, b.shape)
        np.testing.assert_array_equal(a.data, b.data)
        assert a.data.dtype == b.data.dtype
    assert got.parameters == {**sent.parameters, "obj": '{"k":1}'}
    assert got.document == {"id": "r-1", "parameters": got.parameters}
    assert got.outputs == [RequestedOutput("out", {"binary_data": True})]


@pytest.mark.parametrize("raw", [True, False])
def test_response_round_trip(raw: bool) -> None:
    outputs = [
        Tensor.from_array("p", np.array([1, 0], dtype=np.int64)),
        Tensor.from_array("q", np.array([[0.1, 0.9]], dtype=np.float64)),
    ]
    msg = grpc_codec.encode_response(InferenceResponse("m", "v1", outputs, "id-1"), raw)
    assert bool(msg.raw_output_contents) is raw
    got, _ = grpc_codec.decode_response(
        messages().ModelInferResponse.FromString(msg.SerializeToString())
    )
    for a, b in zip(outputs, got, strict=True):
        np.testing.assert_array_equal(a.data, b.data)
        assert a.shape == b.shape


def test_decode_errors_name_the_output() -> None:
    m = messages()
    msg = m.ModelInferResponse()
    msg.outputs.add(name="p", datatype="INT64", shape=[2]).contents.int64_contents.append(1)
    with pytest.raises(InvalidInput, match=r"output 'p': contents.int64_contents has 1 elements"):
        grpc_codec.decode_response(msg)


def test_both_typed_and_raw_is_refused() -> None:
    m = messages()
    req = m.ModelInferRequest(model_name="m")
    req.inputs.add(name="x", datatype="FP64", shape=[1]).contents.fp64_contents.append(1.0)
    req.raw_input_contents.append(b"\x00" * 8)
    with pytest.raises(InvalidInput, match="both contents and raw_input_contents"):
        grpc_codec.decode_request(req)
