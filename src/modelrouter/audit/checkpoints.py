"""Signed checkpoints of the audit log's head, kept outside the store.

The hash chain shows that no record was edited, but not that the log was not cut short: whoever
can write the database can delete the newest records and set the head back, or rewrite the log
from some record on and recompute every later hash and the head. Both leave a log that verifies.

A checkpoint is the head ``(seq, hash)`` and the ``time`` it was read, signed with an Ed25519
key, appended as one JSON line to a *sink* the database cannot reach: a file, or an S3 object.
Anyone with the public key can later check every checkpoint against the store:

- a checkpoint beyond the store's head means records were removed (truncation);
- a checkpoint whose seq is stored with another hash means the log was rewritten from there.

Checkpoints at or before the retention anchor cannot be compared (those records are pruned);
they are counted, not failed. What stays undetectable: changes after the newest checkpoint, and
a sink rolled back by someone who can write it (its checkpoints still verify, they are only
fewer); a stolen private key signs anything.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import itertools
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from modelrouter.audit.chain import ChainPoint, VerifyResult, canonical_json
from modelrouter.audit.signing import PublicKey, SigningKey, load_signing_key
from modelrouter.audit.sinks import Sink, open_sink
from modelrouter.errors import ConfigError, InvalidInput, ModelRouterError

if TYPE_CHECKING:
    from modelrouter.config.schema import CheckpointSettings
    from modelrouter.store.base import Store

log = logging.getLogger("modelrouter.audit")

FORMAT = "modelrouter-audit-checkpoint/1"
LEASE = "audit-checkpoints"
"""The store lease that lets one gateway of many write the checkpoints of one interval."""

MAX_LINE = 4096
"""A longer line is not a checkpoint (a checkpoint line is about 400 bytes)."""


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A signed statement "at ``time`` the log's head was ``seq`` with ``hash``"."""

    seq: int
    hash: str
    time: float
    key: str
    """The signer's public key, 32 raw bytes in hex."""
    signature: str = ""
    """Ed25519 signature of :meth:`payload`, base64."""

    def payload(self) -> bytes:
        """The bytes that are signed: canonical JSON of everything but the signature."""
        return canonical_json(
            {
                "format": FORMAT,
                "seq": self.seq,
                "hash": self.hash,
                "time": self.time,
                "key": self.key,
            }
        )

    def to_line(self) -> str:
        doc = {
            "format": FORMAT,
            "seq": self.seq,
            "hash": self.hash,
            "time": self.time,
            "key": self.key,
            "signature": self.signature,
        }
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()

    @classmethod
    def from_line(cls, line: str) -> Checkpoint:
        """Parse one sink line; :class:`InvalidInput` when it is not a checkpoint."""
        if len(line) > MAX_LINE:
            raise InvalidInput(f"longer than {MAX_LINE} characters")
        try:
            doc = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"not JSON ({exc})") from None
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise InvalidInput(f"not a {FORMAT} line")
        seq, digest, when = doc.get("seq"), doc.get("hash"), doc.get("time")
        key, signature = doc.get("key"), doc.get("signature")
        if type(seq) is not int or seq < 0:
            raise InvalidInput("seq: not a non-negative integer")
        if not isinstance(digest, str) or len(digest) != 64:
            raise InvalidInput("hash: not a SHA-256 hex digest")
        if isinstance(when, bool) or not isinstance(when, int | float):
            raise InvalidInput("time: not epoch seconds")
        if not isinstance(key, str) or not isinstance(signature, str):
            raise InvalidInput("key and signature must be strings")
        return cls(seq, digest, float(when), key, signature)

    def signed_by(self, key: PublicKey) -> bool:
        """The signature is valid and made by ``key``."""
        if key.raw_hex != self.key:
            return False
        try:
            signature = base64.b64decode(self.signature, validate=True)
        except (binascii.Error, ValueError):
            return False
        return key.verifies(signature, self.payload())


def sign(head: ChainPoint, at: float, key: SigningKey) -> Checkpoint:
    """The checkpoint of ``head`` read at time ``at``, signed with ``key``."""
    unsigned = Checkpoint(head.seq, head.hash, at, key.public.raw_hex)
    signature = base64.b64encode(key.sign(unsigned.payload())).decode()
    return Checkpoint(head.seq, head.hash, at, unsigned.key, signature)


def configured_signer(
    settings: CheckpointSettings | None, base_dir: Path
) -> tuple[SigningKey, Sink] | None:
    """The key and sink of ``server.audit.checkpoints`` (None when not configured). A key
    that cannot be read is a ConfigError, so ``validate`` and ``serve`` report it up front."""
    if settings is None:
        return None
    key_file = None if settings.keyFile is None else base_dir / settings.keyFile
    key = load_signing_key(key_file, settings.keyEnv)
    return key, open_sink(settings.sink, base_dir, settings.keep)


# -- writing -------------------------------------------------------------------------------


async def write_checkpoint(
    store: Store, sink: Sink, key: SigningKey, now: float | None = None
) -> Checkpoint:
    """Sign the store's current head and append it to ``sink``."""
    head = (await store.audit_bounds()).head
    checkpoint = sign(head, time.time() if now is None else now, key)
    await asyncio.to_thread(sink.append, checkpoint.to_line())
    return checkpoint


class CheckpointWriter:
    """Writes a checkpoint every ``interval`` seconds while the head moves (and once when it
    starts), holding the store lease :data:`LEASE` so that of several gateways on one store
    one writes per interval."""

    def __init__(self, store: Store, sink: Sink, key: SigningKey, interval: float) -> None:
        if interval <= 0:
            raise ConfigError("checkpoints: interval must be positive")
        self.store = store
        self.sink = sink
        self.key = key
        self.interval = interval
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.written = 0
        self.errors = 0
        self._last: ChainPoint | None = None

    async def tick(self) -> Checkpoint | None:
        """One round: the checkpoint written, or None (not the lease holder, head unmoved)."""
        if not await self.store.try_lock(LEASE, self.owner, self.interval * 3):
            return None
        head = (await self.store.audit_bounds()).head
        if head == self._last:
            return None
        checkpoint = sign(head, time.time(), self.key)
        await asyncio.to_thread(self.sink.append, checkpoint.to_line())
        self._last = head
        self.written += 1
        return checkpoint

    async def run(self) -> None:
        """Tick every interval until cancelled; failures are logged and retried next time.
        Call :meth:`close` after it ends."""
        while True:
            await self._tick_logged()
            await asyncio.sleep(self.interval)

    async def close(self) -> None:
        """A last checkpoint (call it once the audit writer has flushed, so it covers every
        record this gateway wrote), then give the lease up."""
        try:
            await self._tick_logged()
        finally:
            with contextlib.suppress(Exception):
                await self.store.release_lock(LEASE, self.owner)

    async def _tick_logged(self) -> None:
        try:
            await self.tick()
        except ModelRouterError as exc:
            self.errors += 1
            log.warning("audit checkpoint not written (%s); next try in %gs", exc, self.interval)


# -- verifying -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointResult:
    """The chain's verification and the checkpoints' verdict on it.

    ``checked`` checkpoints were compared with the store; ``pruned`` are at or before the
    retention anchor (not comparable); ``newest`` is the highest-seq valid checkpoint.
    """

    ok: bool
    chain: VerifyResult
    checkpoints: int = 0
    checked: int = 0
    pruned: int = 0
    newest: Checkpoint | None = None
    first_bad_seq: int | None = None
    reason: str = ""
    key_given: bool = False


def _when(t: float) -> str:
    from modelrouter.audit.explain import iso_time

    return iso_time(t)


async def verify_checkpoints(
    store: Store,
    lines: Iterable[str],
    public_key: PublicKey | None = None,
    batch: int = 1000,
) -> CheckpointResult:
    """Verify the chain, then every checkpoint of ``lines`` against the store.

    Without ``public_key`` the checkpoints must all carry one key and are checked against it:
    that proves they were not edited, not who made them (give the key for that).
    Memory stays bounded: checkpoints are compared ``batch`` at a time.
    """
    chain = await store.verify_audit()
    if not chain.ok:
        return CheckpointResult(
            False, chain, first_bad_seq=chain.first_bad_seq, reason=chain.reason
        )
    bounds = await store.audit_bounds()
    anchor, head = bounds.anchor, bounds.head
    key = public_key
    total = checked = pruned = 0
    newest: Checkpoint | None = None
    problems = _Problems()
    pending: list[Checkpoint] = []

    async def compare() -> None:
        nonlocal checked
        stored = await store.audit_hashes([c.seq for c in pending])
        for c in pending:
            got = stored.get(c.seq)
            if got is None:
                problems.add(
                    (c.seq, f"seq {c.seq}, signed at {_when(c.time)}, is missing from the store")
                )
            elif got != c.hash:
                problems.add(
                    (
                        c.seq,
                        f"the record at seq {c.seq} is not the one signed at {_when(c.time)}: "
                        f"the log was rewritten at or before seq {c.seq}",
                    )
                )
            checked += 1
        pending.clear()

    number = 0
    async for raw in _read_lines(lines, batch):
        number += 1
        if not raw.strip():
            continue
        total += 1
        try:
            c = Checkpoint.from_line(raw)
        except InvalidInput as exc:
            problems.add((-1, f"checkpoint line {number} is damaged: {exc.message}"))
            continue
        if key is None:
            try:
                key = PublicKey.from_hex(c.key)
            except ConfigError:
                problems.add((-1, f"checkpoint line {number}: its key is not an Ed25519 key"))
                continue
        if not c.signed_by(key):
            problems.add(
                (-1, f"checkpoint line {number} (seq {c.seq}) is not signed by key {key.key_id}")
            )
            continue
        if newest is None or c.seq > newest.seq:
            newest = c
        if c.seq > head.seq:
            problems.add(
                (
                    head.seq + 1,
                    f"a checkpoint signed at {_when(c.time)} says the log reached seq {c.seq}, "
                    f"but the store's head is seq {head.seq}: records {head.seq + 1}..{c.seq} "
                    "were removed and the head set back (truncation)",
                )
            )
        elif c.seq < anchor.seq:
            pruned += 1
        elif c.seq == anchor.seq:
            if c.hash != anchor.hash:
                problems.add(
                    (c.seq, f"the anchor (seq {c.seq}) is not the record signed at {_when(c.time)}")
                )
            checked += 1
        else:
            pending.append(c)
            if len(pending) >= batch:
                await compare()
    if pending:
        await compare()
    if total == 0:
        problems.add((-1, "the sink holds no checkpoints"))
    given = public_key is not None
    if problems.first is None:
        return CheckpointResult(True, chain, total, checked, pruned, newest, key_given=given)
    seq, reason = problems.first
    others = problems.count - 1
    more = f" ({others} more problem{'s' if others > 1 else ''})" if others else ""
    bad = None if seq < 0 else seq
    return CheckpointResult(False, chain, total, checked, pruned, newest, bad, reason + more, given)


async def _read_lines(lines: Iterable[str], batch: int) -> AsyncIterator[str]:
    """``lines`` read ``batch`` at a time in a worker thread (a sink's reads block)."""
    it = iter(lines)
    while True:
        chunk = await asyncio.to_thread(lambda: list(itertools.islice(it, batch)))
        for line in chunk:
            yield line
        if len(chunk) < batch:
            return


class _Problems:
    """The count of problems found and the one to report: a damaged or forged checkpoint
    first (the sink itself was touched), else the lowest seq (where the damage starts)."""

    def __init__(self) -> None:
        self.count = 0
        self.first: tuple[int, str] | None = None

    def add(self, problem: tuple[int, str]) -> None:
        self.count += 1
        if self.first is None or _rank(problem) < _rank(self.first):
            self.first = problem


def _rank(problem: tuple[int, str]) -> tuple[int, int]:
    seq = problem[0]
    return (0, 0) if seq < 0 else (1, seq)
