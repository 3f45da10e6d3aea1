"""The HTTP edge: header limits, request-id rules, encoded slashes, the bounded parser."""

from __future__ import annotations

import asyncio
import os
import re
import time
import uuid
from typing import Any

import orjson
import pytest

from modelrouter.api.edge import (
    EdgeMiddleware,
    HeaderLimits,
    bounded_http_protocol,
    check_head,
    new_request_id,
)
from modelrouter.errors import HeadersTooLarge, InvalidInput, UriTooLong

LIMITS = HeaderLimits(max_count=10, max_one=100, max_total=300)


def scope(headers: list[tuple[bytes, bytes]], raw_path: bytes = b"/v2", query: bytes = b"") -> Any:
    return {"type": "http", "headers": headers, "raw_path": raw_path, "query_string": query}


def test_a_normal_request_passes_and_yields_its_id() -> None:
    assert check_head(scope([(b"x-request-id", b"abc-1")]), LIMITS) == b"abc-1"
    assert check_head(scope([(b"host", b"h")]), LIMITS) is None


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ([(b"x", b"1")] * 11, "11 headers; at most 10"),
        ([(b"x-big", b"v" * 100)], "header 'x-big': 105 bytes"),
        ([(b"x", b"v" * 90)] * 4, "364 bytes in all; at most 300"),
    ],
)
def test_header_limits(headers: list[tuple[bytes, bytes]], fragment: str) -> None:
    with pytest.raises(HeadersTooLarge) as err:
        check_head(scope(headers), LIMITS)
    assert fragment in err.value.message
    assert err.value.status.http == 431


@pytest.mark.parametrize("rid", [b"", b"r" * 129, b"a b", b"a\r\nb", "é".encode(), b"a/b", b"%41"])
def test_request_id_alphabet_and_length(rid: bytes) -> None:
    if rid == b"":
        assert check_head(scope([(b"x-request-id", rid)]), LIMITS) is None  # absent
        return
    with pytest.raises(InvalidInput) as err:
        check_head(scope([(b"x-request-id", rid)], HeaderLimits()), HeaderLimits())
    assert err.value.message.startswith("x-request-id: must be 1-128 characters")


@pytest.mark.parametrize("path", [b"/v2/models/a%2Fb/infer", b"/v2/models/a%2fb", b"/x%2F"])
def test_encoded_slash_is_refused(path: bytes) -> None:
    with pytest.raises(InvalidInput) as err:
        check_head(scope([], path), LIMITS)
    assert err.value.message.startswith("path: an encoded '/' (%2F)")
    check_head(scope([], b"/v2/models/a%20b"), LIMITS)  # other escapes are fine


def test_long_target_is_a_414() -> None:
    with pytest.raises(UriTooLong) as err:
        check_head(scope([], b"/v2", b"q=" + b"x" * 300), LIMITS)
    assert err.value.status.http == 414
    assert "path:" in err.value.message


def run(app: Any, headers: list[tuple[bytes, bytes]]) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    async def receive() -> Any:
        return {"type": "http.request", "body": b""}

    async def send(message: Any) -> None:
        sent.append(message)

    asyncio.run(app(scope(headers), receive, send))
    return sent


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    assert len(scope["state"]["request_id"]) in (5, 32)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_middleware_refuses_without_calling_the_app() -> None:
    called = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(1)

    sent = run(EdgeMiddleware(app, LIMITS), [(b"x", b"1")] * 11)
    assert not called
    start, body = sent
    assert start["status"] == 431
    headers = dict(start["headers"])
    assert headers[b"content-type"] == b"application/json"
    assert len(headers[b"x-request-id"]) == 32
    assert orjson.loads(body["body"]) == {"error": "headers: 11 headers; at most 10 are allowed"}


def test_middleware_echoes_or_makes_the_id() -> None:
    sent = run(EdgeMiddleware(ok_app, LIMITS), [(b"x-request-id", b"abc-1")])
    assert (b"x-request-id", b"abc-1") in sent[0]["headers"]
    sent = run(EdgeMiddleware(ok_app, LIMITS), [])
    (rid,) = [v for k, v in sent[0]["headers"] if k == b"x-request-id"]
    assert len(rid) == 32


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def test_bounded_protocol_closes_a_head_that_grows_past_the_limit() -> None:
    cls = bounded_http_protocol(1000)
    assert cls is not None
    proto = cls.__new__(cls)  # only data_received and its parser state are exercised
    transport = FakeTransport()
    fed: list[bytes] = []
    proto.transport = transport
    proto.parser = type("P", (), {"feed_data": lambda self, d: fed.append(d)})()
    proto._unset_keepalive_if_required = lambda: None
    proto.data_received(b"GET / HTTP/1.1\r\nx-big: " + b"v" * 500)
    assert not transport.closed
    proto.data_received(b"v" * 600)
    assert transport.closed
    assert transport.written.startswith(b"HTTP/1.1 431 ")
    assert b"refused before it is read whole" in transport.written
    # once the head is complete the body is not counted
    proto2 = cls.__new__(cls)
    proto2.transport = FakeTransport()
    proto2.parser = proto.parser
    proto2._unset_keepalive_if_required = lambda: None
    proto2._in_head = False
    proto2.data_received(b"b" * 5000)
    assert not proto2.transport.closed


def test_new_request_ids_are_distinct_hex_across_pool_refills() -> None:
    ids = [new_request_id() for _ in range(3 * new_request_id.BATCH + 5)]
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and re.fullmatch(rb"[0-9a-f]{32}", i) for i in ids)


def test_new_request_ids_are_uuid7_ordered_by_time() -> None:
    before = time.time_ns() // 1_000_000
    first = new_request_id()
    time.sleep(0.002)
    second = new_request_id()
    after = time.time_ns() // 1_000_000
    for rid in (first, second):
        parsed = uuid.UUID(hex=rid.decode())
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert before <= int(rid[:12], 16) <= after  # Unix time in ms leads
    assert first < second  # a later id sorts after: audit index entries go at the end
    # the random bits vary: 2,000 ids in a millisecond or two are still all distinct
    assert len({new_request_id()[12:] for _ in range(2000)}) == 2000


def test_a_forked_child_does_not_reuse_the_parents_pooled_ids() -> None:
    new_request_id()  # the pool is filled: a child that kept it would repeat the next ids
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write, new_request_id())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64)
    os.close(read)
    os.waitpid(pid, 0)
    parent = new_request_id()
    assert len(child) == 32
    assert child[13:] != parent[13:]  # the random bits, not only the time, differ
