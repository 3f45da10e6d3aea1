"""``GET /api/v1/events``: the dashboard's live updates as server-sent events.

One :class:`EventHub` per gateway polls a :class:`~modelrouter.api.live_view.LiveView` every
``interval`` seconds and broadcasts what changed to its subscribers:

- ``hello`` (first, on every connection): everything below at once, plus the traffic history
  this gateway kept (``trafficHistory``), so a page opened mid-rollout has its last minutes;
- ``traffic`` (every tick): requests per model, rule and version since the previous tick;
- ``models``, ``routing``, ``rollouts``, ``figures``: the new value, only when it changed.

Bounded everywhere: at most ``max_subscribers`` streams (one more is a 429), each with a queue
of ``queue_size`` events; a subscriber that falls that far behind is dropped (its stream ends,
the page reconnects and gets a fresh ``hello``), so a slow reader never holds memory. The
traffic history is a ring of ``history`` ticks. The poller starts with the first subscriber
and runs until the app stops; with nobody connected it only samples the traffic counters
(no store reads). Once the gateway drains (``draining()``), every stream ends within a tick and
new ones get a 503, so an open dashboard never holds up a shutdown.

The stream needs the admin bearer token like every control-plane read: the page reads it with
``fetch()`` (which can send ``Authorization``), not ``EventSource`` (which cannot).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from modelrouter.api.live_view import LiveView
from modelrouter.errors import ModelNotReady, Overloaded

log = logging.getLogger(__name__)

MAX_SUBSCRIBERS = 32
QUEUE_SIZE = 64
HISTORY_TICKS = 300
"""Five minutes of traffic at one tick a second."""

Event = tuple[str, bytes]
"""``(name, JSON data)``."""

_DROPPED: Event = ("", b"")


class Subscription:
    def __init__(self, size: int) -> None:
        self.queue: asyncio.Queue[Event] = asyncio.Queue(size + 1)
        self.size = size
        self.dropped = False

    def offer(self, event: Event) -> None:
        """Queue ``event``; past ``size`` waiting, drop the subscriber instead."""
        if self.dropped:
            return
        if self.queue.qsize() >= self.size:
            self.dropped = True
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(_DROPPED)
            return
        self.queue.put_nowait(event)

    async def next(self) -> Event | None:
        """The next event, or None once this subscriber was dropped."""
        event = await self.queue.get()
        return None if event is _DROPPED else event


def encode(name: str, data: bytes) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


class EventHub:
    def __init__(
        self,
        view: LiveView,
        *,
        interval: float = 1.0,
        max_subscribers: int = MAX_SUBSCRIBERS,
        queue_size: int = QUEUE_SIZE,
        history: int = HISTORY_TICKS,
        clock: Callable[[], float] = time.time,
        draining: Callable[[], bool] = lambda: False,
    ) -> None:
        self.view = view
        self.draining = draining
        self.interval = interval
        self.max_subscribers = max_subscribers
        self.queue_size = queue_size
        self.clock = clock
        self.subscribers: set[Subscription] = set()
        self.history: deque[dict[str, Any]] = deque(maxlen=history)
        self.last: dict[str, bytes] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    # ------------------------------------------------------------------ subscribers

    async def subscribe(self) -> Subscription:
        """A new subscription whose first event is ``hello``; :class:`Overloaded` when every
        slot is taken, :class:`ModelNotReady` once the gateway drains."""
        if self.draining():
            raise ModelNotReady("the gateway is shutting down; connect to another one")
        if len(self.subscribers) >= self.max_subscribers:
            raise Overloaded(
                f"too many event streams open ({self.max_subscribers}); close one and retry"
            )
        sub = Subscription(self.queue_size)
        async with self._lock:
            if not self.last:
                await self._refresh()
            hello = {k: orjson.loads(v) for k, v in self.last.items()}
            hello["trafficHistory"] = list(self.history)
            hello["interval"] = self.interval
            sub.offer(("hello", orjson.dumps(hello)))
            self.subscribers.add(sub)
        if self._task is None:
            self.view.traffic()  # counts so far are history, not this tick's traffic
            self._task = asyncio.create_task(self._run())
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self.subscribers.discard(sub)

    def _broadcast(self, name: str, data: bytes) -> None:
        for sub in list(self.subscribers):
            sub.offer((name, data))
            if sub.dropped:
                self.subscribers.discard(sub)

    # ------------------------------------------------------------------ polling

    async def _refresh(self) -> list[str]:
        """Read every watched value; return the names of those that changed."""
        values = await self.view.snapshot()
        changed = []
        for name, value in values.items():
            data = orjson.dumps(value)
            if self.last.get(name) != data:
                self.last[name] = data
                changed.append(name)
        return changed

    async def tick(self) -> None:
        """One poll: traffic always (into the history, and to subscribers), the rest only
        with subscribers and only what changed."""
        if self.draining():
            self._end_streams()
            return
        sample = {"t": round(self.clock(), 3), "counts": self.view.traffic()}
        self.history.append(sample)
        if not self.subscribers:
            self.last.clear()  # stale by the next subscription: read afresh then
            return
        async with self._lock:
            changed = await self._refresh()
            self._broadcast("traffic", orjson.dumps(sample))
            for name in changed:
                self._broadcast(name, self.last[name])

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("event stream: polling the gateway failed; trying again")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._end_streams()

    def _end_streams(self) -> None:
        for sub in list(self.subscribers):
            sub.offer(_DROPPED)
            sub.dropped = True
        self.subscribers.clear()


class EventsApi:
    def __init__(self, hub: EventHub, authorize: Callable[[Request], str]) -> None:
        """``authorize(request)`` raises unless the request carries the admin token."""
        self.hub = hub
        self.authorize = authorize

    async def stream(self, request: Request) -> Response:
        self.authorize(request)
        sub = await self.hub.subscribe()

        async def body() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\n\n"
                while True:
                    event = await sub.next()
                    if event is None:
                        return
                    yield encode(*event)
            finally:
                self.hub.unsubscribe(sub)

        return StreamingResponse(
            body(),
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
            media_type="text/event-stream",
        )

    def routes(self) -> list[Route]:
        return [Route("/api/v1/events", self.stream, methods=["GET"])]
