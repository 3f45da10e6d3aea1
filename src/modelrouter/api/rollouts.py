"""Rollouts over REST: ``/api/v1/rollouts`` (status and history) and the manual commands
``POST /api/v1/rollouts/{name}/pause|resume|promote|abort``, behind the admin bearer token.
Translation only: the work is :class:`~modelrouter.control.ControlPlane`'s."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelrouter.api.rest import json_response
from modelrouter.control import ControlPlane
from modelrouter.errors import InvalidInput


class RolloutsApi:
    def __init__(self, control: ControlPlane, authorize: Callable[[Request], str]) -> None:
        """``authorize(request)`` returns the actor or raises (the admin API's check)."""
        self.control = control
        self.authorize = authorize

    async def list_all(self, request: Request) -> Response:
        self.authorize(request)
        return json_response({"rollouts": await self.control.list_rollouts()})

    async def get(self, request: Request) -> Response:
        self.authorize(request)
        raw = request.query_params.get("limit", "50")
        try:
            limit = int(raw)
        except ValueError:
            raise InvalidInput(f"limit: must be an integer, got {raw!r}") from None
        return json_response(await self.control.rollout_status(request.path_params["name"], limit))

    async def command(self, request: Request) -> Response:
        actor = self.authorize(request)
        p = request.path_params
        return json_response(await self.control.rollout_command(p["name"], p["action"], actor))

    def routes(self) -> list[Route]:
        return [
            Route("/api/v1/rollouts", self.list_all, methods=["GET"]),
            Route("/api/v1/rollouts/{name}", self.get, methods=["GET"]),
            Route("/api/v1/rollouts/{name}/{action}", self.command, methods=["POST"]),
        ]
