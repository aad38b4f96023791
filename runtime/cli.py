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
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from .errors import FlowInvalid, InvalidInput, SteprunError

F = TypeVar("F", bound=Callable[..., Any])

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
            _fail(f"invalid flow: {exc}", EXIT_INVALID)
        except InvalidInput as exc:
            _fail(f"error: {exc}", EXIT_INVALID)
        except SteprunError as exc:
            _fail(f"error: {exc}", getattr(exc, "exit_code", EXIT_FAILED))
        except KeyboardInterrupt:
            _fail("interrupted", 130)
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
    "--authorizations",
    "auth_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A YAML file of named authorizations (keeps secrets out of the flow).",
)
@click.option(
    "--report",
    "report_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write one JSON object per step, and one for the run, to this file.",
)
@click.option(
    "--log-level", type=LEVEL_CHOICE, help="Override the log level of the flow and every step."
)
@handled
def run(
    flow: Path,
    inputs: tuple[str, ...],
    auth_file: Path | None,
    report_file: Path | None,
    log_level: str | None,
) -> None:
    """Validate FLOW, then run it; print its merge fields as JSON on stdout."""
    from .authorizations import read_authorizations_file
    from .runtime import Runtime

    values = parse_inputs(inputs)
    runtime = Runtime()
    extra = read_authorizations_file(auth_file, runtime.schemas) if auth_file else None
    result = runtime.run_sync(
        flow,
        inputs=values,
        authorizations=extra,
        log_level=log_level,
        report_file=report_file,
        console=sys.stderr,
    )
    click.echo(json.dumps(result.merge_fields, indent=2, ensure_ascii=False))
    if result.status == "failed":
        error = result.error or {}
        where = f" at step {error['step']!r}" if error.get("step") else ""
        _fail(
            f"run {result.run_id} failed{where}: {error.get('message', 'unknown error')}",
            EXIT_FAILED,
        )
    click.echo(f"steprun: run {result.run_id} {result.status}", err=True)


@cli.command()
@click.argument("flows", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME=VALUE",
    help="An input that will be supplied at run time (repeatable).",
)
@click.option(
    "--authorizations",
    "auth_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A YAML file of named authorizations.",
)
@handled
def validate(flows: tuple[Path, ...], inputs: tuple[str, ...], auth_file: Path | None) -> None:
    """Check FLOWS without running anything; report every problem with file:line."""
    from .authorizations import read_authorizations_file
    from .runtime import Runtime

    names = list(parse_inputs(inputs))
    runtime = Runtime()
    extra = read_authorizations_file(auth_file, runtime.schemas) if auth_file else None
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
    default=6.0,
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
