"""`steprun runs`, `show` and `logs`: what the run store knows about past and live runs."""

from __future__ import annotations

import json
import time
from typing import Any

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
@click.option(
    "--batch",
    "batch_id",
    metavar="BATCH_ID",
    help="List the rows of this batch (`run --inputs-file`) in row order instead.",
)
@STATE_OPTION
@handled
@click.pass_context
def runs(
    ctx: click.Context, as_json: bool, limit: int, batch_id: str | None, state: str | None
) -> None:
    """List recent runs: id, status, flow, current step, started, duration.

    A run whose process died shows `interrupted`; `steprun resume RUN` continues it.
    With --batch, a batch's rows: row, run, status, duration (`not started` for a row
    no run has started yet).
    """
    if ctx.invoked_subcommand is not None:
        return  # `steprun runs prune`
    if batch_id is not None:
        _batch(batch_id, as_json, state)
        return
    store = open_store(state)
    try:
        found = store.runs(limit)
        rows = [r.public() for r in found]
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no runs yet", err=True)
        return
    table = [
        [
            r["id"],
            r["status"],
            r["flow"],
            r["current_step"] or "-",
            _when(r["started"]),
            _duration(row, r["status"]),
        ]
        for r, row in zip(rows, found, strict=True)
    ]
    _table([["RUN", "STATUS", "FLOW", "STEP", "STARTED", "DURATION"], *table])
    for r in rows:
        if r["status"] == "interrupted":
            click.echo(
                f"run {r['id']} was interrupted at step {r['current_step']!r}: "
                f"`steprun resume {r['id']}` continues it",
                err=True,
            )


def _batch(batch_id: str, as_json: bool, state: str | None) -> None:
    """A batch's rows in row order; on stderr, how to continue it if a row is unfinished."""
    store = open_store(state)
    try:
        batch = store.batch(batch_id)
    finally:
        store.close()
    rows = [
        {
            "row": r.row,
            "run": r.run.id if r.run else None,
            "status": r.run.shown_status if r.run else "not started",
            "duration_ms": round(max(r.run.updated - r.run.started, 0) * 1000, 3)
            if r.run and r.run.shown_status != "running"
            else None,
            "inputs": r.inputs,
        }
        for r in batch.rows
    ]
    if as_json:
        click.echo(json.dumps({"batch": batch.id, "flow": batch.flow, "rows": rows}, indent=2))
    else:
        click.echo(
            f"batch {batch.id}  flow {batch.flow!r}  {len(rows)} rows of {batch.inputs_file}  "
            f"started {_when(batch.started)}"
        )
        table = [
            [
                str(r["row"]),
                r["run"] or "-",
                r["status"],
                _duration(found.run, r["status"]) if found.run else "-",
            ]
            for r, found in zip(rows, batch.rows, strict=True)
        ]
        _table([["ROW", "RUN", "STATUS", "DURATION"], *table])
    unfinished = [r for r in rows if r["status"] not in ("succeeded", "cancelled", "running")]
    if unfinished:
        click.echo(
            f"{len(unfinished)} of {len(rows)} rows unfinished: `steprun resume {batch.id}` "
            "continues them",
            err=True,
        )


def _duration(row: Any, status: str) -> str:
    from ..durations import format_duration

    if status in ("running", "queued", "waiting"):  # not over yet
        return format_duration(max(time.time() - row.started, 0.001)) + " so far"
    return format_duration(max(row.updated - row.started, 0.001))


def _table(lines: list[list[str]]) -> None:
    """Columns as wide as their widest cell: nothing is cut."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


@cli.command()
@click.argument("run_id")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the run, its steps and merge fields as JSON."
)
@STATE_OPTION
@handled
def show(run_id: str, as_json: bool, state: str | None) -> None:
    """Show a run: its inputs, its steps in the order they ran with status and duration,
    and its merge fields in that order (redacted)."""
    from ..durations import format_duration

    store = open_store(state)
    try:
        row = store.run(run_id)
        attempts = store.attempts(row.id)
        stored = store.merge_fields(row.id)
    finally:
        store.close()
    order = [(a.report or {}).get("merge_field") for a in attempts]
    fields = {name: stored[name] for name in dict.fromkeys(order) if name in stored}
    fields |= stored  # any other (a run from an older store), after
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
    click.echo(f"run {row.id}  flow {row.flow!r}  {row.shown_status}  ({row.flow_file})")
    if row.batch_id:
        click.echo(f"batch {row.batch_id}  row {row.batch_row}")
    click.echo(f"inputs: {json.dumps(row.inputs, ensure_ascii=False)}")
    table = [["STEP", "TYPE", "ATTEMPT", "STATUS", "DURATION", "ERROR"]]
    for item in steps_out:
        ms = item["duration_ms"]
        took = format_duration(max(ms, 1) / 1000) if ms is not None else "unfinished"
        error = (item["error"] or {}).get("message") or ""
        table.append(
            [item["step"], item["type"], f"#{item['attempt']}", item["status"], took, error]
        )
    _table(table)
    click.echo(json.dumps(fields, indent=2, ensure_ascii=False))


def _when(seconds: float) -> str:
    import time

    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


@cli.command()
@click.argument("run_id")
@click.option(
    "--follow", "-f", is_flag=True, help="Keep printing while the run goes on, until it ends."
)
@STATE_OPTION
@handled
def logs(run_id: str, follow: bool, state: str | None) -> None:
    """Print a run's log lines and step reports from the run store (live with --follow)."""
    import time

    from ..reports import log_line_text, step_line_text

    store = open_store(state)
    try:
        row = store.run(run_id)
        click.echo(f"run {row.id} of flow {row.flow!r}")
        shown: dict[int, int] = {}  # attempt seq -> how many of its lines are printed
        reported: set[int] = set()
        while True:
            row = store.run(row.id)  # read first: what it says is all printed below
            for attempt in store.attempts(row.id):
                if attempt.seq in reported:
                    continue
                report = attempt.report
                lines = report.get("logs") if report else store.log_lines(row.id, attempt.seq)
                for line in (lines or [])[shown.get(attempt.seq, 0) :]:
                    text = log_line_text(
                        attempt.step_id, line["level"], line["message"], line.get("fields")
                    )
                    click.echo(text)
                shown[attempt.seq] = len(lines or [])
                if report:
                    click.echo(step_line_text(report))
                    reported.add(attempt.seq)
            # queued and waiting: in the workers' queue, more to come
            if not follow or row.shown_status not in ("running", "queued", "waiting"):
                break
            time.sleep(0.5)
    finally:
        store.close()
    click.echo(f"steprun: run {row.id} {row.shown_status}{_resume_hint(row)}", err=True)


def _resume_hint(row: Any) -> str:
    if row.shown_status in ("interrupted", "failed"):
        return f"; `steprun resume {row.id}` continues it"
    return ""


__all__ = ["logs", "runs", "show"]
