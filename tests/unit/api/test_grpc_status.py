"""Every error class leaves a gRPC call with the status of the one table in errors.py."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from modelrouter import errors
from modelrouter.api.grpc import _unary

CASES: list[tuple[errors.ModelRouterError, grpc.StatusCode]] = [
    (errors.ModelRouterError("boom"), grpc.StatusCode.INTERNAL),
    (errors.InvalidInput("bad"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.UnknownOutput("no such output"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.PayloadTooLarge("big"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.HeadersTooLarge("many"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.UriTooLong("long"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.Overloaded("full"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.NotFound("gone"), grpc.StatusCode.NOT_FOUND),
    (errors.ModelNotFound("m"), grpc.StatusCode.NOT_FOUND),
    (errors.VersionNotFound("m", "v"), grpc.StatusCode.NOT_FOUND),
    (errors.Unauthorized("token"), grpc.StatusCode.UNAUTHENTICATED),
    (errors.ModelNotReady("loading"), grpc.StatusCode.UNAVAILABLE),
    (errors.InferenceFailed("model raised"), grpc.StatusCode.INTERNAL),
    (errors.UpstreamError("refused"), grpc.StatusCode.UNAVAILABLE),
    (errors.UpstreamTimeout("slow"), grpc.StatusCode.DEADLINE_EXCEEDED),
    (errors.StoreError("db down"), grpc.StatusCode.UNAVAILABLE),
    (errors.Conflict("raced"), grpc.StatusCode.ABORTED),
    (errors.RolloutConflict("stepped meanwhile"), grpc.StatusCode.ABORTED),
    (errors.FaultInjected(418, "m", "r"), grpc.StatusCode.UNAVAILABLE),
    (errors.ConfigError("bad field", "a.b"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.ModelLoadError("cannot load"), grpc.StatusCode.INTERNAL),
]


def test_every_error_class_is_covered() -> None:
    def subclasses(cls: type) -> set[type]:
        out = {cls}
        for sub in cls.__subclasses__():
            out |= subclasses(sub)
        return out

    assert {type(e) for e, _ in CASES} == subclasses(errors.ModelRouterError)


async def _status_of(raised: BaseException) -> tuple[grpc.StatusCode, str]:
    async def rpc(request: bytes, context: object) -> bytes:
        raise raised

    rpc.__name__ = "Raise"
    handler = grpc.method_handlers_generic_handler(
        "test.Errors", {"Raise": grpc.unary_unary_rpc_method_handler(_unary(rpc))}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary("/test.Errors/Raise")
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(b"", timeout=10)
            return info.value.code(), info.value.details() or ""
    finally:
        await server.stop(None)


def test_status_per_error_class() -> None:
    async def all_cases() -> list[tuple[grpc.StatusCode, str]]:
        return [await _status_of(exc) for exc, _ in CASES]

    got = asyncio.run(all_cases())
    for (exc, code), (status, details) in zip(CASES, got, strict=True):
        assert status == code, type(exc).__name__
        assert status.name == exc.status.grpc
        assert details == exc.message


def test_unexpected_exception_is_internal_without_its_text() -> None:
    status, details = asyncio.run(_status_of(KeyError("secret path /etc/x")))
    assert status == grpc.StatusCode.INTERNAL
    assert details == "internal error: KeyError"
