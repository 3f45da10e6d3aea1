"""``modelrouter validate`` and ``--help``, through click's CliRunner."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from modelrouter.cli import main

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "examples" / "churn" / "models"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "modelrouter.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def run(*args: str) -> Result:
    return CliRunner().invoke(main, list(args), prog_name="modelrouter")


def good_config(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        f"""\
        models:
          churn:
            versions:
              v1: {{storageUri: {MODELS / "churn" / "v1"}, modelFormat: sklearn}}
              v2: {{storageUri: "file://{MODELS / "churn" / "v2"}", modelFormat: sklearn}}
              echo: {{modelFormat: custom, implementation: "fixtures.models:EchoModel"}}
            http:
              - name: default
                route: [{{destination: v1, weight: 90}}, {{destination: v2, weight: 10}}]
          ltv:
            versions:
              v1: {{storageUri: {MODELS / "ltv" / "v1"}, modelFormat: sklearn}}
        """,
    )


def test_validate_ok(tmp_path: Path) -> None:
    config = good_config(tmp_path)
    result = run("validate", str(config))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{config}: OK (2 models, 4 versions)\n"
    assert result.stderr == ""


def test_validate_relative_storage_uri_resolves_against_the_config(tmp_path: Path) -> None:
    (tmp_path / "models").symlink_to(MODELS)
    config = write(
        tmp_path,
        """\
        models:
          churn:
            versions:
              v1: {storageUri: ./models/churn/v1, modelFormat: sklearn}
        """,
    )
    result = run("validate", str(config))
    assert result.exit_code == 0, result.output
    assert "OK (1 models, 1 versions)" in result.stdout


def test_validate_schema_error_names_field_and_line(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """\
        server:
          http: {port: 8080}
        models:
          churn:
            versions:
              v1: {storageUri: ./a, modelFormat: sklearn}
            http:
              - name: default
                route:
                  - {destination: v1, weight: 50}
                  - {destination: v9, weight: 50}
        """,
    )
    result = run("validate", str(config))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"{config}: line 11: models.churn.http.0.route.1.destination: "
        "unknown version 'v9' (known: v1)\n"
    )


def test_validate_invalid_yaml(tmp_path: Path) -> None:
    config = write(tmp_path, "server:\n  http: {port: 8080\nmodels: {}\n")
    result = run("validate", str(config))
    assert result.exit_code == 1
    assert result.stderr == (
        f"{config}: line 3: invalid YAML: expected ',' or '}}', but got ':' "
        "(while parsing a flow mapping that starts on line 2)\n"
    )


def test_validate_reports_every_source_problem(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """\
        models:
          churn:
            versions:
              v1: {storageUri: ./missing/v1, modelFormat: sklearn}
              v2: {storageUri: ./b, modelFormat: tensorflow}
              v3: {storageUri: "gs://bucket/churn", modelFormat: sklearn}
              v4:
                modelFormat: custom
                implementation: fixtures.models:NoSuchModel
              v5: {storageUri: "ftp://host/x", modelFormat: sklearn}
        """,
    )
    result = run("validate", str(config))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines == [
        f"{config}: line 4: models.churn.versions.v1.storageUri: "
        f"{tmp_path / 'missing' / 'v1'} does not exist",
        f"{config}: line 5: models.churn.versions.v2.modelFormat: unknown modelFormat "
        "'tensorflow' (one of custom, lightgbm, mlflow, onnx, remote, sklearn, xgboost)",
        f"{config}: line 6: models.churn.versions.v3.storageUri: storageUri scheme 'gs' is not "
        "supported: 'gs://bucket/churn'",
        f"{config}: line 9: models.churn.versions.v4.implementation: module 'fixtures.models' "
        "has no 'NoSuchModel'",
        f"{config}: line 10: models.churn.versions.v5.storageUri: unknown storageUri scheme in "
        "'ftp://host/x'",
    ]


def test_validate_missing_file(tmp_path: Path) -> None:
    result = run("validate", str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1
    assert (
        result.stderr
        == f"{tmp_path / 'nope.yaml'}: config file not found: {tmp_path / 'nope.yaml'}\n"
    )


def test_validate_directory_is_a_usage_error(tmp_path: Path) -> None:
    result = run("validate", str(tmp_path))
    assert result.exit_code == 2
    assert "is a directory" in result.stderr


def test_validate_needs_an_argument() -> None:
    result = run("validate")
    assert result.exit_code == 2
    assert "Missing argument 'CONFIG'" in result.stderr


def test_serve_refuses_an_invalid_config(tmp_path: Path) -> None:
    config = write(tmp_path, "server:\n  http:\n    prot: 8080\n")
    result = run("serve", str(config))
    assert result.exit_code == 1
    assert result.stderr == f"{config}: line 3: server.http.prot: unknown field 'prot'\n"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(flag: str) -> None:
    result = run(flag)
    assert result.exit_code == 0
    out = result.stdout
    assert out.startswith("Usage: modelrouter [OPTIONS] COMMAND [ARGS]...")
    assert "route every request between their" in out
    assert "modelrouter validate examples/churn/modelrouter.yaml" in out
    assert "modelrouter serve examples/churn/modelrouter.yaml" in out
    assert "examples/churn/requests/churn-v2.json" in out
    commands = out.split("Commands:", 1)[1]
    assert "  serve     Serve the models of CONFIG over HTTP.\n" in commands
    assert "validate  Check CONFIG: schema, rules, formats and model files.\n" in commands
    assert "..." not in commands, "no first line is cut short"


def test_help_examples_exist() -> None:
    assert (ROOT / "examples" / "churn" / "modelrouter.yaml").is_file()
    assert (ROOT / "examples" / "churn" / "requests" / "churn-v2.json").is_file()


def test_serve_help_documents_every_option() -> None:
    result = run("serve", "--help")
    assert result.exit_code == 0
    out = result.stdout
    assert "Usage: modelrouter serve [OPTIONS] CONFIG" in out
    assert "Open Inference Protocol v2" in out
    for option, text in [
        ("--host TEXT", "Address to bind"),
        ("--port INTEGER", "Port to bind"),
        ("--log-level [debug|info|warning|error]", "How much the server logs."),
    ]:
        assert option in out
        assert text in out


def test_validate_help() -> None:
    result = run("validate", "--help")
    assert result.exit_code == 0
    assert "Usage: modelrouter validate [OPTIONS] CONFIG" in result.stdout
    assert "Exit 0 when all is well." in result.stdout


def test_version() -> None:
    from modelrouter import __version__

    result = run("--version")
    assert result.exit_code == 0
    assert result.stdout == f"modelrouter, version {__version__}\n"


def test_validate_loads_each_local_version_and_reports_every_error(tmp_path: Path) -> None:
    text_file = tmp_path / "text"
    text_file.mkdir()
    (text_file / "model.joblib").write_text("this is not a pickle\n")
    config = write(
        tmp_path,
        f"""\
        models:
          churn:
            versions:
              v1: {{storageUri: {MODELS / "churn" / "v1"}, modelFormat: sklearn}}
              text: {{storageUri: {text_file}, modelFormat: sklearn}}
              wrong: {{storageUri: {MODELS / "churn" / "v2"}, modelFormat: xgboost}}
              failing: {{modelFormat: custom, implementation: "fixtures.models:EchoModel"}}
              remote: {{endpoint: "http://127.0.0.1:1"}}
        """,
    )
    result = run("validate", str(config))
    assert result.exit_code == 1
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith(
        f"{config}: line 5: models.churn.versions.text.storageUri: does not load as sklearn: "
    )
    assert lines[1].startswith(
        f"{config}: line 6: models.churn.versions.wrong.storageUri: does not load as xgboost: "
    )


def test_validate_reports_every_schema_error(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        """\
        server:
          http: {port: 99999}
          workers: 0
        models:
          churn:
            versions:
              v1: {storageUri: ./a, modelFormat: sklearn, executor: gpu}
        """,
    )
    result = run("validate", str(config))
    assert result.exit_code == 1
    assert [line.split(": ", 2)[1:] for line in result.stderr.splitlines()] == [
        ["line 2", "server.http.port: Input should be less than or equal to 65535"],
        ["line 3", "server.workers: Input should be greater than or equal to 1"],
        ["line 7", "models.churn.versions.v1.executor: Input should be 'inline' or 'thread'"],
    ]


def test_validate_offline_leaves_remote_sources_alone(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        f"""\
        models:
          churn:
            versions:
              v1: {{storageUri: {MODELS / "churn" / "v1"}, modelFormat: sklearn}}
              s3: {{storageUri: "s3://no-such-bucket/churn", modelFormat: sklearn}}
              web: {{storageUri: "http://127.0.0.1:1/model.joblib", modelFormat: sklearn}}
              reg: {{storageUri: "models:/churn/1"}}
        """,
    )
    offline = run("validate", "--offline", str(config))
    assert offline.exit_code == 0, offline.stderr
    assert offline.stdout == f"{config}: OK (1 models, 4 versions)\n"


def test_serve_refuses_workers_without_a_shared_store(tmp_path: Path) -> None:
    config = write(tmp_path, "server: {store: 'memory://'}\nmodels: {}\n")
    result = run("serve", str(config), "--workers", "2", "--port", "0")
    assert result.exit_code == 1
    assert result.stderr == (
        f"{config}: server.store: 2 workers need a store they share (sqlite:///path or "
        "postgresql://...): a memory:// store is one per process\n"
    )
