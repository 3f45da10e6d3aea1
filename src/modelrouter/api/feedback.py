"""``POST /api/v1/feedback``: ground truth or a reward for a request the gateway answered.

Body: ``{"request_id": "<x-request-id of the response>", "truth": <label | number | list>,
"reward": <number>}`` (truth, reward or both). When an admin token is configured the route
needs it (``Authorization: Bearer``): feedback steers promotions. Answers 200 with the join
(model, version, score), 400 naming a bad field, 404 for an unknown request id, 409 when the
request already has feedback (unique per request id in the store, across every gateway).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelrouter.api.auth import check_token
from modelrouter.api.rest import json_response, read_body
from modelrouter.control import ControlPlane
from modelrouter.protocol.v2 import loads

MAX_FEEDBACK_BODY = 256 * 1024


class FeedbackApi:
    def __init__(self, control: ControlPlane, token: str | None) -> None:
        self.control = control
        self.token = token

    async def post(self, request: Request) -> Response:
        check_token(request, self.token, "feedback needs the admin token")
        doc = loads(await read_body(request, MAX_FEEDBACK_BODY))
        actor = request.headers.get("x-actor") or "feedback-api"
        return json_response(await self.control.post_feedback(doc, actor))

    def routes(self) -> list[Route]:
        return [Route("/api/v1/feedback", self.post, methods=["POST"])]
