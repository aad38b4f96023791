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
    from ..local import serve

    serve(host=host, port=port, api_key=api_key, state_dir=state_dir, job_seconds=job_seconds)


__all__ = ["serve_local"]
