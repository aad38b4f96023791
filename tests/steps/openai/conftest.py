"""Fixtures of the OpenAI step pack tests: the fault server, a fake fine-tuning API served
by it, and step contexts built directly (no engine), recording logs, sleeps and checkpoints.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from steprun.runtime.authorizations import Authorization
from steprun.runtime.step import StepContext, StepLogger

from ... import contract
from .fakeapi import FakeOpenAI
from .faultserver import FaultServer, Request

# A recognisable key: no test output, error, log line or exception may ever contain it.
CANARY_KEY = "sk-canary-7f3a9c1e5b2d4f60a8e1c3b5d7f9a2c4"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def _fault_server() -> Iterator[FaultServer]:
    server = FaultServer().start()
    yield server
    server.stop()


@pytest.fixture
def fault_server(_fault_server: FaultServer) -> Iterator[FaultServer]:
    """The session's fault server, with no script, no handler and no recorded requests."""
    _fault_server.reset()
    yield _fault_server
    _fault_server.reset()


@pytest.fixture
def fake_api(fault_server: FaultServer) -> Iterator[FakeOpenAI]:
    """A small in-memory fine-tuning API (current and legacy) answering on the fault server.

    When the test is over, every request the server received (the steps' requests) and
    every answer the fake gave are checked against the shared OpenAPI files.
    """
    fake = FakeOpenAI()
    fault_server.handler = fake
    yield fake
    for request in fault_server.requests:
        check_request(request)
    for request, status, body in fake.answers:
        spec, template = contract.spec_for(request.method, request.path)
        contract.validate_response(spec, request.method, template, status, body)


def check_request(request: Request) -> None:
    """One request a step sent, against the operation the shared spec describes."""
    spec, template = contract.spec_for(request.method, request.path)
    body = request.json() if request.body else None
    # `metadata=null` is the list endpoint's documented "jobs without metadata" filter, but
    # contract.validate_query reads query values as strings and has no way to say null.
    query = [(k, v) for k, v in request.query if (k, v) != ("metadata", "null")]
    contract.validate_request(spec, request.method, template, body, query=dict(query))


@dataclass
class Harness:
    """A StepContext plus what the step did with it."""

    context: StepContext
    logs: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    checkpoints: list[dict[str, Any]] = field(default_factory=list)

    def log_text(self) -> str:
        return "\n".join(f"{level} {message} {fields}" for level, message, fields in self.logs)

    def lines(self, level: str) -> list[str]:
        return [message for lvl, message, _ in self.logs if lvl == level]


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


MakeContext = Callable[..., Harness]


@pytest.fixture
def make_context(http: httpx.AsyncClient) -> MakeContext:
    """Build a StepContext for a step run against ``base_url``.

    Sleeps are recorded and not slept (unless ``real_sleep``), so retry tests are fast.
    """

    def make(
        base_url: str,
        *,
        api_key: str | None = CANARY_KEY,
        organization: str | None = None,
        project: str | None = None,
        max_retries: int = 2,
        auth_timeout: float = 600.0,
        timeout: float | None = None,
        resumed: bool = False,
        saved: dict[str, Any] | None = None,
        run_id: str = "run-0001",
        step_id: str = "job",
        step_type: str = "openai.test",
        provider: str = "openai",
        client: httpx.AsyncClient | None = None,
        level: str = "debug",
        real_sleep: bool = False,
    ) -> Harness:
        harness_ref: list[Harness] = []

        def emit(level: str, message: str, fields: dict[str, Any]) -> None:
            harness_ref[0].logs.append((level, message, fields))

        async def sleep(seconds: float) -> None:
            harness_ref[0].sleeps.append(seconds)
            await asyncio.sleep(seconds if real_sleep else 0)

        async def checkpoint(data: dict[str, Any]) -> None:
            harness_ref[0].checkpoints.append(data)

        context = StepContext(
            run_id=run_id,
            flow="test-flow",
            step_id=step_id,
            step_type=step_type,
            authorization=Authorization(
                name="t",
                provider=provider,
                api_key=SecretStr(api_key) if api_key is not None else None,
                organization=organization,
                project=project,
                base_url=base_url,
                max_retries=max_retries,
                timeout=auth_timeout,
            ),
            http=client or http,
            log=StepLogger(level, emit),
            timeout=timeout,
            resumed=resumed,
            saved=dict(saved or {}),
            _sleep=sleep,
            _checkpoint=checkpoint,
        )
        harness = Harness(context)
        harness_ref.append(harness)
        return harness

    return make
