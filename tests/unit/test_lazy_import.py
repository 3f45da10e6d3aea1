"""``import modelrouter`` is light: the web stack and numpy load only when used."""

from __future__ import annotations

import json
import subprocess
import sys

import modelrouter

HEAVY = ("starlette", "httpx", "numpy", "uvicorn", "sklearn", "modelrouter.app")


def loaded_after(statement: str) -> list[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_routing_does_not_load_the_web_stack_or_numpy() -> None:
    modules = set(loaded_after("import modelrouter.routing"))
    assert "modelrouter.routing" in modules
    assert [m for m in HEAVY if m in modules] == []


def test_public_names_still_resolve() -> None:
    modules = set(loaded_after("from modelrouter import create_app, Config"))
    assert "modelrouter.app" in modules
    assert modelrouter.create_app.__module__ == "modelrouter.app"
    assert modelrouter.Gateway.__module__ == "modelrouter.server"
    assert sorted(modelrouter.__all__) == sorted(dir(modelrouter))
    for name in modelrouter.__all__:
        assert getattr(modelrouter, name) is not None


def test_the_command_line_loads_a_command_only_when_it_runs() -> None:
    """The console script imports ``modelrouter.cli`` first (and the spawned shadow worker
    re-runs that line): click alone, no command module, no web stack."""
    modules = set(loaded_after("import modelrouter.cli"))
    assert [m for m in (*HEAVY, "pydantic", "modelrouter.cli.serve") if m in modules] == []
    modules = set(
        loaded_after("from modelrouter.cli import main\nmain.get_command(None, 'rollout')")
    )
    assert "modelrouter.cli.rollout" in modules
    assert "modelrouter.cli.serve" not in modules


def test_every_command_resolves() -> None:
    import click

    from modelrouter.cli import COMMANDS, main

    ctx = click.Context(main)
    assert main.list_commands(ctx) == sorted(COMMANDS)
    for name in COMMANDS:
        command = main.get_command(ctx, name)
        assert command is not None
        assert command.name == name
    assert main.get_command(ctx, "no-such-command") is None
