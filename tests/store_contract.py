"""What every Store must do, as checks run against each implementation.

A test module parametrizes over :data:`CONTRACT` and runs each check against a fresh store:
``asyncio.run(check(store))``; the check closes nothing, the caller does.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from modelrouter.errors import Conflict, InvalidInput, RolloutConflict
from modelrouter.store import Store
from modelrouter.store.base import RolloutWrite

Check = Callable[[Store], Awaitable[None]]
CONTRACT: list[Check] = []

DOC_V1 = {"http": [{"name": "default", "route": [{"destination": "v1"}]}]}
DOC_SPLIT = {
    "http": [
        {
            "name": "default",
            "route": [{"destination": "v1", "weight": 90}, {"destination": "v2", "weight": 10}],
        }
    ]
}


def contract(fn: Check) -> Check:
    CONTRACT.append(fn)
    return fn


def decision(i: int, **over: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "kind": "decision",
        "request_id": f"req-{i}",
        "model": "churn",
        "version": "v1" if i % 2 else "v2",
        "rule": "default" if i % 3 else "eu",
        "matched": [],
        "bucket": i * 7 % 10000,
        "weights": {"v1": 90, "v2": 10},
        "shadows": [],
        "fallbacks": [],
        "table_version": 1,
        "status": 200,
        "latency_ms": 1.25 + i,
        "error": None,
    }
    record.update(over)
    return record


async def wait_for(cond: Callable[[], bool], within: float = 3.0) -> None:
    deadline = time.monotonic() + within
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)


@contract
async def routing_versions_grow_per_model(store: Store) -> None:
    assert await store.get_routing() == {}
    r1 = await store.put_routing("churn", DOC_V1, "alice", "first")
    assert (r1.model, r1.version, r1.document, r1.actor) == ("churn", 1, DOC_V1, "alice")
    assert abs(r1.updated_at - time.time()) < 60
    r2 = await store.put_routing("churn", DOC_SPLIT, "bob", "canary 10%")
    other = await store.put_routing("fraud", DOC_V1, "bob", "first")
    assert (r2.version, other.version) == (2, 1)
    table = await store.get_routing()
    assert set(table) == {"churn", "fraud"}
    assert table["churn"].version == 2
    assert table["churn"].document == DOC_SPLIT
    assert table["churn"].actor == "bob"


@contract
async def optimistic_put_conflicts_and_leaves_nothing_behind(store: Store) -> None:
    await store.put_routing("churn", DOC_V1, "alice", "first", expected_version=0)
    rev = await store.revision()
    head = (await store.audit_bounds()).head
    with pytest.raises(Conflict) as info:
        await store.put_routing("churn", DOC_SPLIT, "bob", "stale", expected_version=0)
    assert info.value.code == "conflict"
    assert info.value.status.http == 409
    with pytest.raises(Conflict):
        await store.put_routing("churn", DOC_SPLIT, "bob", "stale", expected_version=2)
    assert await store.revision() == rev
    assert (await store.audit_bounds()).head == head
    assert (await store.get_routing())["churn"].document == DOC_V1
    r = await store.put_routing("churn", DOC_SPLIT, "bob", "fresh", expected_version=1)
    assert r.version == 2
    with pytest.raises(Conflict):
        await store.put_routing("new-model", DOC_V1, "bob", "x", expected_version=3)


@contract
async def put_routing_writes_a_change_record(store: Store) -> None:
    await store.put_routing("churn", DOC_V1, "alice", "initial table")
    await store.put_routing("churn", DOC_SPLIT, "bob", "start canary")
    changes = await store.query_audit(kind="change", order="asc")
    assert len(changes) == 2
    first, second = changes
    assert first["actor"] == "alice"
    assert first["what"] == "routing of churn"
    assert first["before"] is None
    assert first["after"] == DOC_V1
    assert first["routing_version"] == 1
    assert second["before"] == DOC_V1
    assert second["after"] == DOC_SPLIT
    assert second["reason"] == "start canary"
    assert (second["previous_routing_version"], second["routing_version"]) == (1, 2)
    assert second["model"] == "churn"
    assert (await store.verify_audit()).ok


@contract
async def a_rollout_step_writes_weights_and_state_together(store: Store) -> None:
    """put_routing with a rollout: both or neither, whichever version is stale."""
    await store.put_routing("churn", DOC_V1, "alice", "initial table")
    started = await store.put_rollout("canary", {"phase": "Initialized"}, 0)
    step = RolloutWrite("canary", {"phase": "Progressing", "canaryWeight": 10}, started.version)
    after = await store.put_routing("churn", DOC_SPLIT, "rollout", "step to 10", 1, step)
    assert after.version == 2
    stored = await store.get_rollout("canary")
    assert stored is not None
    assert (stored.version, stored.state) == (started.version + 1, dict(step.state))
    revision = await store.revision()
    changes = len(await store.query_audit(kind="change"))

    # the rollout moved on (a command was queued): neither is written
    await store.put_rollout("canary", {**stored.state, "command": {"action": "pause"}}, 2)
    stale = RolloutWrite("canary", {"phase": "Progressing", "canaryWeight": 20}, 2)
    with pytest.raises(RolloutConflict):
        await store.put_routing("churn", DOC_V1, "rollout", "step to 20", 2, stale)
    routing = (await store.get_routing())["churn"]
    assert (routing.version, routing.document["http"]) == (2, DOC_SPLIT["http"])
    assert await store.revision() == revision
    assert len(await store.query_audit(kind="change")) == changes
    kept = await store.get_rollout("canary")
    assert kept is not None
    assert (kept.version, kept.state["command"]) == (3, {"action": "pause"})

    # the routing moved on (an admin): neither is written either
    fresh = RolloutWrite("canary", {"phase": "Progressing", "canaryWeight": 20}, 3)
    with pytest.raises(Conflict) as caught:
        await store.put_routing("churn", DOC_V1, "rollout", "step to 20", 1, fresh)
    assert not isinstance(caught.value, RolloutConflict)
    still = await store.get_rollout("canary")
    assert still is not None
    assert still.version == 3
    assert (await store.get_routing())["churn"].version == 2
    with pytest.raises(InvalidInput):  # a state that is not JSON: nothing written
        await store.put_routing(
            "churn", DOC_V1, "rollout", "x", 2, RolloutWrite("canary", {"w": math.nan}, 3)
        )
    assert (await store.get_routing())["churn"].version == 2
    assert (await store.verify_audit()).ok


@contract
async def bad_documents_are_refused(store: Store) -> None:
    with pytest.raises(InvalidInput):
        await store.put_routing("churn", {"w": math.nan}, "alice", "x")
    with pytest.raises(InvalidInput):
        await store.put_routing("churn", [1, 2], "alice", "x")  # type: ignore[arg-type]
    assert await store.get_routing() == {}
    assert await store.revision() == 0


@contract
async def revision_counts_puts_only(store: Store) -> None:
    assert await store.revision() == 0
    await store.put_routing("a", DOC_V1, "x", "r")
    await store.put_routing("b", DOC_V1, "x", "r")
    await store.append_audit([decision(1)])
    assert await store.revision() == 2


@contract
async def append_assigns_gapless_seqs_and_times(store: Store) -> None:
    assert await store.append_audit([]) == []
    before = time.time()
    seqs = await store.append_audit([decision(i) for i in range(5)])
    assert seqs == [1, 2, 3, 4, 5]
    more = await store.append_audit(
        [decision(9, time=1000.5, seq=77, hash="forged", prev_hash="forged")]
    )
    assert more == [6]
    records = await store.query_audit(order="asc")
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5, 6]
    assert all(before - 1 <= r["time"] <= time.time() + 1 for r in records[:5])
    assert records[5]["time"] == 1000.5
    assert records[5]["hash"] != "forged"
    assert records[0]["prev_hash"] == "0" * 64
    assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(records))
    assert records[2]["weights"] == {"v1": 90, "v2": 10}


@contract
async def records_need_a_kind_and_json(store: Store) -> None:
    with pytest.raises(InvalidInput):
        await store.append_audit([{"request_id": "x"}])
    with pytest.raises(InvalidInput):
        await store.append_audit([decision(1, latency_ms=math.inf)])
    with pytest.raises(InvalidInput):
        await store.append_audit([decision(1, time="yesterday")])
    # a batch with one bad record writes nothing
    with pytest.raises(InvalidInput):
        await store.append_audit([decision(1), {"no": "kind"}])
    assert await store.query_audit() == []
    seqs = await store.append_audit([decision(1, shadows=("v3",), note="naïve ✓")])
    (r,) = await store.query_audit()
    assert r["seq"] == seqs[0]
    assert r["shadows"] == ["v3"]
    assert r["note"] == "naïve ✓"


@contract
async def query_filters(store: Store) -> None:
    await store.append_audit([decision(i, time=1000.0 + i) for i in range(12)])
    await store.append_audit([decision(100, model="fraud", time=2000.0)])
    await store.put_routing("churn", DOC_V1, "alice", "x")

    def ids(rs: list[dict[str, Any]]) -> list[str]:
        return [r.get("request_id", r["kind"]) for r in rs]

    assert len(await store.query_audit(model="churn", kind="decision", limit=None)) == 12
    assert ids(await store.query_audit(model="fraud")) == ["req-100"]
    v1 = await store.query_audit(version="v1", limit=None)
    assert v1
    assert all(r["version"] == "v1" for r in v1)
    eu = await store.query_audit(rule="eu", limit=None)
    assert ids(eu) == ["req-9", "req-6", "req-3", "req-0"]
    assert ids(await store.query_audit(request_id="req-4")) == ["req-4"]
    assert ids(await store.query_audit(kind="change")) == ["change"]
    assert ids(await store.query_audit(since=1010.0, until=1011.0)) == ["req-11", "req-10"]
    assert ids(await store.query_audit(since=1010.0, until=1011.0, order="asc")) == [
        "req-10",
        "req-11",
    ]
    assert len(await store.query_audit(limit=3)) == 3
    assert await store.query_audit(limit=0) == []
    assert [r["seq"] for r in await store.query_audit(limit=3)] == [14, 13, 12]
    # after_seq is a cursor in the requested order
    assert [r["seq"] for r in await store.query_audit(order="asc", after_seq=10)] == [
        11,
        12,
        13,
        14,
    ]
    assert [r["seq"] for r in await store.query_audit(order="desc", after_seq=4)] == [3, 2, 1]
    assert ids(await store.query_audit(model="churn", rule="eu", version="v1")) == [
        "req-9",
        "req-3",
    ]
    with pytest.raises(InvalidInput):
        await store.query_audit(order="sideways")  # type: ignore[arg-type]


@contract
async def get_decision_returns_the_newest_decision(store: Store) -> None:
    assert await store.get_decision("nope") is None
    await store.append_audit([decision(1, status=500), decision(2)])
    await store.append_audit([decision(1, status=200)])
    await store.append_audit([{"kind": "admin", "request_id": "req-1", "action": "note"}])
    found = await store.get_decision("req-1")
    assert found is not None
    assert (found["status"], found["seq"], found["kind"]) == (200, 3, "decision")


@contract
async def iter_audit_pages_in_seq_order(store: Store) -> None:
    for start in range(0, 25, 5):
        await store.append_audit([decision(i) for i in range(start, start + 5)])
    seen = [r["seq"] async for r in store.iter_audit(batch=7)]
    assert seen == list(range(1, 26))
    assert [r["seq"] async for r in store.iter_audit(batch=25)] == list(range(1, 26))


@contract
async def returned_records_are_copies(store: Store) -> None:
    await store.append_audit([decision(1)])
    await store.put_routing("churn", DOC_V1, "alice", "x")
    (r,) = await store.query_audit(kind="decision")
    r["status"] = 500
    r["weights"]["v1"] = 0
    table = await store.get_routing()
    table["churn"].document["http"].clear()
    assert (await store.query_audit(kind="decision"))[0]["status"] == 200
    assert (await store.get_routing())["churn"].document == DOC_V1
    assert (await store.verify_audit()).ok


@contract
async def concurrent_appends_stay_linear(store: Store) -> None:
    async def writer(k: int) -> list[int]:
        seqs: list[int] = []
        for j in range(5):
            seqs += await store.append_audit([decision(k * 100 + j + n) for n in range(3)])
        return seqs

    results = await asyncio.gather(*(writer(k) for k in range(6)))
    everything = sorted(s for r in results for s in r)
    assert everything == list(range(1, 91))
    result = await store.verify_audit()
    assert result.ok, result
    assert result.checked == 90


@contract
async def prune_by_count_keeps_the_chain_verifiable(store: Store) -> None:
    await store.append_audit([decision(i) for i in range(10)])
    assert await store.prune_audit(max_count=20) == 0
    assert await store.prune_audit() == 0
    assert await store.prune_audit(max_count=4) == 6
    bounds = await store.audit_bounds()
    assert bounds.anchor.seq == 6
    remaining = await store.query_audit(order="asc")
    assert [r["seq"] for r in remaining] == [7, 8, 9, 10, 11]
    note = remaining[-1]
    assert (note["kind"], note["action"], note["deleted"], note["anchor_seq"]) == (
        "admin",
        "prune_audit",
        6,
        6,
    )
    result = await store.verify_audit()
    assert result.ok, result
    assert result.checked == 5
    await store.append_audit([decision(99)])
    assert (await store.verify_audit()).ok
    # pruning everything leaves only the prune's own record, still verifiable
    assert await store.prune_audit(max_count=0) == 6
    assert [r["seq"] for r in await store.query_audit()] == [13]
    assert (await store.verify_audit()).ok


@contract
async def prune_by_age_cuts_before_the_first_young_record(store: Store) -> None:
    now = time.time()
    old = [decision(i, time=now - 90 * 86400 + i) for i in range(5)]
    young = [decision(10 + i, time=now - 3600 + i) for i in range(3)]
    await store.append_audit(old + young)
    with pytest.raises(InvalidInput):
        await store.prune_audit(max_age=-1)
    assert await store.prune_audit(max_age=30 * 86400) == 5
    kept = await store.query_audit(kind="decision", order="asc")
    assert [r["request_id"] for r in kept] == ["req-10", "req-11", "req-12"]
    assert (await store.verify_audit()).ok
    # both limits: whichever deletes more wins
    assert await store.prune_audit(max_age=30 * 86400, max_count=2) == 2
    assert (await store.verify_audit()).ok


@contract
async def watch_calls_back_after_a_put(store: Store) -> None:
    calls: list[int] = []

    async def on_change() -> None:
        calls.append(await store.revision())

    w = await store.watch(on_change, poll_interval=0.05)
    await store.put_routing("churn", DOC_V1, "alice", "x")
    await wait_for(lambda: bool(calls))
    assert calls[-1] == 1
    await store.put_routing("churn", DOC_SPLIT, "alice", "y")
    await wait_for(lambda: calls[-1] == 2)
    await store.append_audit([decision(1)])  # not a routing change
    n = len(calls)
    await asyncio.sleep(0.2)
    assert len(calls) == n
    await w.stop()
    assert not w.running
    await store.put_routing("churn", DOC_V1, "alice", "z")
    await asyncio.sleep(0.2)
    assert len(calls) == n


@contract
async def a_failing_callback_does_not_stop_the_watch(store: Store) -> None:
    calls = 0

    async def on_change() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("boom")

    await store.watch(on_change, poll_interval=0.05)
    await store.put_routing("churn", DOC_V1, "alice", "x")
    await wait_for(lambda: calls == 1)
    await store.put_routing("churn", DOC_SPLIT, "alice", "y")
    await wait_for(lambda: calls == 2)
    with pytest.raises(InvalidInput):
        await store.watch(on_change, poll_interval=0)


@contract
async def intents_are_stored_once_with_one_audit_record(store: Store) -> None:
    assert await store.intent_revision() == 0
    assert await store.list_intents() == []
    first = await store.put_intent("churn", "v2", "unloaded", "alice", "bad canary")
    assert (first.state, first.actor, first.revision) == ("unloaded", "alice", 1)
    await store.put_intent("churn", "v1", "unloaded", "bob")
    again = await store.put_intent("churn", "v2", "loaded", "carol", "fixed")
    assert again.revision == 3
    assert await store.intent_revision() == 3
    intents = await store.list_intents()
    assert [(i.version, i.state, i.revision) for i in intents] == [
        ("v1", "unloaded", 2),
        ("v2", "loaded", 3),
    ]
    records = await store.query_audit(kind="admin", order="asc", limit=None)
    assert [(r["action"], r["version"], r["actor"], r["intent_revision"]) for r in records] == [
        ("unload", "v2", "alice", 1),
        ("unload", "v1", "bob", 2),
        ("load", "v2", "carol", 3),
    ]
    assert records[0]["reason"] == "bad canary"
    with pytest.raises(InvalidInput, match="loaded"):
        await store.put_intent("churn", "v1", "gone", "x")  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match="model"):
        await store.put_intent("", "v1", "loaded", "x")
    assert await store.intent_revision() == 3
    assert (await store.verify_audit()).ok


@contract
async def alias_moves_are_compare_and_set_with_one_record(store: Store) -> None:
    assert await store.list_aliases() == []
    first = await store.move_alias("churn", "champion", "1", None)
    assert first is not None
    assert (first.version, first.revision) == ("1", 1)
    assert await store.move_alias("churn", "champion", "5", None) is None  # lost the race
    move = {"kind": "admin", "action": "alias-moved", "before": "1", "after": "2"}
    second = await store.move_alias("churn", "champion", "2", "1", move)
    assert second is not None
    assert second.revision == 2
    assert await store.move_alias("churn", "champion", "3", "1", move) is None  # stale
    await store.move_alias("fraud", "prod", "7", None)
    assert [(a.name, a.alias, a.version, a.revision) for a in await store.list_aliases()] == [
        ("churn", "champion", "2", 2),
        ("fraud", "prod", "7", 3),
    ]
    records = await store.query_audit(kind="admin", limit=None)
    assert [(r["before"], r["after"]) for r in records] == [("1", "2")]  # the baseline: none


async def scan_and_audit_hashes_read_what_verify_needs(store: Store) -> None:
    await store.append_audit([decision(i) for i in range(5)])
    page = await store.scan_audit(1, 3)
    assert [r.record["seq"] for r in page] == [2, 3, 4]
    for row in page:
        if row.columns is not None:  # SQL stores: the index columns as stored
            assert row.columns[0] == row.record["seq"]
            assert row.columns[6] == row.record["request_id"]
    hashes = await store.audit_hashes([5, 2, 42])
    assert hashes == {2: page[0].record["hash"], 5: (await store.audit_bounds()).head.hash}
    assert await store.audit_hashes([]) == {}


@contract
async def feedback_is_unique_per_request_id(store: Store) -> None:
    """A database constraint, not a query before the insert: a second feedback record of a
    request is a Conflict, the chain is untouched, other kinds may share the request id."""
    fb = {"kind": "feedback", "request_id": "req-1", "model": "churn", "version": "v1"}
    await store.append_audit([decision(1), fb])
    head = (await store.audit_bounds()).head
    with pytest.raises(Conflict, match="request_id: feedback"):
        await store.append_audit([decision(2), {**fb, "reward": 1.0}])
    with pytest.raises(Conflict):
        await store.append_audit([{**fb, "request_id": "req-3"}, {**fb, "request_id": "req-3"}])
    assert (await store.audit_bounds()).head == head  # nothing of the refused batches
    await store.append_audit([decision(1), {**fb, "request_id": "req-2"}])
    assert len(await store.query_audit(kind="feedback", limit=None)) == 2
    assert (await store.verify_audit()).ok


def run_check(store: Store, check: Check) -> None:
    """Run one contract check against ``store`` and close it."""

    async def main() -> None:
        try:
            await check(store)
        finally:
            await store.close()

    asyncio.run(main())


# Scripts run as other processes by the SQLite and PostgreSQL store tests.
# Once the file argv[4] exists, appends argv[3] records in batches of 1..7 to the store at
# argv[1], tagged argv[2].
APPENDER = """
import asyncio, os, random, sys
from modelrouter.store import open_store
async def main(url, tag, n, go):
    rnd = random.Random(tag)
    async with open_store(url) as store:
        await store.open()
        while not os.path.exists(go):
            await asyncio.sleep(0.005)
        done = 0
        while done < n:
            k = min(n - done, rnd.randint(1, 7))
            await store.append_audit(
                [{"kind": "decision", "request_id": f"{tag}-{done + i}", "model": tag}
                 for i in range(k)])
            done += k
asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
"""

# Waits for argv[2] to appear, then puts a routing table and prints the time of the commit.
PUTTER = """
import asyncio, os, sys, time
from modelrouter.store import open_store
async def main(url, go):
    async with open_store(url) as store:
        await store.open()
        while not os.path.exists(go):
            await asyncio.sleep(0.01)
        await store.put_routing("churn", {"http": []}, "other-process", "cross-process test")
        print(time.time(), flush=True)
asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


# -- tampering with the rows of a SQL store (SQLite and PostgreSQL tests share these) ---------

COLUMN_EDITS = {
    "request_id": "request_id = 'req-999'",
    "model": "model = 'ltv'",
    "version": "version = 'v9'",
    "time": "time = time - 86400",
    "kind": "kind = 'admin'",
    "rule": "rule = 'other'",
}
"""``SET`` clauses that edit one index column of a row and leave its hashed record alone."""


def forged_row(seq: int, prev_hash: str) -> tuple[Any, ...]:
    """The ten ``mr_audit`` values of a decision chained correctly after ``prev_hash`` as
    ``seq``, as someone who writes rows but not the head would insert it."""
    from modelrouter.audit.chain import index_columns, prepare_record, seal_text

    data = prepare_record(decision(seq, request_id="forged"), time.time())
    body, digest = seal_text(data, seq, prev_hash)
    return (seq, *index_columns(data), body, prev_hash, digest)


FORGED_INSERT = (
    "INSERT INTO AUDIT (seq, time, kind, model, version, rule, request_id, record, prev_hash,"
    " hash) VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p}, {p})"
)
