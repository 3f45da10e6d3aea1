"""``modelrouter audit`` against a SQLite store in a temporary directory."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelrouter.cli.audit import audit, parse_age, parse_when
from modelrouter.store.sqlite import SQLiteStore


def seed(path: Path, records: list[dict[str, Any]] | None = None, now: float | None = None) -> str:
    """A store with a routing change a day before ``now`` (default: the time of the call) and
    ten decisions ``req-0`` ... ``req-9``, 9 hours ... 0 hours before ``now``."""
    now = time.time() if now is None else now

    async def main() -> None:
        async with SQLiteStore(path, clock=lambda: now - 86400) as store:
            await store.put_routing(
                "churn",
                {"http": [{"name": "default", "route": [{"destination": "v1"}]}]},
                "alice",
                "first table",
            )
            await store.append_audit(
                records
                if records is not None
                else [
                    {
                        "kind": "decision",
                        "request_id": f"req-{i}",
                        "model": "churn",
                        "version": "v1" if i % 2 else "v2",
                        "rule": "default",
                        "matched": [],
                        "bucket": 100 + i,
                        "weights": {"v1": 50, "v2": 50},
                        "shadows": [],
                        "fallbacks": [],
                        "table_version": 1,
                        "status": 200,
                        "latency_ms": 2.0,
                        "error": None,
                        "time": now - 3600 * (9 - i),
                    }
                    for i in range(10)
                ]
            )

    asyncio.run(main())
    return f"sqlite:///{path}"


def invoke(*args: str) -> Any:
    return CliRunner().invoke(audit, list(args), catch_exceptions=False)


def test_parse_age_and_when() -> None:
    assert parse_age("30d") == 30 * 86400
    assert parse_age("2w") == 14 * 86400
    assert parse_age("90m") == 5400
    assert parse_when("10m", now=1000.0) == 400.0
    assert parse_when("2026-11-23T10:31:02Z") == 1795429862.0
    assert parse_when("2026-11-23T10:31:02") == 1795429862.0
    assert parse_when("2026-11-23T11:31:02+01:00") == 1795429862.0
    with pytest.raises(ValueError, match="is not a time"):
        parse_when("last tuesday")


def test_tail_prints_the_newest_oldest_first(tmp_path: Path) -> None:
    url = seed(tmp_path / "s.db")
    result = invoke("tail", "-n", "3", "--store", url)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3
    assert "req-7" in lines[0]
    assert "req-9" in lines[2]
    assert lines[2].split()[0] == "11"
    as_json = invoke("tail", "-n", "1", "--json", "--store", url)
    assert json.loads(as_json.output)["request_id"] == "req-9"


def test_query_filters(tmp_path: Path) -> None:
    now = time.time()  # relative filters (--since 2h30m) count from the clock at the query
    url = seed(tmp_path / "s.db", now=now)
    result = invoke("query", "--store", url, "--version", "v1", "--json")
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["request_id"] for r in rows] == ["req-9", "req-7", "req-5", "req-3", "req-1"]
    result = invoke("query", "--store", url, "--kind", "change")
    assert "alice routing of churn v1: first table" in result.output
    result = invoke("query", "--store", url, "--since", "2h30m", "--kind", "decision", "--json")
    assert [json.loads(x)["request_id"] for x in result.output.splitlines()] == [
        "req-9",
        "req-8",
        "req-7",
    ]
    result = invoke("query", "--store", url, "--request-id", "req-4", "--model", "churn")
    assert "req=req-4" in result.output
    assert len(result.output.splitlines()) == 1
    result = invoke("query", "--store", url, "--limit", "2", "--order", "asc", "--json")
    assert [json.loads(x)["seq"] for x in result.output.splitlines()] == [1, 2]
    until = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - 3600 * 8 + 1))
    result = invoke("query", "--store", url, "--until", until, "--rule", "default", "--json")
    assert [json.loads(x)["request_id"] for x in result.output.splitlines()] == [
        "req-1",
        "req-0",
    ]
    bad = CliRunner().invoke(audit, ["query", "--store", url, "--since", "yesterday-ish"])
    assert bad.exit_code == 2
    assert "is not a time (ISO 8601" in bad.output


def test_explain(tmp_path: Path) -> None:
    url = seed(tmp_path / "s.db")
    result = invoke("explain", "req-3", "--store", url)
    assert result.exit_code == 0
    assert "Request req-3 at" in result.output
    assert "sticky bucket 103 of 10000 at weights v1=50, v2=50 chose v1" in result.output
    missing = CliRunner().invoke(audit, ["explain", "nope", "--store", url])
    assert missing.exit_code == 1
    assert "no decision recorded for request id 'nope'" in missing.output


def test_query_refuses_a_kind_that_does_not_exist(tmp_path: Path) -> None:
    url = seed(tmp_path / "s.db")
    bad = CliRunner().invoke(audit, ["query", "--store", url, "--kind", "decisions"])
    assert bad.exit_code == 2
    assert "kind: unknown audit record kind 'decisions'" in bad.output
    assert "known: admin, change, decision, ejection, feedback, gap, rollout" in bad.output
    empty = invoke("query", "--store", url, "--kind", "feedback")  # known, none recorded
    assert (empty.exit_code, empty.output) == (0, "")


def test_explain_shows_every_request_that_reused_an_id(tmp_path: Path) -> None:
    dup = [
        {
            "kind": "decision",
            "request_id": "same",
            "model": "churn",
            "version": v,
            "rule": "default",
            "weights": {"v1": 50, "v2": 50},
            "bucket": b,
            "store_revision": 1,
            "status": 200,
            "latency_ms": 2.0,
        }
        for v, b in (("v1", 10), ("v2", 9000))
    ]
    url = seed(tmp_path / "s.db", dup)
    result = invoke("explain", "same", "--store", url)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("Note: request id 'same' was used by 2 requests")
    assert "decision records seq 2, 3" in lines[0]
    assert lines[1].startswith("[seq 2] Request same at")
    assert "chose v1" in lines[1]
    assert lines[2].startswith("[seq 3] Request same at")
    assert "chose v2" in lines[2]
    as_json = invoke("explain", "same", "--json", "--store", url)
    doc = json.loads(as_json.output[as_json.output.index("\n[\n") :])
    assert [r["version"] for r in doc] == ["v1", "v2"]


def test_verify_ok_and_tampered(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    url = seed(path)
    result = invoke("verify", "--store", url)
    assert (result.exit_code, result.output) == (0, "OK: 11 records verified\n")
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE mr_audit SET record = replace(record, '\"status\":200', '\"status\":500')"
            " WHERE seq = 6"
        )
    result = CliRunner().invoke(audit, ["verify", "--store", url])
    assert result.exit_code == 1
    assert "FAILED at seq 6: hash mismatch" in result.output


def test_prune_keeps_verify_ok(tmp_path: Path) -> None:
    url = seed(tmp_path / "s.db")
    result = invoke("prune", "--store", url, "--max-age", "5h")
    # req-0..req-4 are 5h or more old; the change record (seq 1) is older still
    assert result.output == "pruned 6 records\n"
    result = invoke("verify", "--store", url)
    assert result.output == "OK: 6 records verified (from seq 7; older ones pruned)\n"
    assert invoke("prune", "--store", url, "--max-count", "2").output == "pruned 4 records\n"
    assert invoke("verify", "--store", url).exit_code == 0
    tail = invoke("tail", "--store", url, "--json")
    notes = [json.loads(x) for x in tail.output.splitlines()]
    assert notes[-1]["action"] == "prune_audit"
    assert notes[-1]["actor"] == "cli"
    usage = CliRunner().invoke(audit, ["prune", "--store", url])
    assert usage.exit_code == 2
    bad_age = CliRunner().invoke(audit, ["prune", "--store", url, "--max-age", "forever"])
    assert bad_age.exit_code == 2


def test_config_store_resolves_against_the_config_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the gateway does: a relative SQLite path in a config is relative to that file;
    --store and MODELROUTER_STORE are relative to the current directory."""
    conf = tmp_path / "conf" / "modelrouter.yaml"
    (conf.parent / "data").mkdir(parents=True)
    seed(conf.parent / "data" / "router.db")
    conf.write_text("server:\n  store: sqlite:///./data/router.db\nmodels: {}\n")
    monkeypatch.chdir(tmp_path)
    result = invoke("verify", "--config", str(conf))
    assert result.output == "OK: 11 records verified\n"
    monkeypatch.setenv("MODELROUTER_STORE", "sqlite:///./conf/data/router.db")
    assert invoke("verify").exit_code == 0


def test_store_problems_are_clean_errors(tmp_path: Path) -> None:
    runner = CliRunner()
    none = runner.invoke(audit, ["verify"], env={"MODELROUTER_STORE": ""})
    assert none.exit_code == 2
    assert "--store" in none.output
    missing = runner.invoke(audit, ["verify", "--store", f"sqlite:///{tmp_path}/nope.db"])
    assert missing.exit_code == 1
    assert "no store at" in missing.output
    scheme = runner.invoke(audit, ["verify", "--store", "mysql://x/y"])
    assert scheme.exit_code == 1
    assert "unsupported store" in scheme.output
    both = runner.invoke(audit, ["verify", "--store", "memory://", "--config", "x.yaml"])
    assert both.exit_code == 2
    bad_conf = runner.invoke(audit, ["verify", "--config", str(tmp_path / "absent.yaml")])
    assert bad_conf.exit_code == 1
    assert "config file not found" in bad_conf.output
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite" * 200)
    broken = runner.invoke(audit, ["verify", "--store", f"sqlite:///{junk}"])
    assert broken.exit_code == 1
    assert "SQLite store" in broken.output


def test_tail_follow_prints_new_records(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    url = seed(path)
    code = "from modelrouter.cli.audit import audit; audit()"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "tail",
            "-n",
            "1",
            "--follow",
            "--interval",
            "0.05",
            "--store",
            url,
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert proc.stdout is not None
        assert "req-9" in proc.stdout.readline()

        async def more() -> None:
            async with SQLiteStore(path) as store:
                await store.append_audit(
                    [{"kind": "admin", "actor": "bob", "action": "unload", "what": "v1"}]
                )

        asyncio.run(more())
        line = proc.stdout.readline()
        assert "bob unload v1" in line
        assert line.split()[0] == "12"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_keygen_checkpoint_and_verify_with_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    url = seed(path)
    key = tmp_path / "audit.key"
    made = invoke("keygen", "--out", str(key))
    assert made.exit_code == 0, made.output
    assert "key id:" in made.output
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    assert b"PUBLIC KEY" in (tmp_path / "audit.key.pub").read_bytes()
    again = CliRunner().invoke(audit, ["keygen", "--out", str(key)])
    assert again.exit_code == 1
    assert "exists" in again.output

    sink = str(tmp_path / "checkpoints.jsonl")
    wrote = invoke("checkpoint", "--store", url, "--sink", sink, "--key-file", str(key))
    assert wrote.exit_code == 0, wrote.output
    assert "checkpoint: seq 11" in wrote.output
    pub = str(tmp_path / "audit.key.pub")
    ok = invoke("verify", "--store", url, "--checkpoints", sink, "--public-key", pub)
    assert ok.exit_code == 0, ok.output
    assert ok.output.startswith("OK: 11 records verified; 1 checkpoints signed by key ")
    unkeyed = CliRunner().invoke(audit, ["verify", "--store", url, "--checkpoints", sink])
    assert unkeyed.exit_code == 0
    assert "give --public-key" in unkeyed.output

    with sqlite3.connect(path) as conn:  # cut the newest two and set the head back
        (digest,) = conn.execute("SELECT hash FROM mr_audit WHERE seq = 9").fetchone()
        conn.execute("DELETE FROM mr_audit WHERE seq > 9")
        conn.execute("UPDATE mr_state SET head_seq = 9, head_hash = ?", (digest,))
    plain = invoke("verify", "--store", url)
    assert (plain.exit_code, plain.output) == (0, "OK: 9 records verified\n")
    caught = CliRunner().invoke(
        audit, ["verify", "--store", url, "--checkpoints", sink, "--public-key", pub]
    )
    assert caught.exit_code == 1
    assert "FAILED at seq 10: a checkpoint signed at" in caught.output
    assert "records 10..11 were removed" in caught.output


def test_checkpoint_options_are_checked(tmp_path: Path) -> None:
    url = seed(tmp_path / "s.db")
    lone = CliRunner().invoke(audit, ["verify", "--store", url, "--public-key", "k.pub"])
    assert lone.exit_code == 2
    assert "--public-key needs --checkpoints" in lone.output
    missing = CliRunner().invoke(
        audit, ["verify", "--store", url, "--checkpoints", str(tmp_path / "none.jsonl")]
    )
    assert missing.exit_code == 1
    assert "does not exist" in missing.output
    nokey = CliRunner().invoke(audit, ["checkpoint", "--store", url, "--sink", "x.jsonl"])
    assert nokey.exit_code == 2
    assert "give --key-file or --key-env" in nokey.output


def test_validate_and_serve_report_an_unreadable_checkpoint_key(tmp_path: Path) -> None:
    from modelrouter.cli import main

    models = Path(__file__).resolve().parents[2] / "examples" / "churn" / "models"
    (tmp_path / "models").symlink_to(models)
    config = tmp_path / "modelrouter.yaml"
    config.write_text(
        "server:\n"
        "  audit:\n"
        "    checkpoints: {sink: checkpoints.jsonl, keyFile: missing.key}\n"
        "models:\n"
        "  churn:\n"
        "    versions:\n"
        "      v1: {storageUri: ./models/churn/v1, modelFormat: sklearn}\n"
    )
    for command in ("validate", "serve"):
        result = CliRunner().invoke(main, [command, str(config)])
        assert result.exit_code == 1, result.output
        assert "checkpoint key file" in result.output
        assert "missing.key" in result.output
