"""Flagger's webhooks: gates that hold a rollout while they answer non-2xx, and notifications.

Types: ``confirm-rollout`` (gate before the start), ``pre-rollout`` (before the first step; a
failure counts as a failed check), ``rollout`` (every interval; likewise), ``confirm-promotion``
(gate before promotion), ``post-rollout`` (after the end, informational), ``rollback`` (a 2xx
answer rolls the rollout back) and ``event`` (every step, informational). The payload is
Flagger's: ``name``, ``namespace`` (here: the model), ``phase``, ``metadata``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from modelrouter.config.rollouts import Webhook


@dataclass(frozen=True, slots=True)
class HookResult:
    type: str
    url: str
    ok: bool
    status: int | None
    error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "url": self.url,
            "ok": self.ok,
            "status": self.status,
            "error": self.error,
        }


class WebhookCaller:
    """Posts payloads to webhooks; ``transport`` lets tests answer without a network."""

    def __init__(self, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport

    async def call(self, hook: Webhook, payload: dict[str, Any]) -> HookResult:
        body = {**payload, "metadata": {**payload.get("metadata", {}), **hook.metadata}}
        try:
            async with httpx.AsyncClient(timeout=hook.timeout, transport=self._transport) as c:
                resp = await c.post(hook.url, json=body)
        except httpx.HTTPError as exc:
            return HookResult(hook.type, hook.url, False, None, repr(exc))
        ok = 200 <= resp.status_code < 300
        error = None if ok else resp.text[:200]
        return HookResult(hook.type, hook.url, ok, resp.status_code, error)

    async def run(
        self, hooks: Sequence[Webhook], kind: str, payload: dict[str, Any]
    ) -> list[HookResult]:
        """Call every hook of type ``kind`` concurrently."""
        chosen = [h for h in hooks if h.type == kind]
        if not chosen:
            return []
        return list(await asyncio.gather(*(self.call(h, payload) for h in chosen)))


def payload(name: str, model: str, phase: str, kind: str, **metadata: Any) -> dict[str, Any]:
    meta = {k: str(v) for k, v in metadata.items()}
    if kind == "event":
        meta.setdefault("eventType", "Normal")
        meta.setdefault("timestamp", str(int(time.time() * 1000)))
    return {"name": name, "namespace": model, "phase": phase, "type": kind, "metadata": meta}
