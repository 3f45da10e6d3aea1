"""The Gateway runner in this process: start order, a server slot beside REST, stop order."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from modelrouter.app import Services
from modelrouter.server import Gateway
from support import free_port, loaded_from_yaml

pytestmark = pytest.mark.integration

CONFIG = """\
server:
  store: memory://
  watchConfig: false
  shutdown: {drain: 30s, timeout: 5s}
models:
  echo:
    versions:
      v1: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
"""


def test_servers_start_after_rest_and_stop_before_it(tmp_path: Path) -> None:
    events: list[str] = []
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    gateway: Gateway

    @contextlib.asynccontextmanager
    async def extra(services: Services) -> AsyncIterator[None]:
        async with httpx.AsyncClient() as client:
            # REST already answers, and every model is loaded, when this one starts
            r = await client.get(f"{url}/v2/health/ready")
            events.append(f"start ready={r.status_code}")
            yield
            r = await client.get(f"{url}/v2/health/ready")
            events.append(f"stop ready={r.status_code}")  # REST still up, draining

    async def main() -> int:
        nonlocal gateway
        gateway = Gateway(loaded_from_yaml(CONFIG, tmp_path), "127.0.0.1", port, servers=[extra])
        task = asyncio.create_task(gateway.serve())
        while not gateway.started:
            assert not task.done()
            await asyncio.sleep(0.02)
        events.append("started")
        gateway.request_stop()
        async with httpx.AsyncClient() as client:
            for _ in range(500):
                if (await client.get(f"{url}/v2/health/ready")).status_code == 503:
                    events.append("unready")
                    break
                await asyncio.sleep(0.01)
            body = {"inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [2.0]}]}
            r = await client.post(f"{url}/v2/models/echo/infer", json=body)
            events.append(f"infer {r.status_code}")  # still served during the drain
        gateway.request_stop()  # a second signal ends the 30 s drain now
        return await asyncio.wait_for(task, 20)

    assert asyncio.run(main()) == 0
    assert events == ["start ready=200", "started", "unready", "infer 200", "stop ready=503"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v2/health/live", timeout=2)
