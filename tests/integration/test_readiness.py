"""``/v2/health/ready`` is true when every version a request can be served by is ready."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from modelrouter.app import create_app
from support import EXAMPLE_MODELS, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

BASE = """\
server:
  store: memory://
  watchConfig: false
models:
  churn:
    versions:
      v1: {storageUri: ./churn/v1, modelFormat: sklearn}
      v2: {storageUri: ./churn/v2, modelFormat: sklearn}
      bad: {storageUri: ./no/such/dir, modelFormat: sklearn}
    http:
"""

RULES = {
    "mirror-only": """\
      - name: main
        route: [{destination: v1}]
        mirrors: [{destination: bad}]
""",
    "unrouted-behind-catch-all": """\
      - name: main
        route: [{destination: v2}]
""",
    "zero-weight": """\
      - name: main
        route: [{destination: v1, weight: 100}, {destination: bad, weight: 0}]
""",
    "weighted": """\
      - name: main
        route: [{destination: v1, weight: 90}, {destination: bad, weight: 10}]
""",
    "fallback": """\
      - name: main
        route: [{destination: v1}]
        fallback: [bad]
""",
    "default-of-unmatched": """\
      - name: beta
        match: [{headers: {x-beta: {exact: "1"}}}]
        route: [{destination: v2}]
""",
}


def ready_and_index(rules: str, first: str = "v1") -> tuple[int, dict[str, str]]:
    text = BASE + rules
    if first != "v1":  # the default version is the first one listed
        text = text.replace("      v1: {storageUri: ./churn/v1", "      v0: {storageUri: ./x", 1)
    app = create_app(loaded_from_yaml(text, EXAMPLE_MODELS))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        status = client.get("/v2/health/ready").status_code
        assert client.get("/v2/models/churn/versions/bad/ready").status_code == 503
        index = {m["version"]: m["state"] for m in client.get("/v2/repository/index").json()}
    return status, index


@pytest.mark.parametrize(
    ("case", "ready"),
    [
        ("mirror-only", True),
        ("unrouted-behind-catch-all", True),
        ("zero-weight", True),
        ("weighted", False),
        ("fallback", False),
    ],
)
def test_readiness_counts_only_versions_that_can_answer(case: str, ready: bool) -> None:
    status, index = ready_and_index(RULES[case])
    assert status == (200 if ready else 503)
    assert index["bad"] == "FAILED"  # the failure is never hidden


def test_default_version_of_unmatched_requests_counts() -> None:
    # requests without x-beta go to the model's first version, which failed to load
    status, index = ready_and_index(RULES["default-of-unmatched"], first="v0")
    assert status == 503
    assert index["v0"] == "FAILED"


def test_no_config_means_every_default_counts(tmp_path: Path) -> None:
    text = BASE.replace("    http:\n", "")
    app = create_app(loaded_from_yaml(text, EXAMPLE_MODELS))
    with running_server(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/v2/health/ready").status_code == 200  # bad is not the default
