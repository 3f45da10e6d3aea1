"""What the truthful audit costs: verify with index-column cross-checks, checkpoints, and the
decision record constructor, each against a peer measured in the same run.

    .venv/bin/python bench/audit_verify.py [--records N]

1. ``Store.verify_audit`` on a SQLite log of N decision records (hash, link, index columns,
   nothing past the head) against the chain alone (the same pages fed to ``ChainVerifier``
   without columns, as verify did before): the ratio is what reading and checking the seven
   index columns costs. Target: at least 10,000 records a second.
2. ``verify_checkpoints`` with one checkpoint per 100 records against ``verify_audit`` alone.
   Target: at most 1.25x.
3. ``records.decision(...)`` against the dict literal the data plane built before (per
   request, on the hot path). Target: it adds under 1% of a request (6 microseconds of the
   0.60 ms p50 at c=1 in PERFORMANCE.md); the cost is the keyword-argument call.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
import timeit
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from _common import format_table, print_block
from modelrouter.audit import records
from modelrouter.audit.chain import ChainVerifier
from modelrouter.audit.checkpoints import verify_checkpoints, write_checkpoint
from modelrouter.audit.signing import SigningKey
from modelrouter.audit.sinks import FileSink
from modelrouter.store.sqlite import SQLiteStore


def _decision(i: int) -> dict[str, Any]:
    return records.decision(
        request_id=f"req-{i}",
        model="churn",
        version="v1" if i % 2 else "v2",
        served_by="v1" if i % 2 else "v2",
        pinned=False,
        rule="default",
        matched=["header x-region exact 'eu'"],
        bucket=i % 10_000,
        sticky=True,
        weights={"v1": 90, "v2": 10},
        shadows=[],
        fallbacks=[],
        store_revision=3,
        status=200,
        latency_ms=1.25,
    )


ROUNDS = 5


async def _timed(fn: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return time.perf_counter() - t0


async def _chain_only(store: SQLiteStore) -> None:
    bounds = await store.audit_bounds()
    verifier = ChainVerifier(bounds.anchor)
    after = bounds.anchor.seq
    while True:
        page = await store.query_audit(limit=1000, order="asc", after_seq=after)
        for record in page:
            verifier.feed(record)
        if len(page) < 1000:
            break
        after = page[-1]["seq"]
    assert verifier.finish(bounds.head).ok


async def _stores(n: int, folder: Path) -> list[list[Any]]:
    key = SigningKey.generate()
    sink = FileSink(folder / "checkpoints.jsonl")
    async with SQLiteStore(folder / "bench.db") as store:
        for start in range(0, n, 100):
            await store.append_audit([_decision(i) for i in range(start, min(n, start + 100))])
            await write_checkpoint(store, sink, key)

        async def full() -> None:
            assert (await store.verify_audit()).ok

        async def signed() -> None:
            result = await verify_checkpoints(store, sink.lines(), key.public)
            assert result.ok, result.reason

        chain = verify = checked = math.inf
        for _ in range(ROUNDS):  # interleaved, so that a busy moment hits all three alike
            chain = min(chain, await _timed(lambda: _chain_only(store)))
            verify = min(verify, await _timed(full))
            checked = min(checked, await _timed(signed))

    def row(what: str, t: float, ratio: float, target: str) -> list[Any]:
        return [what, f"{t * 1000:.0f}", f"{n / t:,.0f}", f"{ratio:.2f}", target]

    return [
        row("verify_audit (columns, head)", verify, verify / chain, ">= 10,000 records/s"),
        row("chain alone (peer)", chain, 1.0, ""),
        row("verify --checkpoints", checked, checked / verify, "<= 1.25 x verify_audit"),
    ]


def _constructor() -> list[list[Any]]:
    def literal() -> dict[str, Any]:
        return {
            "kind": "decision",
            "time": 1.0,
            "request_id": "r",
            "model": "churn",
            "version": "v2",
            "served_by": "v2",
            "pinned": False,
            "rule": "default",
            "matched": list(("a",)),
            "bucket": 5,
            "sticky": True,
            "weights": dict({"v1": 90, "v2": 10}),
            "shadows": list(()),
            "fallbacks": [],
            "table_version": 3,
            "status": 200,
            "latency_ms": 1.0,
        }

    def built() -> dict[str, Any]:
        return records.decision(
            time=1.0,
            request_id="r",
            model="churn",
            version="v2",
            served_by="v2",
            pinned=False,
            rule="default",
            matched=("a",),
            bucket=5,
            sticky=True,
            weights={"v1": 90, "v2": 10},
            shadows=(),
            fallbacks=[],
            store_revision=3,
            status=200,
            latency_ms=1.0,
        )

    n = 200_000
    peer = min(timeit.repeat(literal, number=n, repeat=5)) / n
    ours = min(timeit.repeat(built, number=n, repeat=5)) / n
    return [
        [
            "records.decision()",
            f"{ours * 1e9:.0f}",
            f"{ours / peer:.2f}",
            f"{(ours - peer) * 1e9:.0f}",
        ],
        ["dict literal (peer)", f"{peer * 1e9:.0f}", "1.00", ""],
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = asyncio.run(_stores(args.records, Path(tmp)))
    print_block(
        f"audit verify, SQLite, {args.records} records (best of {ROUNDS}, interleaved)",
        format_table(["what", "ms", "records/s", "ratio", "target"], rows, "lrrrl"),
    )
    print_block(
        "decision record, per request (best of 5 x 200000)",
        format_table(["what", "ns", "ratio", "added ns (target < 6000)"], _constructor(), "lrrr"),
    )


if __name__ == "__main__":
    main()
