"""The batched audit writer: batching, durable mode, flush on close, retries, overflow."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from modelrouter.audit.writer import AuditWriter
from modelrouter.errors import StoreError
from modelrouter.store.memory import MemoryStore


class FlakyStore(MemoryStore):
    """A memory store that records batch sizes, can fail the next N writes, or hold writes."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []
        self.fail_next = 0
        self.gate: asyncio.Event | None = None

    async def append_audit(self, records: Sequence[Mapping[str, Any]]) -> list[int]:
        self.calls.append(len(records))
        if self.gate is not None:
            await self.gate.wait()
        if self.fail_next:
            self.fail_next -= 1
            raise StoreError("database is locked")
        return await super().append_audit(records)

    async def count(self) -> int:
        return len(await self.query_audit(limit=None))


def rec(i: int) -> dict[str, Any]:
    return {"kind": "decision", "request_id": f"r{i}", "model": "churn", "status": 200}


def test_records_are_written_in_batches() -> None:
    async def main() -> None:
        store = FlakyStore()
        writer = AuditWriter(store, batch_size=100, flush_interval=0.05)
        writer.start()
        for i in range(1000):
            assert writer.submit(rec(i))
        await writer.flush()
        assert writer.written == 1000
        assert await store.count() == 1000
        assert max(store.calls) <= 100
        assert writer.batches == len(store.calls) <= 12
        assert [r["request_id"] for r in await store.query_audit(order="asc", limit=None)] == [
            f"r{i}" for i in range(1000)
        ]
        assert (await store.verify_audit()).ok
        await writer.close()

    asyncio.run(main())


def test_a_few_records_wait_for_the_flush_interval_then_go_together() -> None:
    async def main() -> None:
        store = FlakyStore()
        writer = AuditWriter(store, flush_interval=0.1)
        writer.start()
        for i in range(3):
            writer.submit(rec(i))
        await asyncio.sleep(0.03)
        assert store.calls == []
        await asyncio.sleep(0.2)
        assert store.calls == [3]
        assert writer.pending == 0
        await writer.close()

    asyncio.run(main())


def test_submit_sets_the_time_when_submitted() -> None:
    async def main() -> None:
        store = FlakyStore()
        writer = AuditWriter(store, flush_interval=0.5)
        t0 = time.time()
        writer.submit(rec(1))
        writer.submit({**rec(2), "time": 5.0})
        await writer.close()
        assert time.time() - t0 < 0.4  # close flushed without waiting for the interval
        r1, r2 = await store.query_audit(order="asc")
        assert t0 <= r1["time"] < t0 + 0.1
        assert r2["time"] == 5.0

    asyncio.run(main())


def test_durable_submit_returns_only_after_the_commit() -> None:
    async def main() -> None:
        store = FlakyStore()
        store.gate = asyncio.Event()
        writer = AuditWriter(store, flush_interval=10.0)  # durable must not wait for this
        writer.start()
        task = asyncio.create_task(writer.submit_durable(rec(1)))
        await asyncio.sleep(0.05)
        assert not task.done()
        assert store.calls == [1]  # written at once, not after the flush interval
        assert await store.count() == 0
        store.gate.set()
        seq = await asyncio.wait_for(task, 1)
        assert seq == 1
        assert (await store.get_decision("r1")) is not None
        # group commit: records arriving during a write go together in the next one
        store.gate = asyncio.Event()
        first = asyncio.create_task(writer.submit_durable(rec(2)))
        await asyncio.sleep(0.01)
        rest = [asyncio.create_task(writer.submit_durable(rec(i))) for i in range(3, 8)]
        await asyncio.sleep(0.01)
        store.gate.set()
        seqs = await asyncio.gather(first, *rest)
        assert seqs == [2, 3, 4, 5, 6, 7]
        assert store.calls[-2:] == [1, 5]
        await writer.close()

    asyncio.run(main())


def test_close_flushes_everything() -> None:
    async def main() -> None:
        store = FlakyStore()
        writer = AuditWriter(store, batch_size=64, flush_interval=5.0)
        writer.start()
        for i in range(500):
            writer.submit(rec(i))
        await writer.close()
        assert (writer.written, writer.dropped) == (500, 0)
        assert await store.count() == 500
        assert not writer.submit(rec(999))  # closed: dropped, not queued
        assert writer.dropped == 1
        with pytest.raises(StoreError):
            await writer.submit_durable(rec(1000))

    asyncio.run(main())


def test_a_failing_store_is_retried_with_backoff() -> None:
    async def main() -> None:
        store = FlakyStore()
        store.fail_next = 3
        writer = AuditWriter(store, flush_interval=0.01, retry_initial=0.01, retry_max=0.05)
        writer.start()
        for i in range(50):
            writer.submit(rec(i))
        durable = asyncio.create_task(writer.submit_durable(rec(50)))
        assert await asyncio.wait_for(durable, 2) == 51
        await writer.flush()
        assert writer.errors == 3
        assert (writer.written, writer.dropped) == (51, 0)
        records = await store.query_audit(order="asc", limit=None)
        assert [r["request_id"] for r in records] == [f"r{i}" for i in range(51)]
        await writer.close()

    asyncio.run(main())


def test_overflow_is_counted_and_never_blocks() -> None:
    async def main() -> None:
        store = FlakyStore()
        store.gate = asyncio.Event()  # the store hangs
        writer = AuditWriter(store, batch_size=4, max_queue=10, flush_interval=0.0)
        writer.start()
        await asyncio.sleep(0)
        accepted = [writer.submit(rec(i)) for i in range(30)]
        await asyncio.sleep(0.02)  # the first batch of 4 is now in flight
        # it still counts against max_queue: the queue does not refill behind a hung store
        accepted += [writer.submit(rec(i)) for i in range(30, 40)]
        assert accepted.count(True) == 10
        assert writer.dropped == 30
        assert writer.pending == 10
        with pytest.raises(StoreError, match="full"):
            await writer.submit_durable(rec(99))
        store.gate.set()
        await writer.close()
        assert writer.written == 10
        assert writer.stats()["dropped"] == 31

    asyncio.run(main())


def test_an_invalid_record_is_dropped_alone() -> None:
    async def main() -> None:
        store = FlakyStore()
        writer = AuditWriter(store, flush_interval=0.01)
        writer.submit(rec(1))
        writer.submit({"no": "kind"})
        writer.submit({**rec(3), "latency_ms": math.nan})
        writer.submit(rec(4))
        with pytest.raises(Exception, match="kind"):
            await writer.submit_durable({"request_id": "x"})
        await writer.close()
        assert (writer.written, writer.invalid, writer.dropped) == (2, 3, 3)
        assert [r["request_id"] for r in await store.query_audit(order="asc")] == ["r1", "r4"]

    asyncio.run(main())


def test_close_gives_up_on_a_dead_store_after_its_grace() -> None:
    async def main() -> None:
        store = FlakyStore()
        store.fail_next = 10**9
        writer = AuditWriter(store, flush_interval=0.0, retry_initial=0.01, retry_max=0.02)
        writer.start()
        for i in range(5):
            writer.submit(rec(i))
        durable = asyncio.create_task(writer.submit_durable(rec(5)))
        await asyncio.sleep(0.05)
        assert not durable.done()
        await writer.close(grace=0.1)
        with pytest.raises(StoreError):
            await durable
        assert (writer.written, writer.dropped) == (0, 6)
        assert writer.errors >= 2

    asyncio.run(main())


def test_submit_before_the_loop_runs_is_kept() -> None:
    store = FlakyStore()
    writer = AuditWriter(store)
    assert writer.submit(rec(1))  # no running loop: queued, started later

    async def main() -> None:
        writer.start()
        await writer.flush()
        assert await store.count() == 1
        await writer.close()

    asyncio.run(main())


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="batch_size"):
        AuditWriter(FlakyStore(), batch_size=0)


def test_a_durable_record_gives_up_after_the_store_timeout_and_is_withdrawn() -> None:
    async def main() -> None:
        store = FlakyStore()
        writer = AuditWriter(store, durable_timeout=0.2, retry_initial=0.01, retry_max=0.05)
        store.fail_next = 10**6  # the store is down
        started = time.monotonic()
        with pytest.raises(StoreError, match=r"not committed within 0\.2s"):
            await writer.submit_durable(rec(1))
        assert 0.2 <= time.monotonic() - started < 1.0
        assert writer.timed_out == 1
        store.fail_next = 0  # the store is back: the withdrawn record is not written
        assert await writer.submit_durable(rec(2)) == 1
        await writer.flush()
        assert [r["request_id"] for r in await store.query_audit(limit=None)] == ["r2"]
        assert writer.dropped == 1
        assert writer.pending == 0
        await writer.close()

    asyncio.run(main())


def test_a_durable_record_whose_write_was_under_way_stays_on_the_record() -> None:
    async def main() -> None:
        store = FlakyStore()
        store.gate = asyncio.Event()  # the write hangs (a store that stopped answering)
        writer = AuditWriter(store, durable_timeout=0.1)
        with pytest.raises(StoreError, match="storeTimeout"):
            await writer.submit_durable(rec(1))
        store.gate.set()
        await writer.flush()
        # it was already being written when the caller gave up: committed, not withdrawn
        assert [r["request_id"] for r in await store.query_audit(limit=None)] == ["r1"]
        assert writer.dropped == 0
        assert not writer._withdrawn
        await writer.close()

    asyncio.run(main())


def test_flush_and_close_drain_the_sources_first() -> None:
    """A producer that holds records back (the data plane, for a loop turn) is drained by
    flush and close: what it holds counts as submitted before them."""

    async def main() -> None:
        store = FlakyStore()
        writer = AuditWriter(store, flush_interval=10)
        held: list[dict[str, Any]] = []

        def drain() -> None:
            while held:
                writer.submit(held.pop(0))

        writer.add_source(drain)
        held += [rec(1), rec(2)]
        await writer.flush()  # long before the 10 s interval
        assert [r["request_id"] for r in await store.query_audit(order="asc")] == ["r1", "r2"]
        held.append(rec(3))
        await writer.close()
        assert held == []
        assert await store.count() == 3
        assert writer.dropped == 0

    asyncio.run(main())
