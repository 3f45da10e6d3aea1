"""The remote runtime's HTTP/1.1 pool against a scripted asyncio server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from modelrouter.runtime.http1 import ConnectionFailed, Http1Pool

OK = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[bool]]
"""Answers one request on a connection (its 0-based count there); False closes it."""


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    return head + await reader.readexactly(length)


class Server:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        n = 0
        try:
            while True:
                self.requests.append(await read_request(reader))
                if not await self.handler(reader, writer, n):
                    break
                n += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def __aenter__(self) -> int:
        self.server = await asyncio.start_server(self.serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def __aexit__(self, *exc: object) -> None:
        self.server.close()


async def ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> bool:
    writer.write(OK)
    await writer.drain()
    return True


def test_keep_alive_reuses_one_connection_and_sends_the_body() -> None:
    async def main() -> None:
        server = Server(ok)
        async with server as port:
            pool = Http1Pool("127.0.0.1", port, keep_headers=True)
            for _ in range(5):
                r = await pool.request("POST", "/v2/x", b'{"a":1}', {"x-request-id": "r1"})
                assert (r.status, r.body, r.headers[b"content-type"]) == (
                    200,
                    b"{}",
                    b"application/json",
                )
            await pool.aclose()
            bare = Http1Pool("127.0.0.1", port)  # headers are parsed past, not kept
            r = await bare.send(bare.head("GET", "/"), None, 5.0)
            assert (r.status, r.body, dict(r.headers)) == (200, b"{}", {})
            await bare.aclose()
        assert server.connections == 2
        first = server.requests[0]
        assert first.startswith(b"POST /v2/x HTTP/1.1\r\nhost: 127.0.0.1:")
        assert b"x-request-id: r1\r\n" in first
        assert first.endswith(b'content-length: 7\r\n\r\n{"a":1}')

    asyncio.run(main())


def test_an_idle_connection_the_server_closed_is_retried_once() -> None:
    async def close_after_answer(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> bool:
        w.write(OK)
        await w.drain()
        return False  # closes without saying so (no connection: close)

    async def main() -> None:
        server = Server(close_after_answer)
        async with server as port:
            pool = Http1Pool("127.0.0.1", port)
            for _ in range(3):
                assert (await pool.request("GET", "/")).status == 200
                await asyncio.sleep(0.05)  # let the close arrive
            await pool.aclose()
        assert server.connections == 3

    asyncio.run(main())


def test_connection_close_and_chunked_answers() -> None:
    async def varied(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> bool:
        if n == 0:
            w.write(
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            )
            await w.drain()
            return True
        w.write(b"HTTP/1.1 503 Busy\r\ncontent-length: 4\r\nconnection: close\r\n\r\nbusy")
        await w.drain()
        return False

    async def main() -> None:
        server = Server(varied)
        async with server as port:
            pool = Http1Pool("127.0.0.1", port)
            assert (await pool.request("GET", "/")).body == b"abcde"
            r = await pool.request("GET", "/")
            assert (r.status, r.body) == (503, b"busy")
            assert (await pool.request("GET", "/")).body == b"abcde"  # a new connection
            await pool.aclose()
        assert server.connections == 2

    asyncio.run(main())


def test_refused_and_garbage_are_connection_failures() -> None:
    async def garbage(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> bool:
        w.write(b"SMTP ready\r\n\r\n")
        await w.drain()
        return True

    async def main() -> None:
        server = Server(garbage)
        async with server as port:
            pool = Http1Pool("127.0.0.1", port)
            with pytest.raises(ConnectionFailed, match="not valid HTTP"):
                await pool.request("GET", "/")
            await pool.aclose()
        pool = Http1Pool("127.0.0.1", port)
        with pytest.raises(ConnectionFailed, match="cannot connect") as info:
            await pool.request("GET", "/")
        assert info.value.before_answer

    asyncio.run(main())


def test_a_cancelled_call_closes_its_connection() -> None:
    async def slow_first(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> bool:
        if len(server.requests) == 1:
            await asyncio.sleep(0.5)
        w.write(OK)
        await w.drain()
        return True

    server = Server(slow_first)

    async def main() -> None:
        async with server as port:
            pool = Http1Pool("127.0.0.1", port)
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.1):
                    await pool.request("GET", "/slow")
            # the late answer of the first call must not be taken for the second one's
            assert (await pool.request("GET", "/next")).status == 200
            await pool.aclose()
        assert server.connections == 2

    asyncio.run(main())


def test_at_most_max_connections() -> None:
    async def main() -> None:
        async def slowish(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> bool:
            await asyncio.sleep(0.01)
            return await ok(r, w, n)

        server = Server(slowish)
        async with server as port:
            pool = Http1Pool("127.0.0.1", port, max_connections=3)
            answers = await asyncio.gather(*(pool.request("GET", "/") for _ in range(30)))
            assert {a.status for a in answers} == {200}
            await pool.aclose()
        assert server.connections == 3

    asyncio.run(main())


def test_a_reused_connection_closed_before_the_answer_is_retried_once() -> None:
    async def drop_second(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> bool:
        if n == 1:
            return False  # closes without answering, as a server ending keep-alive does
        return await ok(r, w, n)

    async def main() -> None:
        server = Server(drop_second)
        async with server as port:
            pool = Http1Pool("127.0.0.1", port)
            assert (await pool.request("POST", "/", b"1")).status == 200
            assert (await pool.request("POST", "/", b"2")).status == 200
            await pool.aclose()
        assert server.connections == 2
        assert [req[-1:] for req in server.requests] == [b"1", b"2", b"2"]

    asyncio.run(main())


def test_a_fresh_connection_closed_before_the_answer_is_not_retried() -> None:
    async def drop(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> bool:
        return False

    async def main() -> None:
        server = Server(drop)
        async with server as port:
            pool = Http1Pool("127.0.0.1", port)
            with pytest.raises(ConnectionFailed, match="the connection closed"):
                await pool.request("POST", "/", b"1")
            await pool.aclose()
        assert server.connections == 1

    asyncio.run(main())


def test_the_timeout_fails_the_call_and_closes_its_connection() -> None:
    async def slow_first(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> bool:
        if len(server.requests) == 1:
            await asyncio.sleep(0.5)
        w.write(OK)
        await w.drain()
        return True

    server = Server(slow_first)

    async def main() -> None:
        async with server as port:
            pool = Http1Pool("127.0.0.1", port)
            started = asyncio.get_running_loop().time()
            with pytest.raises(TimeoutError):
                await pool.request("GET", "/slow", timeout=0.1)
            assert asyncio.get_running_loop().time() - started < 0.4
            assert (await pool.request("GET", "/next", timeout=5)).status == 200
            await pool.aclose()
        assert server.connections == 2

    asyncio.run(main())


def held_first() -> tuple[Server, asyncio.Event]:
    """A server that holds its first request until the event is set, answering the rest at
    once (a pool of one connection then has its slot taken)."""
    release = asyncio.Event()

    async def held(r: asyncio.StreamReader, w: asyncio.StreamWriter, n: int) -> bool:
        if len(server.requests) == 1:
            await release.wait()
        return await ok(r, w, n)

    server = Server(held)
    return server, release


def test_a_call_waiting_for_a_slot_times_out_and_gives_no_slot_away() -> None:
    server, release = held_first()

    async def main() -> None:
        async with server as port:
            pool = Http1Pool("127.0.0.1", port, max_connections=1)
            first = asyncio.create_task(pool.request("GET", "/held"))
            await asyncio.sleep(0.05)
            with pytest.raises(TimeoutError):  # no slot within the deadline
                await pool.request("GET", "/waits", timeout=0.1)
            waiting = asyncio.create_task(pool.request("GET", "/queued", timeout=5))
            await asyncio.sleep(0.05)
            release.set()
            assert (await first).status == 200
            assert (await waiting).status == 200  # handed the slot the first call freed
            # one slot still: calls in a row reuse the one connection
            for _ in range(3):
                assert (await pool.request("GET", "/", timeout=5)).status == 200
            await pool.aclose()
        assert server.connections == 1
        paths = [q.split(b" ")[1] for q in server.requests]
        assert paths == [b"/held", b"/queued", b"/", b"/", b"/"]

    asyncio.run(main())


def test_a_cancelled_slot_waiter_leaves_the_queue() -> None:
    server, release = held_first()

    async def main() -> None:
        async with server as port:
            pool = Http1Pool("127.0.0.1", port, max_connections=1)
            first = asyncio.create_task(pool.request("GET", "/held"))
            await asyncio.sleep(0.05)
            gone = asyncio.create_task(pool.request("GET", "/gone"))
            await asyncio.sleep(0.05)
            gone.cancel()
            with pytest.raises(asyncio.CancelledError):
                await gone
            release.set()
            assert (await first).status == 200
            assert (await pool.request("GET", "/after", timeout=5)).status == 200
            await pool.aclose()
        assert [q.split(b" ")[1] for q in server.requests] == [b"/held", b"/after"]

    asyncio.run(main())
