"""Gap records: how the audit chain says that records were lost, instead of stalling.

A store can come back without records a gateway had seen committed: the database was dropped
and recreated empty (a reset) or restored from an older backup (a rollback). The chain cannot
hide that, and it must not stop either. The first gateway to notice appends one record of
kind ``gap`` before anything else goes into the store; it names

- ``seen_seq`` / ``seen_hash``: the newest record this gateway had seen before the fault;
- ``found_seq`` / ``found_hash``: the head the store had when the fault was found;
- ``first_lost_seq`` .. ``last_lost_seq``: the seqs of the records written before that this store no
  longer holds (the records after ``seen_seq`` that others may have written are unknown);
- ``cause``: ``empty`` (the store came back with no records; the chain then continues from
  the seen head, so its seqs and hashes follow the old log's) or ``rollback`` (the store's
  head is older than what was seen; new records reuse the lost seqs after ``found_seq``);
- ``previous_epoch`` / ``epoch``: the store's identity before and after (see
  :mod:`modelrouter.store.faults`).

A gap record is chained and hashed like any other, so it cannot be removed unnoticed; verify
reports every one of them with :func:`explain_gap`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from modelrouter.audit import records
from modelrouter.audit.chain import ChainPoint

GAP_KIND = records.GAP

Cause = Literal["empty", "rollback"]


def gap_record(
    *,
    cause: Cause,
    seen: ChainPoint,
    found: ChainPoint,
    previous_epoch: str,
    epoch: str,
    gateway: str,
    now: float,
    lost_first: int | None = None,
) -> dict[str, Any]:
    """The ``gap`` record a gateway appends when the store lost records it had seen.

    ``first_lost_seq`` (default: after the store's head) is later when another gateway's gap
    record already accounts for the records before it."""
    first = found.seq + 1 if lost_first is None else lost_first
    return records.gap(
        first_lost_seq=first,
        last_lost_seq=seen.seq,
        reason=(
            "the store came back empty (dropped and recreated?)"
            if cause == "empty"
            else f"the store came back at an older head (seq {found.seq}; restored?)"
        ),
        time=now,
        gateway=gateway,
        what="audit log",
        cause=cause,
        seen_seq=seen.seq,
        seen_hash=seen.hash,
        found_seq=found.seq,
        found_hash=found.hash,
        previous_epoch=previous_epoch,
        epoch=epoch,
    )


def covers(record: Mapping[str, Any], previous_epoch: str, seen: ChainPoint) -> bool:
    """Whether gap ``record`` (written by another gateway) already accounts for the records
    this gateway saw: the same old store identity, and at least as far as ``seen``."""
    if record.get("kind") != GAP_KIND or record.get("previous_epoch") != previous_epoch:
        return False
    seen_seq = record.get("seen_seq")
    return isinstance(seen_seq, int) and seen_seq >= seen.seq


def partly_covers(record: Mapping[str, Any], previous_epoch: str) -> int | None:
    """The newest seq another gateway's gap ``record`` accounts for, when it is about the same
    old store identity (this gateway's own gap then names only what came after)."""
    if record.get("kind") != GAP_KIND or record.get("previous_epoch") != previous_epoch:
        return None
    seen_seq = record.get("seen_seq")
    return seen_seq if isinstance(seen_seq, int) else None


def explain_gap(record: Mapping[str, Any]) -> str:
    """One sentence on what a gap record says was lost and where the chain continues."""
    seq = record.get("seq")
    when = record.get("time")
    stamp = (
        time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(float(when)))
        if isinstance(when, int | float)
        else "?"
    )
    first, last = record.get("first_lost_seq"), record.get("last_lost_seq")
    lost = f"seq {first}" if first == last else f"seq {first}..{last}"
    seen = f"seq {record.get('seen_seq')}, hash {str(record.get('seen_hash', ''))[:12]}"
    who = record.get("gateway") or record.get("actor") or "a gateway"
    found = record.get("found_seq")
    what = (
        "the store came back empty"
        if record.get("cause") == "empty"
        else f"the store came back at an older head (seq {found})"
    )
    if found == 0:
        where = (
            f"the chain continues at seq {seq} from the hash of seq {record.get('seen_seq')}, "
            "as if nothing were lost in between"
        )
    elif isinstance(first, int) and isinstance(found, int) and first <= found:
        where = (
            f"an earlier gap record accounts for the records before seq {first}; the store's "
            f"seq {first}..{found} are new records, not the lost ones; the chain continues at "
            f"seq {seq}"
        )
    else:
        where = (
            f"the store's own chain ends at seq {found} and continues at seq {seq}; "
            f"seqs from {first} on are new records, not the lost ones"
        )
    return (
        f"gap at seq {seq} ({stamp}, noticed by {who}): {what}; records {lost} "
        f"(newest seen: {seen}) are not in this store; {where}"
    )


def gap_summaries(records: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """For verify: each gap record's position, range and explanation, in seq order."""
    out = []
    for r in records:
        if r.get("kind") != GAP_KIND:
            continue
        out.append(
            {
                "seq": r.get("seq"),
                "time": r.get("time"),
                "cause": r.get("cause"),
                "lostFirst": r.get("first_lost_seq"),
                "lostLast": r.get("last_lost_seq"),
                "seenSeq": r.get("seen_seq"),
                "seenHash": r.get("seen_hash"),
                "explanation": explain_gap(r),
            }
        )
    return sorted(out, key=lambda g: g["seq"] if isinstance(g["seq"], int) else 0)
