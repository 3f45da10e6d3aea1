"""``GET /openapi.json`` describes what the gateway serves, and a real gateway keeps to it.

The document and the served routes are compared both ways; then schemathesis sends a few
hundred generated requests (data plane and admin API, with the token) to a real gateway over
HTTP: no response may be a 5xx, and every response must fit the document (status code,
content type, body schema).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from modelrouter.api.openapi import OPERATIONS
from modelrouter.api.rest import served_operations
from modelrouter.app import create_app
from support import EXAMPLE_MODELS, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

TOKEN_ENV = "OPENAPI_ADMIN_TOKEN"
TOKEN = "openapi-admin-token"

CONFIG = f"""\
server:
  store: "memory://"
  watchConfig: false
  auth: {{adminTokenEnv: {TOKEN_ENV}}}
models:
  churn:
    versions:
      v1: {{storageUri: ./churn/v1, modelFormat: sklearn}}
      v2: {{storageUri: ./churn/v2, modelFormat: sklearn}}
    http:
      - name: default
        route: [{{destination: v1, weight: 90}}, {{destination: v2, weight: 10}}]
  echo:
    versions:
      v1: {{modelFormat: custom, implementation: "fixtures.models:EchoModel"}}
rollouts:
  churn-canary:
    model: churn
    rule: default
    primary: v1
    canary: v2
    analysis:
      interval: 1h
      metrics: [{{name: request-success-rate, thresholdRange: {{min: 99}}}}]
"""


@pytest.fixture(scope="module")
def app() -> Any:
    os.environ[TOKEN_ENV] = TOKEN
    try:
        return create_app(loaded_from_yaml(CONFIG, EXAMPLE_MODELS))
    finally:
        del os.environ[TOKEN_ENV]


@pytest.fixture(scope="module")
def url(app: Any) -> Iterator[str]:
    with running_server(app) as base:
        yield base


@pytest.fixture(scope="module")
def document(url: str) -> dict[str, Any]:
    r = httpx.get(f"{url}/openapi.json")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    doc: dict[str, Any] = r.json()
    return doc


def test_document_lists_exactly_the_served_routes(app: Any, document: dict[str, Any]) -> None:
    served = set(served_operations(app.app.routes))
    documented = {
        (method.upper(), path) for path, ops in document["paths"].items() for method in ops
    }
    assert documented == served
    # and the maintained table has nothing this (full) gateway does not serve
    assert set(OPERATIONS) == served
    assert document["openapi"].startswith("3.")
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            assert "default" in op["responses"], (method, path)
            assert op["responses"]["default"]["content"]["application/json"]["schema"] == {
                "$ref": "#/components/schemas/Error"
            }
            if path.startswith("/api/"):
                assert op.get("security") == [{"bearer": []}], (method, path)


def test_document_is_valid_openapi(document: dict[str, Any]) -> None:
    schemathesis.openapi.from_dict(document)  # raises on an invalid document
    # every $ref resolves
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(document["paths"])
    names = set(document["components"]["schemas"])
    assert {r.rsplit("/", 1)[1] for r in refs} <= names


CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
EXAMPLES = 4
"""Generated cases per operation and mode (positive, negative): 36 operations, under 300."""


def test_gateway_keeps_to_its_document(document: dict[str, Any], url: str) -> None:
    """Positive and negative cases for every operation, with the admin token, against the
    real gateway; each response is checked (no 5xx, documented status, content type and
    body). Failures of all operations are collected, then reported together."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    calls = 0
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            if operation.definition.raw.get("x-stream"):
                continue  # an event stream never ends: tested by the dashboard's tests
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

                @given(case=operation.as_strategy(generation_mode=mode))
                @settings(
                    max_examples=EXAMPLES,
                    deadline=None,
                    derandomize=True,
                    database=None,
                    phases=[Phase.generate],
                    suppress_health_check=list(HealthCheck),
                )
                def run(case: Any) -> None:
                    nonlocal calls
                    calls += 1
                    case.call_and_validate(
                        base_url=url,
                        session=session,
                        headers={"authorization": f"Bearer {TOKEN}"},
                        checks=CHECKS,
                        timeout=30,
                    )

                try:
                    run()
                except Unsatisfiable:
                    pass  # nothing of this operation can be made invalid (no parameters)
                except (Exception, BaseExceptionGroup) as exc:  # schemathesis's FailureGroup
                    failures.append(f"{operation.label} ({mode.value}): {exc}"[:2000])
    assert not failures, "\n\n".join(failures)
    assert 100 <= calls <= 2 * EXAMPLES * len(OPERATIONS)
    # and the gateway still serves
    assert httpx.get(f"{url}/v2/health/ready").status_code == 200
