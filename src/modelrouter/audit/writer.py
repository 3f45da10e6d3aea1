"""Audit records written in batches, off the request path.

The data plane calls :meth:`AuditWriter.submit` for every decision: an append to a deque, no
I/O, never blocks. A background task writes what has queued up every ``flush_interval`` (or as
soon as ``batch_size`` records wait), one transaction per batch. When the store fails, the batch
goes back to the front of the queue and is retried with exponential backoff; records are lost
only when the queue is over ``max_queue`` (counted in :attr:`AuditWriter.dropped`).

:meth:`AuditWriter.submit_durable` is the durable mode: it returns the record's seq only after
the transaction holding it has committed, so a request acknowledged after it has its record even
if the process crashes right after. Durable records are written at once (group commit: the
records that arrive during one write go together in the next). With ``durable_timeout`` a
durable submission gives up after that long (a store that is down or hangs): the caller gets a
:class:`~modelrouter.errors.StoreError` (503) and the record, if its write has not started, is
withdrawn so that the log never holds a decision whose client was told it failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from modelrouter.audit.chain import prepare_record
from modelrouter.errors import InvalidInput, StoreError

if TYPE_CHECKING:
    from modelrouter.store.base import Store

log = logging.getLogger("modelrouter.audit")

_Entry = tuple[Mapping[str, Any], float, "asyncio.Future[int] | None"]


class AuditWriter:
    """Batches audit records into ``store.append_audit``. Use from the event loop's thread.

    Counters: :attr:`written` records committed, :attr:`dropped` records lost (queue full,
    invalid, or still queued when :meth:`close` gave up), :attr:`batches` committed,
    :attr:`errors` failed store writes (each retried), :attr:`invalid` records that were not
    JSON or had no ``kind`` (also counted in ``dropped``).

    The writer keeps a reference to each submitted record until it is written: do not mutate a
    record after submitting it.
    """

    def __init__(
        self,
        store: Store,
        batch_size: int = 512,
        flush_interval: float = 0.05,
        max_queue: int = 100_000,
        *,
        retry_initial: float = 0.05,
        retry_max: float = 2.0,
        durable_timeout: float | None = None,
    ) -> None:
        if batch_size < 1 or max_queue < 1 or flush_interval < 0:
            raise ValueError("batch_size and max_queue must be >= 1, flush_interval >= 0")
        self.store = store
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_queue = max_queue
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self.durable_timeout = durable_timeout
        self.timed_out = 0
        """Durable submissions that gave up after ``durable_timeout`` (their callers got 503)."""
        self._withdrawn: set[asyncio.Future[int]] = set()
        self.written = 0
        self.dropped = 0
        self.batches = 0
        self.errors = 0
        self.invalid = 0
        self._queue: deque[_Entry] = deque()
        self._in_flight = 0
        """Records of the batch being written (taken off the queue, not yet committed)."""
        self._wake = asyncio.Event()
        self._urgent = 0
        self._accepted = 0
        self._processed = 0
        self._flush_waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._closed = False
        self._sources: list[Callable[[], None]] = []

    # -- producer side -------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Records accepted and not yet committed: queued, or in the batch being written."""
        return len(self._queue) + self._in_flight

    def stats(self) -> dict[str, int]:
        return {
            "written": self.written,
            "dropped": self.dropped,
            "batches": self.batches,
            "errors": self.errors,
            "invalid": self.invalid,
            "pending": self.pending,
            "timedOut": self.timed_out,
        }

    def add_source(self, drain: Callable[[], None]) -> None:
        """A producer that holds records back for a moment (the data plane keeps a loop
        turn's decisions to build them together): :meth:`flush` and :meth:`close` call
        ``drain`` first, so what it holds counts as submitted before them."""
        self._sources.append(drain)

    def _drain_sources(self) -> None:
        for drain in self._sources:
            drain()

    def submit(self, record: Mapping[str, Any]) -> bool:
        """Queue ``record`` (``time`` is now if it has none). False when dropped: queue full
        or writer closed. Never blocks, never raises for a full queue."""
        if self._closing or self.pending >= self.max_queue:
            self.dropped += 1
            return False
        self._queue.append((record, time.time(), None))
        self._accepted += 1
        n = len(self._queue)
        if n == 1 or n >= self.batch_size:
            self._wake.set()
        if self._task is None:
            with contextlib.suppress(RuntimeError):  # no running loop yet: start() later
                self.start()
        return True

    async def submit_durable(self, record: Mapping[str, Any]) -> int:
        """Queue ``record`` and return its seq once the batch holding it is committed.

        Raises :class:`~modelrouter.errors.StoreError` if the queue is full or the writer is
        closed (the caller must then not acknowledge the request), and
        :class:`~modelrouter.errors.InvalidInput` for a record that is not JSON.
        """
        if self._closing:
            self.dropped += 1
            raise StoreError("the audit writer is closed")
        if self.pending >= self.max_queue:
            self.dropped += 1
            raise StoreError(f"the audit queue is full ({self.max_queue} records)")
        if self._task is None:
            self.start()
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._queue.append((record, time.time(), future))
        self._accepted += 1
        self._urgent += 1
        self._wake.set()
        if self.durable_timeout is None:
            return await future
        try:
            return await asyncio.wait_for(asyncio.shield(future), self.durable_timeout)
        except TimeoutError:
            self.timed_out += 1
            if not future.done():
                self._withdrawn.add(future)  # not written if its batch has not started yet
            raise StoreError(
                f"the audit record was not committed within {self.durable_timeout:g}s "
                "(server.storeTimeout): the store is slow or unreachable"
            ) from None

    async def flush(self) -> None:
        """Wait until every record submitted before this call is committed (or dropped)."""
        self._drain_sources()
        if self._processed >= self._accepted:
            return
        if self._task is None:
            self.start()
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._flush_waiters.append((self._accepted, future))
        self._urgent += 1
        self._wake.set()
        try:
            await future
        finally:
            self._urgent -= 1

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the background task (needs a running event loop). Idempotent."""
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="modelrouter-audit-writer"
            )

    async def close(self, grace: float | None = 10.0) -> None:
        """Write everything queued, then stop. After ``grace`` seconds (a store that stays
        down) give up: what is still queued is counted as dropped and durable waiters get a
        :class:`~modelrouter.errors.StoreError`."""
        if self._closed:
            return
        self._drain_sources()
        self._closing = True
        if self._task is None and self._queue:
            self.start()
        self._wake.set()
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), grace)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._closed = True
        self._abandon(StoreError("the audit writer closed before the record was written"))

    def _abandon(self, error: Exception) -> None:
        while self._queue:
            _, _, future = self._queue.popleft()
            if future is not None:
                self._withdrawn.discard(future)
            self.dropped += 1
            self._processed += 1
            if future is not None:
                self._urgent -= 1
                if not future.done():
                    future.set_exception(error)
        self._release_flush_waiters()

    # -- consumer side -------------------------------------------------------------------

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        delay = self.retry_initial
        while True:
            while not self._queue:
                self._release_flush_waiters()
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
            deadline = loop.time() + self.flush_interval
            while len(self._queue) < self.batch_size and not self._urgent and not self._closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), remaining)
            if await self._write_batch():
                delay = self.retry_initial
            else:
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)

    async def _write_batch(self) -> bool:
        """Write up to ``batch_size`` queued records; False when the store failed (requeued).

        Records go to the store as submitted (plus their submission time): normalizing and
        hashing happen in the store, in its thread where it has one. Only when the store
        refuses a batch are the records checked one by one, and the bad ones dropped.
        """
        n = min(len(self._queue), self.batch_size)
        entries = self._without_withdrawn([self._queue.popleft() for _ in range(n)])
        if not entries:
            self._release_flush_waiters()
            return True
        batch = [r if "time" in r else {**r, "time": t} for r, t, _ in entries]
        # the batch still counts against ``max_queue`` while it is written: a store that
        # hangs must not let the queue refill behind it
        self._in_flight = len(entries)
        try:
            seqs = await self.store.append_audit(batch)
        except asyncio.CancelledError:  # close() gave up: leave them queued, to be counted
            self._queue.extendleft(reversed(entries))
            raise
        except InvalidInput:
            self._queue.extendleft(reversed(self._weed(entries)))
            self._release_flush_waiters()
            return True
        except Exception as exc:
            self.errors += 1
            log.warning(
                "audit store write failed (%s); %d records queued, retrying", exc, self.pending
            )
            self._queue.extendleft(reversed(entries))
            return False
        finally:
            self._in_flight = 0
        self.written += len(entries)
        self.batches += 1
        self._processed += len(entries)
        for (_, _, future), seq in zip(entries, seqs, strict=True):
            if future is not None:
                self._withdrawn.discard(future)  # its write was under way: it is on the record
                self._urgent -= 1
                if not future.done():
                    future.set_result(seq)
        self._release_flush_waiters()
        return True

    def _without_withdrawn(self, entries: list[_Entry]) -> list[_Entry]:
        """Drop the durable records whose caller gave up (answered 503) before the write."""
        if not self._withdrawn:
            return entries
        kept = []
        for entry in entries:
            future = entry[2]
            if future is not None and future in self._withdrawn:
                self._withdrawn.discard(future)
                future.cancel()  # nobody waits for it any more
                self._finish(future, StoreError("withdrawn: its request timed out"))
                continue
            kept.append(entry)
        return kept

    def _weed(self, entries: list[_Entry]) -> list[_Entry]:
        """The entries whose records are valid; the others are counted and failed."""
        good = []
        for entry in entries:
            record, submitted, future = entry
            try:
                prepare_record(record, submitted)
            except InvalidInput as exc:
                self.invalid += 1
                log.warning("audit record dropped: %s", exc.message)
                self._finish(future, exc)
                continue
            good.append(entry)
        if len(good) == len(entries):  # the store refuses records that look fine: give up
            self.errors += 1
            log.error("audit store refused a batch of %d valid-looking records", len(good))
            for _, _, future in good:
                self._finish(future, StoreError("the audit store refused the record"))
            return []
        return good

    def _finish(self, future: asyncio.Future[int] | None, error: Exception) -> None:
        """A record that will never be written: count it, tell its durable waiter."""
        if future is not None:
            self._withdrawn.discard(future)
        self.dropped += 1
        self._processed += 1
        if future is not None:
            self._urgent -= 1
            if not future.done():
                future.set_exception(error)

    def _release_flush_waiters(self) -> None:
        if not self._flush_waiters:
            return
        still = []
        for target, future in self._flush_waiters:
            if self._processed >= target:
                if not future.done():
                    future.set_result(None)
            else:
                still.append((target, future))
        self._flush_waiters = still
