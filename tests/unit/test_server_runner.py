"""The gateway runner's pure parts: a worker's config, the port it binds."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from modelrouter.config import parse_config
from modelrouter.config.loader import LoadedConfig
from modelrouter.errors import ConfigError
from modelrouter.server import WorkerSlot, bind, for_worker


def test_a_configured_gateway_id_gets_the_worker_slot(tmp_path: Path) -> None:
    loaded = LoadedConfig(parse_config("server:\n  telemetry: {gatewayId: gw}\n"), tmp_path / "c")
    worker = for_worker(loaded, WorkerSlot(1, tmp_path))
    assert worker.config.server.telemetry.gatewayId == "gw-w1"
    assert worker.source == loaded.source
    assert loaded.config.server.telemetry.gatewayId == "gw"  # the original is untouched


def test_the_default_gateway_id_is_already_unique(tmp_path: Path) -> None:
    loaded = LoadedConfig(parse_config("{}"), tmp_path / "c")
    assert for_worker(loaded, WorkerSlot(0, tmp_path)) is loaded


def test_a_port_in_use_is_a_config_error_naming_the_field() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError) as info:
            bind("127.0.0.1", port)
    assert info.value.field == "server.http.port"
    assert f"cannot listen on 127.0.0.1:{port}" in info.value.message


def test_reuse_port_sockets_share_a_port() -> None:
    holder = bind("127.0.0.1", 0, reuse_port=True, listen=False)
    try:
        port = holder.getsockname()[1]
        a = bind("127.0.0.1", port, reuse_port=True)
        b = bind("127.0.0.1", port, reuse_port=True)
        assert a.getsockname()[1] == b.getsockname()[1] == port
        a.close()
        b.close()
    finally:
        holder.close()
