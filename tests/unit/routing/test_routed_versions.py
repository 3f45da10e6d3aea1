"""Which versions can answer a request: what readiness waits for."""

from __future__ import annotations

import textwrap

import pytest

from modelrouter.config import parse_config
from modelrouter.routing.table import compile_model, routed_versions

VERSIONS = """\
models:
  m:
    versions:
      a: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
      b: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
      c: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
      d: {modelFormat: custom, implementation: "fixtures.models:EchoModel"}
"""


def routed(rules: str) -> set[str]:
    text = VERSIONS + (
        "    http:\n" + textwrap.indent(textwrap.dedent(rules), "      ") if rules else ""
    )
    spec = parse_config(text).models["m"]
    return set(routed_versions(compile_model("m", spec)))


@pytest.mark.parametrize(
    ("rules", "expected"),
    [
        ("", {"a"}),
        ("- {name: r, route: [{destination: b}]}\n", {"b"}),
        ("- {name: r, route: [{destination: b}], mirrors: [{destination: c}]}\n", {"b"}),
        ("- {name: r, route: [{destination: b}], fallback: [c]}\n", {"b", "c"}),
        (
            "- {name: r, route: [{destination: a, weight: 100}, {destination: b, weight: 0}]}\n",
            {"a"},
        ),
        (
            """\
            - name: eu
              match: [{headers: {x-region: {exact: eu}}}]
              route: [{destination: c}]
            - {name: rest, route: [{destination: b}]}
            - {name: unreachable, route: [{destination: d}]}
            """,
            {"b", "c"},
        ),
        (
            """\
            - name: eu
              match: [{headers: {x-region: {exact: eu}}}]
              route: [{destination: c}]
            """,
            {"a", "c"},
        ),
    ],
)
def test_routed_versions(rules: str, expected: set[str]) -> None:
    assert routed(rules) == expected
