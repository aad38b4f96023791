"""The PostgreSQL run store (``--state postgresql://…``): one store shared by many processes
and machines, with the SQLite store's journal, leases and fencing.

``store`` (the RunStore), ``schema`` (tables and version), ``connection`` (connecting,
the URL with its password hidden, errors in words).
"""

from __future__ import annotations

from .connection import is_postgres_url, redact
from .store import PostgresStore

__all__ = ["PostgresStore", "is_postgres_url", "redact"]
