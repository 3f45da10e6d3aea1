"""``server.storeEnv``: the store URL from an environment variable (a Kubernetes Secret),
checked where it is read, with errors naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from modelrouter.cli import main
from modelrouter.config.loader import parse_config
from modelrouter.errors import ConfigError

CONFIG = "server:\n  storeEnv: MR_TEST_STORE\n"


def test_the_variable_replaces_store(monkeypatch: pytest.MonkeyPatch) -> None:
    server = parse_config(CONFIG).server
    monkeypatch.setenv("MR_TEST_STORE", "postgresql://u:pw@db:5432/x")
    assert server.store_location() == "postgresql://u:pw@db:5432/x"
    assert parse_config("server: {}\n").server.store_location() == "sqlite:///./modelrouter.db"


@pytest.mark.parametrize(("value", "says"), [("", "is not set"), ("mysql://x", "store URL")])
def test_a_missing_or_wrong_variable_names_the_field(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("MR_TEST_STORE", value)
    with pytest.raises(ConfigError) as err:
        parse_config(CONFIG).server.store_location()
    assert err.value.field == "server.storeEnv"
    assert says in err.value.message
    assert "mysql://x" not in err.value.message  # the value may hold a password


def test_serve_refuses_without_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MR_TEST_STORE", raising=False)
    config = tmp_path / "modelrouter.yaml"
    config.write_text(CONFIG)
    r = CliRunner().invoke(main, ["serve", str(config)])
    assert r.exit_code == 1
    assert "server.storeEnv: the environment variable MR_TEST_STORE is not set" in r.stderr
