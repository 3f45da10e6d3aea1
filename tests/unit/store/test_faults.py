"""The fault tracker's decisions and the gap records' explanations (the stores' behaviour is
tested against real SQLite and PostgreSQL in tests/integration/test_store_faults.py)."""

from __future__ import annotations

from modelrouter.audit.chain import GENESIS, ChainPoint
from modelrouter.audit.gaps import explain_gap, gap_summaries
from modelrouter.store.faults import FaultTracker

SEEN = ChainPoint(40, "a" * 64)


def tracker() -> FaultTracker:
    t = FaultTracker()
    t.observe("e1", SEEN)
    return t


def test_nothing_is_suspect_while_the_store_grows() -> None:
    t = tracker()
    assert not t.suspect("e1", ChainPoint(41, "b" * 64))
    t.observe("e1", ChainPoint(41, "b" * 64))
    assert t.seen.seq == 41
    assert t.plan("e1", ChainPoint(41, "b" * 64), GENESIS) is None
    assert not FaultTracker().suspect("zz", GENESIS)  # nothing seen yet: nothing to lose


def test_an_empty_store_continues_from_the_seen_head() -> None:
    repair = tracker().plan("e2", GENESIS, GENESIS)
    assert repair is not None
    assert (repair.cause, repair.rebase, repair.epoch, repair.previous_epoch) == (
        "empty",
        True,
        "e2",
        "e1",
    )
    gap = repair.record(now=1_000_000.0) | {"seq": 41}
    assert (gap["first_lost_seq"], gap["last_lost_seq"], gap["seen_hash"]) == (1, 40, "a" * 64)
    text = explain_gap(gap)
    assert "came back empty" in text
    assert "records seq 1..40" in text
    assert "continues at seq 41 from the hash of seq 40" in text


def test_an_older_head_is_a_rollback_with_a_new_epoch() -> None:
    for head in (ChainPoint(30, "c" * 64), ChainPoint(40, "d" * 64)):  # older, or replaced
        repair = tracker().plan("e1", head, GENESIS)
        assert repair is not None
        assert repair.cause == "rollback"
        assert not repair.rebase
        assert repair.epoch != "e1"  # so that every other gateway notices
    repair = tracker().plan("e1", ChainPoint(30, "c" * 64), GENESIS)
    assert repair is not None
    gap = repair.record(now=0.0) | {"seq": 31}
    assert (gap["first_lost_seq"], gap["last_lost_seq"]) == (31, 40)
    assert "older head (seq 30)" in explain_gap(gap)


def test_another_gateways_gap_is_adopted_or_completed() -> None:
    covering = {"kind": "gap", "seq": 41, "previous_epoch": "e1", "seen_seq": 40, "cause": "empty"}
    t = tracker()
    assert t.adopt("e2", ChainPoint(45, "f" * 64), [covering])
    (fault,) = t.drain()
    assert fault.adopted
    assert fault.gap_seq == 41
    assert t.epoch == "e2"
    assert not t.suspect("e2", ChainPoint(45, "f" * 64))

    short = covering | {"seen_seq": 35}  # the other gateway saw less than this one
    t = tracker()
    assert not t.adopt("e2", ChainPoint(45, "f" * 64), [short])
    repair = t.plan("e2", ChainPoint(45, "f" * 64), GENESIS, [short])
    assert repair is not None
    assert repair.cause == "empty"  # the same fault
    gap = repair.record(now=0.0) | {"seq": 46}
    assert (gap["first_lost_seq"], gap["last_lost_seq"]) == (36, 40)
    assert "an earlier gap record accounts for the records before seq 36" in explain_gap(gap)


def test_a_rolled_back_transaction_forgets_its_repair() -> None:
    t = tracker()
    snapshot = t.snapshot()
    repair = t.plan("e2", GENESIS, GENESIS)
    assert repair is not None
    t.repaired(repair, 41, ChainPoint(41, "g" * 64))
    t.restore(snapshot)
    assert (t.epoch, t.seen, t.drain()) == ("e1", SEEN, [])


def test_gap_summaries_are_in_seq_order() -> None:
    gaps = [
        {"kind": "gap", "seq": 9, "cause": "rollback", "found_seq": 5, "first_lost_seq": 6},
        {"kind": "decision", "seq": 3},
        {"kind": "gap", "seq": 2, "cause": "empty", "found_seq": 0, "first_lost_seq": 1},
    ]
    assert [g["seq"] for g in gap_summaries(gaps)] == [2, 9]
