"""A small gRPC client over modelrouter's own messages, for in-process tests.

Peers' clients (tritonclient, KServe) run in their own processes (tests/peers.py); this one
shares the process with the gateway, which is safe because modelrouter's messages live in a
private descriptor pool.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import grpc

from modelrouter.protocol.pb import RPCS, messages, method_path


class Client:
    """``client.ModelInfer(request, metadata=...)`` -> (response, trailing metadata dict)."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.insecure_channel(target)
        self.m = messages()
        self._calls = {
            rpc: self.channel.unary_unary(
                method_path(rpc),
                request_serializer=getattr(self.m, req).SerializeToString,
                response_deserializer=getattr(self.m, resp).FromString,
            )
            for rpc, (req, resp) in RPCS.items()
        }

    def call(
        self, rpc: str, request: Any = None, metadata: Sequence[tuple[str, str]] = ()
    ) -> tuple[Any, dict[str, str]]:
        if request is None:
            request = getattr(self.m, RPCS[rpc][0])()
        response, call = self._calls[rpc].with_call(request, metadata=tuple(metadata), timeout=30)
        return response, dict(call.trailing_metadata() or ())

    def error(
        self, rpc: str, request: Any = None, metadata: Sequence[tuple[str, str]] = ()
    ) -> grpc.RpcError:
        """The error a call ends with (fails the test when it succeeds)."""
        try:
            self.call(rpc, request, metadata)
        except grpc.RpcError as exc:
            return exc
        raise AssertionError(f"{rpc} succeeded")

    def close(self) -> None:
        self.channel.close()


@contextlib.contextmanager
def client(target: str) -> Iterator[Client]:
    c = Client(target)
    try:
        yield c
    finally:
        c.close()


def infer_request(model: str, inputs: dict[str, Any], version: str = "", **fields: Any) -> Any:
    """A ModelInferRequest with typed FP64 contents from ``{name: 2-D list}``."""
    m = messages()
    req = m.ModelInferRequest(model_name=model, model_version=version, **fields)
    for name, rows in inputs.items():
        t = req.inputs.add(name=name, datatype="FP64", shape=[len(rows), len(rows[0])])
        t.contents.fp64_contents.extend(v for row in rows for v in row)
    return req
