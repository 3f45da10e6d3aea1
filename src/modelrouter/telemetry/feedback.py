"""Feedback: ground truth or a reward for a request, joined to the prediction it got.

A body ``{"request_id": "...", "truth": <label | number | list>, "reward": <number>}`` (truth,
reward or both) names a request by the ``x-request-id`` of its inference response. The
prediction is found in this gateway's recent requests, else in the request's ``decision`` audit
record (which carries the first output's values when it has at most
:data:`MAX_PREDICTION_ELEMENTS` elements); the decision writer batches, so a request that just
answered is looked for again for a short while before the answer is 404.

Scoring, element by element against the flattened first output: a numeric (floating point)
prediction is a regression, and adds ``|prediction - truth|``; any other prediction (integer
class, string, bool) is a label, correct when equal to the truth. Each feedback is an audit
record of kind ``feedback``; a second feedback for the same request is refused (409) by a
unique index of the store, so two gateways posting it at once cannot both accept it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from modelrouter.audit import records
from modelrouter.errors import Conflict, InvalidInput, NotFound
from modelrouter.protocol.types import Tensor
from modelrouter.store.base import Store

MAX_PREDICTION_ELEMENTS = 16
"""Decision records carry the prediction only when the first output has at most this many
elements (so the audit log stays small)."""

FIELDS = ("request_id", "truth", "reward")

MAX_TRUTH_DEPTH = 8
"""Nesting of lists in ``truth`` (a prediction is a tensor of a few dimensions)."""
MAX_TRUTH_ELEMENTS = 1024
"""Values in ``truth``; scoring needs one per predicted element, and at most
:data:`MAX_PREDICTION_ELEMENTS` are recorded."""
MAX_LABEL_LENGTH = 1024
"""Characters of one string label in ``truth``."""
MAX_REQUEST_ID = 128
"""Characters of ``request_id``: the gateway's request ids are at most this long."""


def compact_prediction(outputs: Sequence[Tensor]) -> list[Any] | None:
    """The first output's values, flattened, when small and JSON-safe; else None."""
    if not outputs:
        return None
    data = outputs[0].data
    if data.size > MAX_PREDICTION_ELEMENTS:
        return None
    kind = data.dtype.kind
    values: list[Any] = data.ravel().tolist()
    if kind == "f":
        return values if all(math.isfinite(v) for v in values) else None
    if kind in "biu":
        return values
    out: list[Any] = []
    for v in values:
        if isinstance(v, bytes):
            v = v.decode("utf-8", "replace")
        if not isinstance(v, str | int | bool) and not (isinstance(v, float) and math.isfinite(v)):
            return None
        out.append(v)
    return out


@dataclass(frozen=True, slots=True)
class Score:
    """Truth compared with a prediction: ``labels`` label elements of which ``correct``
    matched, ``values`` numeric elements whose absolute errors sum to ``abs_error``."""

    labels: int = 0
    correct: int = 0
    values: int = 0
    abs_error: float = 0.0


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _flatten(truth: Any, out: list[Any]) -> None:
    """Append the values of ``truth`` to ``out``, refusing a wrong type, nesting deeper than
    :data:`MAX_TRUTH_DEPTH` or more than :data:`MAX_TRUTH_ELEMENTS` values. Iterative: a
    deep list must be a 400, not a RecursionError."""
    stack: list[tuple[Any, int]] = [(truth, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, list):
            if depth >= MAX_TRUTH_DEPTH:
                raise InvalidInput(
                    f"truth: lists nested more than {MAX_TRUTH_DEPTH} deep; give a label, a "
                    "number, or a list shaped like the prediction"
                )
            stack.extend((t, depth + 1) for t in reversed(node))
            if len(out) + len(stack) > MAX_TRUTH_ELEMENTS:
                raise InvalidInput(f"truth: more than {MAX_TRUTH_ELEMENTS} values")
            continue
        if node is None or not (isinstance(node, str | bool) or _is_number(node)):
            raise InvalidInput(
                "truth: must be a label (string, integer, bool), a number, or a list of them, "
                f"not {type(node).__name__}"
            )
        if isinstance(node, float) and not math.isfinite(node):
            raise InvalidInput("truth: must be finite")
        if isinstance(node, str) and len(node) > MAX_LABEL_LENGTH:
            raise InvalidInput(
                f"truth: a label of {len(node)} characters; at most {MAX_LABEL_LENGTH}"
            )
        out.append(node)
        if len(out) > MAX_TRUTH_ELEMENTS:
            raise InvalidInput(f"truth: more than {MAX_TRUTH_ELEMENTS} values")


def score(prediction: Sequence[Any], truth: Any) -> Score:
    """Compare ``truth`` (a scalar, or a list shaped like the prediction) with a prediction."""
    truths: list[Any] = []
    _flatten(truth, truths)
    if len(truths) != len(prediction):
        raise InvalidInput(
            f"truth: {len(truths)} value(s) for a prediction of {len(prediction)} element(s); "
            "give one truth per predicted element"
        )
    labels = correct = values = 0
    abs_error = 0.0
    for p, t in zip(prediction, truths, strict=True):
        if isinstance(p, float):
            if not _is_number(t):
                raise InvalidInput(
                    f"truth: the prediction is numeric ({p:g}); the truth must be a number, "
                    f"not {t!r}"
                )
            values += 1
            abs_error += abs(p - float(t))
        else:
            labels += 1
            if p == t or (isinstance(t, str) != isinstance(p, str) and str(p) == str(t)):
                correct += 1
    return Score(labels, correct, values, abs_error)


@dataclass(frozen=True, slots=True)
class FeedbackRequest:
    request_id: str
    truth: Any | None
    reward: float | None


def parse_feedback(doc: Any) -> FeedbackRequest:
    """Validate a feedback body; a bad one raises :class:`InvalidInput` naming the field."""
    if not isinstance(doc, dict):
        raise InvalidInput("the body must be a JSON object with request_id and truth or reward")
    unknown = sorted(str(k) for k in doc if k not in FIELDS)
    if unknown:
        raise InvalidInput(
            f"unknown field(s) {', '.join(unknown)}: a feedback has request_id, truth, reward"
        )
    rid = doc.get("request_id")
    if not isinstance(rid, str) or not rid.strip():
        raise InvalidInput(
            "request_id: required, a non-empty string (the x-request-id of the response)"
        )
    if len(rid) > MAX_REQUEST_ID:
        raise InvalidInput(
            f"request_id: {len(rid)} characters; request ids have at most {MAX_REQUEST_ID}"
        )
    truth = doc.get("truth")
    reward = doc.get("reward")
    if truth is None and reward is None:
        raise InvalidInput("truth or reward: give the ground truth, a reward, or both")
    if reward is not None and (not _is_number(reward) or not math.isfinite(reward)):
        shown = repr(reward)
        shown = shown if len(shown) <= 80 else shown[:77] + "..."
        raise InvalidInput(f"reward: must be a finite number, not {shown}")
    if truth is not None:
        _flatten(truth, [])  # refuse a wrong type before the lookup
    return FeedbackRequest(rid, truth, None if reward is None else float(reward))


@dataclass(frozen=True, slots=True)
class Joined:
    """The prediction a request got (from the recorder or its decision record)."""

    model: str
    version: str | None
    prediction: list[Any] | None
    status: int


@dataclass(frozen=True, slots=True)
class FeedbackResult:
    request_id: str
    model: str
    version: str
    score: Score | None
    reward: float | None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "request_id": self.request_id,
            "model": self.model,
            "version": self.version,
        }
        if self.score is not None:
            s = self.score
            doc.update(labels=s.labels, correct=s.correct, values=s.values, abs_error=s.abs_error)
        if self.reward is not None:
            doc["reward"] = self.reward
        return doc


class FeedbackSink(Protocol):
    """Where scored feedback goes (:class:`~modelrouter.telemetry.service.Telemetry`)."""

    def recent_prediction(self, request_id: str) -> Joined | None: ...

    def feedback(
        self, model: str, version: str, score: Score | None, reward: float | None
    ) -> None: ...


class FeedbackService:
    """Joins feedback to predictions, scores it, records it (audit, windows, metrics)."""

    def __init__(
        self,
        store: Store,
        sink: FeedbackSink,
        *,
        wait: float = 0.5,
        poll: float = 0.05,
    ) -> None:
        self.store = store
        self.sink = sink
        self.wait = wait
        self.poll = poll

    async def _join(self, request_id: str) -> Joined:
        found = self.sink.recent_prediction(request_id)
        if found is not None:
            return found
        deadline = time.monotonic() + self.wait
        while True:
            record = await self.store.get_decision(request_id)
            if record is not None:
                return Joined(
                    str(record.get("model")),
                    record.get("served_by"),
                    record.get("prediction"),
                    int(record.get("status") or 0),
                )
            if time.monotonic() >= deadline:
                raise NotFound(
                    f"request_id: no request {request_id!r} is known (give the x-request-id of "
                    "an inference response; its decision record may also have been pruned)"
                )
            await asyncio.sleep(self.poll)

    async def submit(self, doc: Any, actor: str = "feedback-api") -> FeedbackResult:
        req = parse_feedback(doc)
        rid = req.request_id
        joined = await self._join(rid)
        if joined.version is None:
            raise InvalidInput(
                f"request_id: request {rid!r} failed (status {joined.status}); it has no "
                "prediction to give feedback on"
            )
        result_score: Score | None = None
        if req.truth is not None:
            if joined.prediction is None:
                raise InvalidInput(
                    f"truth: the prediction of request {rid!r} was not recorded (only outputs "
                    f"of at most {MAX_PREDICTION_ELEMENTS} elements are), so truth cannot be "
                    "scored; a reward can be given"
                )
            result_score = score(joined.prediction, req.truth)
        s = result_score
        record = records.feedback(
            actor=actor,
            request_id=rid,
            model=joined.model,
            version=joined.version,
            truth=req.truth,
            reward=req.reward,
            scored=s is not None,
            labels=None if s is None else s.labels,
            correct=None if s is None else s.correct,
            values=None if s is None else s.values,
            abs_error=None if s is None else s.abs_error,
        )
        try:
            # the store's unique index on (feedback, request_id) decides, for every gateway
            await self.store.append_audit([record])
        except Conflict:
            raise Conflict(f"request_id: feedback for request {rid!r} was already given") from None
        self.sink.feedback(joined.model, joined.version, result_score, req.reward)
        return FeedbackResult(rid, joined.model, joined.version, result_score, req.reward)
