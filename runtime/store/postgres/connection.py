"""Connecting to PostgreSQL: the URL (its password never shown), psycopg, errors in words.

psycopg is imported only here and only when a ``postgresql://`` store is opened, so the
core install (SQLite) does not need the ``postgres`` extra.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from ...errors import StoreError, StoreUnavailable

SCHEMES = ("postgresql://", "postgres://")
# Our tables live in their own schema: the database may hold Procrastinate's tables (the
# workers) or an application's, and a `runs` table of theirs must never be taken for ours.
# `?schema=NAME` in the URL picks another one: several stores in one database.
SCHEMA = "steprun"
_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")

_PASSWORD = re.compile(r"^(\w+://[^:/@]*:)([^@]*)(@)")
_PASSWORD_PARAM = re.compile(r"(password=)[^&\s]*", re.IGNORECASE)


def is_postgres_url(state: object) -> bool:
    return isinstance(state, str) and state.lower().startswith(SCHEMES)


def redact(url: str) -> str:
    """The URL as it may be shown: ``postgresql://user:***@host/db``."""
    return _PASSWORD_PARAM.sub(r"\1***", _PASSWORD.sub(r"\1***\3", url))


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise StoreError(
            "--state postgresql://… needs PostgreSQL support, which is not installed; "
            "install it with `pip install 'steprun[postgres]'`"
        ) from None
    return psycopg


def split_schema(url: str) -> tuple[str, str]:
    """The URL libpq is given (without our ``schema`` parameter), and the schema."""
    base, _, query = url.partition("?")
    kept, schema = [], SCHEMA
    for pair in query.split("&") if query else []:
        key, _, value = pair.partition("=")
        if key == "schema":
            schema = value
        else:
            kept.append(pair)
    if not _IDENTIFIER.fullmatch(schema):
        raise StoreError(
            f"--state {redact(url)}: schema={schema!r} is not a schema name steprun can use; "
            "use lower-case letters, digits and _ (e.g. schema=steprun_team_a)"
        )
    return base + ("?" + "&".join(kept) if kept else ""), schema


def connect(url: str) -> Connection:
    """An autocommit connection whose ``search_path`` is the store's schema."""
    psycopg = _psycopg()
    conninfo, schema = split_schema(url)
    # Named, so that an operator sees steprun's connections in pg_stat_activity.
    named = {} if "application_name" in conninfo else {"application_name": "steprun"}
    try:
        conn = psycopg.connect(conninfo, autocommit=True, connect_timeout=10, **named)
    except psycopg.Error as exc:
        missing = re.search(r'database "([^"]+)" does not exist', str(exc))
        if missing:  # a mistyped URL, or a database nobody created yet: the input (exit 2)
            raise StoreError(
                f"--state {redact(url)}: the server has no database {missing[1]!r}; create "
                f"it (`createdb {missing[1]}`) or correct the URL"
            ) from None
        raise unavailable(url, exc, "connect to") from None
    except Exception as exc:  # a URL libpq cannot parse is a ProgrammingError, or worse
        raise StoreError(
            f"--state {redact(url)} is not a PostgreSQL URL steprun can use "
            f"({scrub(url, exc)}); write it as postgresql://USER[:PASSWORD]@HOST[:PORT]/DATABASE"
        ) from None
    try:
        conn.execute(f"SET search_path TO {schema}")
    except psycopg.Error as exc:
        conn.close()
        raise unavailable(url, exc, "open") from None
    return Connection(conn, schema)


class Connection:
    """A psycopg connection that takes the stores' portable SQL (``?`` placeholders)."""

    def __init__(self, conn: Any, schema: str) -> None:
        self.raw = conn
        self.schema = schema  # where our tables are (the search_path)

    def execute(self, sql: str, params: Any = ()) -> Any:
        return self.raw.execute(qmark(sql), params or None)

    @property
    def broken(self) -> bool:
        return bool(self.raw.broken or self.raw.closed)

    def close(self) -> None:
        self.raw.close()


@functools.lru_cache(maxsize=256)
def qmark(sql: str) -> str:
    """SQL with ``?`` placeholders, as psycopg takes it (``%s``; a literal ``%`` doubled).

    Our statements hold no ``?`` or ``%`` inside string literals, so a plain replace is
    exact for them.
    """
    return sql.replace("%", "%%").replace("?", "%s")


def scrub(url: str, exc: BaseException) -> str:
    """An error's text with the URL's password (if any) taken out."""
    text = str(exc).strip().replace("\n", " ")
    found = _PASSWORD.match(url)
    if found and found[2]:
        text = text.replace(found[2], "***")
    return text


def unavailable(url: str, exc: BaseException, doing: str = "write") -> StoreUnavailable:
    then = (
        "then `steprun resume RUN` continues where the run stopped"
        if doing == "write"
        else "then run the command again"
    )
    return StoreUnavailable(
        f"cannot {doing} the run store {redact(url)}: {scrub(url, exc)}; check that "
        f"PostgreSQL is running and reachable with that URL, {then}"
    )


__all__ = [
    "SCHEMA",
    "Connection",
    "connect",
    "is_postgres_url",
    "qmark",
    "redact",
    "split_schema",
    "unavailable",
]
