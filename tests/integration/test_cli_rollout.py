"""``modelrouter rollout status|pause|resume|abort`` against a real gateway."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from modelrouter.app import create_app
from modelrouter.cli import main
from support import EXAMPLE_MODELS, loaded_from_yaml, running_server

pytestmark = pytest.mark.integration

TOKEN = "cli-rollout-token"


def config() -> str:
    churn = EXAMPLE_MODELS / "churn"
    return f"""
server:
  store: sqlite:///./gw.db
  watchConfig: false
models:
  churn:
    versions:
      v1: {{storageUri: {churn / "v1"}, modelFormat: sklearn}}
      v2: {{storageUri: {churn / "v2"}, modelFormat: sklearn}}
    http:
      - name: default
        route: [{{destination: v1, weight: 90}}, {{destination: v2, weight: 10}}]
rollouts:
  churn-v2:
    model: churn
    rule: default
    primary: v1
    canary: v2
    strategy: canary
    analysis: {{interval: 1h, threshold: 2, stepWeights: [20, 50]}}
"""


def test_rollout_commands(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELROUTER_ADMIN_TOKEN", TOKEN)
    runner = CliRunner()
    with running_server(create_app(loaded_from_yaml(config(), tmp_path))) as url:

        def cli(*args: str, token: str = TOKEN) -> str:
            result = runner.invoke(main, ["rollout", "--url", url, "--token", token, *args])
            assert result.exit_code == 0, result.output
            return result.output

        out = cli("status")
        assert "churn-v2: canary of churn rule default: v1 -> v2" in out
        assert "v1=80 v2=20" in out  # the first step, taken at start
        assert "Paused" in cli("pause", "churn-v2")
        assert "Paused" in cli("status", "churn-v2")
        assert "Progressing" in cli("resume", "churn-v2")
        out = cli("abort", "churn-v2")
        assert "RolledBack" in out
        assert "v1=100 v2=0" in out
        bad = runner.invoke(main, ["rollout", "--url", url, "--token", "nope", "status"])
        assert bad.exit_code != 0
        assert "401" in bad.output
        missing = runner.invoke(main, ["rollout", "--url", url, "--token", TOKEN, "pause", "x"])
        assert missing.exit_code != 0
        assert "404" in missing.output


def test_audit_commands_through_the_gateway_and_offline_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELROUTER_ADMIN_TOKEN", TOKEN)
    runner = CliRunner()
    store = f"sqlite:///{tmp_path / 'gw.db'}"
    with running_server(create_app(loaded_from_yaml(config(), tmp_path))) as url:
        online = ["--url", url, "--token", TOKEN]
        offline = ["--store", store]

        def cli(*args: str, code: int = 0) -> str:
            result = runner.invoke(main, ["audit", *args])
            assert result.exit_code == code, result.output
            return result.output

        for where in (online, offline):
            out = cli("query", "--kind", "change", "--json", *where)
            assert '"actor": "config-file"' in out
            # an unknown kind is refused the same way by both (it used to print nothing, exit 0)
            refused = cli("query", "--kind", "decisions", *where, code=2)
            assert "unknown audit record kind 'decisions'" in refused
            assert "--kind" in refused
            assert "since: 'soon' is not a time" in cli("query", "--since", "soon", *where, code=2)
            assert "OK:" in cli("verify", *where)
            missing = cli("explain", "no-such-request", *where, code=1)
            assert "no decision recorded for request id 'no-such-request'" in missing
        both = cli("query", "--url", url, "--config", str(tmp_path / "x.yaml"), code=2)
        assert "not both" in both
