"""Rollouts over REST: ``/api/v1/rollouts`` (status and history) and the manual commands
``POST /api/v1/rollouts/{name}/pause|resume|promote|abort``, behind the admin bearer token."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelrouter.api.rest import json_response
from modelrouter.errors import InvalidInput
from modelrouter.rollout.controller import COMMANDS, RolloutManager


class RolloutsApi:
    def __init__(self, manager: RolloutManager, authorize: Callable[[Request], str]) -> None:
        """``authorize(request)`` returns the actor or raises (the admin API's check)."""
        self.manager = manager
        self.authorize = authorize

    async def list_all(self, request: Request) -> Response:
        self.authorize(request)
        out = [await c.status() for c in self.manager.controllers.values()]
        return json_response({"rollouts": out})

    async def get(self, request: Request) -> Response:
        self.authorize(request)
        c = self.manager.get(request.path_params["name"])
        raw = request.query_params.get("limit", "50")
        try:
            limit = int(raw)
        except ValueError:
            raise InvalidInput(f"limit must be an integer, got {raw!r}") from None
        return json_response({**await c.status(), "history": await c.history(limit)})

    async def command(self, request: Request) -> Response:
        actor = self.authorize(request)
        c = self.manager.get(request.path_params["name"])
        action = request.path_params["action"]
        if action not in COMMANDS:
            raise InvalidInput(f"unknown command {action!r} (known: {', '.join(COMMANDS)})")
        return json_response(await c.command(action, actor))

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/rollouts", self.list_all, methods=["GET"]),
            Route("/api/v1/rollouts/{name}", self.get, methods=["GET"]),
            Route("/api/v1/rollouts/{name}/{action}", self.command, methods=["POST"]),
        ]
