"""The Open Inference Protocol repository extension: index, load and unload (as Triton's).

``GET|POST /v2/repository/index`` lists every configured version with its state;
``POST /v2/repository/models/{name}/load`` and ``.../unload`` act on every version of a model,
``POST /v2/repository/models/{name}/versions/{version}/load`` (and ``unload``) on one.

Only configured versions can be loaded: a body that asks to load a model from a given config or
file (Triton's ``parameters.config`` / ``file:...``) is refused, so no API loads an arbitrary
URI. When an admin token is configured these routes need it (``Authorization: Bearer``), as
the admin API does; without one they are open, as Triton's are, so that Triton's clients work
against a development gateway. The work (and its one outcome: a failed load is a 503 naming
the reason, as on ``/api/v1``) is :class:`~modelrouter.control.ControlPlane`'s.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelrouter.api.auth import bearer_matches, check_token
from modelrouter.api.rest import json_response, read_body
from modelrouter.control import ControlPlane
from modelrouter.control.service import check_load_parameters
from modelrouter.errors import InvalidInput

MAX_BODY = 64 * 1024


class RepositoryApi:
    def __init__(self, control: ControlPlane, token: str | None) -> None:
        self.control = control
        self.token = token

    def _authorize(self, request: Request) -> str:
        check_token(request, self.token, "the repository API needs the admin token")
        return request.headers.get("x-actor") or "repository-api"

    async def _check_body(self, request: Request) -> None:
        body = await read_body(request, MAX_BODY)
        if not body.strip():
            return
        try:
            doc = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"malformed JSON body: {exc}") from None
        if not isinstance(doc, dict):
            raise InvalidInput("the body must be a JSON object")
        params: Any = doc.get("parameters")
        check_load_parameters(params)

    def _full(self, request: Request) -> bool:
        """Whether load errors show in full: only to a caller with the admin token (without
        a token configured the API is open to anyone, who gets the short reason)."""
        return self.token is not None and bearer_matches(request, self.token)

    async def index(self, request: Request) -> Response:
        return json_response(await self.control.repository_index(full=self._full(request)))

    async def load(self, request: Request) -> Response:
        return await self._act(request, load=True)

    async def unload(self, request: Request) -> Response:
        return await self._act(request, load=False)

    async def _act(self, request: Request, load: bool) -> Response:
        actor = self._authorize(request)
        p = request.path_params
        self.control.repository.versions(p["name"])  # 404 for an unknown model before the body
        await self._check_body(request)
        c, full = self.control, self._full(request)
        if "version" in p:
            act = c.load_version if load else c.unload_version
            versions = [await act(p["name"], p["version"], actor, full=full)]
        else:
            act_all = c.load_model if load else c.unload_model
            versions = await act_all(p["name"], actor, full=full)
        return json_response(
            {
                "name": p["name"],
                "versions": [
                    {"version": v["version"], "state": v["state"], "reason": v["reason"]}
                    for v in versions
                ],
            }
        )

    def routes(self) -> list[Route]:
        base = "/v2/repository/models/{name}"
        return [
            Route("/v2/repository/index", self.index, methods=["GET", "POST"]),
            Route(f"{base}/load", self.load, methods=["POST"]),
            Route(f"{base}/unload", self.unload, methods=["POST"]),
            Route(f"{base}/versions/{{version}}/load", self.load, methods=["POST"]),
            Route(f"{base}/versions/{{version}}/unload", self.unload, methods=["POST"]),
        ]
