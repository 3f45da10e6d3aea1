"""Signed checkpoints: what a chain alone cannot see (truncation, a rewritten head) is caught."""

from __future__ import annotations

import asyncio
import base64
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from modelrouter.audit.chain import ChainPoint
from modelrouter.audit.checkpoints import (
    Checkpoint,
    CheckpointResult,
    CheckpointWriter,
    sign,
    verify_checkpoints,
    write_checkpoint,
)
from modelrouter.audit.signing import SigningKey, load_public_key, load_signing_key
from modelrouter.audit.sinks import FileSink, open_sink
from modelrouter.config.schema import CheckpointSettings
from modelrouter.errors import ConfigError
from modelrouter.store.memory import MemoryStore
from modelrouter.store.sqlite import SQLiteStore
from store_contract import decision

KEY = SigningKey.generate()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_checkpoint_line_round_trips_and_its_signature_binds_every_field() -> None:
    c = sign(ChainPoint(7, "ab" * 32), 1000.5, KEY)
    back = Checkpoint.from_line(c.to_line())
    assert back == c
    assert back.signed_by(KEY.public)
    for forged in (
        Checkpoint(8, c.hash, c.time, c.key, c.signature),
        Checkpoint(c.seq, "cd" * 32, c.time, c.key, c.signature),
        Checkpoint(c.seq, c.hash, c.time + 1, c.key, c.signature),
        Checkpoint(c.seq, c.hash, c.time, c.key, "not base64!"),
    ):
        assert not forged.signed_by(KEY.public)
    assert not c.signed_by(SigningKey.generate().public)


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("not json", "not JSON"),
        ('{"format": "other/1"}', "not a modelrouter-audit-checkpoint/1 line"),
        ('{"format": "modelrouter-audit-checkpoint/1", "seq": -1}', "seq"),
        ('{"format": "modelrouter-audit-checkpoint/1", "seq": 1, "hash": "x"}', "hash"),
    ],
)
def test_a_damaged_line_is_named(line: str, why: str) -> None:
    from modelrouter.errors import InvalidInput

    with pytest.raises(InvalidInput, match=why):
        Checkpoint.from_line(line)


async def _fill(store: Any, n: int) -> None:
    await store.append_audit([decision(i) for i in range(n)])


def _check(store: Any, sink: FileSink, key: Any = None) -> CheckpointResult:
    result: CheckpointResult = run(verify_checkpoints(store, sink.lines(), key, batch=2))
    return result


def _truncate(path: Path, keep: int) -> None:
    """What someone with write access to the database can do: cut the log and set the head
    back to the last record kept, so the chain verifies."""
    with sqlite3.connect(path) as conn:
        (digest,) = conn.execute("SELECT hash FROM mr_audit WHERE seq = ?", (keep,)).fetchone()
        conn.execute("DELETE FROM mr_audit WHERE seq > ?", (keep,))
        conn.execute("UPDATE mr_state SET head_seq = ?, head_hash = ?", (keep, digest))


def test_a_truncated_log_with_a_rewritten_head_passes_verify_but_not_its_checkpoints(
    tmp_path: Path,
) -> None:
    db = tmp_path / "a.db"
    sink = FileSink(tmp_path / "checkpoints.jsonl")

    async def setup() -> None:
        async with SQLiteStore(db) as store:
            await _fill(store, 4)
            await write_checkpoint(store, sink, KEY)  # seq 4
            await _fill(store, 6)
            await write_checkpoint(store, sink, KEY)  # seq 10

    run(setup())

    async def honest() -> CheckpointResult:
        async with SQLiteStore(db) as store:
            return await verify_checkpoints(store, sink.lines(), KEY.public)

    result = run(honest())
    assert result.ok, result.reason
    assert (result.checkpoints, result.checked, result.newest and result.newest.seq) == (2, 2, 10)

    _truncate(db, 6)

    # then the writer goes on through the store itself: a new, self-consistent seq 7 and 8
    async def rewrite() -> tuple[bool, CheckpointResult]:
        async with SQLiteStore(db) as store:
            await store.append_audit([decision(100), decision(101)])
            plain = await store.verify_audit()
            return plain.ok, await verify_checkpoints(store, sink.lines(), KEY.public)

    plain_ok, result = run(rewrite())
    assert plain_ok  # the chain alone cannot tell
    assert not result.ok
    assert result.chain.ok
    assert result.first_bad_seq == 9
    assert "says the log reached seq 10, but the store's head is seq 8" in result.reason
    assert "truncation" in result.reason


def test_a_rewritten_record_under_a_checkpoint_fails_at_its_seq(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    sink = FileSink(tmp_path / "c.jsonl")

    async def main() -> CheckpointResult:
        async with SQLiteStore(db) as store:
            await _fill(store, 5)
            await write_checkpoint(store, sink, KEY)  # seq 5
            await _fill(store, 5)
            await write_checkpoint(store, sink, KEY)  # seq 10
        _truncate(db, 3)
        async with SQLiteStore(db) as store:
            await _fill(store, 9)  # back to seq 12, every hash from seq 4 on is new
            assert (await store.verify_audit()).ok
            return await verify_checkpoints(store, sink.lines(), KEY.public)

    result = run(main())
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert "the record at seq 5 is not the one signed at" in result.reason
    assert "(1 more problem)" in result.reason


def test_checkpoints_need_the_right_key_and_undamaged_lines(tmp_path: Path) -> None:
    store = MemoryStore()
    sink = FileSink(tmp_path / "c.jsonl")
    run(_fill(store, 3))
    run(write_checkpoint(store, sink, KEY))
    assert _check(store, sink, KEY.public).ok
    other = SigningKey.generate()
    result = _check(store, sink, other.public)
    assert not result.ok
    assert f"is not signed by key {other.public.key_id}" in result.reason
    # without a key: the key inside the first checkpoint, and every other must match it
    run(write_checkpoint(store, sink, other))
    result = _check(store, sink)
    assert not result.ok
    assert "checkpoint line 2 (seq 3) is not signed by key" in result.reason
    assert "more problem" not in result.reason
    good = (tmp_path / "c.jsonl").read_text().splitlines()[0]
    (tmp_path / "d.jsonl").write_text(
        good + '\n{"format": "modelrouter-audit-checkpoint/1", "seq": "x"}\n'
    )
    result = _check(store, FileSink(tmp_path / "d.jsonl"), KEY.public)
    assert result.reason == "checkpoint line 2 is damaged: seq: not a non-negative integer"


def test_an_empty_or_missing_sink_fails(tmp_path: Path) -> None:
    store = MemoryStore()
    (tmp_path / "empty").write_text("")
    result = _check(store, FileSink(tmp_path / "empty"))
    assert (result.ok, result.reason) == (False, "the sink holds no checkpoints")
    with pytest.raises(ConfigError, match="does not exist"):
        _check(store, FileSink(tmp_path / "missing"))


def test_checkpoints_before_the_pruned_part_are_counted_not_failed(tmp_path: Path) -> None:
    store = MemoryStore()
    sink = FileSink(tmp_path / "c.jsonl")

    async def main() -> CheckpointResult:
        await write_checkpoint(store, sink, KEY)  # the empty log, seq 0
        await _fill(store, 4)
        await write_checkpoint(store, sink, KEY)
        await _fill(store, 4)
        await store.prune_audit(max_count=2)
        await write_checkpoint(store, sink, KEY)
        return await verify_checkpoints(store, sink.lines(), KEY.public)

    result = run(main())
    assert result.ok, result.reason
    assert (result.checkpoints, result.checked, result.pruned) == (3, 1, 2)


def test_the_chain_is_verified_first(tmp_path: Path) -> None:
    store = MemoryStore()
    sink = FileSink(tmp_path / "c.jsonl")
    run(_fill(store, 3))
    run(write_checkpoint(store, sink, KEY))
    store.tamper(2, status=500)
    result = _check(store, sink, KEY.public)
    assert (result.ok, result.first_bad_seq, result.chain.ok) == (False, 2, False)


def test_one_writer_of_several_signs_and_only_when_the_head_moved(tmp_path: Path) -> None:
    store = MemoryStore()
    sink = FileSink(tmp_path / "c.jsonl")

    async def main() -> None:
        one = CheckpointWriter(store, sink, KEY, interval=60)
        two = CheckpointWriter(store, sink, KEY, interval=60)
        first = await one.tick()
        assert first is not None
        assert first.seq == 0
        assert await two.tick() is None  # the lease is one's
        assert await one.tick() is None  # the head did not move
        await _fill(store, 2)
        again = await one.tick()
        assert again is not None
        assert again.seq == 2
        assert one.written == 2

    run(main())
    lines = (tmp_path / "c.jsonl").read_text().splitlines()
    assert [Checkpoint.from_line(x).seq for x in lines] == [0, 2]


def test_the_writer_keeps_running_when_the_sink_fails(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    store = MemoryStore()
    writer = CheckpointWriter(store, FileSink(tmp_path / "dir"), KEY, interval=0.01)

    async def main() -> None:
        task = asyncio.create_task(writer.run())
        while writer.errors < 2:  # noqa: ASYNC110 (polls a counter of the code under test)
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        errors = writer.errors
        await writer.close()  # its last try fails too, and the lease is given up all the same
        assert writer.errors == errors + 1
        assert await store.try_lock("audit-checkpoints", "someone-else", 1)

    run(main())


def test_closing_the_writer_signs_what_was_flushed_last(tmp_path: Path) -> None:
    store = MemoryStore()
    sink = FileSink(tmp_path / "c.jsonl")

    async def main() -> None:
        writer = CheckpointWriter(store, sink, KEY, interval=3600)
        task = asyncio.create_task(writer.run())
        while writer.written < 1:  # noqa: ASYNC110 (polls a counter of the code under test)
            await asyncio.sleep(0.01)
        await _fill(store, 3)  # after the interval's checkpoint, before shutdown
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await writer.close()
        assert await store.try_lock("audit-checkpoints", "someone-else", 1)

    run(main())
    seqs = [Checkpoint.from_line(x).seq for x in (tmp_path / "c.jsonl").read_text().splitlines()]
    assert seqs == [0, 3]


def test_keys_load_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pem = tmp_path / "k.pem"
    pem.write_bytes(KEY.pem())
    assert load_signing_key(pem).public.raw_hex == KEY.public.raw_hex
    assert load_public_key(pem).raw_hex == KEY.public.raw_hex  # a private key file works
    (tmp_path / "k.pub").write_bytes(KEY.public.pem())
    assert load_public_key(tmp_path / "k.pub").key_id == KEY.public.key_id
    monkeypatch.setenv("CKPT_KEY", KEY.pem().decode())
    assert load_signing_key(key_env="CKPT_KEY").public.raw_hex == KEY.public.raw_hex
    from cryptography.hazmat.primitives import serialization

    raw = KEY.key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    monkeypatch.setenv("CKPT_RAW", base64.b64encode(raw).decode())
    assert load_signing_key(key_env="CKPT_RAW").public.raw_hex == KEY.public.raw_hex
    monkeypatch.setenv("CKPT_BAD", "hello")
    for kwargs, why in (
        ({"key_env": "CKPT_BAD"}, r"\$CKPT_BAD: not an Ed25519 private key"),
        ({"key_env": "CKPT_UNSET"}, "CKPT_UNSET .* is not set"),
        ({"key_file": tmp_path / "nope.pem"}, "nope.pem"),
        ({}, "keyFile or keyEnv"),
    ):
        with pytest.raises(ConfigError, match=why):
            load_signing_key(**kwargs)  # type: ignore[arg-type]


def test_settings_and_sinks_are_checked() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="exactly one"):
        CheckpointSettings(sink="c.jsonl")
    with pytest.raises(ValidationError, match="exactly one"):
        CheckpointSettings(sink="c.jsonl", keyFile="k", keyEnv="K")
    assert CheckpointSettings(sink="c.jsonl", keyEnv="K", interval="30s").interval == 30.0  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="name an object"):
        open_sink("s3://bucket")
    with pytest.raises(ConfigError, match="file path or s3"):
        open_sink("gs://bucket/key")
    assert isinstance(open_sink("rel/c.jsonl", Path("/base")), FileSink)
