"""`steprun resume` and `steprun cancel`: act on a run that already exists."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from .batch import resume_batch
from .common import (
    EXIT_FAILED,
    LOG_LEVEL_OPTION,
    STATE_OPTION,
    authorizations_option,
    cli,
    drive,
    fail,
    handled,
    interrupted_says_how_to_resume,
    parse_inputs,
    report_option,
    session,
)
from .run import cwd_paths, finish


@cli.command()
@click.argument("run_id")
@click.option(
    "--flow",
    "flow_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Continue with this edited flow file (a fix); it must keep the run's position "
    "and the merge fields it wrote.",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Override an input of the run (repeatable); VALUE is JSON or text.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10000),
    help="With a batch id: how many rows at once (default: as the batch started).",
)
@authorizations_option(
    "A YAML file of named authorizations (default: the one the run started with)."
)
@report_option("Write the reports of the resumed steps to this file.")
@LOG_LEVEL_OPTION
@STATE_OPTION
@handled
def resume(
    run_id: str,
    flow_file: Path | None,
    inputs: tuple[str, ...],
    concurrency: int | None,
    auth_file: Path | None,
    report_file: Path | None,
    log_level: str | None,
    state: str | None,
) -> None:
    """Continue RUN_ID where it stopped: after a crash, a kill, or a failed step.

    With --flow and --input, continue with a fix: the edited flow, other input values.
    Given a batch id (`run --inputs-file`), resume every row whose run did not succeed
    and start the rows never started; one JSON line per row, as `run` prints them.
    """
    from .. import durable
    from ..durable.batches import BATCH_PREFIX

    is_batch = run_id.startswith(BATCH_PREFIX)
    if is_batch and (flow_file is not None or inputs):
        raise click.UsageError(
            "--flow and --input fix one run; resume that row's run by its id (`steprun runs "
            f"--batch {run_id}` lists them), then `steprun resume {run_id}` for the rest"
        )
    if concurrency is not None and not is_batch:
        raise click.UsageError(
            f"--concurrency runs the rows of a batch side by side; {run_id} is one run. "
            "Drop --concurrency"
        )
    values = cwd_paths(parse_inputs(inputs))
    runtime, extra = session(auth_file)
    if is_batch:
        resume_batch(
            runtime,
            state,
            run_id,
            authorizations=extra,
            concurrency=concurrency,
            report_file=report_file,
            log_level=log_level,
        )
        return
    with interrupted_says_how_to_resume(run_id):
        result = drive(
            runtime,
            state,
            lambda store: durable.resume(
                runtime,
                store,
                run_id,
                authorizations=extra,
                log_level=log_level,
                report_file=report_file,
                console=sys.stderr,
                flow_file=flow_file,
                inputs=values,
            ),
        )
    finish(result)


@cli.command()
@click.argument("run_id")
@click.option(
    "--cancel-jobs", is_flag=True, help="Also cancel the fine-tuning jobs the run created."
)
@authorizations_option(
    "A YAML file of named authorizations (default: the one the run started with)."
)
@STATE_OPTION
@handled
def cancel(run_id: str, cancel_jobs: bool, auth_file: Path | None, state: str | None) -> None:
    """Stop RUN_ID (a live process stops at its next step or wait); print the outcome as JSON."""
    from .. import durable

    runtime, extra = session(auth_file)
    outcome = drive(
        runtime,
        state,
        lambda store: durable.cancel(
            runtime,
            store,
            run_id,
            cancel_jobs=cancel_jobs,
            authorizations=extra,
            console=sys.stderr,
        ),
    )
    click.echo(json.dumps(outcome, indent=2))
    failed = [j for j in outcome["cancelled_jobs"] if j["outcome"] != "succeeded"]
    if failed:
        fail(f"{len(failed)} job(s) could not be cancelled; see above", EXIT_FAILED)


__all__ = ["cancel", "resume"]
