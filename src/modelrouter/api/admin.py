"""The control plane over REST: ``/api/v1/...`` behind a bearer token.

Each handler only translates: it checks the token, reads the path, query and body, calls one
method of :class:`~modelrouter.control.ControlPlane`, and writes its answer as JSON (errors go
through the one status table).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelrouter.api.auth import check_token
from modelrouter.api.rest import json_response, read_body
from modelrouter.config.durations import parse_duration
from modelrouter.control import AuditFilter, ControlPlane
from modelrouter.errors import InvalidInput, Unauthorized
from modelrouter.protocol.v2 import loads

MAX_ADMIN_BODY = 1024 * 1024


def window_param(request: Request) -> float | None:
    raw = request.query_params.get("window")
    if raw is None:
        return None
    try:
        return parse_duration(raw)
    except ValueError as exc:
        raise InvalidInput(f"window: {exc}") from None


class AdminApi:
    def __init__(self, control: ControlPlane, token: str | None) -> None:
        self.control = control
        self.token = token

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
        return json_response(await self.control.models())

    async def get_routing(self, request: Request) -> Response:
        self.authorize(request)
        return json_response(await self.control.get_routing(request.path_params["name"]))

    async def put_routing(self, request: Request) -> Response:
        actor = self.authorize(request)
        body = await self._json(request)
        reason = body.pop("reason", "")
        expected = body.pop("expectedVersion", None)
        doc = await self.control.replace_routing(
            request.path_params["name"], body, actor, reason, expected
        )
        return json_response(doc)

    async def load(self, request: Request) -> Response:
        actor = self.authorize(request)
        p = request.path_params
        return json_response(await self.control.load_version(p["name"], p["version"], actor))

    async def unload(self, request: Request) -> Response:
        actor = self.authorize(request)
        p = request.path_params
        return json_response(await self.control.unload_version(p["name"], p["version"], actor))

    async def versions(self, request: Request) -> Response:
        self.authorize(request)
        model = request.path_params["name"]
        return json_response(await self.control.version_figures(model, window_param(request)))

    async def shadow(self, request: Request) -> Response:
        self.authorize(request)
        model = request.path_params["name"]
        return json_response(await self.control.shadow_stats(model, window_param(request)))

    # ------------------------------------------------------------------ audit

    async def audit(self, request: Request) -> Response:
        self.authorize(request)
        records = await self.control.audit_query(AuditFilter.parse(request.query_params))
        return json_response({"records": records})

    async def decision(self, request: Request) -> Response:
        self.authorize(request)
        return json_response(await self.control.audit_explain(request.path_params["request_id"]))

    async def verify(self, request: Request) -> Response:
        self.authorize(request)
        report = await self.control.audit_verify()
        return json_response(report.to_json(), 200 if report.ok else 409)

    def routes(self) -> list[Route]:
        m = "/api/v1/models/{name}"
        return [
            Route("/api/v1/models", self.models, methods=["GET"]),
            Route(f"{m}/routing", self.get_routing, methods=["GET"]),
            Route(f"{m}/routing", self.put_routing, methods=["PUT"]),
            Route(f"{m}/shadow", self.shadow, methods=["GET"]),
            Route(f"{m}/versions", self.versions, methods=["GET"]),
            Route(f"{m}/versions/{{version}}/load", self.load, methods=["POST"]),
            Route(f"{m}/versions/{{version}}/unload", self.unload, methods=["POST"]),
            Route("/api/v1/audit", self.audit, methods=["GET"]),
            Route("/api/v1/audit/verify", self.verify, methods=["GET"]),
            Route("/api/v1/decisions/{request_id}", self.decision, methods=["GET"]),
        ]
