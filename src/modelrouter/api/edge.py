"""The HTTP edge: what every request passes before any route sees it.

:class:`EdgeMiddleware` (pure ASGI) does, in one pass over the headers:

- header limits: more than ``maxHeaderCount`` headers, one header (name and value) over
  ``maxHeaderSize`` bytes, or all of them over ``maxHeaderListSize``: 431;
- ``x-request-id``: the caller's when it is 1-128 characters of ``A-Z a-z 0-9 . _ : + = -``,
  refused with a 400 otherwise (it is echoed, logged and stored in the audit log, so it must
  be short and safe); a new random id when absent. Every response carries it;
- a path and query string longer than ``maxHeaderListSize``: 414;
- an encoded slash (``%2F``) in the path: 400. Starlette routes on the decoded path, so
  ``/v2/models/a%2Fversions%2Fv1/infer`` would otherwise reach the pinned route of model ``a``.

These checks see the headers only once the server has parsed them. So that a client cannot
make the server buffer megabytes of header first, :func:`bounded_http_protocol` gives uvicorn
an httptools protocol that closes a connection whose request head is still incomplete past
the same total limit, with a 431.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelrouter.errors import HeadersTooLarge, InvalidInput, ModelRouterError, UriTooLong

REQUEST_ID = b"x-request-id"
MAX_REQUEST_ID = 128
_REQUEST_ID_OK = re.compile(rb"[A-Za-z0-9._:+=\-]{1,128}").fullmatch
_JSON = (b"content-type", b"application/json")
REQUEST_ID_RULE = f"x-request-id: must be 1-{MAX_REQUEST_ID} characters of A-Z a-z 0-9 . _ : + = -"


def valid_request_id(rid: str) -> bool:
    """Whether a caller's request id may be used as it is (echoed, logged, audited)."""
    return rid.isascii() and _REQUEST_ID_OK(rid.encode()) is not None


@dataclass(frozen=True, slots=True)
class HeaderLimits:
    """Bounds on a request's headers (``server.http`` in the config file)."""

    max_count: int = 100
    max_one: int = 8 * 1024
    max_total: int = 32 * 1024


class _RequestIds:
    """UUIDv7 ids as 32 hex characters: 48 bits of Unix time in milliseconds, then 74 random
    bits (with the version and variant bits of RFC 9562), random bits from ``os.urandom`` drawn
    for 256 ids at a time.

    Time first, because the id is an index column of the audit log: random ids (uuid4) put
    every new record's index entry on a random page of that index, and once it outgrew
    SQLite's page cache each record read and rewrote a page of it (bench/README.md). One
    ``getrandom`` system call per id showed as 3% of a loaded gateway's CPU (a system call is
    where a busy machine preempts the process); the bits are the same, fetched in bulk. A
    forked child (``--workers``) drops the pool it inherited, so no two processes share ids.
    """

    BATCH = 256

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tails: list[bytes] = []
        self._ms = -1
        self._prefix = b""

    def __call__(self) -> bytes:
        with self._lock:
            if not self._tails:
                self._tails = _tails(self.BATCH)
            tail = self._tails.pop()
            ms = time.time_ns() // 1_000_000
            if ms != self._ms:
                self._ms, self._prefix = ms, b"%012x" % ms
            return self._prefix + tail

    def reset(self) -> None:
        with self._lock:
            self._tails = []


def _tails(n: int) -> list[bytes]:
    """``n`` id tails of 20 hex digits: the version digit 7, three random digits, the variant
    digit (``10`` and two random bits), fifteen random digits."""
    digits = os.urandom(10 * n).hex().encode()
    return [
        b"7" + digits[i : i + 3] + _VARIANT[digits[i + 3]] + digits[i + 4 : i + 19]
        for i in range(0, 20 * n, 20)
    ]


_VARIANT = {ord(c): "89ab"[int(c, 16) & 3].encode() for c in "0123456789abcdef"}
"""A random hex digit -> the variant digit ``10xx`` keeping its two low bits."""

new_request_id = _RequestIds()
"""A new request id: a UUIDv7 as 32 lower-case hex characters (time-ordered, 74 random bits)."""
os.register_at_fork(after_in_child=new_request_id.reset)


def check_head(scope: Scope, limits: HeaderLimits) -> bytes | None:
    """The caller's request id (None when absent); raises the error for a refused request."""
    headers = scope["headers"]
    if len(headers) > limits.max_count:
        raise HeadersTooLarge(
            f"headers: {len(headers)} headers; at most {limits.max_count} are allowed"
        )
    rid = None
    total = 0
    for name, value in headers:
        size = len(name) + len(value)
        total += size
        if size > limits.max_one:
            shown = name[:64].decode("latin-1")
            raise HeadersTooLarge(
                f"header {shown!r}: {size} bytes; one header may have at most {limits.max_one}"
            )
        if name == REQUEST_ID:
            rid = value
    if total > limits.max_total:
        raise HeadersTooLarge(
            f"headers: {total} bytes in all; at most {limits.max_total} are allowed"
        )
    if rid and _REQUEST_ID_OK(rid) is None:
        raise InvalidInput(
            f"{REQUEST_ID_RULE} "
            f"(got {len(rid)} bytes{' with others' if len(rid) <= MAX_REQUEST_ID else ''})"
        )
    raw = scope.get("raw_path") or b""
    target = len(raw) + len(scope.get("query_string") or b"")
    if target > limits.max_total:
        raise UriTooLong(
            f"path: {target} bytes of path and query string; at most {limits.max_total}"
        )
    if b"%" in raw and b"%2f" in raw.lower():
        raise InvalidInput(
            "path: an encoded '/' (%2F) is not allowed; model, version and request ids cannot "
            "contain '/'"
        )
    return rid or None


class EdgeMiddleware:
    """Pure ASGI: the checks above, and ``x-request-id`` on every response."""

    def __init__(self, app: ASGIApp, limits: HeaderLimits | None = None) -> None:
        self.app = app
        self.limits = limits or HeaderLimits()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            rid = check_head(scope, self.limits)
        except ModelRouterError as exc:
            await refuse(send, exc)
            return
        if rid is None:
            rid = new_request_id()
        scope.setdefault("state", {})["request_id"] = rid.decode("latin-1")

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), (REQUEST_ID, rid)]
            await send(message)

        await self.app(scope, receive, send_with_id)


async def refuse(send: Send, exc: ModelRouterError) -> None:
    """The JSON error for ``exc``, with a fresh request id, without reading the body."""
    body = orjson.dumps({"error": exc.message})
    await send(
        {
            "type": "http.response.start",
            "status": exc.status.http,
            "headers": [
                _JSON,
                (b"content-length", str(len(body)).encode()),
                (REQUEST_ID, new_request_id()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def bounded_http_protocol(max_head: int) -> Any:
    """uvicorn's httptools protocol, closing connections whose head outgrows ``max_head``.

    httptools buffers a header until its end arrives, so a client sending an 8 MiB header
    holds 8 MiB of the server before any ASGI code runs. This protocol counts the bytes of a
    request whose headers are not complete yet; past ``max_head`` it answers 431 and closes.
    The cost is one comparison per chunk received, none per header. None when httptools is
    not installed (then uvicorn's h11 parser applies its own ``h11_max_incomplete_event_size``).
    """
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    except ImportError:  # pragma: no cover - httptools is part of uvicorn[standard]
        return None

    class BoundedHttpToolsProtocol(HttpToolsProtocol):
        _in_head = True
        _head_bytes = 0

        def on_headers_complete(self) -> None:
            self._in_head = False
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._in_head = True
            self._head_bytes = 0

        def data_received(self, data: bytes) -> None:
            if not self._in_head:
                super().data_received(data)
                return
            self._head_bytes += len(data)
            super().data_received(data)
            if self._in_head and self._head_bytes > max_head and not self.transport.is_closing():
                message = (
                    f"headers: the request head exceeds {max_head} bytes; "
                    "it is refused before it is read whole"
                )
                body = orjson.dumps({"error": message})
                self.transport.write(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\n"
                    b"content-type: application/json\r\n"
                    b"content-length: " + str(len(body)).encode() + b"\r\n"
                    b"x-request-id: " + new_request_id() + b"\r\n"
                    b"connection: close\r\n\r\n" + body
                )
                self.transport.close()

    return BoundedHttpToolsProtocol
