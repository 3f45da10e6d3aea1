"""The data plane's decision records: held to the end of the loop turn, built together there,
in order, and seen by a flush at once; committed before the answer in durable mode."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson

from modelrouter.app import build_services
from modelrouter.protocol import v2
from modelrouter.store.memory import MemoryStore
from support import loaded_from_yaml

CONFIG = """\
server:
  store: memory://
  audit: {{flushInterval: 10s, durable: {durable}}}
models:
  m:
    versions:
      a: {{modelFormat: custom, implementation: "fixtures.models:EchoModel"}}
"""

BODY = orjson.dumps(
    {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}]}
)


def test_a_loop_turns_decisions_are_audited_together_at_its_end(tmp_path: Path) -> None:
    async def main() -> None:
        store = MemoryStore()
        services = build_services(loaded_from_yaml(CONFIG.format(durable="false"), tmp_path), store)
        await services.repository.load_all()
        dp, writer = services.dataplane, services.audit
        await dp.infer("m", v2.decode_request(BODY), request_id="r0")
        # held for the rest of this turn: not submitted yet, but a flush sees it
        assert writer.stats()["pending"] == 0
        await writer.flush()
        assert [r["request_id"] for r in await store.query_audit(kind="decision")] == ["r0"]

        # several requests of one turn: submitted together when it ends, in order
        await asyncio.gather(
            *(dp.infer("m", v2.decode_request(BODY), request_id=f"r{i}") for i in range(1, 6))
        )
        await asyncio.sleep(0)  # the end of the turn
        assert writer.stats()["pending"] == 5
        await writer.flush()
        stored = await store.query_audit(kind="decision", order="asc")
        assert [r["request_id"] for r in stored] == [f"r{i}" for i in range(6)]
        assert all(r["served_by"] == "a" and r["status"] == 200 for r in stored)
        assert all(r["latency_ms"] > 0 for r in stored)
        await writer.close()

    asyncio.run(main())


def test_durable_decisions_are_committed_before_the_answer(tmp_path: Path) -> None:
    async def main() -> None:
        store = MemoryStore()
        services = build_services(loaded_from_yaml(CONFIG.format(durable="true"), tmp_path), store)
        await services.repository.load_all()
        services.audit.start()
        await services.dataplane.infer("m", v2.decode_request(BODY), request_id="d0")
        assert [r["request_id"] for r in await store.query_audit(kind="decision")] == ["d0"]
        await services.audit.close()

    asyncio.run(main())
