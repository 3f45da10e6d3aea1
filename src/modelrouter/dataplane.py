"""The one service layer under every transport: health, metadata, and routed inference.

REST (and later gRPC) handlers only translate wire formats and call this. An inference goes:
route (pure ``decide``) -> fault injection -> the chosen version with timeout and retries ->
fallback versions on failure -> shadow copies queued -> one audit record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from modelrouter._version import __version__
from modelrouter.audit import records
from modelrouter.config.schema import BatcherSpec, Config
from modelrouter.errors import (
    FaultInjected,
    InvalidInput,
    ModelNotReady,
    ModelRouterError,
    NotFound,
    UpstreamTimeout,
)
from modelrouter.outlier import OutlierDetector
from modelrouter.protocol.types import (
    InferenceRequest,
    InferenceResponse,
    RequestedOutput,
    Tensor,
    TensorSpec,
)
from modelrouter.routing.decide import Decision, RequestContext, decide, pinned
from modelrouter.routing.table import RoutingTable, compile_table, routed_versions
from modelrouter.runtime.base import LocalRuntime, ModelRuntime
from modelrouter.runtime.batcher import BatchCounts, Batcher, batched
from modelrouter.runtime.repository import ModelRepository
from modelrouter.shadow.process import ProcessShadows
from modelrouter.shadow.runner import ShadowRunner
from modelrouter.telemetry.feedback import compact_prediction


class AuditSink(Protocol):
    def submit(self, record: Mapping[str, Any]) -> object: ...

    async def submit_durable(self, record: Mapping[str, Any]) -> object: ...

    def add_source(self, drain: Callable[[], None]) -> None: ...


class TelemetrySink(Protocol):
    """Told of every inference (:class:`modelrouter.telemetry.service.Telemetry`)."""

    def request(
        self,
        model: str,
        version: str,
        rule: str | None,
        status: int,
        seconds: float,
        request_id: str | None = None,
        prediction: list[Any] | None = None,
        fallbacks: Sequence[dict[str, str]] = (),
    ) -> None: ...


class TableSource(Protocol):
    """Where the live routing table comes from (``RoutingState``, or a fixed table)."""

    table: RoutingTable


@dataclass(slots=True)
class StaticTable:
    table: RoutingTable


EXTENSIONS = ("binary_tensor_data", "model_repository")


@dataclass(slots=True)
class InferOutcome:
    response: InferenceResponse
    version: str
    decision: Decision
    fallbacks: list[dict[str, str]] = field(default_factory=list)


_HeldDecision = tuple[
    float,
    str | None,
    Decision,
    str | None,
    bool,
    list[dict[str, str]],
    int,
    float,
    list[Any] | None,
    str | None,
]
"""A decision's audit fields: time, request id, decision, served by, pinned, fallbacks, status,
latency (seconds), prediction, error."""


def _decision_record(held: _HeldDecision) -> records.Record:
    when, request_id, decision, served, pinned, fallbacks, status, latency, prediction, error = held
    return records.decision(
        time=when,
        request_id=request_id,
        model=decision.model,
        version=decision.version,
        served_by=served,
        pinned=pinned,
        rule=decision.rule_name,
        matched=decision.matched,
        bucket=decision.bucket,
        sticky=decision.sticky,
        weights=decision.weights,
        shadows=decision.mirrors,
        fallbacks=fallbacks,
        store_revision=decision.table_version,
        status=status,
        latency_ms=round(latency * 1000, 3),
        prediction=prediction,
        error=error,
    )


class DataPlane:
    def __init__(
        self,
        config: Config,
        repository: ModelRepository,
        routing: TableSource | None = None,
        shadow: ShadowRunner | None = None,
        audit: AuditSink | None = None,
        telemetry: TelemetrySink | None = None,
    ) -> None:
        self.config = config
        self.repository = repository
        self.routing: TableSource = routing or StaticTable(compile_table(config.models))
        self.shadow = shadow
        self.audit = audit if config.server.audit.enabled else None
        self.durable = config.server.audit.durable
        self._decisions: list[_HeldDecision] = []
        """The decisions of this loop turn, audited together at its end (see :meth:`_record`)."""
        if self.audit is not None and not self.durable:
            self.audit.add_source(self._audit_held)
        self.telemetry = telemetry
        self.shadow_processes: ProcessShadows | None = None
        self.draining = False
        """Set on SIGTERM by the :class:`~modelrouter.server.Gateway`: readiness answers 503
        while requests are still served, so load balancers stop sending new ones."""
        self.outliers = OutlierDetector(config)
        self._defaults = {name: m.default_version for name, m in config.models.items()}
        self._batching = {name: m.batcher or BatcherSpec() for name, m in config.models.items()}
        self.batch_counts: dict[tuple[str, str], BatchCounts] = {}
        """What each batched version's batcher did, kept across reloads (the metrics read
        it); one entry per version that was ever batched here."""
        self._non_finite = frozenset(n for n, m in config.models.items() if m.allowNonFinite)
        # ``outputNames`` of each version: runtime name -> client name, and back
        self._renames: dict[tuple[str, str], dict[str, str]] = {
            (name, v): dict(vs.outputNames)
            for name, m in config.models.items()
            for v, vs in m.versions.items()
            if vs.outputNames
        }
        self._unrenames = {
            key: {client: source for source, client in names.items()}
            for key, names in self._renames.items()
        }

    def allows_non_finite(self, model: str) -> bool:
        """Whether ``model`` takes NaN and infinite inputs (its ``allowNonFinite``)."""
        return model in self._non_finite

    # ------------------------------------------------------------------ health and metadata

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        """Ready to take traffic: not draining, and every version the live routing table can
        serve a request with (:func:`~modelrouter.routing.table.routed_versions`) is ready. A
        failed mirror-only or unrouted version shows in its model's readiness and the
        repository index, not here: it answers no request."""
        if self.draining:
            return False
        models = self.repository.models
        for model, routes in self.routing.table.models.items():
            entries = models.get(model, {})
            for version in routed_versions(routes):
                entry = entries.get(version)
                if entry is None or not entry.ready:
                    return False
        return True

    def server_metadata(self) -> dict[str, Any]:
        return {
            "name": self.config.server.name,
            "version": __version__,
            "extensions": list(EXTENSIONS),
        }

    def resolve_version(self, model: str, version: str | None) -> str:
        """The version a model-level call means: the one pinned, or the model's default."""
        if version is not None:
            self.repository.entry(model, version)
            return version
        versions = self.repository.versions(model)
        return self._defaults.get(model) or next(iter(versions))

    def model_ready(self, model: str, version: str | None = None) -> tuple[bool, str]:
        v = self.resolve_version(model, version)
        return self.repository.entry(model, v).ready, v

    def not_ready_reason(self, model: str, version: str, full: bool = False) -> str:
        """Why a version is not ready: its load error (in full for the admin, ``full``), or
        the state it is in."""
        e = self.repository.entry(model, version)
        return e.reason(full) or f"model '{model}' version '{version}' is {e.state.value}"

    def model_metadata(self, model: str, version: str | None = None) -> tuple[dict[str, Any], str]:
        v = self.resolve_version(model, version)
        runtime = self.repository.runtime(model, v)
        sig = runtime.signature()
        names = self._renames.get((model, v), {})
        outputs = [TensorSpec(names.get(s.name, s.name), s.datatype, s.shape) for s in sig.outputs]
        doc: dict[str, Any] = {
            "name": model,
            "versions": list(self.repository.versions(model)),
            "platform": sig.platform or runtime.format,
            "inputs": [s.to_json() for s in sig.inputs],
            "outputs": [s.to_json() for s in outputs],
        }
        if sig.extra:
            doc["parameters"] = dict(sig.extra)
        return doc, v

    # ------------------------------------------------------------------ inference

    def has_rules(self, model: str) -> bool:
        """Whether routing ``model`` reads the request (headers, body, draws)."""
        routes = self.routing.table.models.get(model)
        return routes is None or bool(routes.rules)

    async def infer(
        self,
        model: str,
        request: InferenceRequest,
        version: str | None = None,
        ctx: RequestContext | None = None,
        request_id: str | None = None,
    ) -> InferOutcome:
        """Route and run one request. ``version`` pins it (no rules, mirror or fallback).
        ``request_id`` (the transport's, e.g. ``x-request-id``) keys the audit record; the
        request's own ``id`` is echoed in the response."""
        start = time.perf_counter()
        table = self.routing.table
        pinned_call = version is not None
        if version is not None:
            self.repository.entry(model, version)
            decision = pinned(table, model, version)
        else:
            decision = decide(table, model, ctx or RequestContext())
        fallbacks: list[dict[str, str]] = []
        rid = request_id or request.id
        # the versions tried, in order, when outlier detection watches this call
        trying: list[str] | None = [] if self.outliers.enabled and not pinned_call else None
        try:
            if decision.delay:
                await asyncio.sleep(decision.delay)
            if decision.abort:
                raise FaultInjected(decision.abort, model, decision.rule_name)
            if decision.timeout is not None:
                try:
                    outputs, served = await asyncio.wait_for(
                        self._run(decision, request, fallbacks, trying), decision.timeout
                    )
                except TimeoutError:
                    error = UpstreamTimeout(
                        f"model '{model}' did not answer within the rule's timeout of "
                        f"{decision.timeout * 1000:g}ms"
                    )
                    if trying:
                        self.outliers.failure(model, trying[-1], error.message)
                    raise error from None
            else:
                outputs, served = await self._run(decision, request, fallbacks, trying)
        except ModelRouterError as exc:
            await self._record(
                decision, rid, start, exc.status.http, None, fallbacks, exc, pinned_call
            )
            raise
        except Exception as exc:
            await self._record(decision, rid, start, 500, None, fallbacks, exc, pinned_call)
            raise
        if decision.mirrors and self.shadow is not None:
            mirrors = decision.mirrors
            if served in mirrors:  # a fallback answered from a mirrored version
                mirrors = tuple(v for v in mirrors if v != served)
            if mirrors:
                # shadows are asked for what the primary's runtime computed, under its names
                asked = self._runtime_names(model, served, request)
                self.shadow.submit(model, served, mirrors, asked, outputs)
        prediction = compact_prediction(outputs)
        await self._record(
            decision, rid, start, 200, served, fallbacks, None, pinned_call, prediction
        )
        names = self._renames.get((model, served))
        if names is not None:
            outputs = [replace(t, name=names[t.name]) if t.name in names else t for t in outputs]
        return InferOutcome(
            InferenceResponse(model, served, outputs, request.id), served, decision, fallbacks
        )

    def _runtime_names(
        self, model: str, version: str, request: InferenceRequest
    ) -> InferenceRequest:
        """``request`` with the outputs it asks for under the names ``version``'s runtime knows
        (the client may ask for the ``outputNames`` the config gives them)."""
        back = self._unrenames.get((model, version))
        if back is None or request.outputs is None:
            return request
        outputs = [RequestedOutput(back.get(o.name, o.name), o.parameters) for o in request.outputs]
        return replace(request, outputs=outputs)

    async def _run(
        self,
        decision: Decision,
        request: InferenceRequest,
        fallbacks: list[dict[str, str]],
        trying: list[str] | None = None,
    ) -> tuple[list[Tensor], str]:
        """The chosen version with its retries, then each fallback version in turn.

        With ``trying`` (outlier detection on), an ejected version is skipped at once, each
        outcome is counted, and each version is appended to ``trying`` before its attempts."""
        model = decision.model
        candidates = [decision.version]
        candidates += [v for v in decision.fallback if v not in candidates]
        per_try = decision.per_try_timeout
        last: ModelRouterError | None = None
        for i, version in enumerate(candidates):
            left = self.outliers.ejected_for(model, version) if trying is not None else None
            if left is not None:
                last = ModelNotReady(
                    f"model '{model}' version '{version}' is ejected by outlier detection "
                    f"for another {left:.1f}s"
                )
            asked = self._runtime_names(model, version, request)
            for _ in range(decision.attempts if left is None else 0):
                if trying is not None:
                    trying.append(version)
                try:
                    async with self.repository.use(model, version) as runtime:
                        call = self._infer_on(model, runtime, asked)
                        if per_try is None:
                            outputs = await call
                        else:
                            outputs = await asyncio.wait_for(call, per_try)
                    if trying is not None:
                        self.outliers.success(model, version)
                    return outputs, version
                except (InvalidInput, NotFound):
                    raise  # the request is wrong: another try or version will not help
                except TimeoutError:
                    last = UpstreamTimeout(
                        f"model '{model}' version '{version}' did not answer "
                        f"within {per_try * 1000:g}ms"
                        if per_try
                        else "timed out"
                    )
                except ModelRouterError as exc:
                    last = exc
                if trying is not None:
                    self.outliers.failure(model, version, last.message)
                    if self.outliers.ejected_for(model, version) is not None:
                        break  # ejected by this failure: no more tries of it
            if i + 1 < len(candidates):
                fallbacks.append(
                    {
                        "version": candidates[i + 1],
                        "from": version,
                        "error": last.internal if last else "",
                    }
                )
        assert last is not None
        raise last

    async def _record(
        self,
        decision: Decision,
        request_id: str | None,
        start: float,
        status: int,
        served: str | None,
        fallbacks: list[dict[str, str]],
        error: BaseException | None,
        pinned: bool,
        prediction: list[Any] | None = None,
    ) -> None:
        """One audit record per decision: queued at the end of this loop turn (with the turn's
        others), or committed before the answer in durable mode.

        The fields are those :mod:`modelrouter.audit.explain` reads: ``version`` is the version
        routing chose, ``served_by`` the one that answered (None on failure), ``fallbacks`` the
        versions that answered in turn after a failure, each with the error that caused it;
        ``prediction`` the first output's values when small (for joining feedback).
        The telemetry hears of every decision, audited or not."""
        latency = time.perf_counter() - start
        if self.telemetry is not None:
            self.telemetry.request(
                decision.model,
                served or decision.version,
                decision.rule_name,
                status,
                latency,
                request_id,
                prediction,
                fallbacks,
            )
        if self.audit is None:
            return
        held: _HeldDecision = (
            time.time(),
            request_id,
            decision,
            served,
            pinned,
            fallbacks,
            status,
            latency,
            prediction,
            None
            if error is None
            else (error.internal if isinstance(error, ModelRouterError) else type(error).__name__),
        )
        if self.durable:
            await self.audit.submit_durable(_decision_record(held))
            return
        # Held to the end of the loop turn and built there with the turn's others: built in
        # place, between a request's other steps (cold code and data), a record cost 9 µs of
        # the event loop; built together, a few. The writer drains them before a flush.
        if not self._decisions:
            asyncio.get_running_loop().call_soon(self._audit_held)
        self._decisions.append(held)

    def _audit_held(self) -> None:
        """Submit the decision records held back this loop turn, in order."""
        held, self._decisions = self._decisions, []
        if self.audit is not None:
            for h in held:
                self.audit.submit(_decision_record(h))

    def _infer_on(
        self, model: str, runtime: ModelRuntime, request: InferenceRequest
    ) -> Coroutine[Any, Any, list[Tensor]]:
        """``runtime.infer``, through its batcher when the version is batched (in-process
        only): by default the row-independent runtimes, else as ``batcher.enabled`` says."""
        if not isinstance(runtime, LocalRuntime):
            return runtime.infer(request)
        batcher = runtime.batcher
        if batcher is None:
            spec = self._batching.get(model)
            if spec is None or not batched(spec, runtime):
                return runtime.infer(request)
            counts = self.batch_counts.setdefault((model, runtime.version), BatchCounts())
            batcher = runtime.batcher = Batcher(runtime, spec, counts)
        return batcher.infer(request)

    async def call_version(
        self, model: str, version: str, request: InferenceRequest
    ) -> list[Tensor]:
        """One version, directly: how shadow copies reach their version.

        An in-process model predicts in the shadow worker process (``server.shadow.executor:
        process``) or a worker thread, whatever its ``executor``: a shadow must never hold the
        event loop that serves the primaries."""
        async with self.repository.use(model, version) as runtime:
            if isinstance(runtime, LocalRuntime):
                if self.shadow_processes is not None and self.shadow_processes.accepts(runtime):
                    return await self.shadow_processes.run(runtime, request)
                return await asyncio.to_thread(runtime.run, request)
            return await runtime.infer(request)
