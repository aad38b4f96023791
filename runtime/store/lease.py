"""Leases: two processes never drive one run at once.

A process holds a run's lease while it runs it and renews it every few seconds; a write
fenced with ``(run id, owner)`` happens only while that owner still holds it.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from typing import Any

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


def check_fence(fence: Fence, holder: str | None) -> None:
    """Raise LeaseLost unless the fence's owner is ``holder``, who holds the lease now
    (read by the backend in the transaction the fenced write commits in)."""
    run_id, owner = fence
    if holder != owner:
        taken = f"another process ({holder}) took it over" if holder else "its lease ended"
        raise LeaseLost(
            f"run {run_id} is no longer this process's to drive: {taken} while this "
            "one was not renewing its lease (stalled or suspended for more than "
            f"{LEASE_SECONDS:g} s). This process stops; `steprun show {run_id}` shows "
            "where the run is."
        )


def lease_taken(
    where: str, run_id: str, owner: str, row: Sequence[Any] | None, now: float | None = None
) -> float:
    """The new lease's expiry for ``owner``, given the run's ``(lease_owner, lease_until)``
    row read under the backend's lock; StoreError if there is no such run or a live owner
    holds it."""
    if row is None:
        raise StoreError(f"no run {run_id!r} in {where}; `steprun runs` lists them")
    holder, until = row
    now = time.time() if now is None else now
    if holder and holder != owner and until and until > now and owner_alive(holder):
        raise StoreError(
            f"run {run_id} is being run by another process ({holder}, lease until "
            f"{time.strftime('%H:%M:%S', time.localtime(until))}); wait for it to "
            "finish, or stop it with `steprun cancel " + run_id + "`"
        )
    return now + LEASE_SECONDS


__all__ = [
    "LEASE_SECONDS",
    "Fence",
    "LeaseLost",
    "check_fence",
    "lease_owner",
    "lease_taken",
    "owner_alive",
]
