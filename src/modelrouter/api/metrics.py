"""``GET /metrics``: the gateway's Prometheus metrics (no token, as Prometheus scrapes it)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelrouter.telemetry.metrics import CONTENT_TYPE, Metrics


class MetricsApi:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def scrape(self, request: Request) -> Response:
        return Response(self.metrics.render(), 200, media_type=CONTENT_TYPE)

    def routes(self) -> list[Route]:
        return [Route("/metrics", self.scrape, methods=["GET"])]
