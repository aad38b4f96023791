"""`steprun run` and `steprun validate`: check a flow, then run it (once or per input row)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import FlowInvalid, InvalidInput
from .batch import check_rows, read_rows, run_batch
from .common import (
    EXIT_FAILED,
    EXIT_INVALID,
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


@cli.command()
@click.argument("flow", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set an input (repeatable); VALUE is JSON or text.",
)
@click.option(
    "--inputs-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="JSON Lines of inputs: a batch of one run per line (its row).",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10000),
    help="With --inputs-file: how many runs at once (default 1).",
)
@click.option("--quiet", "-q", is_flag=True, help="No progress on stderr (errors still are).")
@click.option(
    "--submit",
    is_flag=True,
    help="Record the run(s) and queue them for `steprun worker`s; print each run id.",
)
@click.option(
    "--output",
    "output",
    metavar="FIELD",
    help="Print only this merge field (or FIELD.key.0…): text as is, anything else as JSON.",
)
@authorizations_option("A YAML file of named authorizations (keeps secrets out of the flow).")
@report_option("Write one JSON object per step, and one per run, to this file.")
@LOG_LEVEL_OPTION
@STATE_OPTION
@handled
def run(
    flow: Path,
    inputs: tuple[str, ...],
    inputs_file: Path | None,
    concurrency: int | None,
    quiet: bool,
    submit: bool,
    output: str | None,
    auth_file: Path | None,
    report_file: Path | None,
    log_level: str | None,
    state: str | None,
) -> None:
    """Validate FLOW, then run it durably; print its merge fields as JSON on stdout.

    The run id is printed first (on stderr): if the process dies, `steprun resume RUN_ID`
    continues where it stopped. With --inputs-file, a batch: one run per line of the file,
    one JSON line per row on stdout as each finishes ({"row", "run", "status",
    "merge_fields", "error"}); `steprun resume BATCH_ID` continues a batch.
    """
    from .. import durable

    if concurrency is not None and inputs_file is None:
        raise click.UsageError(
            "--concurrency runs the rows of --inputs-file side by side; without "
            "--inputs-file there is one run. Add --inputs-file ROWS.jsonl, or drop --concurrency"
        )
    if output is not None and inputs_file is not None:
        raise click.UsageError(
            "--output prints a field of one run; with --inputs-file each row's line holds "
            "its merge fields (pick one with jq, e.g. jq .merge_fields.FIELD). Drop --output"
        )
    concurrency = concurrency or 1
    values = cwd_paths(parse_inputs(inputs))
    rows = [(n, {**row, **values}) for n, row in read_rows(inputs_file)] if inputs_file else None
    runtime, extra = session(auth_file)
    names = set(values) | (set().union(*(set(r) for _, r in rows)) if rows else set())
    loaded = runtime.load(flow, inputs=names, authorizations=extra)
    loaded.check_inputs(values, "--input")
    if output is not None and output.split(".")[0] not in {s.merge_field for s in loaded.steps}:
        fields = ", ".join(dict.fromkeys(s.merge_field for s in loaded.steps))
        raise click.BadParameter(
            f"{output.split('.')[0]!r} is not a merge field of flow {loaded.name!r}; "
            f"its merge fields: {fields}",
            param_hint="--output",
        )
    console = None if quiet else sys.stderr
    if rows is not None:
        assert inputs_file is not None
        check_rows(loaded, rows, inputs_file, set(values))
    if submit:
        from .worker import submit_runs

        if report_file is not None or output is not None or concurrency > 1:
            raise click.UsageError(
                "--submit queues the runs for the workers and prints their ids: --output, "
                "--report and --concurrency do not apply (`steprun show RUN` shows a run)"
            )
        queued = [row for _, row in rows] if rows else [values]
        submit_runs(state, loaded, queued, auth_file, quiet=quiet)
        return
    if rows is not None:
        assert inputs_file is not None
        run_batch(
            runtime,
            state,
            loaded,
            rows,
            inputs_file=inputs_file,
            concurrency=concurrency,
            auth_file=auth_file,
            report_file=report_file,
            log_level=log_level,
            quiet=quiet,
        )
        return

    from ..runtime import new_run_id

    run_id = new_run_id()  # known before the run starts: Ctrl-C can name it

    async def one(store: Any) -> Any:
        return await durable.start(
            runtime,
            store,
            loaded,
            run_id=run_id,
            inputs=values,
            authorizations_file=auth_file,
            log_level=log_level,
            report_file=report_file,
            console=console,
        )

    with interrupted_says_how_to_resume(run_id):
        finish(drive(runtime, state, one), output=output, quiet=quiet)


def cwd_paths(values: dict[str, Any]) -> dict[str, Any]:
    """--input values that name a file relative to the current directory, made absolute:
    a flow reads its own relative paths from its folder, but a path typed on the command
    line means what it means in the shell."""
    found = dict(values)
    for name, value in values.items():
        if isinstance(value, str) and value and "{{" not in value:
            path = Path(value).expanduser()
            if not path.is_absolute() and path.exists():
                found[name] = str(path.resolve())
    return found


def finish(result: Any, *, output: str | None = None, quiet: bool = False) -> None:
    if output is None:
        click.echo(json.dumps(result.merge_fields, indent=2, ensure_ascii=False))
    else:
        value: Any = result.merge_fields
        for key in output.split("."):
            if isinstance(value, list) and key.isdigit() and int(key) < len(value):
                value = value[int(key)]
            elif isinstance(value, dict) and key in value:
                value = value[key]
            else:
                value = None
                break
        click.echo(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False))
    if result.status != "succeeded":
        error = result.error or {}
        where = f" at step {error['step']!r}" if error.get("step") else ""
        hint = ""
        if result.status == "failed":
            hint = f"; fix the cause and `steprun resume {result.run_id}` to retry from there"
        fail(
            f"run {result.run_id} {result.status}{where}: "
            f"{error.get('message', 'unknown error')}{hint}",
            EXIT_FAILED,
        )
    run_report = result.reports[-1] if result.reports else {}
    handled = run_report.get("handled_steps") or []
    note = f" (errors handled by the flow at: {', '.join(handled)})" if handled else ""
    if not quiet:
        click.echo(f"steprun: run {result.run_id} {result.status}{note}", err=True)


@cli.command()
@click.argument("flows", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME=VALUE",
    help="An input that will be supplied at run time (repeatable).",
)
@authorizations_option("A YAML file of named authorizations.")
@handled
def validate(flows: tuple[Path, ...], inputs: tuple[str, ...], auth_file: Path | None) -> None:
    """Check FLOWS without running anything; report every problem with file:line."""
    names = list(parse_inputs(inputs))
    runtime, extra = session(auth_file)
    failed = False
    for flow in flows:
        try:
            loaded = runtime.load(flow, inputs=names, authorizations=extra)
            loaded.check_inputs(names, "--input")
        except FlowInvalid as exc:
            failed = True
            click.echo(f"{flow}: {exc}", err=True)
        except InvalidInput as exc:
            failed = True
            click.echo(f"{exc}", err=True)
        else:
            click.echo(f"{flow}: ok ({len(loaded.steps)} steps)", err=True)
    if failed:
        sys.exit(EXIT_INVALID)


__all__ = ["cwd_paths", "finish", "run", "validate"]
