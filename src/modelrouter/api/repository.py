"""The Open Inference Protocol repository extension: load and unload (as Triton's).

``POST /v2/repository/models/{name}/load`` and ``.../unload`` act on every version of a model,
``POST /v2/repository/models/{name}/versions/{version}/load`` (and ``unload``) on one.
``GET /v2/repository/index`` lives with the data plane (:mod:`modelrouter.api.rest`).

Only configured versions can be loaded: a body that asks to load a model from a given config or
file (Triton's ``parameters.config`` / ``file:...``) is refused, so no API loads an arbitrary
URI. When an admin token is configured these routes need it (``Authorization: Bearer``), as
the admin API does; without one they are open, as Triton's are, so that Triton's clients work
against a development gateway.

Each call is a repository intent (:mod:`modelrouter.runtime.intents`): stored once with its
audit record, applied here at once and by every other gateway sharing the store. An unloaded
version stays unloaded on every gateway (requests get 503 saying why), also across restarts,
until it is loaded again, even when loading is lazy.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelrouter.api.auth import check_token
from modelrouter.api.rest import json_response, read_body
from modelrouter.errors import InvalidInput, ModelNotReady
from modelrouter.runtime.intents import IntentFollower
from modelrouter.runtime.repository import ModelRepository, VersionEntry

MAX_BODY = 64 * 1024


class RepositoryApi:
    def __init__(
        self, repository: ModelRepository, token: str | None, *, intents: IntentFollower
    ) -> None:
        self.repository = repository
        self.token = token
        self.intents = intents

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
        params: Any = doc.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput("parameters must be an object")
        refused = [k for k in params if k == "config" or str(k).startswith("file:")]
        if refused:
            raise InvalidInput(
                f"parameters {', '.join(refused)} are not accepted: only versions named in the "
                "config file can be loaded"
            )

    def _targets(self, request: Request) -> list[VersionEntry]:
        p = request.path_params
        if "version" in p:
            return [self.repository.entry(p["name"], p["version"])]
        return list(self.repository.versions(p["name"]).values())

    async def load(self, request: Request) -> Response:
        return await self._act(request, load=True)

    async def unload(self, request: Request) -> Response:
        return await self._act(request, load=False)

    async def _act(self, request: Request, load: bool) -> Response:
        actor = self._authorize(request)
        targets = self._targets(request)
        await self._check_body(request)
        request_one = self.intents.request_load if load else self.intents.request_unload
        outcomes = [await request_one(e.model, e.version, actor) for e in targets]
        failed = [o for o in outcomes if o.failed]
        if failed:
            raise ModelNotReady(
                "; ".join(f"version '{o.version}' failed to load: {o.error}" for o in failed)
            )
        return json_response(
            {
                "name": request.path_params["name"],
                "versions": [
                    {"version": o.version, "state": o.state, "reason": o.error} for o in outcomes
                ],
            }
        )

    def routes(self) -> list[Route]:
        base = "/v2/repository/models/{name}"
        return [
            Route(f"{base}/load", self.load, methods=["POST"]),
            Route(f"{base}/unload", self.unload, methods=["POST"]),
            Route(f"{base}/versions/{{version}}/load", self.load, methods=["POST"]),
            Route(f"{base}/versions/{{version}}/unload", self.unload, methods=["POST"]),
        ]
