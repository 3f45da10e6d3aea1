"""A small HTTP/1.1 keep-alive client for one origin: the remote runtime's proxy path.

Chosen by measurement (``bench/proxy_clients.py``): a general client (httpx, about 1 ms of CPU a
call here; aiohttp; httpcore) spends most of its time on features a proxy to one Open Inference
Protocol server does not use. This one writes the request in one buffer, parses the answer with
``httptools`` (llhttp, the parser uvicorn uses), and keeps idle connections in a LIFO stack, so
a call costs a pop and a push, not a scan of the pool.

Scope, on purpose: one origin (``http`` or ``https``), ``Content-Length`` request bodies,
answers framed by ``Content-Length`` or chunked (as every OIP server sends them; an answer
delimited by closing the connection is refused), no redirects, no cookies, no proxies.
Timeouts are the caller's (``asyncio.timeout`` around :meth:`Http1Pool.request`); a call
cancelled mid-flight closes its connection instead of returning it.

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
from dataclasses import dataclass
from typing import cast

import httptools


class ConnectionFailed(Exception):
    """The connection broke or the answer was not HTTP; ``before_answer``: nothing arrived."""

    def __init__(self, message: str, before_answer: bool) -> None:
        super().__init__(message)
        self.before_answer = before_answer


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: dict[bytes, bytes]
    """Lower-case names; the last value of a repeated header."""
    body: bytes
    reason: str = ""


class _Connection(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.waiter: asyncio.Future[HttpResponse] | None = None
        self.headers: dict[bytes, bytes] = {}
        self.chunks: list[bytes] = []
        self.answered = False
        self.closed = False
        self.idle_since = 0.0
        self.uses = 0

    # -------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses, but behave as ones
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
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

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.lower()] = value

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        waiter = self.waiter
        if waiter is None or waiter.done():
            return
        status = self.parser.get_status_code()
        body = self.chunks[0] if len(self.chunks) == 1 else b"".join(self.chunks)
        if not self.parser.should_keep_alive():
            self.close()
        waiter.set_result(HttpResponse(status, self.headers, body))

    # -------------------------------------------------------------- use

    def _fail(self, exc: ConnectionFailed) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(exc)
        self.close()

    def send(self, data: bytes) -> asyncio.Future[HttpResponse]:
        assert self.transport is not None
        self.headers = {}
        self.chunks = []
        self.answered = False
        self.uses += 1
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


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
    ) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.keepalive_expiry = keepalive_expiry
        self._idle: deque[_Connection] = deque()
        self._slots = asyncio.Semaphore(max_connections)
        authority = host if port in (80, 443) else f"{host}:{port}"
        self._host_header = f"host: {authority}\r\n".encode("latin-1")
        self._closed = False

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            transport, conn = await loop.create_connection(
                _Connection,
                self.host,
                self.port,
                ssl=self.tls,
                server_hostname=None if self.tls is None else self.host,
            )
        except OSError as exc:
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

    def _encode(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str] | None
    ) -> bytes:
        parts = [f"{method} {path} HTTP/1.1\r\n".encode("latin-1"), self._host_header]
        if headers:
            text = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
            if text.count("\n") != len(headers) or "\r" in text.replace("\r\n", ""):
                raise ValueError("a header name or value holds a line break")
            parts.append(text.encode("latin-1"))  # UnicodeEncodeError is a ValueError too
        if body is not None:
            parts.append(b"content-length: %d\r\n\r\n" % len(body))
            parts.append(body)
        else:
            parts.append(b"\r\n")
        return b"".join(parts)

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> HttpResponse:
        """One call. Raises :class:`ConnectionFailed` when the server cannot be reached or
        breaks the connection."""
        if self._closed:
            raise ConnectionFailed("the client is closed", True)
        data = self._encode(method, path, body, headers)
        async with self._slots:
            conn = self._take_idle()
            reused = conn is not None
            if conn is None:
                conn = await self._connect()
            try:
                try:
                    response = await conn.send(data)
                except ConnectionFailed as exc:
                    if not (reused and exc.before_answer):
                        raise
                    conn = await self._connect()  # the idle connection was closed: once more
                    response = await conn.send(data)
            except BaseException:
                conn.close()
                raise
            if not conn.closed:
                conn.idle_since = time.monotonic()
                self._idle.append(conn)
            return response

    async def aclose(self) -> None:
        self._closed = True
        while self._idle:
            self._idle.pop().close()
