"""Batches on the command line: `run --inputs-file` and `resume BATCH_ID`.

Each row's line goes to stdout as soon as the row finishes, in completion order, carrying
its row: a slow row holds back no other, a consumer sees results while the batch runs,
and a Ctrl-C loses none of the lines already earned (`sort` by row, or `steprun runs
--batch ID`, gives row order). A row is its line in the inputs file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, Any

import click

from ..errors import InvalidInput
from .common import EXIT_FAILED, drive, fail, json_value, open_store

Rows = list[tuple[int, dict[str, Any]]]


def read_rows(path: Path) -> Rows:
    """Input rows from a JSON Lines file, each with its line number: one JSON object (of
    inputs) per line, blank lines skipped. Every bad line is named, not only the first."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read: {exc.strerror or exc}") from None
    rows: Rows = []
    bad: list[str] = []
    for number, raw in enumerate(data.splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            bad.append(f"{path}:{number}: not UTF-8 text (byte {exc.start + 1}); save it as UTF-8")
            continue
        if not line.strip():
            continue
        try:
            row = json_value(line)
        except ValueError as exc:
            bad.append(
                f"{path}:{number}: {exc}; each line holds one JSON object of inputs, "
                'e.g. {"training_file": "data/a.jsonl"}'
            )
            continue
        if not isinstance(row, dict):
            bad.append(
                f"{path}:{number}: expected a JSON object of inputs, found {type(row).__name__}"
            )
            continue
        rows.append((number, row))
    _refuse(bad)
    if not rows:
        raise InvalidInput(f"{path}: holds no rows; write one JSON object of inputs per line")
    return rows


def check_rows(flow: Any, rows: Rows, path: Path, given: set[str]) -> None:
    """Every row's inputs against the flow, each problem named by file:line and row: an
    input the flow does not have, or one that other rows set and this row lacks."""
    from ..errors import InvalidInput

    names = given.union(*(set(row) for _, row in rows))
    bad = []
    for line, row in rows:
        where = f"{path}:{line}: row {line}"
        try:
            flow.check_inputs(row, where)
        except InvalidInput as exc:
            bad.append(str(exc))
            continue
        missing = sorted(names - set(row) - set(flow.inputs))
        if missing:
            bad.append(
                f"{where} has no {', '.join(missing)}, which other rows set and the flow has "
                "no default for; give every row the same inputs"
            )
    _refuse(bad)


def _refuse(bad: list[str]) -> None:
    if bad:
        raise InvalidInput(bad[0] if len(bad) == 1 else f"{len(bad)} bad lines:\n" + "\n".join(bad))


def run_batch(
    runtime: Any,
    state: str | None,
    flow: Any,
    rows: Rows,
    *,
    inputs_file: Path,
    concurrency: int,
    auth_file: Path | None,
    report_file: Path | None,
    log_level: str | None,
    quiet: bool,
) -> None:
    """Record the batch, run its rows, print one line per row; exit 0, 1 or 130."""
    from .. import durable
    from ..reports import ensure_writable

    ensure_writable(report_file)  # before the batch id is said: no batch is recorded
    batch_id = durable.new_batch_id()
    console = None if quiet else sys.stderr
    if console is not None:
        click.echo(
            f"batch {batch_id}: {len(rows)} rows of {inputs_file}, {concurrency} at a time "
            f"(`steprun runs --batch {batch_id}` lists them)",
            err=True,
        )

    async def work(store: Any) -> list[Any]:
        with _sink(report_file) as sink:
            return await durable.start_batch(
                runtime,
                store,
                flow,
                rows,
                batch_id=batch_id,
                inputs_file=inputs_file,
                concurrency=concurrency,
                on_row=_echo,
                authorizations_file=auth_file,
                log_level=log_level,
                report_file=sink,
                console=console,
                active=active,
            )

    active: set[int] = set()
    _finish(batch_id, _driven(runtime, state, batch_id, work, active), quiet)


def resume_batch(
    runtime: Any,
    state: str | None,
    batch_id: str,
    *,
    authorizations: dict[str, Any] | None,
    concurrency: int | None,
    report_file: Path | None,
    log_level: str | None,
) -> None:
    """Resume the batch's unfinished rows and start those never started; print a line for
    every row of the batch (the ones done before first, as stored)."""
    from .. import durable

    async def work(store: Any) -> list[Any]:
        with _sink(report_file) as sink:
            return await durable.resume_batch(
                runtime,
                store,
                batch_id,
                on_row=_echo,
                concurrency=concurrency,
                authorizations=authorizations,
                log_level=log_level,
                report_file=sink,
                console=sys.stderr,
                active=active,
            )

    store = open_store(state)
    try:
        batch_id = store.batch(batch_id).id  # a prefix names it; an unknown id exits 2 here
    finally:
        store.close()
    active: set[int] = set()
    _finish(batch_id, _driven(runtime, state, batch_id, work, active), quiet=False)


class _sink:
    """The report file all rows share (one open file, not one per row), or None."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.file: IO[str] | None = None

    def __enter__(self) -> IO[str] | None:
        from ..reports import ensure_writable

        if self.path is not None:
            ensure_writable(self.path)  # else one sentence naming --report, exit 2
            self.file = self.path.open("w", encoding="utf-8")
        return self.file

    def __exit__(self, *_: object) -> None:
        if self.file is not None:
            self.file.close()


def _echo(outcome: Any) -> None:
    click.echo(json.dumps(outcome.line(), ensure_ascii=False))
    sys.stdout.flush()  # a line is a row's result: a reader of the pipe sees it now


def _driven(
    runtime: Any, state: str | None, batch_id: str, work: Any, active: set[int]
) -> list[Any]:
    try:
        found: list[Any] = drive(runtime, state, work)
    except KeyboardInterrupt:
        _interrupted(state, batch_id, active)
        raise  # not reached: _interrupted exits
    return found


def _finish(batch_id: str, outcomes: list[Any], quiet: bool) -> None:
    failed = sorted((o for o in outcomes if o.status != "succeeded"), key=lambda o: o.row)
    if failed or not quiet:
        said = f"steprun: batch {batch_id}: {len(outcomes) - len(failed)} of {len(outcomes)} "
        said += "rows succeeded"
        if failed:
            said += f" ({', '.join(f'row {o.row} {o.status}' for o in failed)})"
        if any(o.status != "cancelled" for o in failed):  # a cancelled run stays cancelled
            said += f"; `steprun resume {batch_id}` retries them"
        click.echo(said, err=True)
    if failed:
        sys.exit(EXIT_FAILED)


def _interrupted(state: str | None, batch_id: str, active: set[int]) -> None:
    """Ctrl-C: name the batch, the runs in flight and the command that continues it (130).

    The runs are read back from the store: a row whose run was being recorded when the
    interrupt hit is either there, or not started (and a resume starts it).
    """
    from ..errors import StoreError

    try:
        store = open_store(state)
        try:
            rows = store.batch(batch_id).rows
        finally:
            store.close()
    except StoreError:
        fail(f"interrupted before batch {batch_id} was recorded: no row ran", 130)
        return
    flight = [r for r in rows if r.row in active and r.run is not None]
    never = [r for r in rows if r.run is None]
    others = [
        r
        for r in rows
        if r.run is not None
        and r.row not in active
        and r.run.status not in ("succeeded", "cancelled")
    ]
    said = f"interrupted: stopped batch {batch_id}"
    if flight:
        runs = ", ".join(f"row {r.row} (run {r.run.id})" for r in flight if r.run is not None)
        said += f"; rows in flight: {runs}"
    if others:  # failed, or interrupted before this process
        said += f"; {len(others)} other rows unfinished"
    if never:
        said += f"; {len(never)} rows not started yet"
    fail(f"{said}; `steprun resume {batch_id}` continues it", 130)


__all__ = ["check_rows", "read_rows", "resume_batch", "run_batch"]
