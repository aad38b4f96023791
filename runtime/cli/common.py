"""What every ``steprun`` command shares: the group, error-to-exit-code mapping, options.

The CLI is the only place that turns errors into exit codes.

Exit codes: 0 the run succeeded (handled errors included), 1 the run failed, 2 the flow or
the command line is invalid. Human progress goes to stderr; ``run`` prints the run's merge
fields as JSON on stdout. No Python traceback reaches a user (set STEPRUN_DEBUG=1 to see
one for an internal error).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from ..errors import FlowInvalid, InvalidInput, SteprunError

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2
LEVEL_CHOICE = click.Choice(["debug", "info", "warn", "error"])


def fail(message: str, code: int) -> None:
    click.echo(f"steprun: {message}", err=True)
    sys.exit(code)


def handled(fn: F) -> F:
    """Map steprun's errors (and anything unexpected) to a message and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FlowInvalid as exc:
            fail(str(exc), EXIT_INVALID)  # "N problems found:" and one line each, with file:line
        except InvalidInput as exc:
            fail(f"error: {exc}", EXIT_INVALID)
        except SteprunError as exc:
            fail(f"error: {exc}", getattr(exc, "exit_code", EXIT_FAILED))
        except KeyboardInterrupt:
            fail("interrupted", 130)
        except BrokenPipeError:
            # The reader went away (`steprun runs | head`): nothing left to say to it.
            sys.stderr.close()
            os._exit(EXIT_OK)
        except (click.ClickException, click.exceptions.Exit):
            raise  # click prints usage errors itself and exits 2
        except Exception as exc:
            if os.environ.get("STEPRUN_DEBUG"):
                traceback.print_exc()
            fail(
                f"internal error: {exc.__class__.__name__}: {exc}. This is a bug in steprun "
                "or a plugin; set STEPRUN_DEBUG=1 to see where, and please report it.",
                EXIT_FAILED,
            )

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def interrupted_says_how_to_resume(*run_ids: str, resume_id: str | None = None) -> Iterator[None]:
    """Ctrl-C: name the run(s) it stopped and the command that continues them (exit 130)."""
    try:
        yield
    except KeyboardInterrupt:
        runs = ", ".join(run_ids)
        target = resume_id or (run_ids[0] if len(run_ids) == 1 else None)
        how = f"; `steprun resume {target}` continues it" if target else ""
        fail(f"interrupted: stopped run {runs}{how}", 130)


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
            found[name.strip()] = json_value(value)
        except _NotJson:
            found[name.strip()] = value
        except ValueError as exc:
            raise click.UsageError(f"--input {name.strip()}: {exc}") from None
    return found


class _NotJson(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise ValueError(
        f"{name} is not a number JSON allows (a run's values are JSON); quote it, "
        f"'\"{name}\"', to pass the text"
    )


def json_value(text: str) -> Any:
    """``text`` read as JSON; ValueError with a sentence for what a run cannot hold (NaN,
    Infinity, nesting deeper than a step's output may be), _NotJson when it is no JSON."""
    from ..validation import MAX_NESTING, nested_deeper

    try:
        value = json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise ValueError(f"the JSON is nested more than {MAX_NESTING} levels deep") from None
    except json.JSONDecodeError as exc:
        raise _NotJson(f"not valid JSON ({exc.msg})") from None
    if nested_deeper(value, MAX_NESTING):
        raise ValueError(f"the JSON is nested more than {MAX_NESTING} levels deep")
    return value


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="steprun", prog_name="steprun")
def cli() -> None:
    """Run workflow-automation Steps from YAML flow files.

    Start with `steprun run examples/hello.yaml`, or the whole OpenAI fine-tuning
    lifecycle offline: `steprun run examples/fine_tune.yaml`.
    """


STATE_OPTION = click.option(
    "--state",
    "state",
    metavar="PATH|URL",
    envvar="STEPRUN_STATE",
    help="The run store: an SQLite file, or postgresql://USER@HOST/DB (the postgres extra). "
    "Default: ~/.local/state/steprun/runs.db, or $STEPRUN_STATE.",
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


def open_store(state: str | None) -> Any:
    from ..store import open_store as open_run_store

    return open_run_store(state)


def session(auth_file: Path | None) -> tuple[Any, dict[str, Any] | None]:
    """The runtime of one command, and the authorizations file it was given (checked)."""
    from ..authorizations import read_authorizations_file
    from ..runtime import Runtime

    runtime = Runtime()
    extra = read_authorizations_file(auth_file, runtime.schemas) if auth_file else None
    return runtime, extra


# The folder, beside the run store, where `provider: local` keeps its files and jobs.
LOCAL_STATE = "local-backend"


def drive(runtime: Any, state: str | None, work: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``work(store)`` in an event loop, closing the runtime's client and the store.

    The embedded backend keeps its state beside the store: a run killed while its job
    trains, resumed or cancelled by another process, finds the same job there.
    """
    import asyncio

    store = open_store(state)
    runtime.local_state = store.folder / LOCAL_STATE

    async def main() -> T:
        try:
            return await work(store)
        finally:
            await runtime.aclose()

    try:
        return asyncio.run(main())
    finally:
        store.close()


__all__ = [
    "EXIT_FAILED",
    "EXIT_INVALID",
    "EXIT_OK",
    "LOCAL_STATE",
    "LOG_LEVEL_OPTION",
    "STATE_OPTION",
    "authorizations_option",
    "cli",
    "drive",
    "fail",
    "handled",
    "interrupted_says_how_to_resume",
    "open_store",
    "parse_inputs",
    "report_option",
    "session",
]
