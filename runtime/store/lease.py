"""Leases: two processes never drive one run at once.

A process holds a run's lease while it runs it and renews it every few seconds; a write
fenced with ``(run id, owner)`` happens only while that owner still holds it.
"""

from __future__ import annotations

import os
import socket
import sqlite3

from ..errors import StoreError

LEASE_SECONDS = 30.0

Fence = tuple[str, str]  # (run id, lease owner) a write is only valid for


def lease_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def owner_alive(owner: str) -> bool:
    """Whether the process holding a lease still exists (only knowable on this host)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine: trust the lease's expiry
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LeaseLost(StoreError):
    """This process no longer holds the lease of the run it was driving."""

    exit_code = 1


def check_fence(conn: sqlite3.Connection, fence: Fence) -> None:
    """Raise LeaseLost unless the fence's owner still holds its run's lease."""
    run_id, owner = fence
    row = conn.execute("SELECT lease_owner FROM runs WHERE id = ?", (run_id,)).fetchone()
    holder = row[0] if row else None
    if holder != owner:
        taken = f"another process ({holder}) took it over" if holder else "its lease ended"
        raise LeaseLost(
            f"run {run_id} is no longer this process's to drive: {taken} while this "
            "one was not renewing its lease (stalled or suspended for more than "
            f"{LEASE_SECONDS:g} s). This process stops; `steprun show {run_id}` shows "
            "where the run is."
        )


__all__ = ["LEASE_SECONDS", "Fence", "LeaseLost", "check_fence", "lease_owner", "owner_alive"]
