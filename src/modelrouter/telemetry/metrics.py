"""Every Prometheus metric of modelrouter: the names, and one class that holds them.

All names start with ``modelrouter_`` and are defined here only. :class:`Metrics` registers its
metrics on a :class:`~prometheus_client.CollectorRegistry` it is given (the app builds one per
gateway; never the global registry, so tests and several apps in one process do not collide).
``GET /metrics`` serves :func:`render` of that registry.

The per-request path touches a series cached per label tuple, so a request costs one dict
lookup, one counter increment and one histogram observation.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from modelrouter.rollout.analysis import PHASES

PREFIX = "modelrouter_"

# Names as exposed (counters get ``_total`` from prometheus_client; listed here in full).
REQUESTS = "modelrouter_requests_total"
REQUEST_DURATION = "modelrouter_request_duration_seconds"
FALLBACKS = "modelrouter_fallbacks_total"
SHADOW_REQUESTS = "modelrouter_shadow_requests_total"
SHADOW_COMPARED = "modelrouter_shadow_compared_elements_total"
SHADOW_AGREEING = "modelrouter_shadow_agreeing_elements_total"
SHADOW_ABS_DIFF = "modelrouter_shadow_abs_diff_total"
SHADOW_DROPPED = "modelrouter_shadow_dropped_total"
FEEDBACK = "modelrouter_feedback_total"
FEEDBACK_ABS_ERROR = "modelrouter_feedback_abs_error_total"
FEEDBACK_REWARD = "modelrouter_feedback_reward_total"
MODEL_STATE = "modelrouter_model_state"
REPOSITORY_EVENTS = "modelrouter_repository_events_total"
RESIDENT_VERSIONS = "modelrouter_resident_versions"
RESIDENT_BYTES = "modelrouter_resident_bytes"
ROLLOUT_PHASE = "modelrouter_rollout_phase"
ROLLOUT_WEIGHT = "modelrouter_rollout_weight"
TELEMETRY_FLUSH_FAILURES = "modelrouter_telemetry_flush_failures_total"
OUTLIER_EJECTIONS = "modelrouter_outlier_ejections_total"
OUTLIER_EJECTED = "modelrouter_outlier_ejected"
BATCHER_PREDICTS = "modelrouter_batcher_predicts_total"
BATCHER_REQUESTS = "modelrouter_batcher_requests_total"

NAMES = (
    REQUESTS,
    REQUEST_DURATION,
    FALLBACKS,
    SHADOW_REQUESTS,
    SHADOW_COMPARED,
    SHADOW_AGREEING,
    SHADOW_ABS_DIFF,
    SHADOW_DROPPED,
    FEEDBACK,
    FEEDBACK_ABS_ERROR,
    FEEDBACK_REWARD,
    MODEL_STATE,
    ROLLOUT_PHASE,
    ROLLOUT_WEIGHT,
    TELEMETRY_FLUSH_FAILURES,
    OUTLIER_EJECTIONS,
    OUTLIER_EJECTED,
    BATCHER_PREDICTS,
    BATCHER_REQUESTS,
)

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Seconds. Finer at the low end than Prometheus's default: in-process models answer in
well under 5 ms."""

_LE = (*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf")
"""The ``le`` label of each histogram bucket, as Prometheus writes them."""

ROLLOUT_PHASES = PHASES
"""The phases :data:`ROLLOUT_PHASE` always reports (1 for the current one, 0 for the others)."""

MODEL_STATES = ("UNLOADED", "LOADING", "READY", "FAILED")

CONTENT_TYPE = CONTENT_TYPE_LATEST


def _base(name: str) -> str:
    """A counter's name without ``_total``, as prometheus_client wants it."""
    return name.removesuffix("_total")


class _StateLike(Protocol):
    @property
    def value(self) -> str: ...


class _EntryLike(Protocol):
    @property
    def state(self) -> _StateLike: ...


class RepositoryView(Protocol):
    """What the model-state collector reads (a :class:`ModelRepository` has it)."""

    @property
    def models(self) -> Mapping[str, Mapping[str, _EntryLike]]: ...

    @property
    def stats(self) -> Any: ...

    def resident(self) -> Sequence[Any]: ...


class ModelStateCollector(Collector):
    """``modelrouter_model_state{model,version,state}``: 1 for the state each version is in,
    0 for the others; read from the repository at scrape time."""

    def __init__(self, repository: RepositoryView) -> None:
        self.repository = repository

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            MODEL_STATE,
            "Load state of each model version (1 for the current state)",
            labels=["model", "version", "state"],
        )
        for model, versions in self.repository.models.items():
            for version, entry in versions.items():
                current = entry.state.value
                states = MODEL_STATES if current in MODEL_STATES else (*MODEL_STATES, current)
                for state in states:
                    family.add_metric([model, version, state], 1.0 if state == current else 0.0)
        yield family
        events = CounterMetricFamily(
            REPOSITORY_EVENTS,
            "Model repository events: loads, load failures, LRU evictions under the memory "
            "budget, unloads, MLflow alias moves, loads over budget",
            labels=["event"],
        )
        stats = self.repository.stats
        for event in (
            "loads",
            "load_failures",
            "evictions",
            "unloads",
            "alias_moves",
            "over_budget",
        ):
            events.add_metric([event], float(getattr(stats, event)))
        yield events
        resident = self.repository.resident()
        yield GaugeMetricFamily(
            RESIDENT_VERSIONS, "Versions holding memory (loaded or loading)", len(resident)
        )
        yield GaugeMetricFamily(
            RESIDENT_BYTES,
            "Bytes charged to the memory budget by resident versions (artifact sizes)",
            float(sum(getattr(e, "size", 0) or 0 for e in resident)),
        )

    def describe(self) -> Iterable[Metric]:
        return []


class BatchCountsLike(Protocol):
    """What :class:`BatcherCollector` reads of a version's batcher
    (:class:`~modelrouter.runtime.batcher.BatchCounts`)."""

    @property
    def predicts(self) -> int: ...

    @property
    def requests(self) -> int: ...


class BatcherCollector(Collector):
    """``modelrouter_batcher_predicts_total`` and ``modelrouter_batcher_requests_total``, per
    ``model`` and ``version``: the predicts each batched version's batcher started and the
    requests they answered (Triton's execution and inference counts). Their ratio is the mean
    batch size. Read at scrape time from counts the data plane keeps per version, across
    reloads of the version."""

    def __init__(self) -> None:
        self.counts: Mapping[tuple[str, str], BatchCountsLike] = {}

    def collect(self) -> Iterator[Metric]:
        predicts = CounterMetricFamily(
            BATCHER_PREDICTS,
            "Predicts started by the batcher of an in-process version (each serves one or "
            "more requests)",
            labels=["model", "version"],
        )
        requests = CounterMetricFamily(
            BATCHER_REQUESTS,
            "Requests answered by those predicts: divided by the predicts, the mean batch size",
            labels=["model", "version"],
        )
        for (model, version), counts in list(self.counts.items()):
            predicts.add_metric([model, version], float(counts.predicts))
            requests.add_metric([model, version], float(counts.requests))
        yield predicts
        yield requests

    def describe(self) -> Iterable[Metric]:
        return []


class _Series:
    """The figures one request adds to: the count of its (model, version, rule, status) and the
    latency histogram of its (model, version, rule), shared by the statuses of that rule."""

    __slots__ = ("count", "histogram")

    def __init__(self, histogram: list[float]) -> None:
        self.count = 0
        self.histogram = histogram


class RequestStats(Collector):
    """``modelrouter_requests_total`` and ``modelrouter_request_duration_seconds``.

    Counted in plain Python on the event loop, exported at scrape time: prometheus_client's
    labelled children take a lock per update, and these two are updated on every request.
    A request costs one lookup of its label tuple (the :class:`_Series` cached for it), one
    increment and one histogram bucket.
    """

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str, int], _Series] = {}
        self.histograms: dict[tuple[str, str, str], list[float]] = {}
        """Per (model, version, rule): one count per bucket (and +Inf), then the sum."""

    @property
    def counts(self) -> dict[tuple[str, str, str, int], int]:
        """Requests so far by (model, version, rule, status)."""
        return {key: s.count for key, s in list(self._series.items())}

    def observe(self, model: str, version: str, rule: str, status: int, seconds: float) -> None:
        series = self._series.get((model, version, rule, status))
        if series is None:
            series = self._add(model, version, rule, status)
        series.count += 1
        h = series.histogram
        h[bisect_left(LATENCY_BUCKETS, seconds)] += 1
        h[-1] += seconds

    def _add(self, model: str, version: str, rule: str, status: int) -> _Series:
        h = self.histograms.get((model, version, rule))
        if h is None:
            h = self.histograms[(model, version, rule)] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        series = self._series[(model, version, rule, status)] = _Series(h)
        return series

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily(
            _base(REQUESTS),
            "Inference requests by model, version served (chosen when none answered), routing "
            "rule and HTTP status",
            labels=["model", "version", "rule", "status"],
        )
        for (model, version, rule, status), series in list(self._series.items()):
            requests.add_metric([model, version, rule, str(status)], series.count)
        yield requests
        duration = HistogramMetricFamily(
            REQUEST_DURATION,
            "Inference latency in the gateway (routing, model, fallbacks), seconds",
            labels=["model", "version", "rule"],
        )
        for labels, h in list(self.histograms.items()):
            buckets: list[tuple[str, float]] = []
            total = 0.0
            for bound, in_bucket in zip(_LE, h[:-1], strict=True):
                total += in_bucket
                buckets.append((bound, total))
            duration.add_metric(list(labels), buckets, h[-1])
        yield duration

    def describe(self) -> Iterable[Metric]:
        return []


class Metrics:
    """The gateway's Prometheus metrics on an injected registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        r = registry
        self.request_stats = RequestStats()
        r.register(self.request_stats)
        self.batchers = BatcherCollector()
        r.register(self.batchers)
        self.fallbacks = Counter(
            _base(FALLBACKS),
            "Fallbacks taken: a version failed and the next one was tried",
            ["model", "from_version", "to_version"],
            registry=r,
        )
        self.shadow_requests = Counter(
            _base(SHADOW_REQUESTS),
            "Shadow calls that ran, by outcome (ok or error)",
            ["model", "primary", "shadow", "outcome"],
            registry=r,
        )
        self.shadow_compared = Counter(
            _base(SHADOW_COMPARED),
            "Output elements compared between a shadow and its primary",
            ["model", "primary", "shadow"],
            registry=r,
        )
        self.shadow_agreeing = Counter(
            _base(SHADOW_AGREEING),
            "Of the compared elements, those equal in shadow and primary",
            ["model", "primary", "shadow"],
            registry=r,
        )
        self.shadow_abs_diff = Counter(
            _base(SHADOW_ABS_DIFF),
            "Sum of |shadow - primary| over compared numeric elements",
            ["model", "primary", "shadow"],
            registry=r,
        )
        self.shadow_dropped = Counter(
            _base(SHADOW_DROPPED),
            "Shadow calls dropped because the shadow queue was full",
            ["model", "primary", "shadow"],
            registry=r,
        )
        self.feedback = Counter(
            _base(FEEDBACK),
            "Ground truth and rewards joined to predictions, by outcome "
            "(correct, incorrect, value, reward)",
            ["model", "version", "outcome"],
            registry=r,
        )
        self.feedback_abs_error = Counter(
            _base(FEEDBACK_ABS_ERROR),
            "Sum of |prediction - truth| over numeric ground truth",
            ["model", "version"],
            registry=r,
        )
        self.feedback_reward = Counter(
            _base(FEEDBACK_REWARD),
            "Sum of rewards given as feedback",
            ["model", "version"],
            registry=r,
        )
        self.rollout_phase = Gauge(
            ROLLOUT_PHASE,
            "Phase of each rollout (1 for the current phase)",
            ["rollout", "phase"],
            registry=r,
        )
        self.rollout_weight = Gauge(
            ROLLOUT_WEIGHT,
            "Traffic weight (percent) of each version in a rollout",
            ["rollout", "version"],
            registry=r,
        )
        self.flush_failures = Counter(
            _base(TELEMETRY_FLUSH_FAILURES),
            "Failed writes of telemetry windows to the store (retried on the next flush)",
            registry=r,
        )
        self.outlier_ejections = Counter(
            _base(OUTLIER_EJECTIONS),
            "Versions ejected by outlier detection (consecutive errors)",
            ["model", "version"],
            registry=r,
        )
        self.outlier_ejected = Gauge(
            OUTLIER_EJECTED,
            "1 while a version is ejected by outlier detection",
            ["model", "version"],
            registry=r,
        )
        self._rollout_versions: dict[str, set[str]] = {}
        self._repository_collector: ModelStateCollector | None = None
        self.renderer: Callable[[], bytes] | None = None
        """Set in a worker process (:class:`~modelrouter.telemetry.workers.WorkerMetrics`):
        what ``/metrics`` serves is then the sum over every worker."""

    # ------------------------------------------------------------------ hot path

    def request(
        self, model: str, version: str, rule: str | None, status: int, seconds: float
    ) -> None:
        """One inference request, answered or failed."""
        self.request_stats.observe(model, version, rule or "", status, seconds)

    def fallback(self, model: str, from_version: str, to_version: str) -> None:
        self.fallbacks.labels(model, from_version, to_version).inc()

    def outlier(self, model: str, version: str, ejected: bool) -> None:
        """A version was ejected (``ejected``) or returned to service."""
        if ejected:
            self.outlier_ejections.labels(model, version).inc()
        self.outlier_ejected.labels(model, version).set(1 if ejected else 0)

    # ------------------------------------------------------------------ shadow

    def shadow_result(
        self,
        model: str,
        primary: str,
        shadow: str,
        compared: int,
        agreeing: int,
        abs_diff: float,
    ) -> None:
        """A shadow call that answered, compared with the primary's answer."""
        self.shadow_requests.labels(model, primary, shadow, "ok").inc()
        self.shadow_compared.labels(model, primary, shadow).inc(compared)
        self.shadow_agreeing.labels(model, primary, shadow).inc(agreeing)
        self.shadow_abs_diff.labels(model, primary, shadow).inc(abs_diff)

    def shadow_error(self, model: str, primary: str, shadow: str) -> None:
        self.shadow_requests.labels(model, primary, shadow, "error").inc()

    def shadow_drop(self, model: str, primary: str, shadow: str) -> None:
        self.shadow_dropped.labels(model, primary, shadow).inc()

    # ------------------------------------------------------------------ feedback

    def feedback_result(
        self,
        model: str,
        version: str,
        labels: int = 0,
        correct: int = 0,
        values: int = 0,
        abs_error: float = 0.0,
        reward: float | None = None,
    ) -> None:
        """Feedback joined to a prediction of ``model``/``version``: ``labels`` label
        comparisons of which ``correct`` matched, ``values`` numeric ones adding
        ``abs_error``, and a reward."""
        if correct:
            self.feedback.labels(model, version, "correct").inc(correct)
        if labels - correct:
            self.feedback.labels(model, version, "incorrect").inc(labels - correct)
        if values:
            self.feedback.labels(model, version, "value").inc(values)
            self.feedback_abs_error.labels(model, version).inc(abs_error)
        if reward is not None:
            self.feedback.labels(model, version, "reward").inc()
            self.feedback_reward.labels(model, version).inc(reward)

    # ------------------------------------------------------------------ state

    def set_rollout(self, name: str, phase: str, weights: Mapping[str, float]) -> None:
        """The rollout controller reports where rollout ``name`` is: its phase (one of
        :data:`ROLLOUT_PHASES`, or another name) and each version's weight in percent.
        Versions it reported before and no longer names are removed."""
        phases = ROLLOUT_PHASES if phase in ROLLOUT_PHASES else (*ROLLOUT_PHASES, phase)
        for p in phases:
            self.rollout_phase.labels(name, p).set(1.0 if p == phase else 0.0)
        before = self._rollout_versions.get(name, set())
        for version in before - set(weights):
            self.rollout_weight.remove(name, version)
        for version, weight in weights.items():
            self.rollout_weight.labels(name, version).set(float(weight))
        self._rollout_versions[name] = set(weights)

    def watch_repository(self, repository: RepositoryView) -> None:
        """Expose the load state of every version of ``repository`` (read at scrape time)."""
        if self._repository_collector is not None:
            self.registry.unregister(self._repository_collector)
        self._repository_collector = ModelStateCollector(repository)
        self.registry.register(self._repository_collector)

    def watch_batchers(self, counts: Mapping[tuple[str, str], BatchCountsLike]) -> None:
        """Expose the batch counts of every batched version (``counts``, keyed by model and
        version, is read at scrape time)."""
        self.batchers.counts = counts

    def render(self) -> bytes:
        """The exposition text of the registry (what ``GET /metrics`` serves)."""
        if self.renderer is not None:
            return self.renderer()
        return render(self.registry)


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
