"""Store faults under real gateway processes (PostgreSQL at 127.0.0.1:5432, SQLite files).

- The PostgreSQL schema dropped and recreated empty under load of two gateways: serving goes on,
  routing is re-seeded from the file, the chain resumes with a gap record, verify explains it.
- The SQLite file deleted under a gateway: the same.
- The store unreachable (a proxy in between is cut): durable mode answers 503 within
  ``server.storeTimeout``; non-durable mode keeps serving, queues records up to ``maxQueue``
  and counts the drops; both recover when the store is back.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from gateway_support import AUTH, BODY, PG, gateway, wait_for, write_config
from tcp_proxy import tcp_proxy

pytestmark = pytest.mark.integration


class Load:
    """One thread per gateway sending requests with known ids until stopped."""

    def __init__(self, clients: dict[str, httpx.Client]) -> None:
        self.run = uuid.uuid4().hex[:8]
        self.sent: list[tuple[str, float, int]] = []  # request id, time sent, status
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._lane, args=(name, str(c.base_url)), daemon=True)
            for name, c in clients.items()
        ]

    def _lane(self, name: str, url: str) -> None:
        with httpx.Client(base_url=url, timeout=10) as http:
            i = 0
            while not self._stop.is_set() and i < 2000:
                rid = f"fault-{self.run}-{name}-{i:04d}"
                sent = time.time()
                try:
                    status = http.post(
                        "/v2/models/churn/infer", json=BODY, headers={"x-request-id": rid}
                    ).status_code
                except httpx.HTTPError:
                    status = 0
                with self._lock:
                    self.sent.append((rid, sent, status))
                i += 1
                time.sleep(0.01)

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


def decisions(client: httpx.Client, prefix: str) -> dict[str, int]:
    r = client.get(
        "/api/v1/audit",
        params={"kind": "decision", "limit": 10000, "order": "asc", "since": "10m"},
        headers=AUTH,
    )
    assert r.status_code == 200, r.text
    counts: dict[str, int] = {}
    for x in r.json()["records"]:
        rid = str(x.get("request_id"))
        if rid.startswith(prefix):
            counts[rid] = counts.get(rid, 0) + 1
    return counts


def check_recovered(clients: list[httpx.Client], load: Load, reset_at: float, store: str) -> None:
    """What every fault test expects once the store came back empty under load."""
    assert load.sent
    assert all(status == 200 for _, _, status in load.sent), [s for s in load.sent if s[2] != 200][
        :5
    ]
    assert any(t > reset_at + 1 for _, t, _ in load.sent), "the load did not outlast the reset"
    for client in clients:
        # routing re-seeded from the config file, served by the gateway
        def seeded(c: httpx.Client = client) -> bool:
            doc = c.get("/api/v1/models/churn/routing", headers=AUTH).json()
            return bool(doc["version"] >= 1 and doc["actor"] == "config-file")

        wait_for(seeded, "routing to be re-seeded")
        status = client.get("/api/v1/store", headers=AUTH).json()
        assert status["reachable"], status
        assert len(status["faults"]) >= 1, status
        assert status["faults"][0]["cause"] == "empty"
    one = clients[0]
    # the new log starts with a gap record that continues the old chain
    first = one.get("/api/v1/audit", params={"order": "asc", "limit": 1}, headers=AUTH).json()
    assert first["records"][0]["kind"] == "gap", first
    # every request sent well after the reset has exactly one decision record
    later = {rid for rid, t, _ in load.sent if t > reset_at + 1.0}

    def all_recorded() -> bool:
        counts = decisions(one, f"fault-{load.run}-")
        return later <= set(counts) and all(counts[r] == 1 for r in later)

    wait_for(all_recorded, "the decisions after the reset to be recorded")
    for client in clients:
        r = client.get("/api/v1/audit/verify", headers=AUTH)
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["ok"] is True, doc
        assert doc["gaps"], doc
        gap = doc["gaps"][0]
        assert gap["cause"] == "empty"
        assert gap["lostFirst"] == 1
        assert gap["lostLast"] >= 1
        assert "came back empty" in gap["explanation"]
        assert f"seq {gap['seq']}" in gap["explanation"]
    cli = subprocess.run(
        [sys.executable, "-m", "modelrouter.cli", "audit", "verify", "--store", store],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "GAP: gap at seq" in cli.stdout, cli.stdout
    assert "OK:" in cli.stdout, cli.stdout


@pytest.fixture
def pg_schema() -> Iterator[str]:
    schema = f"mrtest_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG, connect_timeout=5, autocommit=True) as conn:
        conn.execute("SELECT 1")  # PostgreSQL must be up: fail, do not skip
    try:
        yield schema
    finally:
        with psycopg.connect(PG, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_postgres_dropped_and_recreated_under_load_of_two_gateways(
    tmp_path: Path, pg_schema: str
) -> None:
    store = f"{PG}?schema={pg_schema}"
    config = write_config(tmp_path, store, "  audit: {flushInterval: 10ms}")
    with (
        gateway(config, tmp_path / "one.log") as one,
        gateway(config, tmp_path / "two.log") as two,
        Load({"one": one, "two": two}) as load,
    ):
        time.sleep(1.5)
        with psycopg.connect(PG, autocommit=True) as conn, conn.transaction():
            conn.execute(f'DROP SCHEMA "{pg_schema}" CASCADE')
            conn.execute(f'CREATE SCHEMA "{pg_schema}"')
        reset_at = time.time()
        time.sleep(3)
        load.__exit__()
        check_recovered([one, two], load, reset_at, store)


def test_sqlite_file_deleted_under_load(tmp_path: Path) -> None:
    db = tmp_path / "gw.db"
    store = f"sqlite:///{db}"
    config = write_config(tmp_path, store, "  audit: {flushInterval: 10ms}")
    with gateway(config, tmp_path / "gw.log") as gw, Load({"gw": gw}) as load:
        time.sleep(1.5)
        for suffix in ("", "-wal", "-shm"):  # rm gw.db*
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        reset_at = time.time()
        time.sleep(3)
        load.__exit__()
        check_recovered([gw], load, reset_at, store)
        assert db.exists()


def infer(client: httpx.Client) -> tuple[int, float, dict[str, Any]]:
    started = time.monotonic()
    r = client.post("/v2/models/churn/infer", json=BODY)
    return r.status_code, time.monotonic() - started, r.json()


def test_durable_mode_answers_503_within_the_store_timeout_while_the_store_is_unreachable(
    tmp_path: Path, pg_schema: str
) -> None:
    with tcp_proxy(("127.0.0.1", 5432)) as proxy:
        store = f"postgresql://postgres@127.0.0.1:{proxy.port}/test?schema={pg_schema}"
        config = write_config(tmp_path, store, "  storeTimeout: 1s\n  audit: {durable: true}")
        with gateway(config, tmp_path / "gw.log") as gw:
            assert infer(gw)[0] == 200
            proxy.cut()
            for _ in range(3):
                status, took, body = infer(gw)  # the client would give up after 10 s
                assert status == 503, body
                assert took < 3.0, f"answered after {took:.1f}s"
                assert "storeTimeout" in body["error"], body
            proxy.resume()
            wait_for(lambda: infer(gw)[0] == 200, "durable requests to succeed again")
            stats = gw.get("/api/v1/store", headers=AUTH).json()["audit"]
            assert stats["timedOut"] >= 3
            r = gw.get("/api/v1/audit/verify", headers=AUTH)
            assert r.status_code == 200, r.text
            assert r.json()["ok"], r.text


def test_non_durable_mode_keeps_serving_with_a_bounded_queue_while_the_store_is_unreachable(
    tmp_path: Path, pg_schema: str
) -> None:
    with tcp_proxy(("127.0.0.1", 5432)) as proxy:
        store = f"postgresql://postgres@127.0.0.1:{proxy.port}/test?schema={pg_schema}"
        config = write_config(tmp_path, store, "  audit: {flushInterval: 10ms, maxQueue: 20}")
        with gateway(config, tmp_path / "gw.log") as gw:
            assert infer(gw)[0] == 200
            proxy.cut()
            for _ in range(40):
                status, _took, _ = infer(gw)
                assert status == 200
            status_doc = wait_for(
                lambda: (
                    (d := gw.get("/api/v1/store", headers=AUTH).json())["reachable"] is False and d
                ),
                "the gateway to notice the store is unreachable",
            )
            stats = status_doc["audit"]
            # 41 records: at most maxQueue held (queued or in the batch being written), the
            # rest dropped and counted
            assert stats["pending"] <= 20, stats
            assert stats["written"] + stats["pending"] + stats["dropped"] == 41, stats
            assert stats["dropped"] >= 41 - 20, stats
            proxy.resume()

            def written() -> bool:
                doc = gw.get("/api/v1/store", headers=AUTH).json()
                return bool(doc["reachable"] and doc["audit"]["pending"] == 0)

            wait_for(written, "the queued records to be written")
            r = gw.get("/api/v1/audit/verify", headers=AUTH)
            assert r.status_code == 200, r.text
            assert r.json()["ok"], r.text
