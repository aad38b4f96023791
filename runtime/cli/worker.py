"""`steprun worker`, and `steprun run --submit`: runs spread over worker processes.

Both need the run store in PostgreSQL (``--state postgresql://…``): the workers share it,
and the queue (Procrastinate's tables) lives in the same database.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..durable.journal import PERSIST_WAKE_SECONDS
from .common import STATE_OPTION, cli, handled

NEEDS_POSTGRES = (
    "workers share their runs through PostgreSQL: give --state postgresql://USER@HOST/DB "
    "(or set STEPRUN_STATE to it), the same for every worker and for `steprun run --submit`"
)


def postgres_url(state: str | None, what: str) -> str:
    from ..store.postgres.connection import is_postgres_url

    if state is None or not is_postgres_url(state):
        found = f"; found {state!r}" if state else ""
        raise click.UsageError(f"{what}: {NEEDS_POSTGRES}{found}")
    return state


@cli.command()
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10000),
    default=10,
    show_default=True,
    help="How many runs this worker drives at once (a run that waits holds none).",
)
@click.option(
    "--hand-back-after",
    type=click.FloatRange(0, None),
    default=PERSIST_WAKE_SECONDS,
    show_default=True,
    metavar="SECONDS",
    help="A step that waits this long or longer hands its run back to the queue until then.",
)
@click.option(
    "--stalled-after",
    type=click.FloatRange(3, None),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="A worker silent this long is taken for dead: its runs go to other workers.",
)
@STATE_OPTION
@handled
def worker(
    concurrency: int, hand_back_after: float, stalled_after: float, state: str | None
) -> None:
    """Drive runs from the queue until stopped (SIGTERM or Ctrl-C: each run hands back
    after its current step). Start as many as you like, on any machine that reaches the
    PostgreSQL; each says what it drives on stderr."""
    import asyncio

    from ..runtime import Runtime
    from ..store import open_store
    from ..workers import WorkerSettings, serve
    from ..workers.worker import LOCAL_STATE, say_to

    url = postgres_url(state, "steprun worker")
    settings = WorkerSettings(
        url=url,
        concurrency=concurrency,
        hand_back_after=hand_back_after,
        stalled_after=stalled_after,
    )
    store = open_store(url)
    runtime = Runtime()
    runtime.local_state = store.folder / LOCAL_STATE

    async def main() -> None:
        try:
            await serve(settings, store, say_to(sys.stderr), runtime)
        finally:
            await runtime.aclose()

    try:
        asyncio.run(main())
    finally:
        store.close()


def submit_runs(
    state: str | None,
    flow: Any,
    rows: list[dict[str, Any]],
    auth_file: Path | None,
    *,
    quiet: bool,
) -> None:
    """`steprun run --submit`: record and queue one run per row; print each run id."""
    import asyncio

    from ..store import open_store
    from ..workers import build_app, ensure_schema, submit

    url = postgres_url(state, "--submit")
    store = open_store(url)  # first: it creates the schema the queue's tables go in
    try:
        ensure_schema(url)
    except BaseException:
        store.close()
        raise

    async def main() -> None:
        app = build_app(url, pool_size=2)
        async with app.open_async():
            for row in rows:
                run_id = await submit(store, app, flow, inputs=row, authorizations_file=auth_file)
                click.echo(run_id)
                if not quiet:
                    click.echo(f"steprun: run {run_id} queued for the workers", err=True)

    try:
        asyncio.run(main())
    finally:
        store.close()


__all__ = ["postgres_url", "submit_runs", "worker"]
