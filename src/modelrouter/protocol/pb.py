"""The Open Inference Protocol v2 protobuf messages, from modelrouter's own ``inference.proto``.

The messages are built from ``proto/inference.binpb`` (the proto compiled by ``make proto``)
into a **private** descriptor pool, never protobuf's default one. So modelrouter does not
register the package ``inference`` globally, and stays importable in a process that also
imports ``tritonclient.grpc``, KServe or MLServer (which all register it). Only protobuf is
needed at run time, not a compiler, and no generated Python is checked in.

Message classes are typed ``Any``: they are made at run time, so there is nothing for mypy to
check attribute access against.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from types import SimpleNamespace
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

PACKAGE = "inference"
SERVICE = f"{PACKAGE}.GRPCInferenceService"
DESCRIPTOR_FILE = "inference.binpb"

RPCS: dict[str, tuple[str, str]] = {
    "ServerLive": ("ServerLiveRequest", "ServerLiveResponse"),
    "ServerReady": ("ServerReadyRequest", "ServerReadyResponse"),
    "ModelReady": ("ModelReadyRequest", "ModelReadyResponse"),
    "ServerMetadata": ("ServerMetadataRequest", "ServerMetadataResponse"),
    "ModelMetadata": ("ModelMetadataRequest", "ModelMetadataResponse"),
    "ModelInfer": ("ModelInferRequest", "ModelInferResponse"),
    "RepositoryIndex": ("RepositoryIndexRequest", "RepositoryIndexResponse"),
    "RepositoryModelLoad": ("RepositoryModelLoadRequest", "RepositoryModelLoadResponse"),
    "RepositoryModelUnload": ("RepositoryModelUnloadRequest", "RepositoryModelUnloadResponse"),
}
"""Every RPC of ``inference.GRPCInferenceService`` modelrouter serves: request, response."""


def method_path(rpc: str) -> str:
    """The HTTP/2 path of an RPC, e.g. ``/inference.GRPCInferenceService/ModelInfer``."""
    return f"/{SERVICE}/{rpc}"


def descriptor_set() -> descriptor_pb2.FileDescriptorSet:
    """The compiled ``inference.proto`` shipped in the package."""
    data = resources.files("modelrouter.protocol.proto").joinpath(DESCRIPTOR_FILE).read_bytes()
    return descriptor_pb2.FileDescriptorSet.FromString(data)


@cache
def messages() -> Any:
    """A namespace of message classes by name: ``messages().ModelInferRequest``."""
    pool = descriptor_pool.DescriptorPool()
    for file in descriptor_set().file:
        pool.Add(file)
    names = {name for pair in RPCS.values() for name in pair}
    names |= {"InferParameter", "InferTensorContents", "ModelRepositoryParameter"}
    classes = {
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{PACKAGE}.{name}"))
        for name in sorted(names)
    }
    return SimpleNamespace(**classes)
