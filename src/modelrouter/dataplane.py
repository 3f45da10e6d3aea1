"""The one service layer under every transport: health, metadata, and routed inference.

REST (and later gRPC) handlers only translate wire formats and call this. An inference goes:
route (pure ``decide``) -> fault injection -> the chosen version with timeout and retries ->
fallback versions on failure -> shadow copies queued -> one audit record.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from modelrouter._version import __version__
from modelrouter.config.schema import Config
from modelrouter.errors import (
    FaultInjected,
    InvalidInput,
    ModelRouterError,
    NotFound,
    UpstreamTimeout,
)
from modelrouter.protocol.types import InferenceRequest, InferenceResponse, Tensor
from modelrouter.routing.decide import Decision, RequestContext, decide, pinned
from modelrouter.routing.table import RoutingTable, compile_table
from modelrouter.runtime.base import LocalRuntime, ModelRuntime
from modelrouter.runtime.batcher import Batcher
from modelrouter.runtime.repository import ModelRepository
from modelrouter.shadow import ShadowRunner
from modelrouter.shadow_process import ProcessShadows
from modelrouter.telemetry.feedback import compact_prediction


class AuditSink(Protocol):
    def submit(self, record: Mapping[str, Any]) -> object: ...

    async def submit_durable(self, record: Mapping[str, Any]) -> object: ...


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
        self.telemetry = telemetry
        self.shadow_processes: ProcessShadows | None = None
        self._defaults = {name: m.default_version for name, m in config.models.items()}
        self._batching = {name: m.batcher for name, m in config.models.items() if m.batcher}

    # ------------------------------------------------------------------ health and metadata

    def live(self) -> bool:
        return True

    def ready(self) -> bool:
        return self.repository.all_ready()

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

    def not_ready_reason(self, model: str, version: str) -> str:
        """Why a version is not ready: its load error, or the state it is in."""
        e = self.repository.entry(model, version)
        return e.error or f"model '{model}' version '{version}' is {e.state.value}"

    def model_metadata(self, model: str, version: str | None = None) -> tuple[dict[str, Any], str]:
        v = self.resolve_version(model, version)
        runtime = self.repository.runtime(model, v)
        sig = runtime.signature()
        doc: dict[str, Any] = {
            "name": model,
            "versions": list(self.repository.versions(model)),
            "platform": sig.platform or runtime.format,
            "inputs": [s.to_json() for s in sig.inputs],
            "outputs": [s.to_json() for s in sig.outputs],
        }
        if sig.extra:
            doc["parameters"] = dict(sig.extra)
        return doc, v

    def model_index(self) -> list[dict[str, Any]]:
        out = []
        for name, versions in self.repository.models.items():
            for v, e in versions.items():
                item: dict[str, Any] = {"name": name, "version": v, "state": e.state.value}
                if e.error:
                    item["reason"] = e.error
                out.append(item)
        return out

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
        try:
            if decision.delay:
                await asyncio.sleep(decision.delay)
            if decision.abort:
                raise FaultInjected(decision.abort, model, decision.rule_name)
            if decision.timeout is not None:
                try:
                    outputs, served = await asyncio.wait_for(
                        self._run(decision, request, fallbacks), decision.timeout
                    )
                except TimeoutError:
                    raise UpstreamTimeout(
                        f"model '{model}' did not answer within the rule's timeout of "
                        f"{decision.timeout * 1000:g}ms"
                    ) from None
            else:
                outputs, served = await self._run(decision, request, fallbacks)
        except ModelRouterError as exc:
            await self._record(
                decision, rid, start, exc.status.http, None, fallbacks, exc, pinned_call
            )
            raise
        except Exception as exc:
            await self._record(decision, rid, start, 500, None, fallbacks, exc, pinned_call)
            raise
        if decision.mirrors and self.shadow is not None:
            self.shadow.submit(model, served, decision.mirrors, request, outputs)
        prediction = compact_prediction(outputs)
        await self._record(
            decision, rid, start, 200, served, fallbacks, None, pinned_call, prediction
        )
        return InferOutcome(
            InferenceResponse(model, served, outputs, request.id), served, decision, fallbacks
        )

    async def _run(
        self, decision: Decision, request: InferenceRequest, fallbacks: list[dict[str, str]]
    ) -> tuple[list[Tensor], str]:
        """The chosen version with its retries, then each fallback version in turn."""
        candidates = [decision.version]
        candidates += [v for v in decision.fallback if v not in candidates]
        per_try = decision.per_try_timeout
        last: ModelRouterError | None = None
        for i, version in enumerate(candidates):
            for _ in range(decision.attempts):
                try:
                    async with self.repository.use(decision.model, version) as runtime:
                        call = self._infer_on(decision.model, runtime, request)
                        if per_try is None:
                            return await call, version
                        return await asyncio.wait_for(call, per_try), version
                except (InvalidInput, NotFound):
                    raise  # the request is wrong: another try or version will not help
                except TimeoutError:
                    last = UpstreamTimeout(
                        f"model '{decision.model}' version '{version}' did not answer "
                        f"within {per_try * 1000:g}ms"
                        if per_try
                        else "timed out"
                    )
                except ModelRouterError as exc:
                    last = exc
            if i + 1 < len(candidates):
                fallbacks.append(
                    {
                        "version": candidates[i + 1],
                        "from": version,
                        "error": last.message if last else "",
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
        """One audit record per decision: queued, or committed first in durable mode.

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
        record: dict[str, Any] = {
            "kind": "decision",
            "time": time.time(),
            "request_id": request_id,
            "model": decision.model,
            "version": decision.version,
            "served_by": served,
            "pinned": pinned,
            "rule": decision.rule_name,
            "matched": list(decision.matched),
            # a sticky key's bucket; a key-less draw is not a bucket the user keeps
            "bucket": decision.bucket if decision.sticky else None,
            "sticky": decision.sticky,
            "weights": dict(decision.weights),
            "shadows": list(decision.mirrors),
            "fallbacks": fallbacks,
            "table_version": decision.table_version,
            "status": status,
            "latency_ms": round(latency * 1000, 3),
        }
        if prediction is not None:
            record["prediction"] = prediction
        if error is not None:
            record["error"] = (
                error.message if isinstance(error, ModelRouterError) else type(error).__name__
            )
        if self.durable:
            await self.audit.submit_durable(record)
        else:
            self.audit.submit(record)

    def _infer_on(
        self, model: str, runtime: ModelRuntime, request: InferenceRequest
    ) -> Coroutine[Any, Any, list[Tensor]]:
        """``runtime.infer``, through the model's batcher when it has one (in-process only)."""
        spec = self._batching.get(model)
        if spec is None or not isinstance(runtime, LocalRuntime):
            return runtime.infer(request)
        batcher = runtime.batcher
        if batcher is None:
            batcher = runtime.batcher = Batcher(runtime, spec)
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
