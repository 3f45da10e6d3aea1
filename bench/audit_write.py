"""What one audited, telemetered request costs in CPU: the audit record's way from constructor
to SQLite row, and ``Telemetry.request``.

    .venv/bin/python bench/audit_write.py [--records N] [--batches 1,32,256]

Every figure is CPU time of this process (``time.process_time``: every thread, so the SQLite
thread's work counts) per record, the median of a few rounds. Rows:

1. The stages, in-process: ``records.decision(...)`` as the data plane calls it; preparing a
   record for sealing (:func:`~modelrouter.audit.chain.prepare_record`) on the general path
   (a ``dumps``/``loads`` round trip and a walk refusing NaN: every record before, any plain
   dict still) and as a decision record (a :class:`~modelrouter.audit.chain.PlainRecord`,
   checked by its constructor, only copied); sealing (canonical JSON, sha256) with the index
   columns; and ``Telemetry.request``.
2. ``SQLiteStore.append_audit`` of batches of decision records (``synchronous=FULL``, one
   transaction per batch), at the batch sizes the writer forms under load (about 225 records at
   4,500 req/s with the default 50 ms flush interval): CPU per record, and wall time per batch
   (the fsync).
3. ``AuditWriter``: N submits, then ``flush()`` (CPU of submit, batching and the store together).
4. With ``--gateway N``: ``modelrouter serve`` as ``bench/serving.py`` runs it (unbatched and
   batched), under ``hey -n N -c 32``; the gateway's CPU per request from ``/proc/PID/stat``
   (utime + stime over the hey run, every thread), with the audit on (the default) and off
   (``server.audit.enabled: false``). ``--only gateway`` skips 1-3; run it with
   ``PYTHONPATH=<another checkout>/src`` to measure that code's gateway the same way.

Compare rows only inside one run: the machine is shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _common import format_table, print_block
from modelrouter.audit import chain, records
from modelrouter.audit.writer import AuditWriter
from modelrouter.store.sqlite import SQLiteStore
from modelrouter.telemetry.service import Telemetry

ROUNDS = 5


def decision(i: int) -> dict[str, Any]:
    """A decision record as the data plane builds it for an answered single-row request."""
    return records.decision(
        time=time.time(),
        request_id=f"{i:032x}",
        model="churn",
        version="v1",
        served_by="v1",
        pinned=False,
        rule="default",
        matched=(),
        bucket=None,
        sticky=False,
        weights={"v1": 90.0, "v2": 10.0},
        shadows=(),
        fallbacks=[],
        store_revision=3,
        status=200,
        latency_ms=0.412,
        prediction=[1],
        error=None,
    )


def per_call_us(fn: Callable[[int], object], n: int) -> float:
    """Median over rounds of CPU microseconds per call of ``fn(i)``."""
    samples = []
    for _ in range(ROUNDS):
        t0 = time.process_time()
        for i in range(n):
            fn(i)
        samples.append((time.process_time() - t0) / n * 1e6)
    return statistics.median(samples)


def stages(n: int) -> list[list[Any]]:
    made = [decision(i) for i in range(n)]
    general = [dict(r) for r in made]  # a plain dict: the normalizing path, as before
    prepared = [chain.prepare_record(r, 0.0) for r in made]
    telemetry = Telemetry(store=None)  # type: ignore[arg-type]  # request() never touches it

    def seal(i: int) -> object:
        data = prepared[i]
        return chain.seal_text(data, i + 1, chain.GENESIS_HASH), chain.index_columns(data)

    def whole(records: list[dict[str, Any]]) -> Callable[[int], object]:
        def run(i: int) -> object:
            data = chain.prepare_record(records[i], 0.0)
            return chain.seal_text(data, i + 1, chain.GENESIS_HASH), chain.index_columns(data)

        return run

    fast = type(made[0]) is getattr(chain, "PlainRecord", None)  # None: code from before it
    rows: list[tuple[str, Callable[[int], object]]] = [
        ("records.decision(...)", decision),
        (
            "prepare_record, general path (round trip + NaN walk)",
            lambda i: chain.prepare_record(general[i], 0.0),
        ),
        ("prepare_record, decision record", lambda i: chain.prepare_record(made[i], 0.0)),
        ("seal_text + index_columns", seal),
        ("prepare + seal + columns, general path", whole(general)),
        ("prepare + seal + columns, decision record", whole(made)),
        (
            "Telemetry.request",
            lambda i: telemetry.request("churn", "v1", "default", 200, 0.0004, f"r{i}", [1]),
        ),
    ]
    out = [[name, f"{per_call_us(fn, n):.2f}"] for name, fn in rows]
    out.append(["(decision records take the fast path)", "yes" if fast else "no"])
    return out


async def store_rows(folder: Path, n: int, batch_sizes: list[int]) -> list[list[Any]]:
    rows = []
    for size in batch_sizes:
        store = SQLiteStore(folder / f"append-{size}.db")
        await store.open()
        await store.append_audit([decision(0)])  # schema, first page
        cpu, wall = [], []
        batches = max(1, n // size)
        for _ in range(ROUNDS):
            batch_list = [[decision(b * size + i) for i in range(size)] for b in range(batches)]
            t0, w0 = time.process_time(), time.perf_counter()
            for batch in batch_list:
                await store.append_audit(batch)
            cpu.append((time.process_time() - t0) / (batches * size) * 1e6)
            wall.append((time.perf_counter() - w0) / batches * 1e3)
        await store.close()
        rows.append([size, f"{statistics.median(cpu):.2f}", f"{statistics.median(wall):.2f}"])
    return rows


async def writer_row(folder: Path, n: int) -> list[Any]:
    store = SQLiteStore(folder / "writer.db")
    await store.open()
    writer = AuditWriter(store)
    cpu = []
    for _ in range(ROUNDS):
        t0 = time.process_time()
        for i in range(n):
            writer.submit(decision(i))
        await writer.flush()
        cpu.append((time.process_time() - t0) / n * 1e6)
    stats = writer.stats()
    await writer.close()
    await store.close()
    per_batch = stats["written"] / max(stats["batches"], 1)
    return [n, f"{per_batch:.0f}", f"{statistics.median(cpu):.2f}"]


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid``, every thread, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway_rows(folder: Path, n: int) -> list[list[Any]]:
    import serving  # trains the model: only when asked
    from _common import free_ports, run_hey

    model = serving.build_model(folder / "model")
    body = folder / "body.json"
    body.write_bytes(model.timed_body)
    configs = {
        "unbatched": "    batcher: {enabled: false}\n",
        "batched (defaults)": "",
    }
    rows = []
    for label, extra in configs.items():
        for audit in (True, False):
            name = f"{'a' if audit else 'n'}-{len(rows)}"
            port = free_ports(1)[0]
            server = serving.modelrouter_server(folder, model, port, name, extra)
            config = folder / name / "modelrouter.yaml"
            if not audit:
                text = config.read_text().replace(
                    "  name: bench\n", "  name: bench\n  audit: {enabled: false}\n"
                )
                config.write_text(text)
            server.start()
            try:
                server.wait_ready()
                assert server.proc is not None
                url = serving.infer_url(port)
                run_hey(url, body, min(n, 2000), 32)  # warm up
                before = proc_cpu_seconds(server.proc.pid)
                result = run_hey(url, body, n, 32)
                cpu = proc_cpu_seconds(server.proc.pid) - before
            finally:
                server.stop()
            rows.append(
                [
                    label,
                    "on" if audit else "off",
                    result.requests,
                    f"{cpu / result.requests * 1e6:.0f}",
                    f"{result.rps:.0f}",
                    f"{os.getloadavg()[0]:.1f}",
                ]
            )
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=5000, help="records per round")
    parser.add_argument("--batches", default="1,32,256", help="append_audit batch sizes")
    parser.add_argument("--gateway", type=int, default=0, help="requests per gateway hey run")
    parser.add_argument("--only", choices=["gateway"], help="skip the in-process rows")
    args = parser.parse_args()
    sizes = [int(s) for s in args.batches.split(",")]
    print(f"load average {os.getloadavg()[0]:.2f}; CPU per record, median of {ROUNDS} rounds")
    if args.gateway:
        with tempfile.TemporaryDirectory() as tmp:
            print_block(
                "the gateway under hey -c 32 (CPU of the gateway process per request)",
                format_table(
                    ["gateway", "audit", "requests", "CPU us/req", "req/s", "load"],
                    gateway_rows(Path(tmp), args.gateway),
                    "llrrrr",
                ),
            )
    if args.only == "gateway":
        return
    print_block("stages (us/record)", format_table(["stage", "us"], stages(args.records), "lr"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print_block(
            "SQLiteStore.append_audit of decision records",
            format_table(
                ["batch", "CPU us/record", "wall ms/batch"],
                await store_rows(folder, args.records, sizes),
                "rrr",
            ),
        )
        print_block(
            "AuditWriter: submit N, then flush",
            format_table(
                ["records", "records/batch", "CPU us/record"],
                [await writer_row(folder, args.records)],
                "rrr",
            ),
        )


if __name__ == "__main__":
    asyncio.run(main())
