"""The ``steprun`` command line, one module per family of commands.

Exit codes: 0 the run succeeded (step-level handled errors included), 1 the run failed (a
flow-level handler ran, or nothing handled the error), 2 the flow or
the command line is invalid. Human progress goes to stderr; ``run`` prints the run's merge
fields as JSON on stdout. No Python traceback reaches a user (set STEPRUN_DEBUG=1 to see
one for an internal error).
"""

from __future__ import annotations

# Importing a command module registers its commands on the group.
from . import catalog, control, inspect, maintenance, run, serve, service, worker
from .common import cli, parse_inputs


def main() -> None:
    cli(prog_name="steprun")


__all__ = [
    "catalog",
    "cli",
    "control",
    "inspect",
    "main",
    "maintenance",
    "parse_inputs",
    "run",
    "serve",
    "service",
    "worker",
]
