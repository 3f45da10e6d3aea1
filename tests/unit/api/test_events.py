"""The event stream's hub (bounded fan-out, only changes sent) and what it reads."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from typing import Any

import orjson
import pytest

from modelrouter.api.events import EventHub, encode
from modelrouter.api.live_view import LiveView
from modelrouter.control.figures import version_roles
from modelrouter.errors import ModelNotReady, Overloaded


class FakeView:
    """A gateway whose state the test sets."""

    def __init__(self) -> None:
        self.rev = 1
        self.model_list: list[dict[str, Any]] = [{"name": "m", "versions": []}]
        self.statuses: list[dict[str, Any]] = [{"name": "r", "phase": "Progressing"}]
        self.figs: dict[str, Any] = {"m": {"v1": {"requests": 0}}}
        self.counts: dict[str, Any] = {}
        self.reads = 0

    async def snapshot(self) -> dict[str, Any]:
        self.reads += 1
        return {
            "models": self.model_list,
            "routing": {"revision": self.rev, "documents": {"m": {"version": self.rev}}},
            "rollouts": self.statuses,
            "figures": self.figs,
        }

    def traffic(self) -> dict[str, Any]:
        counts, self.counts = self.counts, {}
        return counts


def sync(test: Callable[[], Coroutine[Any, Any, None]]) -> Callable[[], None]:
    @functools.wraps(test)
    def run() -> None:
        asyncio.run(test())

    return run


def hub(view: FakeView, **kw: Any) -> EventHub:
    return EventHub(view, interval=3600, **kw)  # type: ignore[arg-type]


def drain(sub: Any) -> list[tuple[str, Any]]:
    out = []
    while not sub.queue.empty():
        name, data = sub.queue.get_nowait()
        out.append((name, orjson.loads(data) if data else None))
    return out


@sync
async def test_hello_then_traffic_every_tick_and_only_what_changed() -> None:
    view = FakeView()
    h = hub(view)
    sub = await h.subscribe()
    [(name, hello)] = drain(sub)
    assert name == "hello"
    assert hello["models"] == view.model_list
    assert hello["routing"] == {"revision": 1, "documents": {"m": {"version": 1}}}
    assert hello["rollouts"] == view.statuses
    assert hello["figures"] == view.figs
    assert hello["trafficHistory"] == []

    view.counts = {"m": {"default": {"v1": 3}}}
    await h.tick()
    assert [n for n, _ in drain(sub)] == ["traffic"]  # nothing else changed

    view.rev = 2
    view.statuses = [{"name": "r", "phase": "Paused"}]
    await h.tick()
    events = dict(drain(sub))
    assert set(events) == {"traffic", "routing", "rollouts"}
    assert events["rollouts"] == [{"name": "r", "phase": "Paused"}]
    assert events["routing"]["revision"] == 2
    assert events["traffic"]["counts"] == {}
    await h.close()


@sync
async def test_a_late_subscriber_gets_the_traffic_history() -> None:
    view = FakeView()
    h = hub(view, history=3)
    first = await h.subscribe()
    for n in range(5):
        view.counts = {"m": {"default": {"v1": n}}}
        await h.tick()
    late = await h.subscribe()
    [(name, hello)] = drain(late)
    assert name == "hello"
    assert [s["counts"]["m"]["default"]["v1"] for s in hello["trafficHistory"]] == [2, 3, 4]
    h.unsubscribe(first)
    await h.close()


@sync
async def test_streams_are_bounded() -> None:
    h = hub(FakeView(), max_subscribers=2)
    await h.subscribe()
    await h.subscribe()
    with pytest.raises(Overloaded, match="too many event streams open"):
        await h.subscribe()
    assert Overloaded("x").status.http == 429
    await h.close()


@sync
async def test_a_slow_subscriber_is_dropped_not_buffered() -> None:
    view = FakeView()
    h = hub(view, queue_size=4)
    slow = await h.subscribe()
    for _ in range(10):
        await h.tick()
    assert slow.dropped
    assert slow not in h.subscribers
    assert slow.queue.qsize() == 1  # only the end marker is held
    assert await slow.next() is None
    # the producer goes on for the others
    fast = await h.subscribe()
    await h.tick()
    assert [n for n, _ in drain(fast)] == ["hello", "traffic"]
    await h.close()


@sync
async def test_without_subscribers_only_traffic_is_sampled() -> None:
    view = FakeView()
    h = hub(view)
    sub = await h.subscribe()
    h.unsubscribe(sub)
    reads = view.reads
    await h.tick()
    await h.tick()
    assert view.reads == reads  # no store reads for nobody
    assert len(h.history) == 2
    await h.close()


@sync
async def test_a_draining_gateway_ends_its_streams_and_takes_no_new_one() -> None:
    draining = False
    h = EventHub(FakeView(), interval=3600, draining=lambda: draining)  # type: ignore[arg-type]
    sub = await h.subscribe()
    drain(sub)
    draining = True
    await h.tick()
    assert await asyncio.wait_for(sub.next(), 1) is None
    with pytest.raises(ModelNotReady, match="shutting down"):
        await h.subscribe()
    await h.close()


@sync
async def test_close_ends_every_stream() -> None:
    h = hub(FakeView())
    sub = await h.subscribe()
    drain(sub)
    await h.close()
    assert await asyncio.wait_for(sub.next(), 1) is None


def test_sse_encoding() -> None:
    assert encode("traffic", b'{"a":1}') == b'event: traffic\ndata: {"a":1}\n\n'


def test_roles_of_versions_in_the_rules() -> None:
    doc = {
        "http": [
            {"name": "eu", "route": [{"destination": "eu"}], "fallback": ["v1"]},
            {
                "name": "default",
                "route": [{"destination": "v1", "weight": 100}, {"destination": "v2", "weight": 0}],
                "mirror": {"destination": "v3"},
                "mirrorPercentage": {"value": 25},
            },
        ]
    }
    # what ControlPlane.version_figures says of each version
    figures = {
        "eu": {"weights": {"eu": 100.0, "default": 0.0}, "mirrored": {}},
        "v1": {"weights": {"eu": 0.0, "default": 100.0}, "mirrored": {}},
        "v2": {"weights": {"eu": 0.0, "default": 0.0}, "mirrored": {}},
        "v3": {"weights": {"eu": 0.0, "default": 0.0}, "mirrored": {"default": 25.0}},
    }
    r = version_roles(doc["http"], figures, default="v1")
    assert r["eu"] == {
        "role": "routed",
        "weights": {"eu": 100.0},
        "mirroredBy": [],
        "fallbackOf": [],
    }
    assert r["v1"] == {
        "role": "routed",
        "weights": {"default": 100.0},
        "mirroredBy": [],
        "fallbackOf": ["eu"],
    }
    assert r["v2"]["role"] == "idle"  # weight 0 in its only rule
    assert r["v2"]["weights"] == {"default": 0.0}
    assert r["v3"]["role"] == "mirrored"
    assert version_roles([], {"only": {"weights": {}}}, default="only")["only"]["role"] == "default"


def test_traffic_is_the_delta_per_rule_and_version() -> None:
    counts: dict[tuple[str, str, str, int], int] = {}
    view = LiveView(None, lambda: counts)  # type: ignore[arg-type]
    counts[("m", "v1", "default", 200)] = 5
    counts[("m", "v1", "default", 500)] = 1
    counts[("m", "v2", "default", 200)] = 2
    assert view.traffic() == {"m": {"default": {"v1": 6, "v2": 2}}}
    assert view.traffic() == {}
    counts[("m", "v2", "default", 200)] = 4
    counts[("m", "v1", "", 200)] = 1
    assert view.traffic() == {"m": {"default": {"v2": 2}, "": {"v1": 1}}}
