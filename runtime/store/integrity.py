"""When the run store checks itself: after an unclean shutdown, or when asked.

``PRAGMA quick_check`` reads the whole file (about 1.4 ms per MB), so running it on every
open made every command slower as the store grew. SQLite in WAL mode with
``synchronous=FULL`` survives a killed process; a check is worth its cost after something
went wrong. So each process that opens the store leaves a marker file in
``<store>-open/`` and removes it when it closes the store. A marker whose process is gone
means that process ended without closing it (killed, crashed, power cut): the next open
checks the file, and clears the marker once the file is sound. ``steprun check`` runs the
full ``integrity_check`` on request.

One cheap test runs on every open: a file whose size disagrees with the page count its
header records (a truncated copy) is damaged, whatever the markers say.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sqlite3
import uuid
from pathlib import Path

from .lease import owner_alive

_HEADER = 100


class OpenMarker:
    """This process's marker that it has the store open."""

    def __init__(self, path: Path) -> None:
        self.folder = Path(f"{path}-open")
        self.mine = self.folder / f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.stale: list[Path] = []

    def enter(self) -> bool:
        """Leave this process's marker; return whether a check is needed (a process that
        had the store open ended without closing it, or no marker can be left)."""
        try:
            self.folder.mkdir(mode=0o700, exist_ok=True)
            self.stale = [m for m in self.folder.iterdir() if not _alive(m.name)]
            self.mine.touch(mode=0o600)
        except OSError:
            return True  # nothing tells whether the last shutdown was clean
        return bool(self.stale)

    def checked(self) -> None:
        """The file was found sound: the markers of dead processes are dealt with."""
        for marker in self.stale:
            with contextlib.suppress(OSError):
                marker.unlink()
        self.stale = []

    def leave(self) -> None:
        with contextlib.suppress(OSError):
            self.mine.unlink()
        with contextlib.suppress(OSError):
            self.folder.rmdir()  # only when no other process has the store open


def _alive(marker: str) -> bool:
    host, _, rest = marker.partition(":")
    pid = rest.partition(":")[0]
    return owner_alive(f"{host}:{pid}")


def size_problem(path: Path) -> str | None:
    """A disagreement between the file's size and its header, checked without SQLite."""
    if Path(f"{path}-wal").exists():
        return None  # pages may live in the WAL until the next checkpoint
    try:
        with path.open("rb") as handle:
            header = handle.read(_HEADER)
        size = path.stat().st_size
    except OSError:
        return None  # SQLite's own open says what is wrong
    if len(header) < _HEADER or not header.startswith(b"SQLite format 3\x00"):
        return None
    page_size = int.from_bytes(header[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    pages = int.from_bytes(header[28:32], "big")
    # The count is valid only when the change counter matches "version-valid-for".
    if header[24:28] != header[92:96] or pages == 0:
        return None
    if size < pages * page_size:
        return f"the file holds {size} bytes, its header says {pages * page_size}"
    return None


def quick_check(conn: sqlite3.Connection) -> str:
    """``ok``, or what SQLite's quick check found first."""
    return str(conn.execute("PRAGMA quick_check").fetchone()[0])


def full_check(conn: sqlite3.Connection) -> list[str]:
    """Every problem ``PRAGMA integrity_check`` finds (at most 100); empty when sound."""
    found = [str(row[0]) for row in conn.execute("PRAGMA integrity_check(100)")]
    return [] if found == ["ok"] else found


__all__ = ["OpenMarker", "full_check", "quick_check", "size_problem"]
