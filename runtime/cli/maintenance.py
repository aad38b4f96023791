"""`steprun check` and `steprun runs prune`: keeping the run store sound and small."""

from __future__ import annotations

import click

from .common import STATE_OPTION, cli, handled, open_store
from .inspect import runs


@cli.command()
@STATE_OPTION
@handled
def check(state: str | None) -> None:
    """Check the run store's integrity, reading all of it.

    Opening the store checks it only after a process that had it open ended without
    closing it (killed, crashed, power cut); run this after a disk or copy problem.
    """
    from ..errors import StoreError
    from ..store import SQLiteStore, failures

    store = open_store(state)
    try:
        problems = store.check()
    finally:
        store.close()
    if problems and isinstance(store, SQLiteStore):
        raise failures.damaged(store.path, "; ".join(problems[:3]))
    if problems:
        raise StoreError(f"the run store {store.location}: {'; '.join(problems[:3])}")
    click.echo(f"run store {store.location}: ok", err=True)


@runs.command()
@click.option(
    "--older-than",
    default="90d",
    show_default=True,
    metavar="DURATION",
    help="Delete finished runs whose last change is older than this (30d, 12h).",
)
@STATE_OPTION
@handled
def prune(older_than: str, state: str | None) -> None:
    """Delete finished runs (succeeded, failed, cancelled) older than --older-than.

    Runs still running, or left running by a crash, are kept: resume or cancel them.
    Without this, finished runs are kept 90 days ($STEPRUN_RETENTION: 30d, or off).
    """
    from ..durations import parse_duration
    from ..errors import InvalidInput

    try:
        seconds = parse_duration(older_than)
    except ValueError as exc:
        raise InvalidInput(f"--older-than: {exc}") from None
    store = open_store(state)
    try:
        count = store.prune(seconds)
    finally:
        store.close()
    click.echo(
        f"pruned {count} finished run(s) older than {older_than} from {store.location}", err=True
    )


__all__ = ["check", "prune"]
