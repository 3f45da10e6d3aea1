"""The ``modelrouter`` command line: one module per command group.

- :mod:`.serve`: ``validate`` and ``serve``
- :mod:`.audit`: ``audit query|explain|verify|tail|prune|keygen|checkpoint``
- :mod:`.rollout`: ``rollout status|pause|resume|promote|abort``
- :mod:`.export`: ``export kubernetes`` and ``import``
- :mod:`.traffic`: ``traffic`` (requests and simulated feedback for an example)
- :mod:`.cli_http`: how the commands that talk to a gateway call its control API

Each command's module is imported when that command runs (:class:`LazyGroup`), so
``modelrouter rollout status`` does not load the server, and a process that imports
``modelrouter.cli`` (the console script, which the shadow worker process re-runs as its main
module under the ``spawn`` start method) pays for click alone.
"""

from __future__ import annotations

import importlib

import click

from modelrouter._version import __version__

__all__ = ["COMMANDS", "LazyGroup", "main"]

COMMANDS = {
    "validate": "modelrouter.cli.serve:validate",
    "serve": "modelrouter.cli.serve:serve",
    "audit": "modelrouter.cli.audit:audit",
    "rollout": "modelrouter.cli.rollout:rollout",
    "traffic": "modelrouter.cli.traffic:traffic",
    "export": "modelrouter.cli.export:export",
    "import": "modelrouter.cli.export:import_",
}
"""Command name -> ``module:attribute`` of its click command."""


class LazyGroup(click.Group):
    """A group whose commands are imported on first use, from ``lazy`` (name -> module:attr)."""

    def __init__(self, *args: object, lazy: dict[str, str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        found = super().get_command(ctx, cmd_name)
        if found is not None or cmd_name not in self.lazy:
            return found
        module, _, attr = self.lazy[cmd_name].partition(":")
        command = getattr(importlib.import_module(module), attr)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.lazy[cmd_name]} is not a click command")
        self.add_command(command, cmd_name)
        return command


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="modelrouter")
def main() -> None:
    """modelrouter: serve many ML models and route every request between their versions.

    \b
    Quick start:
      modelrouter validate examples/churn/modelrouter.yaml
      modelrouter serve examples/churn/modelrouter.yaml
      curl -s localhost:8080/v2/models/churn/infer \\
           -d @examples/churn/requests/churn-v2.json
    """
