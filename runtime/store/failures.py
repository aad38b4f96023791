"""What went wrong with the run store, in words a user can act on.

Two different things fail: the file is damaged or not a steprun store (the user's input is
wrong: exit 2, move it aside), or the disk refuses to write it: full, read-only, an I/O
error (the run failed: exit 1, make room and resume). SQLite often reports a full disk as
a bare "disk I/O error", so the cause is read from the file system itself when it can be.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

from ..errors import StoreError, StoreUnavailable

# SQLite's names for a file that is not (or no longer) a database.
_DAMAGED = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
# Below this much free space an I/O error of SQLite's is a full disk.
_NEARLY_FULL = 1024 * 1024

_OS_CAUSES = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is used up",
    errno.EROFS: "its file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EIO: "the disk reported an I/O error",
}


def damaged(path: Path, exc: BaseException | str) -> StoreError:
    return StoreError(
        f"the run store {path} cannot be read ({exc}). It is damaged or not a steprun "
        "store. Nothing was run. Move it aside (e.g. `mv "
        f"{path} {path}.damaged`) to start a new store, or point --state / "
        "STEPRUN_STATE at another file; committed steps in the damaged file are not re-run "
        "by steprun on its own."
    )


def unavailable(path: Path, exc: BaseException, doing: str = "write") -> StoreUnavailable:
    then = (
        "then `steprun resume RUN` continues where the run stopped"
        if doing == "write"
        else "then run the command again"
    )
    return StoreUnavailable(
        f"cannot {doing} the run store {path}: {cause(path, exc)} ({_detail(exc)}); make "
        f"room or fix the disk, {then} (or point --state / STEPRUN_STATE at another place)"
    )


def translate(path: Path, exc: BaseException, doing: str = "write") -> StoreError:
    """The StoreError for a failure of SQLite (or the OS) on the store at ``path``."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc).lower()
    if name.startswith(_DAMAGED) or "malformed" in text or "not a database" in text:
        return damaged(path, exc)
    return unavailable(path, exc, doing)


def cause(path: Path, exc: BaseException) -> str:
    """The real cause of a failed read or write, as far as the file system tells."""
    if isinstance(exc, OSError) and exc.errno in _OS_CAUSES:
        return _OS_CAUSES[exc.errno]
    name = getattr(exc, "sqlite_errorname", "") or ""
    folder = path.parent
    try:
        fs = os.statvfs(folder)
    except OSError:
        fs = None
    if fs is not None and fs.f_flag & os.ST_RDONLY:
        return "its file system is read-only"
    if name.startswith("SQLITE_READONLY") or not _writable(path):
        return "it is read-only for this user (no permission to write it or its folder)"
    free = fs.f_bavail * fs.f_frsize if fs is not None else None
    if name == "SQLITE_FULL" or (
        free is not None and free < _NEARLY_FULL and isinstance(exc, sqlite3.OperationalError)
    ):
        return "the disk is full" + (f" ({free // 1024} KB free)" if free is not None else "")
    if name.startswith("SQLITE_IOERR"):
        return "the disk reported an I/O error"
    if name.startswith("SQLITE_CANTOPEN"):
        return "the file cannot be opened"
    return _detail(exc)


def _writable(path: Path) -> bool:
    target = path if path.exists() else path.parent
    return os.access(target, os.W_OK)


def _detail(exc: BaseException) -> str:
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return f"SQLite: {exc}"


__all__ = ["cause", "damaged", "translate", "unavailable"]
