"""Loading the config file: every error names the field and the line; defaults."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from pydantic import ValidationError

from modelrouter.config import load_config, parse_config
from modelrouter.errors import STATUS, ConfigError

ROOT = Path(__file__).resolve().parents[3]

MARK = "# <-"
"""Marks the line an error must point at."""


def config_error(text: str) -> tuple[ConfigError, int | None]:
    """The error parsing ``text`` raises, and the line marked with ``# <-`` (if any)."""
    text = textwrap.dedent(text)
    marked = [i for i, line in enumerate(text.splitlines(), 1) if MARK in line]
    assert len(marked) <= 1, "mark one line at most"
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    return info.value, (marked[0] if marked else None)


def assert_error(text: str, field: str | None, *fragments: str) -> ConfigError:
    err, line = config_error(text)
    assert err.field == field
    assert err.line == line, f"expected line {line}, got {err.line}: {err.message}"
    for fragment in fragments:
        assert fragment in err.detail, f"{fragment!r} not in {err.detail!r}"
    prefix = f"line {line}: " if line is not None else ""
    prefix += f"{field}: " if field else ""
    assert err.message == prefix + err.detail
    return err


TWO_VERSIONS = """\
    models:
      churn:
        versions:
          v1: {storageUri: ./a, modelFormat: sklearn}
          v2: {storageUri: ./b, modelFormat: sklearn}
"""


def with_rules(rules: str) -> str:
    return TWO_VERSIONS + "        http:\n" + textwrap.indent(textwrap.dedent(rules), " " * 10)


# --------------------------------------------------------------------------- unknown fields


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("server: {}\nmodelz: {}  # <-\n", "modelz"),
        ("server:\n  http:\n    port: 8080\n    prot: 1  # <-\n", "server.http.prot"),
        ("server:\n  grpc: {port: 1, hots: x}  # <-\n", "server.grpc.hots"),
        (
            """\
            models:
              churn:
                versions:
                  v1:
                    storageUri: ./a
                    modelFormat: sklearn
                    storageUrl: ./b  # <-
            """,
            "models.churn.versions.v1.storageUrl",
        ),
        (
            """\
            models:
              churn:
                versions:
                  v1: {storageUri: ./a, modelFormat: sklearn}
                batcher:
                  maxBatchSize: 8
                  maxLatencyMs: 5  # <-
            """,
            "models.churn.batcher.maxLatencyMs",
        ),
        (
            with_rules(
                """\
                - name: default
                  route: [{destination: v1}]
                  routes: [{destination: v2}]  # <-
                """
            ),
            "models.churn.http.0.routes",
        ),
        (
            with_rules(
                """\
                - name: eu
                  match:
                    - headers:
                        x-region:
                          exactly: eu  # <-
                  route: [{destination: v2}]
                """
            ),
            "models.churn.http.0.match.0.headers.x-region.exactly",
        ),
        (
            with_rules(
                """\
                - name: default
                  route: [{destination: v1, weight: 90}, {destination: v2, weight: 10}]
                  sticky: {header: x-user-id, hash: md5}  # <-
                """
            ),
            "models.churn.http.0.sticky.hash",
        ),
    ],
)
def test_unknown_field_anywhere(text: str, field: str) -> None:
    last = field.rsplit(".", 1)[-1]
    err = assert_error(text, field, f"unknown field {last!r}")
    assert err.code == "config_error"
    assert STATUS[err.code].http == 400


# --------------------------------------------------------------------------- versions


def test_missing_storage_uri() -> None:
    assert_error(
        """\
        models:
          churn:
            versions:
              v1:  # <-
                modelFormat: sklearn
        """,
        "models.churn.versions.v1",
        "needs a storageUri or an endpoint",
    )


def test_storage_uri_and_endpoint() -> None:
    assert_error(
        """\
        models:
          churn:
            versions:
              v1: {storageUri: ./a, modelFormat: sklearn}
              v2:  # <-
                storageUri: ./b
                endpoint: http://10.0.0.7:8080
        """,
        "models.churn.versions.v2",
        "either storageUri or endpoint, not both",
    )


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("{endpoint: 10.0.0.7:8080}", "endpoint must be an http:// or https:// URL"),
        ("{endpoint: 'http://x', modelFormat: sklearn}", "takes no modelFormat"),
        ("{storageUri: ./a, remoteName: x, modelFormat: sklearn}", "need an endpoint"),
        ("{modelFormat: custom}", "needs implementation"),
        ("{storageUri: ./a, modelFormat: sklearn, implementation: 'a:B'}", "only for"),
        ("{storageUri: ./a}", "modelFormat is required"),
        ("{storageUri: ./a, modelFormat: sklearn, executor: process}", "'inline' or 'thread'"),
        ("{storageUri: ./a, modelFormat: sklearn, timeout: 5y}", "not a duration: '5y'"),
    ],
)
def test_bad_version_spec(spec: str, fragment: str) -> None:
    err, _ = config_error(f"models:\n  churn:\n    versions:\n      v1: {spec}\n")
    assert err.line == 4
    assert err.field is not None
    assert err.field.startswith("models.churn.versions.v1")
    assert fragment in err.detail


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        (
            """\
            models:
              churn:
                versions:
                  v1: {storageUri: ./a, modelFormat: sklearn}
              bad name!:  # <-
                versions:
                  v1: {storageUri: ./a, modelFormat: sklearn}
            """,
            "models.bad name!",
            "invalid model name 'bad name!'",
        ),
        (
            """\
            models:
              -churn:  # <-
                versions:
                  v1: {storageUri: ./a, modelFormat: sklearn}
            """,
            "models.-churn",
            "invalid model name '-churn'",
        ),
        (
            """\
            models:
              churn:
                versions:
                  v1: {storageUri: ./a, modelFormat: sklearn}
                  v/2: {storageUri: ./b, modelFormat: sklearn}  # <-
            """,
            "models.churn.versions.v/2",
            "invalid version name 'v/2'",
        ),
        (
            """\
            models:
              churn:
                versions:
                  1: {storageUri: ./a, modelFormat: sklearn}  # <-
            """,
            "models.churn.versions.1",
            "must be a string: quote it",
        ),
        (
            with_rules("- name: my rule  # <-\n  route: [{destination: v1}]\n"),
            "models.churn.http.0.name",
            "invalid rule name 'my rule'",
        ),
    ],
)
def test_bad_names(text: str, field: str, fragment: str) -> None:
    assert_error(text, field, fragment)


def test_versions_must_not_be_empty() -> None:
    assert_error(
        "models:\n  churn:\n    versions: {}  # <-\n", "models.churn.versions", "at least 1"
    )


# --------------------------------------------------------------------------- rules


def test_rule_routes_to_unknown_version() -> None:
    assert_error(
        with_rules(
            """\
            - name: default
              route:
                - destination: v1
                  weight: 50
                - destination: v9  # <-
                  weight: 50
            """
        ),
        "models.churn.http.0.route.1.destination",
        "unknown version 'v9'",
        "known: v1, v2",
    )


def test_rule_error_points_into_the_second_rule() -> None:
    assert_error(
        with_rules(
            """\
            - name: eu
              match: [{headers: {x-region: {exact: eu}}}]
              route: [{destination: v2}]
            - name: default
              route: [{destination: v3}]  # <-
            """
        ),
        "models.churn.http.1.route.0.destination",
        "unknown version 'v3'",
    )


def test_fallback_to_unknown_version() -> None:
    assert_error(
        with_rules(
            """\
            - name: default
              route: [{destination: v1}]
              fallback:
                - v2
                - v7  # <-
            """
        ),
        "models.churn.http.0.fallback.1",
        "unknown version 'v7'",
    )


def test_mirror_to_unknown_version() -> None:
    assert_error(
        with_rules(
            """\
            - name: default
              route: [{destination: v1}]
              mirror:
                destination: v5  # <-
            """
        ),
        "models.churn.http.0.mirror.destination",
        "unknown version 'v5'",
    )


def test_all_zero_weights() -> None:
    assert_error(
        with_rules(
            """\
            - name: default
              route:  # <-
                - {destination: v1, weight: 0}
                - {destination: v2, weight: 0}
            """
        ),
        "models.churn.http.0.route",
        "weights are all zero",
    )


def test_only_destination_with_weight_zero() -> None:
    assert_error(
        with_rules("- name: default\n  route:  # <-\n    - {destination: v1, weight: 0}\n"),
        "models.churn.http.0.route",
        "only destination has weight 0",
    )


def test_negative_weight() -> None:
    assert_error(
        with_rules(
            """\
            - name: default
              route:
                - destination: v1
                  weight: 100
                - destination: v2
                  weight: -5  # <-
            """
        ),
        "models.churn.http.0.route.1.weight",
        "greater than or equal to 0",
    )


def test_missing_weight_among_several() -> None:
    assert_error(
        with_rules(
            """\
            - name: default
              route:  # <-
                - {destination: v1, weight: 90}
                - {destination: v2}
            """
        ),
        "models.churn.http.0.route",
        "give a weight to every destination",
    )


def test_destination_twice() -> None:
    assert_error(
        with_rules(
            """\
            - name: default
              route:  # <-
                - {destination: v1, weight: 50}
                - {destination: v1, weight: 50}
            """
        ),
        "models.churn.http.0.route",
        "appears twice",
    )


def test_rule_name_used_twice() -> None:
    assert_error(
        with_rules(
            """\
            - name: a
              route: [{destination: v1}]
            - name: a  # <-
              route: [{destination: v2}]
            """
        ),
        "models.churn.http.1.name",
        "rule name 'a' is used twice",
    )


def test_invalid_regex() -> None:
    assert_error(
        with_rules(
            """\
            - name: eu
              match:
                - headers:
                    x-region:
                      regex: '[eu'  # <-
              route: [{destination: v2}]
            """
        ),
        "models.churn.http.0.match.0.headers.x-region.regex",
        "invalid regex '[eu'",
    )


def test_string_match_needs_exactly_one() -> None:
    assert_error(
        with_rules(
            """\
            - name: eu
              match:
                - queryParams:
                    region: {exact: eu, prefix: e}  # <-
              route: [{destination: v2}]
            """
        ),
        "models.churn.http.0.match.0.queryParams.region",
        "exactly one of exact, prefix, regex",
    )


def test_mirror_may_point_at_a_routed_version() -> None:
    # shadowing the canary: v2 gets copies of the requests the split sends to v1
    config = parse_config(
        textwrap.dedent(
            with_rules(
                """\
                - name: default
                  route:
                    - {destination: v1, weight: 90}
                    - {destination: v2, weight: 10}
                  mirror:
                    destination: v2
                """
            )
        )
    )
    assert config.models["churn"].http[0].mirror is not None


def test_mirrors_entry_pointing_at_a_routed_version() -> None:
    assert_error(
        """\
        models:
          churn:
            versions:
              v1: {storageUri: ./a, modelFormat: sklearn}
              v2: {storageUri: ./b, modelFormat: sklearn}
              v3: {storageUri: ./c, modelFormat: sklearn}
            http:
              - name: default
                route: [{destination: v1}]
                mirrors:
                  - destination: v3
                  - destination: v1  # <-
        """,
        "models.churn.http.0.mirrors.1.destination",
        "version 'v1' is the rule's only destination, so it would never be mirrored",
    )


def test_mirror_percentage_needs_mirror() -> None:
    assert_error(
        with_rules(
            """\
            - name: default  # <-
              route: [{destination: v1}]
              mirrorPercentage: {value: 25}
            """
        ),
        "models.churn.http.0",
        "mirrorPercentage needs mirror",
    )


def test_percentage_over_100() -> None:
    assert_error(
        with_rules(
            """\
            - name: default
              route: [{destination: v1}]
              mirror: {destination: v2}
              mirrorPercentage:
                value: 150  # <-
            """
        ),
        "models.churn.http.0.mirrorPercentage.value",
        "less than or equal to 100",
    )


def test_sticky_needs_exactly_one_source() -> None:
    assert_error(
        with_rules(
            """\
            - name: default
              route: [{destination: v1, weight: 90}, {destination: v2, weight: 10}]
              sticky: {header: x-user-id, cookie: uid}  # <-
            """
        ),
        "models.churn.http.0.sticky",
        "exactly one of header, cookie, queryParam, body",
    )


# --------------------------------------------------------------------------- server


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("server:\n  http:\n    port: 70000  # <-\n", "server.http.port", "65535"),
        ("server:\n  http:\n    port: http  # <-\n", "server.http.port", "valid integer"),
        (
            "server:\n  http:\n    maxRequestSize: lots  # <-\n",
            "server.http.maxRequestSize",
            "not a size: 'lots'",
        ),
        (
            "server:\n  http:\n    maxRequestSize: 0  # <-\n",
            "server.http.maxRequestSize",
            "greater than 0",
        ),
        ("server:\n  store: mysql://db  # <-\n", "server.store", "unsupported store"),
        ("server:\n  prometheus: {}  # <-\n", "server.prometheus.url", "Field required"),
    ],
)
def test_bad_server_settings(text: str, field: str, fragment: str) -> None:
    assert_error(text, field, fragment)


# --------------------------------------------------------------------------- YAML itself


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("server:\n  http:\n  port: 80\n   bad: x  # <-\n", "mapping values are not allowed"),
        ("server:\n\thttp: {}  # <-\n", "'\\t'"),
        ("models:\n  churn: {versions: {v1: {storageUri: a}  # <-\n", "expected ',' or '}'"),
        ("server: [1, 2\nmodels: {}  # <-\n", "expected ',' or ']'"),
        ('server:\n  name: "unterminated  # <-\n', "found unexpected end of stream"),
    ],
)
def test_invalid_yaml(text: str, fragment: str) -> None:
    err, line = config_error(text)
    assert err.field is None
    assert err.line == line
    assert err.detail.startswith("invalid YAML: ")
    assert fragment in err.detail


def test_invalid_yaml_names_where_the_open_bracket_starts() -> None:
    err, _ = config_error("server:\n  http: {port: 8080\nmodels: {}\n")
    assert err.line == 3
    assert err.detail == (
        "invalid YAML: expected ',' or '}', but got ':' "
        "(while parsing a flow mapping that starts on line 2)"
    )


def test_top_level_must_be_a_mapping() -> None:
    err, _ = config_error("- server\n- models\n")
    assert err.line == 1
    assert "must be a mapping" in err.detail


def test_duplicate_key_is_refused() -> None:
    assert_error(
        """\
        models:
          churn:
            versions:
              v1: {storageUri: ./a, modelFormat: sklearn}
          churn:  # <-
            versions:
              v2: {storageUri: ./b, modelFormat: sklearn}
        """,
        "models.churn",
        "duplicate key 'churn'",
    )


def test_duplicate_key_in_a_list_item() -> None:
    assert_error(
        with_rules(
            """\
            - name: default
              route: [{destination: v1}]
              name: again  # <-
            """
        ),
        "models.churn.http.0.name",
        "duplicate key 'name'",
    )


def test_first_of_several_errors_is_reported() -> None:
    err, _ = config_error("server:\n  http: {port: -1}\nmodels: {x: {versions: {}}}\n")
    assert err.field == "server.http.port"
    assert err.line == 2


# --------------------------------------------------------------------------- defaults


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "server: {}\nmodels: {}\n"])
def test_empty_config_has_defaults(text: str) -> None:
    c = parse_config(text)
    assert c.models == {}
    http = c.server.http
    assert (http.host, http.port, http.maxRequestSize, http.accessLog) == (
        "127.0.0.1",
        8080,
        16 * 1024 * 1024,
        False,
    )
    assert c.server.name == "modelrouter"
    assert c.server.grpc is None
    assert c.server.prometheus is None
    assert c.server.store == "sqlite:///./modelrouter.db"
    assert c.server.auth.adminTokenEnv == "MODELROUTER_ADMIN_TOKEN"


def test_version_and_rule_defaults() -> None:
    c = parse_config(
        with_rules(
            """\
            - name: default
              route: [{destination: v2}]
            """
        )
        + "      ltv:\n        versions:\n          v1: {endpoint: 'http://10.0.0.7:8080'}\n"
    )
    churn = c.models["churn"]
    assert list(churn.versions) == ["v1", "v2"]
    assert churn.default_version == "v1"
    assert churn.batcher is None
    v1 = churn.versions["v1"]
    assert (v1.protocol, v1.executor, v1.timeout, v1.parameters) == ("v2", "inline", None, {})
    assert (v1.format, v1.is_remote) == ("sklearn", False)
    remote = c.models["ltv"].versions["v1"]
    assert (remote.format, remote.is_remote) == ("remote", True)
    rule = churn.http[0]
    assert rule.match == []
    assert rule.route[0].weight is None
    assert (rule.sticky, rule.mirror, rule.timeout, rule.retries, rule.fallback) == (
        None,
        None,
        None,
        None,
        [],
    )


def test_durations_and_sizes_in_the_config() -> None:
    c = parse_config(
        """\
server:
  http: {maxRequestSize: 4KiB}
models:
  churn:
    versions:
      v1: {storageUri: ./a, modelFormat: sklearn, timeout: 1m30s}
    batcher: {maxBatchSize: 8, maxLatency: 250ms}
"""
    )
    assert c.server.http.maxRequestSize == 4096
    assert c.models["churn"].versions["v1"].timeout == 90.0
    batcher = c.models["churn"].batcher
    assert batcher is not None
    assert (batcher.maxBatchSize, batcher.maxLatency) == (8, 0.25)


def test_mlflow_uri_needs_no_format() -> None:
    c = parse_config(
        "models:\n  churn:\n    versions:\n      v1: {storageUri: 'models:/churn@x'}\n"
    )
    assert c.models["churn"].versions["v1"].format == "mlflow"


def test_config_is_frozen() -> None:
    c = parse_config(TWO_VERSIONS)
    with pytest.raises(ValidationError, match="frozen"):
        c.server.http.port = 9  # type: ignore[misc]


# --------------------------------------------------------------------------- files


def test_load_example_config() -> None:
    loaded = load_config(ROOT / "examples" / "churn" / "modelrouter.yaml")
    assert loaded.source == (ROOT / "examples" / "churn" / "modelrouter.yaml").resolve()
    assert loaded.base_dir == loaded.source.parent
    assert set(loaded.config.models) == {"churn", "ltv"}
    assert loaded.config.server.name == "modelrouter-example"


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found") as info:
        load_config(tmp_path / "nope.yaml")
    assert str(tmp_path / "nope.yaml") in info.value.message


def test_load_file_reports_line(tmp_path: Path) -> None:
    p = tmp_path / "modelrouter.yaml"
    p.write_text("server:\n  http:\n    port: 8080\n\n    colour: blue\n")
    with pytest.raises(ConfigError) as info:
        load_config(p)
    assert info.value.message == "line 5: server.http.colour: unknown field 'colour'"
