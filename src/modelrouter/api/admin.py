"""The control plane over REST: ``/api/v1/...`` behind a bearer token.

Routing rules are read and replaced here (validated, versioned, written to the shared store and
audited there); the audit log is queried and a decision explained in words.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelrouter.api.auth import check_token
from modelrouter.api.rest import json_response, read_body
from modelrouter.audit.explain import explain
from modelrouter.audit.gaps import gap_summaries
from modelrouter.config.durations import parse_time
from modelrouter.dataplane import DataPlane
from modelrouter.errors import InvalidInput, NotFound, Unauthorized
from modelrouter.protocol.v2 import loads
from modelrouter.routing.state import RoutingState
from modelrouter.runtime.intents import IntentFollower
from modelrouter.store.base import Store

MAX_ADMIN_BODY = 1024 * 1024


class AdminApi:
    def __init__(
        self,
        dataplane: DataPlane,
        routing: RoutingState,
        store: Store,
        token: str | None,
        *,
        intents: IntentFollower,
    ) -> None:
        self.dp = dataplane
        self.routing = routing
        self.store = store
        self.token = token
        self.intents = intents

    def authorize(self, request: Request) -> str:
        """The actor making the call; 401 without the right bearer token."""
        if not self.token:
            raise Unauthorized(
                "the admin API is disabled: set the token in the environment variable named by "
                "server.auth.adminTokenEnv (default MODELROUTER_ADMIN_TOKEN)"
            )
        check_token(request, self.token, "missing or invalid bearer token")
        return request.headers.get("x-actor") or "admin"

    async def _json(self, request: Request) -> dict[str, Any]:
        doc = loads(await read_body(request, MAX_ADMIN_BODY))
        if not isinstance(doc, dict):
            raise InvalidInput("the body must be a JSON object")
        return doc

    # ------------------------------------------------------------------ models

    async def models(self, request: Request) -> Response:
        self.authorize(request)
        out = []
        for name, versions in self.dp.repository.models.items():
            doc = self.routing.document(name)
            out.append(
                {
                    "name": name,
                    "routingVersion": doc["version"],
                    "versions": [
                        {
                            "name": v,
                            "state": e.state.value,
                            "reason": e.error,
                            "format": e.spec.format,
                            "loadSeconds": e.load_seconds,
                        }
                        for v, e in versions.items()
                    ],
                }
            )
        return json_response({"models": out, "tableVersion": self.routing.table.version})

    async def get_routing(self, request: Request) -> Response:
        self.authorize(request)
        return json_response(self.routing.document(request.path_params["name"]))

    async def put_routing(self, request: Request) -> Response:
        actor = self.authorize(request)
        model = request.path_params["name"]
        body = await self._json(request)
        reason = body.pop("reason", "")
        expected = body.pop("expectedVersion", None)
        if not isinstance(reason, str):
            raise InvalidInput("reason must be a string")
        if expected is not None and (type(expected) is not int or expected < 0):
            raise InvalidInput("expectedVersion must be a non-negative integer")
        await self.routing.update(model, body, actor, reason, expected)
        return json_response(self.routing.document(model))

    async def load(self, request: Request) -> Response:
        return await self._load_or_unload(request, load=True)

    async def unload(self, request: Request) -> Response:
        return await self._load_or_unload(request, load=False)

    async def _load_or_unload(self, request: Request, load: bool) -> Response:
        actor = self.authorize(request)
        p = request.path_params
        request_one = self.intents.request_load if load else self.intents.request_unload
        o = await request_one(p["name"], p["version"], actor)
        return json_response(
            {"name": p["name"], "version": p["version"], "state": o.state, "reason": o.error}
        )

    async def shadow(self, request: Request) -> Response:
        self.authorize(request)
        model = request.path_params["name"]
        self.dp.repository.versions(model)
        shadow = self.dp.shadow
        pairs = [s.to_json() for s in shadow.stats.values() if s.model == model] if shadow else []
        return json_response({"model": model, "pairs": pairs})

    # ------------------------------------------------------------------ audit

    async def audit(self, request: Request) -> Response:
        self.authorize(request)
        q = request.query_params
        allowed = {
            "model",
            "version",
            "rule",
            "kind",
            "request_id",
            "since",
            "until",
            "limit",
            "order",
            "after_seq",
        }
        unknown = set(q) - allowed
        if unknown:
            raise InvalidInput(
                f"unknown query parameter {sorted(unknown)[0]!r} "
                f"(filters: {', '.join(sorted(allowed))})"
            )
        now = time.time()
        args: dict[str, Any] = {
            k: q[k] for k in ("model", "version", "rule", "kind", "request_id") if k in q
        }
        for k in ("since", "until"):
            if k in q:
                try:
                    args[k] = parse_time(q[k], now)
                except ValueError as exc:
                    raise InvalidInput(f"{k}: {exc}") from None
        for k in ("limit", "after_seq"):
            if k in q:
                try:
                    args[k] = int(q[k])
                except ValueError:
                    raise InvalidInput(f"{k} must be an integer, got {q[k]!r}") from None
        if "order" in q:
            args["order"] = q["order"]
        records = await self.store.query_audit(**args)
        return json_response({"records": records})

    async def decision(self, request: Request) -> Response:
        self.authorize(request)
        rid = request.path_params["request_id"]
        record = await self.store.get_decision(rid)
        if record is None:
            raise NotFound(f"no decision recorded for request id '{rid}'")
        return json_response({"record": record, "explanation": explain(record)})

    async def verify(self, request: Request) -> Response:
        self.authorize(request)
        result = await self.store.verify_audit()
        gaps = gap_summaries(await self.store.audit_gaps())
        return json_response(
            {
                "ok": result.ok,
                "checked": result.checked,
                "firstBadSeq": result.first_bad_seq,
                "reason": result.reason,
                "gaps": gaps,
            },
            200 if result.ok else 409,
        )

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/models", self.models, methods=["GET"]),
            Route("/api/v1/models/{name}/routing", self.get_routing, methods=["GET"]),
            Route("/api/v1/models/{name}/routing", self.put_routing, methods=["PUT"]),
            Route("/api/v1/models/{name}/shadow", self.shadow, methods=["GET"]),
            Route("/api/v1/models/{name}/versions/{version}/load", self.load, methods=["POST"]),
            Route("/api/v1/models/{name}/versions/{version}/unload", self.unload, methods=["POST"]),
            Route("/api/v1/audit", self.audit, methods=["GET"]),
            Route("/api/v1/audit/verify", self.verify, methods=["GET"]),
            Route("/api/v1/decisions/{request_id}", self.decision, methods=["GET"]),
        ]
