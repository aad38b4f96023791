"""Schemathesis against the live service: no 5xx, and every answer matches the document.

Driven through schemathesis' Python API (its pytest plugin does not load under this
pytest), each operation with its own Hypothesis strategy.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import checks

from .conftest import TOKEN, Service, make_service, stop

HEADERS = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    # No authorizations: generated calls can reach no API and spend nothing.
    svc = make_service(tmp_path_factory.mktemp("fuzzed"), None)
    try:
        yield svc
    finally:
        stop(svc.proc)


def test_no_server_error_and_every_answer_matches_the_document(live: Service) -> None:
    schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json", headers=HEADERS)
    checked = 0
    for found in schema.get_all_operations():
        operation = found.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=6, deadline=None, database=None, suppress_health_check=list(HealthCheck)
        )
        def check(case: schemathesis.Case) -> None:
            # Semantic refusals of schema-valid input (an authorization name the service
            # does not have, an exit to a step that does not exist) are the API's job, so
            # positive_data_acceptance is left out; everything else schemathesis checks.
            case.call_and_validate(
                headers=HEADERS, timeout=30, excluded_checks=[checks.positive_data_acceptance]
            )

        check()
        checked += 1
    assert checked >= 20  # every step type and every run route was exercised
