"""The ``modelrouter`` command line: one module per command group.

- :mod:`.serve`: ``validate`` and ``serve``
- :mod:`.audit`: ``audit query|explain|verify|tail|prune|keygen|checkpoint``
- :mod:`.rollout`: ``rollout status|pause|resume|promote|abort``
- :mod:`.export`: ``export kubernetes`` and ``import``
- :mod:`.traffic`: ``traffic`` (requests and simulated feedback for an example)
- :mod:`.cli_http`: how the commands that talk to a gateway call its control API

The package binds modules, not commands, to its names (``modelrouter.cli.audit`` is the
module; its group is ``modelrouter.cli.audit.audit``), so patching and importing by dotted
path find what they expect.
"""

from __future__ import annotations

import click

from modelrouter._version import __version__
from modelrouter.cli import audit as _audit
from modelrouter.cli import export as _export
from modelrouter.cli import rollout as _rollout
from modelrouter.cli import serve as _serve
from modelrouter.cli import traffic as _traffic

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
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


main.add_command(_serve.validate)
main.add_command(_serve.serve)
main.add_command(_audit.audit)
main.add_command(_rollout.rollout)
main.add_command(_traffic.traffic)
main.add_command(_export.export)
main.add_command(_export.import_)
