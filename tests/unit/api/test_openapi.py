"""The maintained OpenAPI table: a route without an entry stops the app from being built."""

from __future__ import annotations

import pytest

from modelrouter.api.openapi import OPERATIONS, openapi_document


def test_every_operation_has_an_error_default_and_a_success() -> None:
    for (method, path), op in OPERATIONS.items():
        codes = set(op["responses"])
        assert "default" in codes, (method, path)
        assert any(c[0] in "23" for c in codes - {"default"}), (method, path)


def test_an_undocumented_route_is_refused() -> None:
    with pytest.raises(ValueError, match=r"GET /v2/secret"):
        openapi_document([("GET", "/v2/health/live"), ("GET", "/v2/secret")])


def test_only_served_routes_are_listed() -> None:
    doc = openapi_document([("GET", "/v2/health/live")])
    assert list(doc["paths"]) == ["/v2/health/live"]
    assert doc["openapi"] == "3.1.0"
