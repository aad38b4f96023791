"""`steprun step` (one step, one JSON object) and `steprun serve` (the HTTP step service)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..errors import InvalidInput
from .common import STATE_OPTION, cli, handled, parse_inputs


def read_config(value: str | None) -> dict[str, Any]:
    """``--config``: JSON text, ``@FILE`` (JSON or YAML) or ``-`` (JSON or YAML on stdin)."""
    if value is None:
        return {}
    where = "--config"
    if value == "-":
        text, where = sys.stdin.read(), "the config on stdin"
    elif value.startswith("@"):
        path = Path(value[1:])
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InvalidInput(f"{path}: cannot read the config: {exc}") from None
        where = str(path)
    else:
        text = value
    from ..yamlsource import load_text

    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        try:
            data = load_text(text, where).data  # YAML is a superset of JSON: one more try
        except InvalidInput as exc:
            raise InvalidInput(
                f'{where}: not JSON or YAML ({exc}); give --config \'{{"key": "value"}}\', '
                "@FILE or - for stdin"
            ) from None
    if not isinstance(data, dict):
        raise InvalidInput(
            f"{where}: a step's config is a JSON object, found {type(data).__name__}"
        )
    return data


def step_command(
    step_type: str,
    config_text: str | None,
    authorization: str | None,
    auth_file: Path | None,
    inputs: dict[str, Any],
) -> int:
    """Run one step, print its one JSON object on stdout, and return the exit code."""
    import asyncio

    from ..authorizations import read_authorizations_file
    from ..runtime import Runtime
    from ..service.onestep import EXIT_CODES, invalid, pick_authorization, run_one

    async def main() -> dict[str, Any]:
        runtime = Runtime()
        try:
            config = read_config(config_text)
            known = read_authorizations_file(auth_file, runtime.schemas) if auth_file else None
            where = f"in {auth_file}" if auth_file else "(no --authorizations file was given)"
            spec = pick_authorization(authorization, known, where=where)
            return await run_one(runtime, step_type, config, authorization=spec, inputs=inputs)
        except InvalidInput as exc:
            return invalid(exc)
        finally:
            await runtime.aclose()

    result = asyncio.run(main())
    click.echo(json.dumps(result, ensure_ascii=False, default=str))
    if result["status"] != "succeeded":
        message = (result.get("error") or {}).get("message", "")
        click.echo(f"steprun: step {step_type} {result['status']}: {message}", err=True)
    return EXIT_CODES[result["status"]]


@cli.command("step")
@click.argument("step_type")
@click.option(
    "--config",
    "config_text",
    metavar="JSON|@FILE|-",
    help="The step's config: JSON text, @FILE (JSON or YAML), or - to read stdin.",
)
@click.option("--authorization", metavar="NAME", help="Use this named authorization.")
@click.option(
    "--authorizations",
    "auth_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A YAML file of named authorizations (where --authorization is looked up).",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME=VALUE",
    help="A value the config's templates read as inputs.NAME (repeatable).",
)
@handled
def step(
    step_type: str,
    config_text: str | None,
    authorization: str | None,
    auth_file: Path | None,
    inputs: tuple[str, ...],
) -> None:
    """Run one step; print {status, output, error, report} as one JSON object.

    Exit codes as `run`: 0 succeeded, 1 failed, 2 the input was refused (the JSON
    object then says why). For shell-based tools (Kestra, scripts) that read JSON.
    """
    code = step_command(step_type, config_text, authorization, auth_file, parse_inputs(inputs))
    sys.exit(code)


@cli.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port", default=8321, show_default=True, type=click.IntRange(0, 65535), help="0: any."
)
@click.option(
    "--token-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The bearer token clients must send. Default: one is made in the state folder "
    "(service.token, readable by you only) and its path printed.",
)
@click.option(
    "--authorizations",
    "auth_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Named authorizations; requests name them, so secrets stay on this machine.",
)
@click.option(
    "--webhook-secret-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The Standard Webhooks secret (whsec_…) callbacks are signed with. Default: "
    "made in the state folder (webhook.secret) and its path printed.",
)
@click.option(
    "--step-timeout",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a POST /v1/steps/{type} may take.",
)
@click.option(
    "--submit",
    is_flag=True,
    help="Queue posted runs for `steprun worker`s instead of driving them here "
    "(needs --state postgresql://…).",
)
@STATE_OPTION
@handled
def serve(
    host: str,
    port: int,
    token_file: Path | None,
    auth_file: Path | None,
    webhook_secret_file: Path | None,
    step_timeout: float,
    submit: bool,
    state: str | None,
) -> None:
    """Serve the steps over HTTP: an OpenAPI document, one-step calls, durable runs
    with live events and signed callbacks. Every route needs the bearer token."""
    from ..service.app import ServiceSettings
    from ..service.callbacks import load_or_create_secret
    from ..service.server import read_or_create_token
    from ..service.server import serve as run_server
    from ..store import default_state, state_folder

    store: str | Path = default_state() if state is None else state
    if isinstance(store, Path) or "://" not in store:
        store = Path(store).expanduser().resolve()
    if submit:
        from .worker import postgres_url

        postgres_url(str(store), "steprun serve --submit")
    folder = state_folder(store)
    token, token_at = read_or_create_token(token_file, folder)
    secret_at = webhook_secret_file or folder / "webhook.secret"
    secret = load_or_create_secret(secret_at)
    click.echo(f"steprun: bearer token in {token_at}", err=True)
    click.echo(f"steprun: callbacks are signed with the secret in {secret_at}", err=True)
    run_server(
        ServiceSettings(
            token=token,
            state_path=store,
            webhook_secret=secret,
            authorizations_file=auth_file.resolve() if auth_file else None,
            base_dir=Path.cwd(),
            step_timeout=step_timeout,
            submit=submit,
        ),
        host=host,
        port=port,
    )


__all__ = ["read_config", "serve", "step", "step_command"]
