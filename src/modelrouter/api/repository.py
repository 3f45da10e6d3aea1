"""The Open Inference Protocol repository extension: load and unload (as Triton's).

``POST /v2/repository/models/{name}/load`` and ``.../unload`` act on every version of a model,
``POST /v2/repository/models/{name}/versions/{version}/load`` (and ``unload``) on one.
``GET /v2/repository/index`` lives with the data plane (:mod:`modelrouter.api.rest`).

Only configured versions can be loaded: a body that asks to load a model from a given config or
file (Triton's ``parameters.config`` / ``file:...``) is refused, so no API loads an arbitrary
URI. When an admin token is configured these routes need it (``Authorization: Bearer``), as
the admin API does; without one they are open, as Triton's are, so that Triton's clients work
against a development gateway. Every call is an audit record.

An unloaded version stays unloaded (requests get 503 saying why) until it is loaded again
here, even when loading is lazy.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelrouter.api.auth import check_token
from modelrouter.api.rest import json_response, read_body
from modelrouter.errors import InvalidInput, ModelNotReady
from modelrouter.runtime.repository import ModelRepository, VersionEntry
from modelrouter.store.base import Store

MAX_BODY = 64 * 1024


def refuse_file_parameters(names: Iterable[Any]) -> None:
    """Triton's ``config`` and ``file:...`` load parameters would load what the config file
    does not name: refused, on every transport."""
    refused = [str(k) for k in names if k == "config" or str(k).startswith("file:")]
    if refused:
        raise InvalidInput(
            f"parameters {', '.join(refused)} are not accepted: only versions named in the "
            "config file can be loaded"
        )


async def change_versions(
    repository: ModelRepository,
    store: Store,
    targets: Sequence[VersionEntry],
    load: bool,
    actor: str,
) -> None:
    """Load or unload ``targets``, one audit record each; a failed load is a 503 naming it.

    The one code path under the REST and gRPC repository calls."""
    records = []
    for e in targets:
        before = e.state.value
        if load:
            await repository.load(e.model, e.version)
        else:
            await repository.unload(e.model, e.version)
        records.append(
            {
                "kind": "admin",
                "actor": actor,
                "action": "load" if load else "unload",
                "model": e.model,
                "version": e.version,
                "before": before,
                "after": e.state.value,
                "reason": e.error or "",
            }
        )
    await store.append_audit(records)
    failed = [e for e in targets if e.error]
    if load and failed:
        raise ModelNotReady(
            "; ".join(f"version '{e.version}' failed to load: {e.error}" for e in failed)
        )


class RepositoryApi:
    def __init__(self, repository: ModelRepository, store: Store, token: str | None) -> None:
        self.repository = repository
        self.store = store
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
        params: Any = doc.get("parameters") or {}
        if not isinstance(params, dict):
            raise InvalidInput("parameters must be an object")
        refuse_file_parameters(params)

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
        await change_versions(self.repository, self.store, targets, load, actor)
        return json_response(
            {
                "name": request.path_params["name"],
                "versions": [
                    {"version": e.version, "state": e.state.value, "reason": e.error}
                    for e in targets
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
