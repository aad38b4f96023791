"""`steprun runs` and `steprun show`: what the run store knows about past and live runs."""

from __future__ import annotations

import json
from pathlib import Path

import click

from .common import STATE_OPTION, cli, handled, open_store


@cli.group(invoke_without_command=True)
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
@click.pass_context
def runs(ctx: click.Context, as_json: bool, limit: int, state_path: Path | None) -> None:
    """List recent runs: id, flow, status, current step, started, updated."""
    if ctx.invoked_subcommand is not None:
        return  # `steprun runs prune`
    store = open_store(state_path)
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
    store = open_store(state_path)
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


def _when(seconds: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


__all__ = ["runs", "show"]
