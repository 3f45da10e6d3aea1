"""Metric providers: built-in figures, PromQL rendering, the Prometheus adapter, the factory."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from modelrouter.errors import ConfigError, UpstreamError
from modelrouter.rollout.providers import PrometheusProvider, builtin_value, provider, render
from modelrouter.telemetry.window import VersionWindow


def test_builtin_values() -> None:
    w = VersionWindow(
        "m",
        "v2",
        0,
        30,
        requests=200,
        errors=2,
        latency_p99_ms=42.0,
        feedback=50,
        correct=40,
        shadow_compared=10,
        shadow_agreeing=9,
    )
    assert builtin_value("request-success-rate", w).value == 99.0
    assert builtin_value("request-success-rate", w).samples == 200
    assert builtin_value("request-duration", w).value == 42.0
    assert builtin_value("accuracy", w).value == 0.8
    assert builtin_value("accuracy", w).samples == 50
    assert builtin_value("shadow-agreement", w).value == 0.9
    with pytest.raises(ConfigError):
        builtin_value("nope", w)


def test_render() -> None:
    q = 'rate(x{model="{{ model }}",version="{{version}}"}[{{ interval }}])'
    assert render(q, "churn", "v2", 30.2) == 'rate(x{model="churn",version="v2"}[30s])'
    with pytest.raises(ConfigError, match="placeholder"):
        render("{{ namespace }}", "m", "v", 1)


def test_factory_refuses_unknown_names() -> None:
    with pytest.raises(ConfigError, match="unknown metric provider 'datadog'"):
        provider("datadog", "http://x")
    with pytest.raises(ConfigError, match=r"server\.prometheus"):
        provider("prometheus", None)
    assert isinstance(provider("prometheus", "http://x"), PrometheusProvider)


def answer(status: int, body: object) -> httpx.MockTransport:
    return httpx.MockTransport(lambda request: httpx.Response(status, json=body))


def test_prometheus_answers_and_errors() -> None:
    async def main() -> None:
        vec = {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"metric": {}, "value": [1, "0.25"]}]},
        }
        assert await PrometheusProvider("http://p", transport=answer(200, vec)).query("q") == 0.25
        empty = {"status": "success", "data": {"resultType": "vector", "result": []}}
        assert await PrometheusProvider("http://p", transport=answer(200, empty)).query("q") is None
        scalar = {"status": "success", "data": {"resultType": "scalar", "result": [1, "3"]}}
        assert await PrometheusProvider("http://p", transport=answer(200, scalar)).query("q") == 3
        nan = {
            "status": "success",
            "data": {"resultType": "vector", "result": [{"value": [1, "NaN"]}]},
        }
        assert await PrometheusProvider("http://p", transport=answer(200, nan)).query("q") is None
        bad = {"status": "error", "errorType": "bad_data", "error": "parse error"}
        with pytest.raises(UpstreamError, match="bad_data: parse error"):
            await PrometheusProvider("http://p", transport=answer(400, bad)).query("q")

        def down(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused")

        with pytest.raises(UpstreamError, match="ConnectError"):
            await PrometheusProvider("http://p", transport=httpx.MockTransport(down)).query("q")

    asyncio.run(main())
