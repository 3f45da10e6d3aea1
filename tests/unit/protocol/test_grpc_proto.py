"""The shipped descriptor is the compiled inference.proto, and it speaks the protocol's wire."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from google.protobuf import descriptor_pb2, descriptor_pool

from modelrouter.protocol import pb

PROTO_DIR = Path(pb.__file__).parent / "proto"


def test_descriptor_is_the_compiled_proto(tmp_path: Path) -> None:
    out = tmp_path / "inference.binpb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTO_DIR}",
            f"--descriptor_set_out={out}",
            "inference.proto",
        ],
        check=True,
    )
    fresh = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    assert fresh == pb.descriptor_set(), "inference.proto changed: run `make proto`"


def test_messages_stay_out_of_the_default_pool() -> None:
    pb.messages()
    try:
        descriptor_pool.Default().FindMessageTypeByName("inference.ModelInferRequest")
    except KeyError:
        return
    # another library may have registered it (tritonclient, kserve): then it is not ours
    found = descriptor_pool.Default().FindMessageTypeByName("inference.ModelInferRequest")
    assert found is not pb.messages().ModelInferRequest.DESCRIPTOR


def test_every_rpc_is_in_the_service() -> None:
    (file,) = pb.descriptor_set().file
    (service,) = file.service
    assert f"{file.package}.{service.name}" == pb.SERVICE
    assert {m.name: (m.input_type, m.output_type) for m in service.method} == {
        rpc: (f".inference.{req}", f".inference.{resp}") for rpc, (req, resp) in pb.RPCS.items()
    }


def test_wire_field_numbers() -> None:
    """The numbers clients depend on (a typo here breaks every peer)."""
    m = pb.messages()
    req = m.ModelInferRequest.DESCRIPTOR.fields_by_name
    assert {n: req[n].number for n in req} == {
        "model_name": 1,
        "model_version": 2,
        "id": 3,
        "parameters": 4,
        "inputs": 5,
        "outputs": 6,
        "raw_input_contents": 7,
    }
    resp = m.ModelInferResponse.DESCRIPTOR.fields_by_name
    assert resp["outputs"].number == 5
    assert resp["raw_output_contents"].number == 6
    contents = m.InferTensorContents.DESCRIPTOR.fields_by_name
    assert [contents[n].number for n in ("bool_contents", "fp64_contents", "bytes_contents")] == [
        1,
        7,
        8,
    ]
