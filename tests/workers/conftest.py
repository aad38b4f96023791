"""The workers' tests: each gets its own store (a schema of the session's PostgreSQL
database, tests/conftest.py), whose queue lives beside it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.runtime.durable_support import reap_children


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    """No steprun child (a worker) outlives its test, even one that failed half-way."""
    yield
    reap_children()
