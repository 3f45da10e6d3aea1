"""The gateway runner: one process's lifecycle, from the first store read to exit 0.

:class:`Gateway` starts, in order: the store and its followers (routing table, store watch,
config-file and alias watches, telemetry, audit retention), the audit writer, the shadow
runner and its worker process, the model versions, the rollout controllers
(:func:`modelrouter.app.running`), then the REST server (and, when it exists, the gRPC
server), so that nothing is served before what it calls is up. It stops them in reverse.

On SIGTERM (or SIGINT) it drains: readiness answers 503 at once and every request is still
served for ``server.shutdown.drain`` seconds, so load balancers take the gateway out first;
then it stops accepting connections, lets requests in flight finish for up to
``server.shutdown.timeout``, flushes the audit log, stops the shadow worker, and returns 0. A
second signal ends the drain early. :func:`modelrouter.app.create_app` stays the ASGI factory
that tests and other ASGI servers use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from modelrouter import gcpolicy
from modelrouter.api.native import gateway_http_protocol
from modelrouter.app import Services, build_services, create_app, running
from modelrouter.config.loader import LoadedConfig
from modelrouter.errors import ConfigError
from modelrouter.telemetry.workers import WorkerMetrics

log = logging.getLogger(__name__)

BACKLOG = 2048


ServerFactory = Callable[[Services], contextlib.AbstractAsyncContextManager[object]]
"""A server the gateway runs beside REST: entered once everything it calls is up, exited (it
finishes what is in flight) when the gateway stops."""


@dataclass(frozen=True, slots=True)
class WorkerSlot:
    """Where a gateway sits among the workers of ``serve --workers N``."""

    index: int
    metrics_dir: Path


REUSE_PORT = hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")
"""Linux spreads the connections of a port over every socket listening on it with
``SO_REUSEPORT``: each worker gets its own accept queue (a shared one lets the first worker
awake take a burst of connections while the other idles)."""


def bind(host: str, port: int, *, reuse_port: bool = False, listen: bool = True) -> socket.socket:
    """A TCP socket bound to ``host:port`` (listening unless ``listen`` is false: then it only
    holds the port for the workers' sockets), or :class:`ConfigError` naming
    ``server.http.port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
        if listen:
            sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        raise ConfigError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}", field="server.http.port"
        ) from None
    sock.set_inheritable(True)
    return sock


class _RestServer(uvicorn.Server):
    """uvicorn without its own signal handling: the :class:`Gateway` owns the signals (uvicorn
    would re-raise SIGTERM after its shutdown, and the process would not exit 0)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def for_worker(loaded: LoadedConfig, slot: WorkerSlot) -> LoadedConfig:
    """The config as worker ``slot`` runs it: a configured telemetry ``gatewayId`` gets the
    slot's number, since the store sums rows per gateway and each worker counts its own."""
    server = loaded.config.server
    gateway_id = server.telemetry.gatewayId
    if gateway_id is None:
        return loaded  # host:pid is already unique
    telemetry = server.telemetry.model_copy(update={"gatewayId": f"{gateway_id}-w{slot.index}"})
    config = loaded.config.model_copy(
        update={"server": server.model_copy(update={"telemetry": telemetry})}
    )
    return LoadedConfig(config, loaded.source)


class Gateway:
    """One gateway process. ``await gateway.serve()`` runs it until a signal (or
    :meth:`request_stop`) and returns the exit code; :meth:`run` does it on a new event loop."""

    def __init__(
        self,
        loaded: LoadedConfig,
        host: str | None = None,
        port: int | None = None,
        *,
        sock: socket.socket | None = None,
        reuse_port: bool = False,
        log_level: str = "info",
        slot: WorkerSlot | None = None,
        services: Services | None = None,
        servers: Sequence[ServerFactory] = (),
    ) -> None:
        if slot is not None:
            loaded = for_worker(loaded, slot)
        self.loaded = loaded
        server = loaded.config.server
        self.settings = server
        self.host = host or server.http.host
        self.port = server.http.port if port is None else port
        self.log_level = log_level
        self.slot = slot
        self.services = services or build_services(loaded)
        self.services.grpc_reuse_port = slot is not None  # workers share server.grpc's port
        self.servers = list(servers)
        """More servers on the same services, started after REST in order and stopped before
        it in reverse (the gRPC server: wrap its ``start_grpc(...)``/``stop`` pair)."""
        self._sock = sock
        self.reuse_port = reuse_port
        """Bind with ``SO_REUSEPORT`` (a worker beside others on the port). The socket is
        bound when the REST server starts, after the models loaded: the kernel sends a socket
        connections as soon as it listens."""
        self._rest: _RestServer | None = None
        self._stop: asyncio.Event | None = None
        self._skip_drain: asyncio.Event | None = None
        self.started = False
        """True once every part is up and the REST server accepts connections."""

    # ------------------------------------------------------------------ signals

    def request_stop(self) -> None:
        """Begin the drain (what SIGTERM does); a second call ends the drain early."""
        if self._stop is None or self._skip_drain is None:
            return
        if self._stop.is_set():
            log.info("second stop signal: ending the drain now")
            self._skip_drain.set()
        self._stop.set()

    # ------------------------------------------------------------------ lifecycle

    async def serve(self) -> int:
        self._stop = asyncio.Event()
        self._skip_drain = asyncio.Event()
        loop = asyncio.get_running_loop()
        handled: list[signal.Signals] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.request_stop)
                handled.append(sig)
        try:
            async with self.running():
                await self._stop.wait()
                await self.drain()
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)
        log.info("gateway stopped")
        return 0

    def run(self) -> int:
        """:meth:`serve` on a new event loop (uvloop when installed)."""
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            return runner.run(self.serve())

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Every part started in order; stopped in reverse when the block ends."""
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(running(self.services))
            if self.slot is not None:
                await stack.enter_async_context(self._worker_metrics(self.slot))
            await stack.enter_async_context(self._rest_server())
            for server in self.servers:  # the gRPC server: after REST, stopped before it
                await stack.enter_async_context(server(self.services))
            stack.enter_context(gcpolicy.frozen())  # everything is up: freeze it
            self.started = True
            try:
                yield
            finally:
                self.started = False

    async def drain(self) -> None:
        """Readiness 503 at once; keep serving ``server.shutdown.drain`` seconds."""
        self.services.dataplane.draining = True
        seconds = self.settings.shutdown.drain
        log.info("draining: readiness is 503, still serving for %gs", seconds)
        assert self._skip_drain is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._skip_drain.wait(), seconds)
        log.info(
            "drained: no new connections; requests in flight have %gs to finish",
            self.settings.shutdown.timeout,
        )

    @contextlib.asynccontextmanager
    async def _rest_server(self) -> AsyncIterator[None]:
        sock = self._sock or bind(self.host, self.port, reuse_port=self.reuse_port)
        self.port = int(sock.getsockname()[1])
        http = self.settings.http
        app = create_app(self.loaded, self.services, lifespan=False)
        config = uvicorn.Config(
            app,
            log_level=self.log_level,
            access_log=http.accessLog,
            lifespan="off",
            http=gateway_http_protocol(app, http.maxHeaderListSize) or "h11",
            h11_max_incomplete_event_size=http.maxHeaderListSize,
            timeout_graceful_shutdown=max(round(self.settings.shutdown.timeout), 0),
            backlog=BACKLOG,
        )
        server = self._rest = _RestServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                await task  # raises what stopped it
                raise ConfigError(f"the REST server on {self.host}:{self.port} did not start")
            await asyncio.sleep(0.01)
        log.info("serving on http://%s:%d", self.host, self.port)
        try:
            yield
        finally:
            # uvicorn: close the listeners, close idle keep-alive connections, wait for those
            # with a request in flight (up to timeout_graceful_shutdown), then cancel
            server.should_exit = True
            await task
            self._rest = None

    @contextlib.asynccontextmanager
    async def _worker_metrics(self, slot: WorkerSlot) -> AsyncIterator[None]:
        published = WorkerMetrics(self.services.telemetry.registry, slot.metrics_dir, slot.index)
        self.services.telemetry.metrics.renderer = published.render
        task = asyncio.create_task(published.run())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _loop_factory() -> type[asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.Loop
