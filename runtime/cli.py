"""The ``steprun`` command line. The only place that turns errors into exit codes.

Exit codes: 0 the run succeeded (handled errors included), 1 the run failed, 2 the flow or
the command line is invalid. Human progress goes to stderr; ``run`` prints the run's merge
fields as JSON on stdout. No Python traceback reaches a user (set STEPRUN_DEBUG=1 to see
one for an internal error).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .errors import FlowInvalid, InvalidInput, SteprunError

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
LEVEL_CHOICE = click.Choice(["debug", "info", "warn", "error"])


def _fail(message: str, code: int) -> None:
    click.echo(f"steprun: {message}", err=True)
    sys.exit(code)


def handled(fn: F) -> F:
    """Map steprun's errors (and anything unexpected) to a message and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FlowInvalid as exc:
            _fail(str(exc), EXIT_INVALID)  # "N problems found:" and one line each, with file:line
        except InvalidInput as exc:
            _fail(f"error: {exc}", EXIT_INVALID)
        except SteprunError as exc:
            _fail(f"error: {exc}", getattr(exc, "exit_code", EXIT_FAILED))
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except BrokenPipeError:
            # The reader went away (`steprun runs | head`): nothing left to say to it.
            sys.stderr.close()
            os._exit(EXIT_OK)
        except (click.ClickException, click.exceptions.Exit):
            raise  # click prints usage errors itself and exits 2
        except Exception as exc:
            if os.environ.get("STEPRUN_DEBUG"):
                traceback.print_exc()
            _fail(
                f"internal error: {exc.__class__.__name__}: {exc}. This is a bug in steprun "
                "or a plugin; set STEPRUN_DEBUG=1 to see where, and please report it.",
                EXIT_FAILED,
            )

    return wrapper  # type: ignore[return-value]


def parse_inputs(pairs: tuple[str, ...]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs; VALUE is read as JSON when it is JSON (3, true, [1]), else text."""
    found: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise click.UsageError(
                f"--input expects NAME=VALUE, found {pair!r}; for example "
                "--input training_file=data/support.jsonl"
            )
        try:
            found[name.strip()] = json.loads(value)
        except ValueError:
            found[name.strip()] = value
    return found


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="steprun", prog_name="steprun")
def cli() -> None:
    """Run workflow-automation Steps from YAML flow files.

    Start with `steprun run examples/hello.yaml`, or the whole OpenAI fine-tuning
    lifecycle offline: `steprun run examples/fine_tune.yaml`.
    """


STATE_OPTION = click.option(
    "--state",
    "state_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="STEPRUN_STATE",
    help="The run store (SQLite). Default: ~/.local/state/steprun/runs.db, or $STEPRUN_STATE.",
)


def authorizations_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--authorizations",
        "auth_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help=help,
    )


def report_option(help: str) -> Callable[[F], F]:
    return click.option(
        "--report", "report_file", type=click.Path(dir_okay=False, path_type=Path), help=help
    )


LOG_LEVEL_OPTION = click.option(
    "--log-level", type=LEVEL_CHOICE, help="Override the log level of the flow and every step."
)


def _open_store(state_path: Path | None) -> Any:
    from .store import RunStore, default_path

    return RunStore(state_path or default_path())


def _session(auth_file: Path | None) -> tuple[Any, dict[str, Any] | None]:
    """The runtime of one command, and the authorizations file it was given (checked)."""
    from .authorizations import read_authorizations_file
    from .runtime import Runtime

    runtime = Runtime()
    extra = read_authorizations_file(auth_file, runtime.schemas) if auth_file else None
    return runtime, extra


def _drive(runtime: Any, state_path: Path | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(store)`` in an event loop, closing the runtime's client and the store."""
    import asyncio

    store = _open_store(state_path)

    async def main() -> T:
        try:
            return await work(store)
        finally:
            await runtime.aclose()

    try:
        return asyncio.run(main())
    finally:
        store.close()


def read_rows(path: Path) -> list[dict[str, Any]]:
    """Input rows from a JSON Lines file: one JSON object (of inputs) per line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read: {exc.strerror or exc}") from None
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"{path}:{number}: not valid JSON ({exc.msg}); each line holds one JSON "
                'object of inputs, e.g. {"training_file": "data/a.jsonl"}'
            ) from None
        if not isinstance(row, dict):
            raise InvalidInput(
                f"{path}:{number}: expected a JSON object of inputs, found {type(row).__name__}"
            )
        rows.append(row)
    if not rows:
        raise InvalidInput(f"{path}: holds no rows; write one JSON object of inputs per line")
    return rows


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
    help="JSON Lines of inputs: one run per line.",
)
@click.option(
    "--concurrency",
    default=1,
    show_default=True,
    type=click.IntRange(1, 10000),
    help="With --inputs-file: how many runs at once.",
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
    concurrency: int,
    auth_file: Path | None,
    report_file: Path | None,
    log_level: str | None,
    state_path: Path | None,
) -> None:
    """Validate FLOW, then run it durably; print its merge fields as JSON on stdout.

    The run id is printed first (on stderr): if the process dies, `steprun resume RUN_ID`
    continues where it stopped. With --inputs-file, one run per line, printed as JSON Lines.
    """
    from . import durable

    values = parse_inputs(inputs)
    rows = [{**row, **values} for row in read_rows(inputs_file)] if inputs_file else None
    runtime, extra = _session(auth_file)
    names = set(values) | (set().union(*(set(r) for r in rows)) if rows else set())
    loaded = runtime.load(flow, inputs=names, authorizations=extra)
    if rows is not None:
        for number, row in enumerate(rows, start=1):
            missing = sorted(set(names) - set(row) - set(loaded.inputs))
            if missing:
                raise InvalidInput(
                    f"{inputs_file}: row {number} has no {', '.join(missing)}, which other rows "
                    "set and the flow has no default for; give every row the same inputs"
                )

    async def one(store: Any) -> Any:
        return await durable.start(
            runtime,
            store,
            loaded,
            inputs=values,
            authorizations_file=auth_file,
            log_level=log_level,
            report_file=report_file,
            console=sys.stderr,
        )

    async def many(store: Any) -> Any:
        assert rows is not None
        sink = report_file.open("w", encoding="utf-8") if report_file else None
        try:
            return await durable.start_many(
                runtime,
                store,
                loaded,
                rows,
                concurrency=concurrency,
                authorizations_file=auth_file,
                log_level=log_level,
                report_file=sink,
                console=sys.stderr,
            )
        finally:
            if sink is not None:
                sink.close()

    result = _drive(runtime, state_path, one if rows is None else many)
    if isinstance(result, list):
        for item in result:
            click.echo(
                json.dumps(
                    {
                        "run_id": item.run_id,
                        "status": item.status,
                        "merge_fields": item.merge_fields,
                        "error": item.error,
                    },
                    ensure_ascii=False,
                )
            )
        failed = sum(1 for r in result if r.status != "succeeded")
        click.echo(f"steprun: {len(result) - failed} of {len(result)} runs succeeded", err=True)
        if failed:
            sys.exit(EXIT_FAILED)
        return
    _finish(result)


def _finish(result: Any) -> None:
    click.echo(json.dumps(result.merge_fields, indent=2, ensure_ascii=False))
    if result.status != "succeeded":
        error = result.error or {}
        where = f" at step {error['step']!r}" if error.get("step") else ""
        hint = ""
        if result.status == "failed":
            hint = f"; fix the cause and `steprun resume {result.run_id}` to retry from there"
        _fail(
            f"run {result.run_id} {result.status}{where}: "
            f"{error.get('message', 'unknown error')}{hint}",
            EXIT_FAILED,
        )
    click.echo(f"steprun: run {result.run_id} {result.status}", err=True)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of runs.")
@click.option(
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(1, 100000),
    help="How many of the most recent runs.",
)
@STATE_OPTION
@handled
def runs(as_json: bool, limit: int, state_path: Path | None) -> None:
    """List recent runs: id, flow, status, current step, started, updated."""
    store = _open_store(state_path)
    try:
        rows = [r.public() for r in store.runs(limit)]
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no runs yet", err=True)
        return
    for r in rows:
        click.echo(
            f"{r['id']}  {r['status']:<9}  {r['flow']:<24}  step={r['current_step'] or '-':<16}  "
            f"started={_when(r['started'])}  updated={_when(r['updated'])}"
        )


@cli.command()
@click.argument("run_id")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the run, its steps and merge fields as JSON."
)
@STATE_OPTION
@handled
def show(run_id: str, as_json: bool, state_path: Path | None) -> None:
    """Show a run: its steps with status and duration, and its merge fields (redacted)."""
    store = _open_store(state_path)
    try:
        row = store.run(run_id)
        attempts = store.attempts(row.id)
        fields = store.merge_fields(row.id)
    finally:
        store.close()
    steps_out = [
        {
            "step": a.step_id,
            "type": a.step_type,
            "attempt": a.attempt,
            "status": a.status,
            "duration_ms": round((a.ended - a.started) * 1000, 3) if a.ended else None,
            "error": (a.report or {}).get("error"),
        }
        for a in attempts
    ]
    if as_json:
        click.echo(
            json.dumps({**row.public(), "steps": steps_out, "merge_fields": fields}, indent=2)
        )
        return
    click.echo(f"run {row.id}  flow {row.flow!r}  {row.status}  ({row.flow_file})")
    for item in steps_out:
        took = f"{item['duration_ms']:.0f} ms" if item["duration_ms"] is not None else "unfinished"
        line = (
            f"  {item['step']:<20} {item['type']:<36} #{item['attempt']} "
            f"{item['status']:<13} {took}"
        )
        if item["error"]:
            line += f"  {item['error'].get('message')}"
        click.echo(line)
    click.echo(json.dumps(fields, indent=2, ensure_ascii=False))


@cli.command()
@click.argument("run_id")
@authorizations_option(
    "A YAML file of named authorizations (default: the one the run started with)."
)
@report_option("Write the reports of the resumed steps to this file.")
@LOG_LEVEL_OPTION
@STATE_OPTION
@handled
def resume(
    run_id: str,
    auth_file: Path | None,
    report_file: Path | None,
    log_level: str | None,
    state_path: Path | None,
) -> None:
    """Continue RUN_ID where it stopped: after a crash, a kill, or a failed step."""
    from . import durable

    runtime, extra = _session(auth_file)
    result = _drive(
        runtime,
        state_path,
        lambda store: durable.resume(
            runtime,
            store,
            run_id,
            authorizations=extra,
            log_level=log_level,
            report_file=report_file,
            console=sys.stderr,
        ),
    )
    _finish(result)


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
def cancel(run_id: str, cancel_jobs: bool, auth_file: Path | None, state_path: Path | None) -> None:
    """Stop RUN_ID (a live process stops at its next step or wait); print the outcome as JSON."""
    from . import durable

    runtime, extra = _session(auth_file)
    outcome = _drive(
        runtime,
        state_path,
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
        _fail(f"{len(failed)} job(s) could not be cancelled; see above", EXIT_FAILED)


def _when(seconds: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


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
    runtime, extra = _session(auth_file)
    failed = False
    for flow in flows:
        try:
            loaded = runtime.load(flow, inputs=names, authorizations=extra)
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


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as JSON.")
@handled
def steps(as_json: bool) -> None:
    """List the step types: type, version, title."""
    from .runtime import Runtime

    runtime = Runtime()
    rows = [
        {"type": t.type, "version": t.version, "title": t.title, "effect": t.effect}
        for t in runtime.step_types.values()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    width = max((len(r["type"]) for r in rows), default=4)
    for row in rows:
        click.echo(f"{row['type']:<{width}}  {row['version']:<7}  {row['title']}")


@cli.command()
@click.argument("step_type")
@handled
def schema(step_type: str) -> None:
    """Print the config JSON Schema of STEP_TYPE (or of the flow file: `steprun schema flow`)."""
    from .runtime import Runtime

    runtime = Runtime()
    found = runtime.schemas.builtin("flow.schema.json") if step_type == "flow" else None
    click.echo(json.dumps(found or runtime.step_schema(step_type), indent=2))


@cli.command("serve-local")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    default=8765,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port (0 picks a free one).",
)
@click.option(
    "--api-key", envvar="STEPRUN_LOCAL_API_KEY", help="Require this bearer key (401 otherwise)."
)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep files, jobs and models in this folder across restarts.",
)
@click.option(
    "--job-seconds",
    default=4.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="How long a fine-tuning job takes from create to its final state.",
)
@handled
def serve_local(
    host: str, port: int, api_key: str | None, state_dir: Path | None, job_seconds: float
) -> None:
    """Serve the embedded OpenAI-compatible backend over HTTP (no network, no key)."""
    from .local import serve

    serve(host=host, port=port, api_key=api_key, state_dir=state_dir, job_seconds=job_seconds)


def main() -> None:
    cli(prog_name="steprun")


__all__ = ["cli", "main", "parse_inputs"]
