"""``GET /api/v1/store``: how this gateway's store is doing (behind the admin token).

Whether the last check reached it, the faults handled (a store that came back empty or older,
each with the gap record that accounts for it), and the audit writer's counters: while the
store is down a non-durable gateway keeps serving and queues records, up to
``server.audit.maxQueue``; what is beyond is dropped and counted here.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelrouter.api.rest import json_response
from modelrouter.audit.writer import AuditWriter
from modelrouter.store_guard import StoreGuard


class StoreStatusApi:
    def __init__(
        self, guard: StoreGuard, audit: AuditWriter, authorize: Callable[[Request], str]
    ) -> None:
        self.guard = guard
        self.audit = audit
        self.authorize = authorize

    async def status(self, request: Request) -> Response:
        self.authorize(request)
        return json_response(
            {
                "url": self.guard.store.url,
                "reachable": self.guard.reachable,
                "faults": [
                    {
                        "cause": f.cause,
                        "seenSeq": f.seen.seq,
                        "seenHash": f.seen.hash,
                        "foundSeq": f.found.seq,
                        "gapSeq": f.gap_seq,
                        "adopted": f.adopted,
                        "description": f.describe(),
                    }
                    for f in self.guard.faults
                ],
                "audit": self.audit.stats(),
            }
        )

    def routes(self) -> list[Route]:
        return [Route("/api/v1/store", self.status, methods=["GET"])]
