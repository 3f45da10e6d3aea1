"""The in-memory store against the store contract, plus its tamper hooks."""

from __future__ import annotations

import asyncio

import pytest

from modelrouter.errors import ConfigError
from modelrouter.store import open_store
from modelrouter.store.base import AuditBounds
from modelrouter.store.memory import MemoryStore
from store_contract import CONTRACT, Check, decision, run_check


@pytest.mark.parametrize("check", CONTRACT, ids=lambda c: c.__name__)
def test_contract(check: Check) -> None:
    run_check(MemoryStore(), check)


def test_open_store_picks_by_scheme(tmp_path: object) -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    for bad in ("mysql://x/y", "redis://localhost", "nothing", "sqlite:///:memory:", "sqlite://"):
        with pytest.raises(ConfigError):
            open_store(bad)


def test_tampering_is_detected() -> None:
    async def main() -> None:
        store = MemoryStore()
        await store.append_audit([decision(i) for i in range(6)])
        assert (await store.verify_audit()).ok
        store.tamper(3, status=500)
        result = await store.verify_audit()
        assert (result.ok, result.first_bad_seq, result.checked) == (False, 3, 2)
        assert "edited" in result.reason

        store = MemoryStore()
        await store.append_audit([decision(i) for i in range(6)])
        store.delete_raw(6)
        result = await store.verify_audit()
        assert (result.ok, result.first_bad_seq) == (False, 6)
        assert "deleted" in result.reason

    asyncio.run(main())


class _StaleBounds(MemoryStore):
    """Its first audit_bounds answers as if read before the last two appends."""

    def __init__(self) -> None:
        super().__init__()
        self.stale: AuditBounds | None = None

    async def audit_bounds(self) -> AuditBounds:
        if self.stale is not None:
            stale, self.stale = self.stale, None
            return stale
        return await super().audit_bounds()


def test_records_appended_while_verify_runs_are_not_flagged() -> None:
    async def main() -> None:
        store = _StaleBounds()
        await store.append_audit([decision(i) for i in range(3)])
        store.stale = await store.audit_bounds()
        await store.append_audit([decision(i) for i in range(3, 5)])
        result = await store.verify_audit(batch=2)
        assert (result.ok, result.checked) == (True, 3)

    asyncio.run(main())


def test_records_stored_after_the_head_are_flagged_at_their_seq() -> None:
    async def main() -> None:
        store = MemoryStore()
        await store.append_audit([decision(i) for i in range(3)])
        head = (await store.audit_bounds()).head
        await store.append_audit([decision(i) for i in range(3, 5)])
        store._head = head  # rows 4 and 5 written without moving the head
        result = await store.verify_audit(batch=2)
        assert (result.ok, result.first_bad_seq) == (False, 4)
        assert "after the head (seq 3)" in result.reason

    asyncio.run(main())
