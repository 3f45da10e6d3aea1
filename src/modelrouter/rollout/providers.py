"""Metric providers: where the figures of an analysis come from.

``builtin`` reads the gateway's own per-version windows (:class:`VersionWindow`), computed by
:func:`builtin_value` (pure). ``prometheus`` runs a PromQL query against a real Prometheus
(``server.prometheus.url``) with ``{{ model }}``, ``{{ version }}`` and ``{{ interval }}``
substituted, as Flagger's ``RunQuery(query) -> float``. :func:`provider` refuses unknown names
instead of falling back to one.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Protocol

import httpx

from modelrouter.errors import ConfigError, UpstreamError
from modelrouter.telemetry.window import VersionWindow


@dataclass(frozen=True, slots=True)
class Measurement:
    """A figure and how many observations it rests on (None: no data)."""

    value: float | None
    samples: int


def builtin_value(name: str, window: VersionWindow) -> Measurement:
    """A built-in metric of one version's window (Flagger's units: percent, milliseconds)."""
    if name == "request-success-rate":
        return Measurement(window.success_rate, window.requests)
    if name == "request-duration":
        return Measurement(window.latency_p99_ms, window.requests)
    if name == "accuracy":
        return Measurement(window.accuracy, window.feedback)
    if name == "shadow-agreement":
        return Measurement(window.shadow_agreement, window.shadow_compared)
    raise ConfigError(f"unknown built-in metric {name!r}")


class QueryProvider(Protocol):
    """A provider that answers a query with one number (Flagger's ``RunQuery``)."""

    async def query(self, query: str) -> float | None: ...


_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")


def render(query: str, model: str, version: str, interval: float) -> str:
    """``query`` with ``{{ model }}``, ``{{ version }}``, ``{{ interval }}`` (as ``30s``)."""
    values = {"model": model, "version": version, "interval": f"{max(1, round(interval))}s"}

    def sub(m: re.Match[str]) -> str:
        key = m.group(1)
        if key not in values:
            raise ConfigError(f"unknown placeholder {{{{ {key} }}}} in query {query!r}")
        return values[key]

    return _PLACEHOLDER.sub(sub, query)


class PrometheusProvider:
    """Instant queries against ``url``/api/v1/query; errors become :class:`UpstreamError`."""

    def __init__(
        self, url: str, timeout: float = 5.0, transport: httpx.AsyncBaseTransport | None = None
    ) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._transport = transport

    async def query(self, query: str) -> float | None:
        """The value of the first series, or None when the result is empty or NaN."""
        try:
            async with httpx.AsyncClient(timeout=self.timeout, transport=self._transport) as client:
                resp = await client.get(f"{self.url}/api/v1/query", params={"query": query})
        except httpx.HTTPError as exc:
            raise UpstreamError(f"Prometheus at {self.url}: {exc!r}") from exc
        try:
            body = resp.json()
        except ValueError:
            raise UpstreamError(
                f"Prometheus at {self.url} answered {resp.status_code} without JSON"
            ) from None
        if resp.status_code != 200 or body.get("status") != "success":
            raise UpstreamError(
                f"Prometheus at {self.url}: {body.get('errorType', resp.status_code)}: "
                f"{body.get('error', 'query failed')} (query {query!r})"
            )
        data = body.get("data") or {}
        result = data.get("result")
        if data.get("resultType") == "scalar" and isinstance(result, list):
            return _number(result[1])
        if not isinstance(result, list) or not result:
            return None
        return _number(result[0].get("value", [0, "NaN"])[1])


def _number(raw: object) -> float | None:
    try:
        value = float(str(raw))
    except ValueError:
        return None
    return None if math.isnan(value) else value


def provider(name: str, prometheus_url: str | None) -> QueryProvider:
    """The query provider called ``name``; raises :class:`ConfigError` for any other name."""
    if name == "prometheus":
        if not prometheus_url:
            raise ConfigError(
                "a prometheus metric needs server.prometheus.url", field="server.prometheus"
            )
        return PrometheusProvider(prometheus_url)
    raise ConfigError(f"unknown metric provider {name!r} (query providers: prometheus)")
