"""A small HTTP/1.1 keep-alive client for one origin: the remote runtime's proxy path.

Chosen by measurement (``bench/proxy_clients.py``): a general client (httpx, about 1 ms of CPU a
call here; aiohttp; httpcore) spends most of its time on features a proxy to one Open Inference
Protocol server does not use. This one writes each request as one buffer in one ``write``,
parses the answer with ``httptools`` (llhttp, the parser uvicorn uses) without building a dict
of headers unless asked to (``keep_headers``), and keeps idle connections in a LIFO stack, so a
call costs a pop and a push, not a scan of the pool.

Per call, the common case (a connection slot free, an idle connection at hand) awaits nothing
but the answer: the slot is a counter, not an :class:`asyncio.Semaphore` (whose ``acquire``
scans its waiters), and the call's ``timeout`` is one ``loop.call_at`` timer that fails the
answer's future, not an ``asyncio.timeout`` block (a context manager, a task cancellation and
an ``uncancel`` per call). The slow paths (waiting for a slot, connecting) run under
``asyncio.timeout_at`` with the same deadline.

Scope, on purpose: one origin (``http`` or ``https``), ``Content-Length`` request bodies,
answers framed by ``Content-Length`` or chunked (as every OIP server sends them; an answer
delimited by closing the connection is refused), no redirects, no cookies, no proxies. A call
cancelled or timed out mid-flight closes its connection instead of returning it.

A request that fails on a *reused* connection before any byte of an answer arrived (the server
closed it while idle) is sent once more on a new connection: inference calls are safe to
repeat, and this is the race every keep-alive client meets.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import cast

import httptools

_NO_HEADERS: Mapping[bytes, bytes] = MappingProxyType({})


class ConnectionFailed(Exception):
    """The connection broke or the answer was not HTTP; ``before_answer``: nothing arrived."""

    def __init__(self, message: str, before_answer: bool) -> None:
        super().__init__(message)
        self.before_answer = before_answer


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: Mapping[bytes, bytes]
    """Lower-case names; the last value of a repeated header. Empty unless the pool keeps
    headers (``keep_headers``)."""
    body: bytes


class _Connection(asyncio.Protocol):
    """One connection; its parser calls back only for the body and the end of the answer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[HttpResponse] | None = None
        self.headers: Mapping[bytes, bytes] = _NO_HEADERS
        self.chunks: list[bytes] = []
        self.answered = False
        self.closed = False
        self.idle_since = 0.0

    # -------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as ones
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:  # asyncio and uvloop set it already; a TLS transport may not
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(ConnectionFailed(f"the answer is not valid HTTP: {exc}", False))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        detail = f": {exc}" if exc else ""
        self._fail(ConnectionFailed(f"the connection closed{detail}", not self.answered))

    # -------------------------------------------------------------- httptools callbacks

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        status = self.parser.get_status_code()
        chunks = self.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        if not self.parser.should_keep_alive():
            self.close()
        waiter.set_result(HttpResponse(status, self.headers, body))

    # -------------------------------------------------------------- use

    def _fail(self, exc: ConnectionFailed) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def send(self, data: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[HttpResponse]:
        assert self.transport is not None
        self.chunks = []
        self.answered = False
        self.waiter = waiter = loop.create_future()
        self.transport.write(data)
        return waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _HeaderConnection(_Connection):
    """A connection that also keeps the answer's headers (``keep_headers``)."""

    def send(self, data: bytes, loop: asyncio.AbstractEventLoop) -> asyncio.Future[HttpResponse]:
        self.headers = {}
        return super().send(data, loop)

    def on_header(self, name: bytes, value: bytes) -> None:
        cast(dict[bytes, bytes], self.headers)[name.lower()] = value


def _expire(waiter: asyncio.Future[HttpResponse]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class Http1Pool:
    """Keep-alive connections to one ``scheme://host:port``, at most ``max_connections``."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: ssl.SSLContext | None = None,
        max_connections: int = 100,
        keepalive_expiry: float = 4.0,
        keep_headers: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.keepalive_expiry = keepalive_expiry
        self._protocol = _HeaderConnection if keep_headers else _Connection
        self._idle: deque[_Connection] = deque()
        self._max = max_connections
        self._active = 0
        self._slot_waiters: deque[asyncio.Future[None]] = deque()
        authority = host if port in (80, 443) else f"{host}:{port}"
        self._host_header = f"host: {authority}\r\n".encode("latin-1")
        self._closed = False

    def head(self, method: str, path: str, headers: Mapping[str, str] | None = None) -> bytes:
        """The start of a request: its request line, ``host`` and ``headers``, each line
        ending in CRLF, for :meth:`send`. Raises :class:`ValueError` for a header that holds a
        line break or is not latin-1."""
        parts = [f"{method} {path} HTTP/1.1\r\n".encode("latin-1"), self._host_header]
        if headers:
            text = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            if text.count("\n") != len(headers) or "\r" in text.replace("\r\n", ""):
                raise ValueError("a header name or value holds a line break")
            parts.append(text.encode("latin-1"))  # UnicodeEncodeError is a ValueError too
        return b"".join(parts)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        *,
        timeout: float | None = None,  # noqa: ASYNC109 (a timer, cheaper: see the module doc)
    ) -> HttpResponse:
        """One call; see :meth:`send`."""
        return await self.send(self.head(method, path, headers), body, timeout)

    async def send(
        self,
        head: bytes,
        body: bytes | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (a timer, cheaper: see the module doc)
    ) -> HttpResponse:
        """One call: ``head`` (from :meth:`head`, plus any further complete header lines the
        caller vouches for) and ``body``, written as one buffer. Raises
        :class:`ConnectionFailed` when the server cannot be reached or breaks the connection,
        :class:`TimeoutError` when the whole call (waiting for a slot, connecting, sending,
        the answer) takes more than ``timeout`` seconds."""
        if self._closed:
            raise ConnectionFailed("the client is closed", True)
        if body is None:
            data = head + b"\r\n"
        else:
            data = b"%scontent-length: %d\r\n\r\n%s" % (head, len(body), body)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        if self._active < self._max and not self._slot_waiters:
            self._active += 1
        else:
            await self._wait_for_slot(deadline)
        try:
            conn = self._take_idle()
            reused = conn is not None
            if conn is None:
                conn = await self._connect(deadline)
            try:
                try:
                    response = await self._exchange(conn, data, loop, deadline)
                except ConnectionFailed as exc:
                    if not (reused and exc.before_answer):
                        raise
                    conn = await self._connect(deadline)  # the idle one was closed: once more
                    response = await self._exchange(conn, data, loop, deadline)
            except BaseException:
                conn.close()
                raise
            if not conn.closed:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            return response
        finally:
            self._release()

    @staticmethod
    async def _exchange(
        conn: _Connection,
        data: bytes,
        loop: asyncio.AbstractEventLoop,
        deadline: float | None,
    ) -> HttpResponse:
        waiter = conn.send(data, loop)
        if deadline is None:
            return await waiter
        timer = loop.call_at(deadline, _expire, waiter)
        try:
            return await waiter
        finally:
            timer.cancel()

    async def _wait_for_slot(self, deadline: float | None) -> None:
        """Wait until a finishing call hands this one its slot (first come, first served)."""
        slot: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._slot_waiters.append(slot)
        try:
            async with asyncio.timeout_at(deadline):
                await slot
        except BaseException:
            if slot.done() and not slot.cancelled():
                self._release()  # handed over just as this call gave up: pass it on
            else:
                slot.cancel()
                self._slot_waiters.remove(slot)
            raise

    def _release(self) -> None:
        waiters = self._slot_waiters
        while waiters:
            slot = waiters.popleft()
            if not slot.done():
                slot.set_result(None)  # the slot passes on: _active stays
                return
        self._active -= 1

    async def _connect(self, deadline: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        limit = asyncio.timeout_at(deadline)
        try:
            async with limit:
                transport, conn = await loop.create_connection(
                    self._protocol,
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=None if self.tls is None else self.host,
                )
        except OSError as exc:
            if limit.expired():  # the call's deadline (TimeoutError is an OSError too)
                raise
            raise ConnectionFailed(
                f"cannot connect: {exc.strerror or type(exc).__name__}", True
            ) from None
        conn.transport = transport  # uvloop may call connection_made after returning
        return conn

    def _take_idle(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed and now - conn.idle_since < self.keepalive_expiry:
                return conn
            conn.close()
        return None

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
