"""``GET /api/v1/events`` over a real server: the token, the first event, the bound on open
streams, and a closed stream giving its slot back."""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from modelrouter.api.events import MAX_SUBSCRIBERS
from modelrouter.app import create_app
from processes import start_serve, wait_ready
from support import EXAMPLE_MODELS, free_port, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

TOKEN = "events-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


def config() -> str:
    return f"""
server: {{store: "sqlite:///./gw.db", watchConfig: false}}
models:
  churn:
    versions:
      v1: {{storageUri: {EXAMPLE_MODELS / "churn" / "v1"}, modelFormat: sklearn}}
      v2: {{storageUri: {EXAMPLE_MODELS / "churn" / "v2"}, modelFormat: sklearn}}
    http:
      - name: default
        route: [{{destination: v1, weight: 70}}, {{destination: v2, weight: 30}}]
"""


@pytest.fixture
def url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("MODELROUTER_ADMIN_TOKEN", TOKEN)
    with running_server(create_app(loaded_from_yaml(config(), tmp_path))) as base:
        yield base


def first_event(lines: Iterator[str]) -> tuple[str, dict[str, object]]:
    name = ""
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            return name, orjson.loads(line[len("data: ") :])
    raise AssertionError("the stream ended before its first event")


def test_the_stream_needs_the_token(url: str) -> None:
    r = httpx.get(f"{url}/api/v1/events")
    assert r.status_code == 401
    assert "missing or invalid bearer token" in r.json()["error"]


def test_hello_carries_the_gateway_state(url: str) -> None:
    with httpx.stream("GET", f"{url}/api/v1/events", headers=AUTH, timeout=10) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        name, hello = first_event(r.iter_lines())
    assert name == "hello"
    [churn] = hello["models"]  # type: ignore[misc]
    versions = {v["name"]: v for v in churn["versions"]}
    assert versions["v1"]["weights"] == {"default": 70}
    assert versions["v2"]["role"] == "routed"
    assert versions["v1"]["source"].endswith("churn/v1")
    docs = hello["routing"]["documents"]  # type: ignore[index]
    assert docs["churn"]["http"][0]["name"] == "default"
    assert hello["rollouts"] == []
    assert set(hello["figures"]["churn"]) == {"v1", "v2"}  # type: ignore[index]


def test_open_streams_are_bounded_and_a_closed_one_frees_its_slot(url: str) -> None:
    with contextlib.ExitStack() as stack:
        client = stack.enter_context(httpx.Client(base_url=url, headers=AUTH, timeout=10))
        streams = []
        for _ in range(MAX_SUBSCRIBERS):
            r = stack.enter_context(client.stream("GET", "/api/v1/events"))
            assert r.status_code == 200
            streams.append(r)
        refused = client.get("/api/v1/events")
        assert refused.status_code == 429
        assert "too many event streams open" in refused.json()["error"]
        streams[0].close()
        deadline = time.monotonic() + 10
        while True:  # the server notices the closed connection within a tick
            with client.stream("GET", "/api/v1/events") as again:
                if again.status_code == 200:
                    break
            assert time.monotonic() < deadline, "the closed stream kept its slot"
            time.sleep(0.2)


def test_an_open_stream_never_holds_up_a_shutdown(tmp_path: Path) -> None:
    """SIGTERM drains: the stream ends at once (not after the in-flight timeout of 20 s) and
    the gateway exits 0."""
    path = tmp_path / "modelrouter.yaml"
    path.write_text(
        config().replace("watchConfig: false", "watchConfig: false, shutdown: {drain: 0.5}")
    )
    port = free_port()
    proc = start_serve(
        path, port, env={"MODELROUTER_ADMIN_TOKEN": TOKEN}, log=path.with_suffix(".log")
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(proc, base, timeout=60, path="/v2/health/live", log=path.with_suffix(".log"))
        with httpx.stream("GET", f"{base}/api/v1/events", headers=AUTH, timeout=30) as r:
            lines = r.iter_lines()
            assert first_event(lines)[0] == "hello"
            proc.send_signal(signal.SIGTERM)
            started = time.monotonic()
            for _ in lines:  # until the server ends the stream
                pass
            ended = time.monotonic() - started
        assert ended < 5, f"the stream outlived the drain by {ended:.1f}s"
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
