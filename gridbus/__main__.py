"""``python -m gridbus``: the ``gridbus`` command."""

from gridbus.tools.cli import main

main(prog_name="gridbus")
