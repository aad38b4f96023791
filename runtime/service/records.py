"""What the service remembers beside the run store: the runs it accepted and their callbacks.

The run store knows every run; this file knows which of them the service started (so a
restarted service resumes those, and not a run some `steprun run` left behind) and where
and whether each run's callback was delivered (so a restart delivers what is owed, once).
It lives next to the run store (``service.db`` in the same folder), readable by its owner
only, since callback URLs may carry tokens.
"""

from __future__ import annotations

import os
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from ..errors import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS service_runs (
    run_id TEXT PRIMARY KEY,
    accepted REAL NOT NULL,
    callback_url TEXT,
    callback_id TEXT,
    callback_state TEXT NOT NULL DEFAULT 'none',  -- none | pending | delivered | given_up
    callback_attempts INTEGER NOT NULL DEFAULT 0,
    callback_error TEXT
)
"""


@dataclass(frozen=True)
class Accepted:
    run_id: str
    callback_url: str | None
    callback_id: str | None
    callback_state: str
    callback_attempts: int


class Records:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
            self._conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute(SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the service's records {path}: {exc}") from None

    def close(self) -> None:
        self._conn.close()

    def accept(self, run_id: str, callback_url: str | None) -> None:
        self._conn.execute(
            "INSERT INTO service_runs (run_id, accepted, callback_url, callback_id, "
            "callback_state) VALUES (?, ?, ?, ?, ?)",
            (
                run_id,
                time.time(),
                callback_url,
                f"msg_{run_id}" if callback_url else None,
                "pending" if callback_url else "none",
            ),
        )

    def get(self, run_id: str) -> Accepted | None:
        row = self._conn.execute(
            "SELECT run_id, callback_url, callback_id, callback_state, callback_attempts "
            "FROM service_runs WHERE run_id = ?",
            (run_id,),
        ).fetchone()
        return Accepted(*row) if row else None

    def all(self) -> list[Accepted]:
        rows = self._conn.execute(
            "SELECT run_id, callback_url, callback_id, callback_state, callback_attempts "
            "FROM service_runs ORDER BY accepted"
        ).fetchall()
        return [Accepted(*row) for row in rows]

    def callback_attempted(self, run_id: str, *, delivered: bool, error: str | None) -> None:
        self._conn.execute(
            "UPDATE service_runs SET callback_attempts = callback_attempts + 1, "
            "callback_state = ?, callback_error = ? WHERE run_id = ?",
            ("delivered" if delivered else "pending", error, run_id),
        )

    def callback_given_up(self, run_id: str) -> None:
        self._conn.execute(
            "UPDATE service_runs SET callback_state = 'given_up' WHERE run_id = ?", (run_id,)
        )


__all__ = ["Accepted", "Records"]
