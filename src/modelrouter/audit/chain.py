"""The hash chain that makes the audit log tamper-evident.

Every stored record carries ``seq`` (1, 2, 3, ... without gaps), ``prev_hash`` (the ``hash`` of the
record before it, or of the *anchor* left behind by pruning, or :data:`GENESIS_HASH`) and::

    hash = sha256(prev_hash + canonical_json(record without "hash" and "prev_hash"))

``seq`` and ``time`` are inside the hashed body, so renumbering or re-dating a record breaks its
hash. The store keeps a *head* (seq and hash of the newest record) updated in the same transaction
as every append, so deleting the newest records is detected too, and an *anchor* (seq and hash of
the last record removed by retention) so that a pruned log still verifies from there on.

SQL stores keep, next to the hashed text, *index columns* that queries filter on (``seq``,
``time``, ``kind``, ``model``, ``version``, ``rule``, ``request_id``, see :func:`index_columns`).
They are derived from the hashed record, so :class:`ChainVerifier` re-derives them and fails at
the first row whose columns disagree with its record: a query cannot be made to lie by editing
a column the hash does not cover.

The chain detects edits by anyone who does not recompute every later hash and the head; it is
evidence, not access control. A log truncated together with its head, or rewritten from some
record on with every later hash recomputed, still verifies: signed checkpoints kept outside the
store (:mod:`modelrouter.audit.checkpoints`) detect those.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from modelrouter.errors import InvalidInput

GENESIS_HASH = "0" * 64
"""``prev_hash`` of record 1 in a log that was never pruned."""

CHAIN_FIELDS = frozenset({"seq", "prev_hash", "hash"})
"""Fields the store assigns; whatever a caller puts there is replaced."""

_UNHASHED = frozenset({"prev_hash", "hash"})

INDEX_COLUMNS = ("seq", "time", "kind", "model", "version", "rule", "request_id")
"""The columns a SQL store keeps beside the record for queries, in this order."""

IndexRow = tuple[Any, ...]
"""Values of :data:`INDEX_COLUMNS` as a store holds them for one record."""


@dataclass(frozen=True, slots=True)
class ChainPoint:
    """A position in the chain: a seq and the hash of the record with that seq."""

    seq: int
    hash: str


GENESIS = ChainPoint(0, GENESIS_HASH)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """The outcome of :func:`verify`; ``first_bad_seq`` and ``reason`` say where and why."""

    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str = ""


def canonical_json(value: Any) -> bytes:
    """The one byte form that is hashed: sorted keys, no spaces, UTF-8, no NaN or infinity.

    ``value`` must already be plain JSON data (see :func:`normalize`). orjson rather than the
    standard library: this runs once per request when decisions are audited, and costs a tenth.
    """
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _to_json(value: Any) -> Any:
    """Fallback for values json cannot encode: numpy scalars and arrays, sets, anything else."""
    item = getattr(value, "tolist", None) or getattr(value, "item", None)
    if callable(item):
        return item()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return str(value)


class PlainRecord(dict[str, Any]):
    """A record its constructor has checked to be plain JSON data already (see :func:`is_plain`):
    :func:`prepare_record` copies it instead of taking it through :func:`normalize`.

    The bytes stored and hashed are the same either way: for plain data, ``normalize`` is the
    identity (``orjson`` writes and reads back the same str, 64-bit int, finite float, bool,
    None, list and str-keyed dict). Only :mod:`modelrouter.audit.records` makes them, for the
    record written on every request; like any submitted record, it must not be changed after.
    """

    __slots__ = ()


_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
"""The integers orjson writes (wider ones are refused as not JSON)."""


def is_plain(value: Any) -> bool:
    """True when ``value`` is made only of exact str, bool, None, 64-bit int, finite float,
    list, and dict with str keys: data that :func:`normalize` would leave as it is.

    Anything else (tuples, numpy scalars, subclasses, NaN, infinity, wide ints) is False: such
    a record takes the general path, which converts or refuses it.
    """
    stack = [value]
    pop, push = stack.pop, stack.extend
    while stack:
        v = pop()
        t = type(v)
        if t is str or t is bool or v is None:
            continue
        if t is int:
            if not _INT_MIN <= v <= _INT_MAX:
                return False
        elif t is float:
            if v - v != 0.0:  # NaN and infinity give NaN
                return False
        elif t is list:
            push(v)
        elif t is dict or t is PlainRecord:
            for k in v:
                if type(k) is not str:
                    return False
            push(v.values())
        else:
            return False
    return True


def normalize(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` as plain JSON data: tuples become lists, keys strings, numpy scalars numbers.

    The store hashes and stores exactly this form, so a record read back hashes the same.
    Raises :class:`~modelrouter.errors.InvalidInput` for NaN, infinity or a non-mapping.
    """
    if not isinstance(record, Mapping):
        raise InvalidInput(f"an audit record must be a mapping, not {type(record).__name__}")
    try:
        data = orjson.loads(orjson.dumps(dict(record), default=_to_json, option=_NORMALIZE))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"audit record is not JSON: {exc}") from None
    _check_finite(record)
    out: dict[str, Any] = data
    return out


_NORMALIZE = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


_PLAIN = frozenset({str, int, bool, type(None)})


def _check_finite(value: Any) -> None:
    """orjson writes NaN and infinity as null; the log refuses them instead."""
    t = type(value)
    if t in _PLAIN:
        return
    if t is float:
        if not math.isfinite(value):
            raise InvalidInput(f"audit record is not JSON: {value!r} is not a finite number")
    elif t is dict or isinstance(value, Mapping):
        for v in value.values():
            _check_finite(v)
    elif t is list or t is tuple:
        for v in value:
            _check_finite(v)
    elif isinstance(value, float | np.floating | np.ndarray) and not np.all(np.isfinite(value)):
        raise InvalidInput("audit record is not JSON: a value is not a finite number")


def prepare_record(record: Mapping[str, Any], now: float) -> dict[str, Any]:
    """A record ready to be sealed: plain JSON, a ``kind``, a ``time`` (``now`` when absent),
    and no ``seq``/``prev_hash``/``hash`` (the store assigns those).

    A :class:`PlainRecord` is only copied: it is plain JSON already, so this is what
    :func:`normalize` would make of it, without the serialization round trip."""
    data = dict(record) if type(record) is PlainRecord else normalize(record)
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        raise InvalidInput("an audit record needs a 'kind' (decision, change, admin, ...)")
    for k in CHAIN_FIELDS:
        data.pop(k, None)
    t = data.get("time")
    if t is None:
        data["time"] = now
    elif isinstance(t, bool) or not isinstance(t, int | float):
        raise InvalidInput(f"audit record 'time' must be epoch seconds, not {t!r}")
    return data


def index_columns(
    record: Mapping[str, Any],
) -> tuple[float, str, str | None, str | None, str | None, str | None]:
    """The index columns after ``seq`` of a prepared record: time, kind, model, version, rule,
    request_id (text, or None when the record has no such field)."""
    get = record.get
    model, version, rule, rid = get("model"), get("version"), get("rule"), get("request_id")
    return (
        float(record["time"]),
        str(record["kind"]),
        None if model is None else str(model),
        None if version is None else str(version),
        None if rule is None else str(rule),
        None if rid is None else str(rid),
    )


def check_columns(record: Mapping[str, Any], columns: IndexRow) -> str | None:
    """Why the stored index ``columns`` of ``record`` are not the ones derived from it, or None.

    The answer names the first column that differs, which is what a query on it would get wrong.
    """
    try:
        derived: tuple[Any, ...] = (record.get("seq"), *index_columns(record))
    except (KeyError, TypeError, ValueError) as exc:
        return f"its index columns cannot be derived from the record ({exc})"
    if columns == derived:
        return None
    for name, stored, want in zip(INDEX_COLUMNS, columns, derived, strict=False):
        if stored != want:
            return (
                f"its column {name} is {stored!r} but the hashed record says {want!r}: "
                f"the row was edited after it was written (queries by {name} would lie)"
            )
    return f"it has {len(columns)} index columns, not {len(derived)}"


def record_hash(prev_hash: str, record: Mapping[str, Any]) -> str:
    """The hash of ``record`` chained after ``prev_hash`` (its own hash fields are ignored)."""
    body = {k: v for k, v in record.items() if k not in _UNHASHED}
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_json(body)).hexdigest()


def seal(record: Mapping[str, Any], seq: int, prev_hash: str) -> dict[str, Any]:
    """A copy of ``record`` (already normalized) with ``seq``, ``prev_hash`` and ``hash`` set."""
    body, digest = seal_text(record, seq, prev_hash)
    sealed: dict[str, Any] = orjson.loads(body)
    sealed["prev_hash"] = prev_hash
    sealed["hash"] = digest
    return sealed


def seal_text(record: Mapping[str, Any], seq: int, prev_hash: str) -> tuple[str, str]:
    """``(body, hash)`` of ``record`` (already normalized) sealed as ``seq`` after ``prev_hash``.

    ``body`` is the canonical JSON of the record with ``seq`` and without hash fields: exactly
    the text that was hashed, so a store can keep it as is (one serialization per record) and
    rebuild the record with ``json.loads(body) | {"prev_hash": ..., "hash": ...}``.
    """
    fields = dict(record)  # a copy and two pops: cheaper than filtering every key
    fields.pop("prev_hash", None)
    fields.pop("hash", None)
    fields["seq"] = seq
    raw = canonical_json(fields)
    return raw.decode("utf-8"), hashlib.sha256(prev_hash.encode("ascii") + raw).hexdigest()


def unseal(body: str, prev_hash: str, digest: str) -> dict[str, Any]:
    """The record a store kept as :func:`seal_text` output plus its two hash columns."""
    record: dict[str, Any] = orjson.loads(body)
    record["prev_hash"] = prev_hash
    record["hash"] = digest
    return record


class ChainVerifier:
    """Checks records one at a time, in seq order, so a large log can be streamed through.

    ``anchor`` is where the stored log starts (:data:`GENESIS` when never pruned).
    """

    def __init__(self, anchor: ChainPoint | None = None) -> None:
        self._last = anchor or GENESIS
        self._checked = 0
        self._failure: VerifyResult | None = None

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def _fail(self, seq: int | None, reason: str) -> bool:
        self._failure = VerifyResult(False, self._checked, seq, reason)
        return False

    @property
    def last(self) -> ChainPoint:
        """The last record that verified (the anchor before any)."""
        return self._last

    def feed(self, record: Mapping[str, Any], columns: IndexRow | None = None) -> bool:
        """Check the next record; False (and nothing more is checked) once the chain is broken.

        ``columns`` are the record's stored :data:`INDEX_COLUMNS` (SQL stores), checked against
        the values derived from the hashed record.
        """
        if self._failure is not None:
            return False
        expected = self._last.seq + 1
        seq = record.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            return self._fail(expected, f"record after seq {self._last.seq} has no valid seq")
        if seq != expected:
            if seq > expected:
                missing = f"{expected}" if seq == expected + 1 else f"{expected}..{seq - 1}"
                why = f"seq {missing} missing (deleted?) before seq {seq}"
            else:
                why = f"seq {seq} found where seq {expected} belongs (reordered or duplicated)"
            return self._fail(expected, why)
        stored = record.get("hash")
        if record.get("prev_hash") != self._last.hash:
            return self._fail(
                seq,
                f"prev_hash does not match the hash of seq {self._last.seq} "
                "(a record before it was replaced, or the records were reordered)",
            )
        try:
            actual = record_hash(self._last.hash, record)
        except (TypeError, ValueError) as exc:
            return self._fail(seq, f"record cannot be hashed: {exc}")
        if stored != actual:
            return self._fail(seq, "hash mismatch: the record was edited after it was written")
        if columns is not None:
            wrong = check_columns(record, columns)
            if wrong is not None:
                return self._fail(seq, f"seq {seq}: {wrong}")
        self._last = ChainPoint(seq, actual)
        self._checked += 1
        return True

    def past_head(self, seq: int, head: ChainPoint) -> VerifyResult:
        """Fail: a record with ``seq`` is stored after the store's ``head``."""
        self._failure = VerifyResult(
            False,
            self._checked,
            seq,
            f"seq {seq} is stored after the head (seq {head.seq}): it was added outside the store",
        )
        return self._failure

    def before_anchor(self, seq: int, anchor: ChainPoint) -> VerifyResult:
        """Fail: a record with ``seq`` is stored at or before the ``anchor`` (pruning deletes
        those, so the anchor was moved and the records before it would go unverified)."""
        self._failure = VerifyResult(
            False,
            self._checked,
            seq,
            f"seq {seq} is stored at or before the anchor (seq {anchor.seq}), which a prune "
            "would have deleted: the anchor was moved, hiding the records before it from verify",
        )
        return self._failure

    def finish(self, head: ChainPoint | None = None) -> VerifyResult:
        """The result; with ``head`` (the store's newest seq and hash), also checks the tail."""
        if self._failure is not None:
            return self._failure
        last = self._last
        if head is not None:
            if head.seq > last.seq:
                gone = str(head.seq) if head.seq == last.seq + 1 else f"{last.seq + 1}..{head.seq}"
                return VerifyResult(
                    False,
                    self._checked,
                    last.seq + 1,
                    f"log ends at seq {last.seq} but its head is seq {head.seq}: "
                    f"seq {gone} deleted",
                )
            if head.seq < last.seq:
                return VerifyResult(
                    False,
                    self._checked,
                    head.seq + 1,
                    f"records after the head (seq {head.seq}) were added outside the store",
                )
            if head.hash != last.hash:
                return VerifyResult(
                    False,
                    self._checked,
                    last.seq,
                    f"the head's hash does not match seq {last.seq}: "
                    "the newest record was replaced",
                )
        return VerifyResult(True, self._checked)


def verify(
    records: Iterable[Mapping[str, Any]],
    anchor: ChainPoint | None = None,
    head: ChainPoint | None = None,
) -> VerifyResult:
    """Verify ``records`` (in the order given, which must be seq order) against the chain.

    Detects an edited record, a record deleted in the middle, at the start (below ``anchor``) or
    at the end (with ``head``), and records out of order.
    """
    verifier = ChainVerifier(anchor)
    for record in records:
        if not verifier.feed(record):
            break
    return verifier.finish(head)
