"""`steprun serve-local`: the embedded OpenAI-compatible backend over HTTP."""

from __future__ import annotations

from pathlib import Path

import click

from .common import cli, handled


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
    "--api-key",
    envvar="STEPRUN_LOCAL_API_KEY",
    help="Require this bearer key on every request, the /_steprun control API included "
    "(401 otherwise; refused requests count nowhere). Without it anyone who can reach "
    "the port (on 127.0.0.1: every user of this machine) can upload, create jobs and "
    "arm faults.",
)
@click.option(
    "--state",
    "state_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep files, jobs and models in this folder across restarts (owner-only).",
)
@click.option(
    "--job-seconds",
    default=4.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="How long a fine-tuning job takes from create to its final state.",
)
@click.option(
    "--max-upload-mb",
    default=512.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="The largest file an upload may carry, in MiB (OpenAI's limit: 512).",
)
@click.option(
    "--trainer",
    type=click.Choice(["simulated", "transformers"]),
    default="simulated",
    show_default=True,
    help="simulated (jobs follow the clock) or transformers (real training; steprun[train]).",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    metavar="NAME=PATH",
    help="A base model for --trainer transformers: a folder or Hub id (repeatable).",
)
@click.option("--device", default="auto", show_default=True, help="Where to train: cpu, cuda, mps.")
@click.option(
    "--max-memory",
    metavar="SIZE",
    help="The most memory a training process may use (8GB, 512MiB); beyond it the job "
    "fails with out_of_memory.",
)
@handled
def serve_local(
    host: str,
    port: int,
    api_key: str | None,
    state_dir: Path | None,
    job_seconds: float,
    max_upload_mb: float,
    trainer: str,
    models: tuple[str, ...],
    device: str,
    max_memory: str | None,
) -> None:
    """Serve the embedded OpenAI-compatible backend over HTTP.

    It listens on 127.0.0.1 only, unless --host says otherwise: give --api-key before
    you open it to other machines.
    """
    from ..local import serve

    named = {}
    for item in models:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise click.BadParameter(f"expected NAME=PATH, got {item!r}", param_hint="--model")
        named[name] = path
    if named and trainer != "transformers":
        raise click.BadParameter("--model needs --trainer transformers", param_hint="--model")
    serve(
        host=host,
        port=port,
        api_key=api_key,
        state_dir=state_dir,
        job_seconds=job_seconds,
        max_upload_bytes=max(1, round(max_upload_mb * 2**20)),
        trainer=trainer,
        models=named,
        device=device,
        max_memory=max_memory,
    )


__all__ = ["serve_local"]
