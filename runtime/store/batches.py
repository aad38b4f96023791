"""Batches: the runs of one flow over the rows of an inputs file, kept together.

A batch is recorded before its first row starts, with the flow's text and every row's
inputs: ``steprun resume BATCH`` starts the rows never started even when the inputs file
has changed or is gone since. Each run of a row carries the batch id and the row; a unique
index on the pair lets exactly one run ever start a row.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StoreError
from .rows import RunRow, dump, load
from .writer import Op


@dataclass
class BatchRow:
    row: int  # the row's line in the inputs file
    inputs: dict[str, Any]
    run: RunRow | None  # None: never started


@dataclass
class Batch:
    id: str
    flow: str
    flow_file: str
    flow_text: str
    flow_hash: str
    base_dir: str
    inputs_file: str
    authorizations_file: str | None
    concurrency: int
    started: float
    rows: list[BatchRow]


def create_ops(
    *,
    batch_id: str,
    flow: str,
    flow_file: str,
    flow_text: str,
    flow_hash: str,
    base_dir: str,
    inputs_file: str,
    authorizations_file: str | None,
    concurrency: int,
    rows: Sequence[tuple[int, dict[str, Any]]],
) -> list[Op]:
    return [
        (
            "INSERT INTO batches (id, flow, flow_file, flow_text, flow_hash, base_dir, "
            "inputs_file, authorizations_file, concurrency, started) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (
                batch_id,
                flow,
                flow_file,
                flow_text,
                flow_hash,
                base_dir,
                inputs_file,
                authorizations_file,
                concurrency,
                time.time(),
            ),
        ),
        *(
            (
                "INSERT INTO batch_rows (batch_id, line, inputs) VALUES (?,?,?)",
                (batch_id, row, dump(inputs)),
            )
            for row, inputs in rows
        ),
    ]


def row_started_ops(run_id: str, batch_id: str, row: int) -> list[Op]:
    """Mark ``run_id`` (in the transaction that creates it) as the run of that row; the
    write fails, creating no run, if another run started the row first."""
    return [
        ("UPDATE runs SET batch_id = ?, batch_row = ? WHERE id = ?", (batch_id, row, run_id)),
    ]


def read(
    fetch: Callable[[str, Sequence[Any]], list[tuple[Any, ...]]],
    path: str | Path,
    batch_id: str,
    runs_of: Callable[[str], list[RunRow]],
) -> Batch:
    """The batch ``batch_id`` (or the one it is a prefix of), its rows in row order;
    ``fetch`` is the store's read (either backend)."""
    found = fetch(
        "SELECT id, flow, flow_file, flow_text, flow_hash, base_dir, inputs_file, "
        "authorizations_file, concurrency, started FROM batches WHERE id = ? OR id LIKE ? "
        "ORDER BY id = ? DESC LIMIT 2",
        (batch_id, batch_id + "%", batch_id),
    )
    if not found:
        raise StoreError(
            f"no batch {batch_id!r} in {path}; `steprun run FLOW --inputs-file ROWS` prints "
            "the id of its batch first"
        )
    if len(found) > 1 and found[0][0] != batch_id:
        raise StoreError(f"{batch_id!r} matches several batches; give more of the batch id")
    b = found[0]
    runs = {r.batch_row: r for r in runs_of(b[0])}
    rows = [
        BatchRow(row=line, inputs=load(inputs, path, f"row {line}", b[0]), run=runs.get(line))
        for line, inputs in fetch(
            "SELECT line, inputs FROM batch_rows WHERE batch_id = ? ORDER BY line", (b[0],)
        )
    ]
    return Batch(
        id=b[0],
        flow=b[1],
        flow_file=b[2],
        flow_text=b[3],
        flow_hash=b[4],
        base_dir=b[5],
        inputs_file=b[6],
        authorizations_file=b[7],
        concurrency=b[8],
        started=b[9],
        rows=rows,
    )


__all__ = ["Batch", "BatchRow", "create_ops", "read", "row_started_ops"]
