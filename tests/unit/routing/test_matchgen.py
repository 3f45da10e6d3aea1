"""The generated rule-chain function: user text is data, never code."""

from __future__ import annotations

import pytest

from modelrouter.config import parse_config
from modelrouter.routing import RequestContext, compile_table, decide

NASTY = [
    "'); import os; os._exit(3); ('",
    '"""\nraise SystemExit\n"""',
    "\\",
    "C[0]",
    "{x}",
    "é\u2028\x00",
]


@pytest.mark.parametrize("value", NASTY)
def test_values_and_keys_are_matched_literally(value: str) -> None:
    import json

    quoted = json.dumps(value)  # valid YAML flow scalar
    key = value.replace(".", "_")  # a dot in a body key is a path separator
    quoted_key = json.dumps(key)
    cfg = parse_config(
        f"""
models:
  m:
    versions:
      a: {{storageUri: /a, modelFormat: sklearn}}
      b: {{storageUri: /b, modelFormat: sklearn}}
    http:
      - name: exact
        match: [{{headers: {{x-k: {{exact: {quoted}}}}}}}]
        route: [{{destination: b}}]
      - name: body
        match: [{{body: {{{quoted_key}: {{prefix: {quoted}}}}}}}]
        route: [{{destination: b}}]
"""
    )
    table = compile_table(cfg.models, 1)
    assert decide(table, "m", RequestContext(headers={"x-k": value})).rule_name == "exact"
    assert decide(table, "m", RequestContext(headers={"x-k": value + "!"})).version == "a"
    hit = decide(table, "m", RequestContext(body={key: value + "tail"}))
    assert hit.rule_name == "body"
    assert decide(table, "m", RequestContext(body={"other": 1})).version == "a"


def test_regex_is_a_full_match_and_without_headers_negates() -> None:
    cfg = parse_config(
        """
models:
  m:
    versions:
      a: {storageUri: /a, modelFormat: sklearn}
      b: {storageUri: /b, modelFormat: sklearn}
    http:
      - name: r
        match: [{headers: {x-id: {regex: "u[0-9]+"}}, withoutHeaders: {x-test: {exact: "1"}}}]
        route: [{destination: b}]
"""
    )
    t = compile_table(cfg.models, 1)
    assert decide(t, "m", RequestContext(headers={"x-id": "u42"})).version == "b"
    assert decide(t, "m", RequestContext(headers={"x-id": "u42x"})).version == "a"
    assert decide(t, "m", RequestContext(headers={"x-id": "u42", "x-test": "1"})).version == "a"
    assert decide(t, "m", RequestContext(headers={"x-id": "u42", "x-test": "2"})).version == "b"
