"""``python -m modelrouter``: the ``modelrouter`` command."""

from modelrouter.cli import main

main(prog_name="modelrouter")
