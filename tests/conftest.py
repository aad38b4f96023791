"""What every test folder shares: the session's PostgreSQL database (see runtime/stores.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.runtime.stores import Postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """This session's PostgreSQL database (dropped at the end); a fresh schema per store."""
    found = Postgres()
    yield found
    found.drop()
