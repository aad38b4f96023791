"""Which run store a command opens: ``--state`` / ``STEPRUN_STATE`` picks the backend.

A ``postgresql://`` (or ``postgres://``) URL opens the PostgreSQL store; anything else is
the path of an SQLite file. The default is ``$XDG_STATE_HOME/steprun/runs.db``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from .base import RunStore
from .postgres.connection import is_postgres_url, redact

STATE_ENV = "STEPRUN_STATE"


def default_folder(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_STATE_HOME/steprun`` (~/.local/state/steprun): the default store's folder."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "steprun"


def default_state(environ: Mapping[str, str] | None = None) -> str | Path:
    """``$STEPRUN_STATE`` (a path or a PostgreSQL URL), else the default SQLite file."""
    env = os.environ if environ is None else environ
    state = env.get(STATE_ENV)
    if state:
        return state if is_postgres_url(state) else Path(state).expanduser()
    return default_folder(env) / "runs.db"


def default_path(environ: Mapping[str, str] | None = None) -> Path:
    """The default SQLite store: ``$STEPRUN_STATE``, else ``~/.local/state/steprun/runs.db``."""
    env = os.environ if environ is None else environ
    if env.get(STATE_ENV):
        return Path(env[STATE_ENV]).expanduser()
    return default_folder(env) / "runs.db"


def open_store(
    state: str | Path | None = None, *, retention: float | str | None = "env"
) -> RunStore:
    """The run store ``state`` names (None: ``default_state()``), opened."""
    if state is None:
        state = default_state()
    if is_postgres_url(state):
        from .postgres import PostgresStore

        return PostgresStore(str(state), retention=retention)
    from .sqlite import SQLiteStore

    return SQLiteStore(Path(state).expanduser(), retention=retention)


def state_folder(state: str | Path) -> Path:
    """The local folder for files kept beside the store ``state`` names (the service's
    token and records, ``provider: local``'s jobs): the SQLite file's folder, or
    ``default_folder()`` for a PostgreSQL store."""
    if is_postgres_url(state):
        return default_folder()
    return Path(state).expanduser().resolve().parent


def describe(state: str | Path) -> str:
    """``state`` as it may be printed (a URL's password hidden)."""
    return redact(str(state)) if is_postgres_url(state) else str(state)


__all__ = [
    "STATE_ENV",
    "default_folder",
    "default_path",
    "default_state",
    "describe",
    "open_store",
    "state_folder",
]
