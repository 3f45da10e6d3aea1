"""``decide()``: which rule matches, which version it picks, and what it records about why."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pytest

from modelrouter.config.schema import ModelSpec
from modelrouter.errors import ModelNotFound
from modelrouter.routing import (
    BUCKETS,
    Decision,
    RequestContext,
    RoutingTable,
    compile_table,
    decide,
    pinned,
    sticky_bucket,
)

VERSIONS = ("v1", "v2", "v3", "v4")


def table(rules: list[dict[str, Any]], versions: Iterable[str] = VERSIONS) -> RoutingTable:
    spec = ModelSpec.model_validate(
        {
            "versions": {
                v: {"modelFormat": "custom", "implementation": "fixtures.models:EchoModel"}
                for v in versions
            },
            "http": rules,
        }
    )
    return compile_table({"m": spec}, version=7)


class Draws:
    """A deterministic ``rand``: returns the given values in turn and counts the calls."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)
        self.calls = 0

    def __call__(self) -> float:
        self.calls += 1
        if not self.values:
            raise AssertionError("decide() drew more random numbers than the test expected")
        return self.values.pop(0)


def no_draws() -> float:
    raise AssertionError("decide() must not draw a random number here")


def ctx(
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    cookies: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
    rand: Callable[[], float] = no_draws,
) -> RequestContext:
    return RequestContext(headers or {}, query or {}, cookies or {}, body, rand)


def route(version: str) -> list[dict[str, Any]]:
    return [{"destination": version}]


def rule(name: str, version: str, *blocks: dict[str, Any], **extra: Any) -> dict[str, Any]:
    r: dict[str, Any] = {"name": name, "route": route(version), **extra}
    if blocks:
        r["match"] = list(blocks)
    return r


def go(t: RoutingTable, c: RequestContext) -> Decision:
    return decide(t, "m", c)


# --------------------------------------------------------------------------- rule order


def test_first_matching_rule_wins() -> None:
    eu = {"headers": {"x-region": {"exact": "eu"}}}
    t = table([rule("first", "v2", eu), rule("second", "v3", eu), rule("rest", "v4")])
    d = go(t, ctx({"x-region": "eu"}))
    assert (d.version, d.rule_name) == ("v2", "first")
    d = go(t, ctx({"x-region": "us"}))
    assert (d.version, d.rule_name) == ("v4", "rest")

    swapped = table([rule("second", "v3", eu), rule("first", "v2", eu)])
    assert go(swapped, ctx({"x-region": "eu"})).version == "v3"


def test_a_later_rule_matches_when_earlier_ones_do_not() -> None:
    t = table(
        [
            rule("a", "v2", {"headers": {"x-a": {"exact": "1"}}}),
            rule("b", "v3", {"headers": {"x-b": {"exact": "1"}}}),
        ]
    )
    d = go(t, ctx({"x-b": "1"}))
    assert (d.version, d.rule_name) == ("v3", "b")
    d = go(t, ctx({"x-a": "1", "x-b": "1"}))
    assert (d.version, d.rule_name) == ("v2", "a")


def test_no_rule_matching_goes_to_the_first_version() -> None:
    t = table(
        [rule("eu", "v3", {"headers": {"x-region": {"exact": "eu"}}})],
        versions=("v2", "v1", "v3"),
    )
    d = go(t, ctx({"x-region": "us"}))
    assert d.version == "v2"  # the first version listed, not the alphabetically first
    assert d.rule is None
    assert d.rule_name is None
    assert d.matched == ()
    assert d.bucket is None
    assert d.mirrors == ()
    assert d.fallback == ()
    assert d.weights == {}
    assert d.attempts == 1
    assert d.timeout is None
    assert d.per_try_timeout is None
    assert (d.delay, d.abort) == (None, None)
    assert d.table_version == 7


def test_a_model_without_rules_goes_to_its_first_version() -> None:
    d = go(table([], versions=("b", "a")), ctx())
    assert (d.version, d.rule) == ("b", None)


def test_a_rule_without_match_always_matches() -> None:
    t = table([rule("all", "v3")])
    for c in (ctx(), ctx({"x-anything": "1"}), ctx(body={"x": 1}), ctx(query={"q": "1"})):
        d = go(t, c)
        assert (d.version, d.rule_name, d.matched) == ("v3", "all", ())
    # a catch-all placed first shadows every later rule
    t = table([rule("all", "v3"), rule("eu", "v2", {"headers": {"x-region": {"exact": "eu"}}})])
    assert go(t, ctx({"x-region": "eu"})).version == "v3"


def test_unknown_model_is_model_not_found() -> None:
    with pytest.raises(ModelNotFound):
        decide(table([]), "nope", ctx())


# --------------------------------------------------------------------------- OR / AND


def test_blocks_are_or_ed() -> None:
    t = table(
        [
            rule(
                "beta",
                "v2",
                {"headers": {"x-segment": {"exact": "beta"}}},
                {"queryParams": {"segment": {"exact": "beta"}}},
            )
        ]
    )
    assert go(t, ctx({"x-segment": "beta"})).version == "v2"
    assert go(t, ctx(query={"segment": "beta"})).version == "v2"
    assert go(t, ctx({"x-segment": "beta"}, {"segment": "beta"})).version == "v2"
    assert go(t, ctx({"x-segment": "alpha"}, {"segment": "alpha"})).version == "v1"
    assert go(t, ctx()).version == "v1"


def test_conditions_of_a_block_are_and_ed() -> None:
    block = {
        "headers": {"x-region": {"exact": "eu"}, "x-tier": {"exact": "gold"}},
        "queryParams": {"debug": {"exact": "1"}},
    }
    t = table([rule("both", "v2", block)])
    assert go(t, ctx({"x-region": "eu", "x-tier": "gold"}, {"debug": "1"})).version == "v2"
    assert go(t, ctx({"x-region": "eu", "x-tier": "gold"})).version == "v1"
    assert go(t, ctx({"x-region": "eu"}, {"debug": "1"})).version == "v1"
    assert go(t, ctx({"x-tier": "gold"}, {"debug": "1"})).version == "v1"
    assert go(t, ctx({"x-region": "eu", "x-tier": "silver"}, {"debug": "1"})).version == "v1"


def test_an_empty_block_matches_everything() -> None:
    t = table([rule("any", "v2", {})])
    d = go(t, ctx())
    assert (d.version, d.rule_name, d.matched) == ("v2", "any", ())


# --------------------------------------------------------------------------- headers


def test_header_names_are_case_insensitive() -> None:
    t = table([rule("eu", "v2", {"headers": {"X-Region": {"exact": "eu"}}})])
    # the transport lower-cases names (HTTP/2 and ASGI do); the rule's name is lower-cased too
    d = go(t, ctx({"x-region": "eu"}))
    assert d.version == "v2"
    assert d.matched == ("header x-region exact 'eu'",)


def test_header_values_are_case_sensitive() -> None:
    t = table([rule("eu", "v2", {"headers": {"x-region": {"exact": "eu"}}})])
    assert go(t, ctx({"x-region": "EU"})).version == "v1"
    assert go(t, ctx({"x-region": "eu "})).version == "v1"


def test_a_missing_header_does_not_match_any_kind() -> None:
    for m in ({"exact": ""}, {"prefix": ""}, {"regex": ".*"}):
        t = table([rule("r", "v2", {"headers": {"x-h": m}})])
        assert go(t, ctx()).version == "v1", m
        assert go(t, ctx({"x-h": ""})).version == "v2", m


def test_without_headers() -> None:
    t = table([rule("no-beta", "v2", {"withoutHeaders": {"X-Segment": {"exact": "beta"}}})])
    assert go(t, ctx()).version == "v2"  # absent: holds
    assert go(t, ctx({"x-segment": "alpha"})).version == "v2"  # present, not matching: holds
    assert go(t, ctx({"x-segment": "beta"})).version == "v1"  # matching: fails
    assert go(t, ctx()).matched == ("not header x-segment exact 'beta'",)

    t = table([rule("no-debug", "v2", {"withoutHeaders": {"x-debug": {"regex": ".*"}}})])
    assert go(t, ctx()).version == "v2"
    assert go(t, ctx({"x-debug": ""})).version == "v1"
    assert go(t, ctx({"x-debug": "yes"})).version == "v1"


def test_headers_and_without_headers_together() -> None:
    block = {
        "headers": {"x-region": {"prefix": "eu"}},
        "withoutHeaders": {"x-region": {"exact": "eu-test"}},
    }
    t = table([rule("eu-prod", "v2", block)])
    assert go(t, ctx({"x-region": "eu-west"})).version == "v2"
    assert go(t, ctx({"x-region": "eu-test"})).version == "v1"
    assert go(t, ctx({"x-region": "us"})).version == "v1"


# --------------------------------------------------------------------------- exact / prefix / regex


@pytest.mark.parametrize(
    ("match", "value", "expected"),
    [
        ({"exact": "eu"}, "eu", True),
        ({"exact": "eu"}, "eu-west", False),
        ({"exact": "eu"}, "xeu", False),
        ({"exact": "eu"}, "", False),
        ({"prefix": "eu"}, "eu", True),
        ({"prefix": "eu"}, "eu-west", True),
        ({"prefix": "eu"}, "xeu", False),
        ({"prefix": "eu"}, "e", False),
        ({"prefix": ""}, "anything", True),
        # regex is a full match, as in Istio (RE2 full match), not a search
        ({"regex": "eu"}, "eu", True),
        ({"regex": "eu"}, "eu-west", False),
        ({"regex": "eu"}, "xeu", False),
        ({"regex": "eu.*"}, "eu-west", True),
        ({"regex": "eu|us"}, "us", True),
        ({"regex": "eu|us"}, "eus", False),
        ({"regex": "eu|us"}, "eu-us", False),
        ({"regex": r"v\d+"}, "v12", True),
        ({"regex": r"v\d+"}, "v12a", False),
        ({"regex": r"v\d+"}, "v12\n", False),
        ({"regex": "[a-z]+"}, "", False),
    ],
)
@pytest.mark.parametrize("where", ["headers", "queryParams", "body"])
def test_string_match_kinds(where: str, match: dict[str, str], value: str, expected: bool) -> None:
    key = "parameters.k" if where == "body" else "x-k"
    t = table([rule("r", "v2", {where: {key: match}})])
    if where == "headers":
        c = ctx(headers={"x-k": value})
    elif where == "queryParams":
        c = ctx(query={"x-k": value})
    else:
        c = ctx(body={"parameters": {"k": value}})
    assert (go(t, c).version == "v2") is expected


def test_query_params() -> None:
    t = table(
        [
            rule("debug", "v3", {"queryParams": {"debug": {"exact": "true"}}}),
            rule("exp", "v2", {"queryParams": {"exp": {"prefix": "canary-"}}}),
        ]
    )
    assert go(t, ctx(query={"debug": "true"})).version == "v3"
    assert go(t, ctx(query={"debug": "True"})).version == "v1"
    assert go(t, ctx(query={"exp": "canary-7"})).version == "v2"
    assert go(t, ctx(query={"exp": "canary"})).version == "v1"
    # query parameter names are case-sensitive (unlike header names)
    assert go(t, ctx(query={"Debug": "true"})).version == "v1"
    # a header of the same name is not a query parameter
    assert go(t, ctx({"debug": "true"})).version == "v1"
    assert go(t, ctx(query={"debug": "true"})).matched == ("query debug exact 'true'",)


# --------------------------------------------------------------------------- body


V2_BODY = {
    "id": "r1",
    "parameters": {"segment": "beta", "priority": 3, "vip": True, "score": 0.5},
    "inputs": [{"name": "input-0", "shape": [1, 2], "datatype": "FP64", "data": [1, 2]}],
}


@pytest.mark.parametrize(
    ("path", "match", "expected"),
    [
        ("parameters.segment", {"exact": "beta"}, True),
        ("parameters.segment", {"exact": "alpha"}, False),
        ("parameters.segment", {"prefix": "be"}, True),
        ("parameters.segment", {"regex": "b.t."}, True),
        ("parameters.priority", {"exact": "3"}, True),  # numbers compare as text
        ("parameters.priority", {"regex": "[0-9]+"}, True),
        ("parameters.vip", {"exact": "true"}, True),  # JSON booleans as true / false
        ("parameters.vip", {"exact": "True"}, False),
        ("parameters.score", {"exact": "0.5"}, True),
        ("id", {"exact": "r1"}, True),
        ("inputs.0.name", {"exact": "input-0"}, True),  # list items by index
        ("inputs.1.name", {"exact": "input-0"}, False),  # out of range
        ("inputs.x.name", {"exact": "input-0"}, False),  # not an index
        ("parameters.missing", {"regex": ".*"}, False),  # absent
        ("parameters", {"regex": ".*"}, False),  # an object is not a value
        ("inputs.0.shape", {"regex": ".*"}, False),  # nor is a list
        ("parameters.segment.deeper", {"regex": ".*"}, False),  # through a string
        ("segment", {"exact": "beta"}, False),  # the path is from the top
    ],
)
def test_body_dotted_paths(path: str, match: dict[str, str], expected: bool) -> None:
    t = table([rule("r", "v2", {"body": {path: match}})])
    assert (go(t, ctx(body=V2_BODY)).version == "v2") is expected


def test_body_conditions_without_a_body_do_not_match() -> None:
    t = table([rule("r", "v2", {"body": {"parameters.segment": {"exact": "beta"}}})])
    assert go(t, ctx()).version == "v1"
    assert go(t, ctx(body={})).version == "v1"
    assert go(t, ctx(body={"parameters": None})).version == "v1"
    assert go(t, ctx(body={"parameters": "beta"})).version == "v1"


def test_v1_and_v2_bodies_segment_rule_like_the_example() -> None:
    t = table(
        [
            rule(
                "beta",
                "v2",
                {"headers": {"x-segment": {"exact": "beta"}}},
                {"body": {"parameters.segment": {"exact": "beta"}}},
            ),
            rule("default", "v1"),
        ]
    )
    d = go(t, ctx(body={"parameters": {"segment": "beta"}, "inputs": []}))
    assert (d.version, d.rule_name) == ("v2", "beta")
    assert d.matched == ("body parameters.segment exact 'beta'",)
    d = go(t, ctx({"x-segment": "beta"}, body={"parameters": {"segment": "beta"}}))
    assert d.matched == ("header x-segment exact 'beta'",)  # the first block that holds
    d = go(t, ctx(body={"instances": [[1, 2]]}))
    assert (d.version, d.rule_name) == ("v1", "default")


def test_several_rules_reading_the_same_and_different_body_fields() -> None:
    t = table(
        [
            rule("a", "v2", {"body": {"parameters.x": {"exact": "1"}}}),
            rule(
                "b",
                "v3",
                {"body": {"parameters.x": {"exact": "2"}, "parameters.y": {"prefix": "z"}}},
            ),
        ]
    )
    assert go(t, ctx(body={"parameters": {"x": "1"}})).version == "v2"
    assert go(t, ctx(body={"parameters": {"x": 2, "y": "zz"}})).version == "v3"
    assert go(t, ctx(body={"parameters": {"x": 2, "y": "yz"}})).version == "v1"


# --------------------------------------------------------------------------- matched texts


def test_matched_condition_texts_name_every_condition_of_the_block_that_held() -> None:
    t = table(
        [
            rule(
                "r",
                "v2",
                {"headers": {"x-a": {"exact": "1"}}, "queryParams": {"q": {"exact": "1"}}},
                {
                    "headers": {"X-Region": {"prefix": "eu"}},
                    "withoutHeaders": {"x-test": {"regex": "y.*"}},
                    "queryParams": {"lang": {"regex": "de|fr"}},
                    "body": {"parameters.segment": {"exact": "beta"}},
                },
            )
        ]
    )
    d = go(
        t,
        ctx({"x-region": "eu-west"}, {"lang": "fr"}, body={"parameters": {"segment": "beta"}}),
    )
    assert d.version == "v2"
    assert d.matched == (
        "header x-region prefix 'eu'",
        "not header x-test regex 'y.*'",
        "query lang regex 'de|fr'",
        "body parameters.segment exact 'beta'",
    )
    d = go(t, ctx({"x-a": "1"}, {"q": "1"}))
    assert d.matched == ("header x-a exact '1'", "query q exact '1'")


# --------------------------------------------------------------------------- weights, sticky


SPLIT = {
    "name": "split",
    "route": [{"destination": "v1", "weight": 90}, {"destination": "v2", "weight": 10}],
}


def test_weighted_split_without_a_key_uses_one_draw() -> None:
    t = table([SPLIT])
    cases = [(0.0, "v1", 0), (0.89995, "v1", 8999), (0.90005, "v2", 9000), (0.99999, "v2", 9999)]
    for draw, version, bucket in cases:
        r = Draws(draw)
        d = go(t, ctx(rand=r))
        assert (d.version, d.bucket, d.sticky) == (version, bucket, False)
        assert r.calls == 1
    assert d.weights == {"v1": 90, "v2": 10}


def test_sticky_header_key_decides_by_its_bucket() -> None:
    t = table([{**SPLIT, "sticky": {"header": "X-User-Id"}}])
    seen = set()
    for i in range(300):
        key = f"user-{i}"
        d = go(t, ctx({"x-user-id": key}))  # no draw: the key decides
        bucket = sticky_bucket(b"m/split", key)
        assert d.bucket == bucket
        assert d.sticky is True
        assert d.version == ("v1" if bucket < 9000 else "v2")
        seen.add(d.version)
    assert seen == {"v1", "v2"}


def test_sticky_key_from_cookie_query_and_body() -> None:
    key = "alice"
    bucket = sticky_bucket(b"m/split", key)
    for sticky, c in [
        ({"cookie": "uid"}, ctx(cookies={"uid": key})),
        ({"queryParam": "uid"}, ctx(query={"uid": key})),
        ({"body": "parameters.user.id"}, ctx(body={"parameters": {"user": {"id": key}}})),
    ]:
        t = table([{**SPLIT, "sticky": sticky}])
        d = go(t, c)
        assert (d.bucket, d.sticky) == (bucket, True), sticky
    # a numeric body key hashes as its text
    t = table([{**SPLIT, "sticky": {"body": "parameters.uid"}}])
    assert go(t, ctx(body={"parameters": {"uid": 42}})).bucket == sticky_bucket(b"m/split", "42")


def test_sticky_without_the_key_falls_back_to_a_draw() -> None:
    t = table([{**SPLIT, "sticky": {"header": "x-user-id"}}])
    d = go(t, ctx(rand=Draws(0.95)))
    assert (d.version, d.bucket, d.sticky) == ("v2", 9500, False)
    d = go(t, ctx({"x-user-id": ""}, rand=Draws(0.1)))
    assert (d.version, d.sticky) == ("v1", False)


def test_salt_defaults_to_model_and_rule_and_can_be_set() -> None:
    key = "user-7"
    t = table([{**SPLIT, "sticky": {"header": "x-user-id"}}])
    assert go(t, ctx({"x-user-id": key})).bucket == sticky_bucket(b"m/split", key)
    t = table([{**SPLIT, "sticky": {"header": "x-user-id"}, "salt": "exp-2024"}])
    assert go(t, ctx({"x-user-id": key})).bucket == sticky_bucket(b"exp-2024", key)
    # independent experiments: two salts do not put the same users in the same buckets
    a = [sticky_bucket(b"m/a", f"u{i}") for i in range(200)]
    b = [sticky_bucket(b"m/b", f"u{i}") for i in range(200)]
    assert sum(x == y for x, y in zip(a, b, strict=True)) < 5


def test_same_key_same_version_every_time() -> None:
    t = table([{**SPLIT, "sticky": {"header": "x-user-id"}}])
    for i in range(50):
        key = f"k{i}"
        first = go(t, ctx({"x-user-id": key}))
        for _ in range(3):
            again = go(t, ctx({"x-user-id": key}))
            assert (again.version, again.bucket) == (first.version, first.bucket)


def test_zero_weight_destination_is_never_chosen() -> None:
    t = table(
        [
            {
                "name": "r",
                "route": [{"destination": "v1", "weight": 100}, {"destination": "v2", "weight": 0}],
            }
        ]
    )
    for draw in (0.0, 0.5, 0.99999):
        assert go(t, ctx(rand=Draws(draw))).version == "v1"
    t = table(
        [
            {
                "name": "r",
                "route": [{"destination": "v1", "weight": 0}, {"destination": "v2", "weight": 100}],
            }
        ]
    )
    for draw in (0.0, 0.5, 0.99999):
        assert go(t, ctx(rand=Draws(draw))).version == "v2"


def test_weights_need_not_sum_to_100() -> None:
    t = table(
        [
            {
                "name": "r",
                "route": [{"destination": "v1", "weight": 1}, {"destination": "v2", "weight": 3}],
            }
        ]
    )
    assert go(t, ctx(rand=Draws(0.2499))).version == "v1"
    assert go(t, ctx(rand=Draws(0.2501))).version == "v2"
    assert t.models["m"].rules[0].bounds == (2500, BUCKETS)


def test_a_single_destination_needs_no_draw_and_has_no_bucket() -> None:
    t = table([{"name": "r", "route": [{"destination": "v2"}], "sticky": {"header": "x-u"}}])
    d = go(t, ctx({"x-u": "a"}))
    assert (d.version, d.bucket) == ("v2", None)


# --------------------------------------------------------------------------- mirror


def test_mirror_percentage_with_a_deterministic_draw() -> None:
    t = table(
        [{**rule("r", "v1"), "mirror": {"destination": "v3"}, "mirrorPercentage": {"value": 25}}]
    )
    assert go(t, ctx(rand=Draws(0.2))).mirrors == ("v3",)
    assert go(t, ctx(rand=Draws(0.2499))).mirrors == ("v3",)
    assert go(t, ctx(rand=Draws(0.25))).mirrors == ()
    assert go(t, ctx(rand=Draws(0.9))).mirrors == ()


def test_mirror_at_100_and_without_percentage_always_mirrors_without_drawing() -> None:
    for extra in ({}, {"mirrorPercentage": {"value": 100}}):
        t = table([{**rule("r", "v1"), "mirror": {"destination": "v3"}, **extra}])
        assert go(t, ctx()).mirrors == ("v3",)  # ctx() fails on any draw


def test_mirror_at_0_never_mirrors() -> None:
    t = table(
        [{**rule("r", "v1"), "mirror": {"destination": "v3"}, "mirrorPercentage": {"value": 0}}]
    )
    for draw in (0.0, 0.5, 0.99999):
        assert go(t, ctx(rand=Draws(draw))).mirrors == ()


def test_mirrors_list_each_with_its_own_percentage() -> None:
    t = table(
        [
            {
                **rule("r", "v1"),
                "mirror": {"destination": "v2"},
                "mirrorPercentage": {"value": 70},
                "mirrors": [
                    {"destination": "v3", "percentage": {"value": 50}},
                    {"destination": "v4", "percentage": {"value": 10}},
                ],
            }
        ]
    )
    assert go(t, ctx(rand=Draws(0.6, 0.3, 0.05))).mirrors == ("v2", "v3", "v4")
    assert go(t, ctx(rand=Draws(0.6, 0.6, 0.05))).mirrors == ("v2", "v4")
    assert go(t, ctx(rand=Draws(0.8, 0.3, 0.5))).mirrors == ("v3",)
    assert go(t, ctx(rand=Draws(0.8, 0.6, 0.5))).mirrors == ()


def test_a_mirror_at_100_percent_next_to_a_partial_one() -> None:
    t = table(
        [
            {
                **rule("r", "v1"),
                "mirror": {"destination": "v2"},
                "mirrors": [{"destination": "v3", "percentage": {"value": 50}}],
            }
        ]
    )
    # whether the 100% mirror takes a draw is the implementation's business: any draw holds
    for draws, expected in [((0.99, 0.99), ("v2",)), ((0.0, 0.0), ("v2", "v3"))]:
        found = go(t, ctx(rand=lambda d=draws[0]: d)).mirrors
        assert found == expected


def test_split_draw_and_mirror_draw_are_separate() -> None:
    t = table([{**SPLIT, "mirror": {"destination": "v3"}, "mirrorPercentage": {"value": 50}}])
    r = Draws(0.95, 0.1)
    d = go(t, ctx(rand=r))
    assert (d.version, d.mirrors, r.calls) == ("v2", ("v3",), 2)
    d = go(t, ctx(rand=Draws(0.1, 0.95)))
    assert (d.version, d.mirrors) == ("v1", ())


# --------------------------------------------------------------------------- faults


def test_fault_delay_percentage() -> None:
    t = table(
        [
            {
                **rule("r", "v1"),
                "fault": {"delay": {"fixedDelay": "150ms", "percentage": {"value": 40}}},
            }
        ]
    )
    assert go(t, ctx(rand=Draws(0.39))).delay == pytest.approx(0.15)
    assert go(t, ctx(rand=Draws(0.41))).delay is None
    assert go(t, ctx(rand=Draws(0.39))).abort is None


def test_fault_abort_percentage() -> None:
    t = table(
        [{**rule("r", "v1"), "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 10}}}}]
    )
    assert go(t, ctx(rand=Draws(0.05))).abort == 503
    assert go(t, ctx(rand=Draws(0.1))).abort is None
    assert go(t, ctx(rand=Draws(0.05))).delay is None


def test_fault_at_100_percent_fires_without_drawing_and_both_can_fire() -> None:
    t = table(
        [
            {
                **rule("r", "v1"),
                "fault": {"delay": {"fixedDelay": "1s"}, "abort": {"httpStatus": 429}},
            }
        ]
    )
    d = go(t, ctx())
    assert (d.delay, d.abort) == (1.0, 429)


def test_fault_draws_are_independent_of_each_other() -> None:
    t = table(
        [
            {
                **rule("r", "v1"),
                "fault": {
                    "delay": {"fixedDelay": "10ms", "percentage": {"value": 50}},
                    "abort": {"httpStatus": 500, "percentage": {"value": 50}},
                },
            }
        ]
    )
    d = go(t, ctx(rand=Draws(0.1, 0.9)))
    assert (d.delay, d.abort) == (pytest.approx(0.01), None)
    d = go(t, ctx(rand=Draws(0.9, 0.1)))
    assert (d.delay, d.abort) == (None, 500)


def test_faults_only_for_requests_of_their_rule() -> None:
    t = table(
        [
            {
                **rule("chaos", "v1", {"headers": {"x-chaos": {"exact": "1"}}}),
                "fault": {"abort": {"httpStatus": 503}},
            },
            rule("rest", "v1"),
        ]
    )
    assert go(t, ctx({"x-chaos": "1"})).abort == 503
    assert go(t, ctx()).abort is None


# --------------------------------------------------------------------------- rule settings


def test_decision_carries_the_rules_settings() -> None:
    t = table(
        [
            {
                **SPLIT,
                "timeout": "2s",
                "retries": {"attempts": 2, "perTryTimeout": "300ms"},
                "fallback": ["v3", "v1"],
            }
        ]
    )
    d = go(t, ctx(rand=Draws(0.5)))
    assert d.timeout == pytest.approx(2.0)
    assert d.attempts == 3
    assert d.per_try_timeout == pytest.approx(0.3)
    assert d.fallback == ("v3", "v1")
    assert d.model == "m"
    assert d.table_version == 7


# --------------------------------------------------------------------------- pinned


def test_pinned_bypasses_every_rule() -> None:
    t = table(
        [
            {
                **SPLIT,
                "mirror": {"destination": "v3"},
                "fallback": ["v1"],
                "fault": {"abort": {"httpStatus": 500}},
            }
        ]
    )
    d = pinned(t, "m", "v4")
    assert d.version == "v4"
    assert d.model == "m"
    assert d.rule is None
    assert d.matched == ()
    assert (d.bucket, d.sticky) == (None, False)
    assert d.mirrors == ()
    assert d.fallback == ()
    assert (d.delay, d.abort) == (None, None)
    assert d.attempts == 1
    assert d.table_version == 7


# --------------------------------------------------------------------------- rules that raise


def test_a_rule_chain_that_raises_routes_to_the_default_and_logs_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Validation makes conditions that cannot raise; should one ever do, the request goes to
    the default version instead of failing, and the error is logged once per table."""
    import dataclasses

    from modelrouter.config import parse_config
    from modelrouter.routing import compile_table

    cfg = parse_config(
        """
models:
  m:
    versions:
      a: {storageUri: /a, modelFormat: sklearn}
      b: {storageUri: /b, modelFormat: sklearn}
    http:
      - name: r
        match: [{headers: {x: {exact: "1"}}}]
        route: [{destination: b}]
"""
    )
    table = compile_table(cfg.models, 1)

    def boom(ctx: Any, fields: Any) -> None:
        raise ValueError("invalid literal for int()")

    routes = dataclasses.replace(table.models["m"], match=boom)
    broken = dataclasses.replace(table, models={"m": routes})
    with caplog.at_level("ERROR", logger="modelrouter.routing.decide"):
        for _ in range(3):
            d = decide(broken, "m", RequestContext(headers={"x": "1"}))
            assert (d.version, d.rule_name) == ("a", None)
    assert len([r for r in caplog.records if "raised" in r.getMessage()]) == 1


def test_body_paths_with_unicode_digits_never_raise() -> None:
    from modelrouter.routing.table import body_value

    assert body_value({"inputs": [1, 2, 3]}, ("inputs", "\u00b2")) is None
    assert body_value({"inputs": [1, 2, 3]}, ("inputs", "2")) == "3"


def test_shadowing_the_canary_copies_only_what_the_split_sent_elsewhere() -> None:
    t = table(
        [
            {
                "name": "r",
                "route": [{"destination": "v1", "weight": 90}, {"destination": "v2", "weight": 10}],
                "sticky": {"header": "x-user-id"},
                "mirror": {"destination": "v2"},
                "mirrors": [{"destination": "v3"}],
            }
        ]
    )
    seen: dict[str, set[tuple[str, ...]]] = {"v1": set(), "v2": set()}
    for i in range(400):
        d = go(t, ctx({"x-user-id": f"u{i}"}))
        seen[d.version].add(d.mirrors)
    assert seen == {"v1": {("v2", "v3")}, "v2": {("v3",)}}
