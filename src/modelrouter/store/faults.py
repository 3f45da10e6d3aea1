"""Noticing that the shared store lost state, from inside one gateway's store client.

Every SQL store keeps an ``epoch`` in its state row: a random id written when the row is
created (a new database, or one dropped and recreated) and replaced when a gateway handles a
rollback. A :class:`FaultTracker` remembers, per store client, the epoch it first saw and the
newest audit head it has seen. Inside every write transaction (under the store's write lock,
before anything is appended) and in :meth:`Store.reconcile`, the store compares what it finds
with what it remembers:

- another epoch: the database was replaced. If a gap record of another gateway already covers
  what this one saw (same previous epoch, at least as far), this gateway adopts the new epoch;
  otherwise it appends its own gap record;
- the same epoch but an older head (a restore of a backup): a gap record, and a new epoch so
  that every other gateway notices too.

An empty store continues the chain from the seen head (anchor and head are set to it), so the
log's seqs never repeat. Only what a running gateway saw can be accounted for: a restore while
no gateway runs goes unnoticed here (signed checkpoints of the head catch that).
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

from modelrouter.audit.chain import GENESIS, GENESIS_HASH, ChainPoint
from modelrouter.audit.gaps import Cause, covers, gap_record, partly_covers

log = logging.getLogger("modelrouter.store")

RECENT_GAPS = 20
"""How many of the newest gap records are searched for one that covers this gateway's loss."""


def new_epoch() -> str:
    return uuid.uuid4().hex[:16]


def gateway_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class StoreFault:
    """A loss of state this store client noticed and handled."""

    cause: Cause
    seen: ChainPoint
    """The newest audit record this client had seen before."""
    found: ChainPoint
    """The store's head when the fault was noticed."""
    previous_epoch: str
    epoch: str
    gap_seq: int
    """The gap record that accounts for it (this client's, or another gateway's)."""
    adopted: bool
    """True when another gateway had already written the gap record."""

    def describe(self) -> str:
        who = "another gateway's" if self.adopted else "its"
        return (
            f"the store lost state ({self.cause}: had seen seq {self.seen.seq}, "
            f"found head seq {self.found.seq}); {who} gap record is seq {self.gap_seq}"
        )


@dataclass(frozen=True, slots=True)
class Repair:
    """What a write transaction must do about a fault before it appends anything."""

    cause: Cause
    seen: ChainPoint
    found: ChainPoint
    previous_epoch: str
    epoch: str
    """The store's epoch after the repair (a new one for a rollback)."""
    rebase: bool
    """Set anchor and head to ``seen`` first (an empty store continues the old chain)."""
    lost_first: int | None = None
    """Where this gateway's loss starts when another gap record accounts for what precedes."""

    def record(self, now: float) -> dict[str, Any]:
        return gap_record(
            cause=self.cause,
            seen=self.seen,
            found=self.found,
            previous_epoch=self.previous_epoch,
            epoch=self.epoch,
            gateway=gateway_name(),
            now=now,
            lost_first=self.lost_first,
        )


class FaultTracker:
    """The epoch and newest head one store client has seen; decides what a fault needs."""

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.seen: ChainPoint = GENESIS
        self._faults: list[StoreFault] = []

    def suspect(self, epoch: str, head: ChainPoint) -> bool:
        """Whether the state row differs from what was seen (cheap; no lock needed)."""
        if self.epoch is None:
            return False
        if epoch != self.epoch or head.seq < self.seen.seq:
            return True
        return head.seq == self.seen.seq and head.hash != self.seen.hash

    def observe(self, epoch: str, head: ChainPoint) -> None:
        """A state row read without fault (or after one was handled)."""
        if self.epoch is None:
            self.epoch = epoch
        if epoch == self.epoch and head.seq >= self.seen.seq:
            self.seen = head

    def plan(
        self,
        epoch: str,
        head: ChainPoint,
        anchor: ChainPoint,
        gaps: list[dict[str, Any]] | None = None,
    ) -> Repair | None:
        """The repair a fault needs (called under the write lock), or None when all is well.

        The caller first checks :meth:`adopt` against the store's recent gap records
        (``gaps``, newest first); one that covers part of the loss shortens the lost range."""
        if not self.suspect(epoch, head):
            return None
        assert self.epoch is not None
        empty = head.seq == 0 and anchor.seq == 0 and head.hash == GENESIS_HASH
        same = epoch == self.epoch
        partial = [g for g in gaps or [] if partly_covers(g, self.epoch) is not None]
        known = [int(g["seen_seq"]) for g in partial]
        # the same fault as another gateway's gap record, seen further: the same cause
        cause: Cause = (
            "empty" if empty or any(g.get("cause") == "empty" for g in partial) else ("rollback")
        )
        return Repair(
            cause=cause,
            seen=self.seen,
            found=head,
            previous_epoch=self.epoch,
            epoch=new_epoch() if same else epoch,
            rebase=empty and self.seen.seq > 0,
            lost_first=max(known) + 1 if known and not empty else None,
        )

    def adopt(self, epoch: str, head: ChainPoint, gaps: list[dict[str, Any]]) -> bool:
        """Another gateway's gap record (newest first in ``gaps``) covers this client's loss:
        follow the store's new epoch without writing a record. True when adopted."""
        if self.epoch is None or epoch == self.epoch:
            return False
        for record in gaps:
            if covers(record, self.epoch, self.seen):
                fault = StoreFault(
                    "empty" if record.get("cause") == "empty" else "rollback",
                    self.seen,
                    head,
                    self.epoch,
                    epoch,
                    int(record.get("seq", 0)),
                    adopted=True,
                )
                self._record(fault, epoch, head)
                return True
        return False

    def repaired(self, repair: Repair, gap_seq: int, head: ChainPoint) -> None:
        """The gap record of ``repair`` is in the (not yet committed) transaction."""
        fault = StoreFault(
            repair.cause,
            repair.seen,
            repair.found,
            repair.previous_epoch,
            repair.epoch,
            gap_seq,
            adopted=False,
        )
        self._record(fault, repair.epoch, head)

    def _record(self, fault: StoreFault, epoch: str, head: ChainPoint) -> None:
        log.error("store fault: %s", fault.describe())
        self._faults.append(fault)
        self.epoch = epoch
        self.seen = head

    def snapshot(self) -> tuple[str | None, ChainPoint, int]:
        """What to go back to if the write transaction in progress rolls back."""
        return self.epoch, self.seen, len(self._faults)

    def restore(self, snapshot: tuple[str | None, ChainPoint, int]) -> None:
        self.epoch, self.seen, n = snapshot
        del self._faults[n:]

    def drain(self) -> list[StoreFault]:
        """The faults handled since the last call."""
        out, self._faults = self._faults, []
        return out
