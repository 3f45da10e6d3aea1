"""Bounds on rule tables and RE2 patterns, as the config file and the routing PUT see them."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from modelrouter.config import limits
from modelrouter.config.regex import RegexError, compile_regex, fullmatcher
from modelrouter.config.schema import ModelSpec

VERSIONS = {"v1": {"modelFormat": "custom", "implementation": "a:B"}}


def spec(rules: list[dict[str, Any]]) -> ModelSpec:
    return ModelSpec.model_validate({"versions": VERSIONS, "http": rules})


def rule(name: str = "r", **block: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": name, "route": [{"destination": "v1"}]}
    if block:
        doc["match"] = [block]
    return doc


def refused(rules: list[dict[str, Any]], *fragments: str) -> str:
    with pytest.raises(ValidationError) as err:
        spec(rules)
    text = str(err.value)
    for f in fragments:
        assert f in text, (f, text)
    return text


def test_rule_count() -> None:
    spec([rule(f"r{i}") for i in range(limits.MAX_RULES)])
    refused([rule(f"r{i}") for i in range(limits.MAX_RULES + 1)], "http", "at most 256")


def test_conditions_and_blocks() -> None:
    headers = {f"h{i}": {"exact": "1"} for i in range(limits.MAX_CONDITIONS)}
    spec([rule(headers=headers)])
    refused([rule(headers={**headers, "one-more": {"exact": "1"}})], "65 conditions")
    blocks = [{"headers": {"h": {"exact": str(i)}}} for i in range(limits.MAX_MATCH_BLOCKS + 1)]
    refused([{"name": "r", "match": blocks, "route": [{"destination": "v1"}]}], "http.0.match")


@pytest.mark.parametrize("kind", ["exact", "prefix", "regex"])
def test_value_length(kind: str) -> None:
    spec([rule(headers={"h": {kind: "a" * limits.MAX_PATTERN_LENGTH}})])
    refused([rule(headers={"h": {kind: "a" * 1025}})], f"headers.h.{kind}", "at most 1024")


def test_name_length() -> None:
    refused([rule(headers={"h" * 1025: {"exact": "1"}})], "must have 1-1024 characters")
    refused([rule(queryParams={"": {"exact": "1"}})], "must have 1-1024 characters")


@pytest.mark.parametrize(
    ("path", "fragment"),
    [
        ("inputs.\u00b2", "is not a list index"),
        ("inputs.\u0663", "is not a list index"),
        ("a..b", "empty segment"),
        ("", "non-empty"),
        (".".join("a" * 17), "17 segments"),
    ],
)
def test_body_paths(path: str, fragment: str) -> None:
    refused([rule(body={path: {"exact": "1"}})], "http.0.match.0.body", fragment)
    sticky = {**rule(), "sticky": {"body": path}}
    refused([sticky], "http.0.sticky", fragment if path else "exactly one of")


def test_good_body_paths() -> None:
    spec([rule(body={"inputs.0.data.12": {"exact": "1"}, "parameters.région": {"exact": "1"}})])


@pytest.mark.parametrize("pattern", [r"(a)\1", "(?=x)", "(?<=x)y", "(?!x)", "[", "a{2000}"])
def test_re2_refuses(pattern: str) -> None:
    with pytest.raises(RegexError) as err:
        compile_regex(pattern)
    assert "RE2 syntax" in str(err.value)
    refused([rule(headers={"h": {"regex": pattern}})], "headers.h.regex", "invalid regex")


def test_re2_full_match_semantics() -> None:
    m = fullmatcher(r"u[0-9]+")
    assert m("u42")
    assert not m("u42x")
    assert not m("xu42")
    assert not m("")
    assert fullmatcher("(?i)eu")("EU")
    assert fullmatcher("é+")("éé")
    assert fullmatcher("a|b")("b")
    # the catastrophic pattern of the issue, on the largest header value allowed
    evil = fullmatcher("(a+)+b")
    assert not evil("a" * 8192)
    assert evil("a" * 8191 + "b")
