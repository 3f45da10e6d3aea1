"""``python -m modelrouter.cli``: the ``modelrouter`` command."""

from modelrouter.cli import main

main(prog_name="modelrouter")
