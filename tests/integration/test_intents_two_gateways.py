"""Repository intents once per cluster: two real gateways on one PostgreSQL.

An unload through one gateway holds on both (and on a gateway started afterwards), with one
audit record; a load through the other lifts it on both.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from gateway_support import AUTH, BODY, PG, gateway, wait_for, write_config

pytestmark = pytest.mark.integration


@pytest.fixture
def store(tmp_path: Path) -> Iterator[str]:
    schema = f"mrtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG, connect_timeout=5, autocommit=True) as conn:
        conn.execute("SELECT 1")  # PostgreSQL must be up: fail, do not skip
    try:
        yield f"{PG}?schema={schema}"
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def ready(client: httpx.Client, version: str) -> int:
    return client.get(f"/v2/models/churn/versions/{version}/ready").status_code


def pinned(client: httpx.Client, version: str) -> httpx.Response:
    return client.post(f"/v2/models/churn/versions/{version}/infer", json=BODY)


def admin_records(client: httpx.Client, action: str) -> list[dict[str, object]]:
    r = client.get("/api/v1/audit", params={"kind": "admin", "limit": 100}, headers=AUTH)
    assert r.status_code == 200, r.text
    return [x for x in r.json()["records"] if x.get("action") == action]


def test_an_unload_through_one_gateway_holds_on_every_gateway(tmp_path: Path, store: str) -> None:
    config = write_config(tmp_path, store, "  storePollInterval: 200ms")
    with (
        gateway(config, tmp_path / "one.log") as one,
        gateway(config, tmp_path / "two.log") as two,
    ):
        assert ready(one, "v2") == ready(two, "v2") == 200
        r = one.post("/v2/repository/models/churn/versions/v2/unload", headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.json()["versions"] == [{"version": "v2", "state": "UNLOADED", "reason": None}]
        assert ready(one, "v2") == 503  # at once on the gateway that took the request
        wait_for(lambda: ready(two, "v2") == 503, "the other gateway to unload v2", 5)
        for client in (one, two):
            r = pinned(client, "v2")
            assert r.status_code == 503, r.text
            assert "unloaded through the repository API" in r.json()["error"]
            assert pinned(client, "v1").status_code == 200
        (record,) = admin_records(two, "unload")  # once, not once per gateway
        assert (record["model"], record["version"], record["intent"]) == ("churn", "v2", "unloaded")

        # a gateway started now follows the intent from the start: v2 is never loaded there
        # (live once its start is done; not ready while the routing sends 10% to v2)
        with gateway(config, tmp_path / "three.log", ready="/v2/health/live") as three:
            assert ready(three, "v2") == 503
            models = three.get("/api/v1/models", headers=AUTH).json()["models"]
            states = {v["name"]: v["state"] for v in models[0]["versions"]}
            assert states == {"v1": "READY", "v2": "UNLOADED"}

            # a load through another gateway lifts it everywhere
            r = two.post(
                "/api/v1/models/churn/versions/v2/load",
                headers={**AUTH, "x-actor": "carol"},
            )
            assert r.status_code == 200, r.text
            assert r.json()["state"] == "READY"
            started = time.monotonic()
            for client in (one, three):
                wait_for(lambda c=client: ready(c, "v2") == 200, "v2 to load everywhere", 15)
            assert time.monotonic() - started < 15
            for client in (one, two, three):
                assert pinned(client, "v2").status_code == 200
            (load,) = admin_records(one, "load")
            assert load["actor"] == "carol"
            r = one.get("/api/v1/audit/verify", headers=AUTH)
            assert r.status_code == 200, r.text
