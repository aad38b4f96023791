"""The runner: walks a validated flow's exit graph, one step at a time.

For each step: pick its authorization (inherit or by name), render its config, check the
rendered config against the step's schema, run it under its timeout, store its output (or
its error object) in its merge field, report it exactly once, and follow the exit:
``next`` after success, ``on_error`` after a handled error, the flow's ``on_error`` for an
unhandled one (the run still fails after that handler ran), else the run fails. Cycles
are allowed and bounded by ``max_steps`` and the flow's ``timeout``.

A :class:`Journal` sees every step boundary; the durable run store implements it, so the
runner itself stays free of persistence.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from .errors import RunCancelled, StepError, StepTimeout, StoreError
from .flow import END, INHERIT, Flow, FlowStep
from .reports import Reporter, timestamp
from .secrets import Redactor
from .step import BEFORE_EFFECT, StepContext, StepLogger, StepResult, StepType
from .templates import TemplateProblem, is_template

if TYPE_CHECKING:
    import httpx
    from jsonschema import ValidationError

    from .authorizations import Authorization


@dataclass
class RunState:
    """Everything needed to continue a run: it is what the run store persists."""

    run_id: str
    flow: Flow
    inputs: dict[str, Any]
    position: str | None
    authorization: str | None
    merge_fields: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None
    # The unhandled error the flow's on_error handler was sent to handle: the run still
    # fails once the handler ran (as in Kestra, n8n and Airflow).
    failure: dict[str, Any] | None = None
    # Steps whose error took their own on_error exit: flow logic, named in the run report.
    handled: list[str] = field(default_factory=list)
    # The flow's on_error step has run (by any route): an unhandled error after that fails
    # the run instead of sending it back into its own failure branch.
    in_handler: bool = False
    executed: int = 0
    status: str = "running"
    started: float = field(default_factory=time.time)
    # attempts per step id, and what a started-but-unfinished attempt recorded (resume)
    attempts: dict[str, int] = field(default_factory=dict)
    unfinished: dict[str, dict[str, Any]] = field(default_factory=dict)

    def variables(self) -> Mapping[str, Any]:
        """What templates read: inputs, the merge fields, and error once one was taken."""
        return _Variables(self)


class _Variables(Mapping[str, Any]):
    """A live view (no copy: a run may hold thousands of merge fields)."""

    __slots__ = ("_state",)

    def __init__(self, state: RunState) -> None:
        self._state = state

    def __getitem__(self, key: str) -> Any:
        if key == "inputs":
            return self._state.inputs
        if key == "error":
            if self._state.error is None:
                raise KeyError(key)
            return self._state.error
        return self._state.merge_fields[key]

    def __contains__(self, key: object) -> bool:
        if key == "inputs":
            return True
        if key == "error":
            return self._state.error is not None
        return key in self._state.merge_fields

    def __iter__(self) -> Iterator[str]:
        yield "inputs"
        if self._state.error is not None:
            yield "error"
        yield from self._state.merge_fields

    def __len__(self) -> int:
        return 1 + (self._state.error is not None) + len(self._state.merge_fields)


class Journal(Protocol):
    """Told about every step boundary, before the runner goes on (the run store)."""

    async def cancelled(self, state: RunState) -> bool: ...

    async def step_started(self, state: RunState, step: FlowStep, attempt: int) -> None: ...

    async def step_checkpoint(
        self, state: RunState, step: FlowStep, data: dict[str, Any]
    ) -> None: ...

    async def step_acting(self, state: RunState, step: FlowStep) -> None:
        """A step with an effect is about to send a request that may have it: what the
        journal holds of the step must be durable first (called for each such request)."""

    async def step_finished(
        self, state: RunState, step: FlowStep, report: dict[str, Any]
    ) -> None: ...

    async def run_finished(self, state: RunState, report: dict[str, Any]) -> None: ...

    async def sleep(self, state: RunState, step: FlowStep, seconds: float) -> None: ...

    def log_line(self, state: RunState, step: FlowStep, line: dict[str, Any]) -> None:
        """A step's log line as it happens (`steprun logs --follow`); must not block."""


class NullJournal:
    async def cancelled(self, state: RunState) -> bool:
        return False

    async def step_started(self, state: RunState, step: FlowStep, attempt: int) -> None:
        return None

    async def step_checkpoint(self, state: RunState, step: FlowStep, data: dict[str, Any]) -> None:
        return None

    async def step_acting(self, state: RunState, step: FlowStep) -> None:
        return None

    async def step_finished(self, state: RunState, step: FlowStep, report: dict[str, Any]) -> None:
        return None

    async def run_finished(self, state: RunState, report: dict[str, Any]) -> None:
        return None

    async def sleep(self, state: RunState, step: FlowStep, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def log_line(self, state: RunState, step: FlowStep, line: dict[str, Any]) -> None:
        return None


@dataclass
class Services:
    """What the runner borrows from its runtime."""

    types: Mapping[str, StepType]
    # The first schema problem of a rendered config, or None when it is valid.
    config_problem: Callable[[StepType, dict[str, Any]], ValidationError | None]
    # Renders a step's config (Templates.render_config: off the event loop when costly).
    render: Callable[[Any, Mapping[str, Any]], Awaitable[Any]]
    # The runtime's client, or a function that builds it when a step first uses it.
    http: httpx.AsyncClient | Callable[[], httpx.AsyncClient]
    authorizations: Mapping[str, Authorization]
    redactor: Redactor
    reporter: Reporter
    journal: Journal
    log_level: str | None = None  # --log-level: overrides the flow's and every step's
    debug: bool = False  # STEPRUN_DEBUG: a crashing step's traceback goes to the console


class Runner:
    def __init__(self, services: Services) -> None:
        self.s = services

    async def run(self, state: RunState) -> dict[str, Any]:
        """Run from ``state.position`` to the end; returns the run report."""
        flow = state.flow
        deadline = state.started + flow.timeout if flow.timeout else None
        while state.position is not None and state.status == "running":
            step = flow.by_id[state.position]
            if await self.s.journal.cancelled(state):
                state.status = "cancelled"
                state.error = _cancelled_error(state, step.id)
                break
            if state.executed >= flow.max_steps:
                state.error = {
                    "type": "step_limit",
                    "message": (
                        f"the run executed {state.executed} steps, its limit (max_steps: "
                        f"{flow.max_steps}); a loop may never end — check its exit condition, "
                        "or raise max_steps"
                    ),
                    "code": "max_steps",
                    "param": None,
                    "status": None,
                    "request_id": None,
                    "step": step.id,
                }
                state.status = "failed"
                break
            try:
                await self._step(state, step, deadline)
            except RunCancelled:  # raised by the journal before the step itself began
                state.status = "cancelled"
                state.error = _cancelled_error(state, step.id)
        if state.failure is not None and state.status in ("running", "failed"):
            # The run's report carries the error the flow's handler was sent to handle.
            state.status = "failed"
            state.error = state.failure
        elif state.status == "running":
            state.status = "succeeded"
        report = {
            "kind": "run",
            "run_id": state.run_id,
            "flow": flow.name,
            "status": state.status,
            "started_at": timestamp(state.started),
            "ended_at": timestamp(time.time()),
            "duration_ms": round((time.time() - state.started) * 1000, 3),
            "steps_executed": state.executed,
            "handled_steps": list(dict.fromkeys(state.handled)),
            "tags": [t.to_dict() for t in flow.tags],
            "error": state.error if state.status in ("failed", "cancelled") else None,
        }
        report = self.s.reporter.run(report)
        await self.s.journal.run_finished(state, report)
        return report

    async def _step(self, state: RunState, step: FlowStep, deadline: float | None) -> None:
        flow = state.flow
        step_type = self.s.types[step.type]
        level = self.s.log_level or step.log_level or flow.log_level
        auth_name = state.authorization if step.authorization == INHERIT else step.authorization
        state.authorization = auth_name
        authorization = self.s.authorizations.get(auth_name) if auth_name else None
        attempt = state.attempts.get(step.id, 0) + 1
        state.attempts[step.id] = attempt
        resumed_from = state.unfinished.pop(step.id, None)
        state.executed += 1
        if step.id == flow.on_error:
            state.in_handler = True
        await self.s.journal.step_started(state, step, attempt)

        reporter = self.s.reporter
        log_lines: list[dict[str, Any]] = []

        def emit(
            line_level: str, message: str, fields: dict[str, Any], progress: bool = False
        ) -> None:
            message = self.s.redactor.text(message)
            fields = self.s.redactor.data(fields) if fields else fields
            line = {"time": timestamp(time.time()), "level": line_level, "message": message} | (
                {"fields": fields} if fields else {}
            )
            log_lines.append(line)
            reporter.log_line(step.id, line_level, message, fields, progress=progress)
            self.s.journal.log_line(state, step, line)

        logger = StepLogger(
            level, emit, lambda lvl, message, fields: emit(lvl, message, fields, progress=True)
        )
        started = time.time()
        clock = time.perf_counter()
        next_id: str | None
        error: dict[str, Any] | None = None
        try:
            timeout, run_deadline = self._timeout(step, deadline)
            context = StepContext(
                run_id=state.run_id,
                flow=flow.name,
                step_id=step.id,
                step_type=step.type,
                authorization=authorization,
                http=self.s.http,
                log=logger,
                timeout=timeout,
                attempt=attempt,
                resumed=resumed_from is not None,
                saved=dict(resumed_from or {}),
                base_dir=flow.base_dir,
                _sleep=lambda seconds: self.s.journal.sleep(state, step, seconds),
                _checkpoint=lambda data: self.s.journal.step_checkpoint(state, step, data),
            )
            acting = (
                None
                if step_type.effect == "none"
                else BEFORE_EFFECT.set(lambda: self.s.journal.step_acting(state, step))
            )
            try:
                async with asyncio.timeout(timeout):
                    # Rendering counts against the timeouts: they stop a costly template.
                    config = await self._config(state, step, step_type)
                    result = await step_type.run(config, context)
            except TimeoutError:
                if run_deadline:
                    raise StepTimeout(
                        f"the run exceeded its timeout ({flow.timeout:g} s) during step "
                        f"{step.id!r}",
                        code="run_timeout",
                    ) from None
                raise StepTimeout(
                    f"step {step.id!r} did not finish within its timeout ({step.timeout:g} s); "
                    "raise the step's timeout if it needs longer"
                ) from None
            finally:
                if acting is not None:
                    BEFORE_EFFECT.reset(acting)
            output, chosen = (
                (result.output, result.next) if isinstance(result, StepResult) else (result, None)
            )
            _check_json(output, step_type)
            output = self.s.redactor.data(output)
            status = "succeeded"
            if chosen is not None:
                next_id = None if chosen == END else chosen
            else:
                next_id = flow.following(step)
        except StepError as exc:
            output = error = self.s.redactor.data({**exc.to_dict(), "step": step.id})
            status, next_id = self._error_exit(state, step, exc)
        except StoreError:
            # The run store failed or this process lost the run's lease: not the step's
            # error, and no exit of the flow can handle it. The process stops.
            raise
        except RunCancelled:
            # Not an error exit: the run stops here, and the step still reports once.
            output = error = state.error = _cancelled_error(state, step.id)
            status, next_id = "failed", None
            state.status = "cancelled"
        except Exception as exc:
            # A bug in a step plugin: report it like any error, never as a traceback
            # (unless STEPRUN_DEBUG asks for one: where the bug is, for its author).
            trace = "".join(traceback.format_exception(exc))
            logger.debug(trace)
            if self.s.debug and not logger.enabled("debug"):
                reporter.say(self.s.redactor.text(trace.rstrip()))
            crash = StepError(
                f"step type {step.type} {step_type.version} crashed: "
                f"{exc.__class__.__name__}: {exc}",
                type="internal_error",
                code="step_crashed",
            )
            output = error = self.s.redactor.data({**crash.to_dict(), "step": step.id})
            status, next_id = self._error_exit(state, step, crash)
        duration = time.perf_counter() - clock
        state.merge_fields[step.merge_field] = output
        if error is not None:
            state.error = error
            if status == "error_handled":
                state.handled.append(step.id)
            elif next_id is not None and next_id == flow.on_error and state.failure is None:
                state.failure = error  # on its way to the flow's handler
        report = {
            "kind": "step",
            "run_id": state.run_id,
            "flow": flow.name,
            "step": step.id,
            "step_type": step.type,
            "step_version": step_type.version,
            "status": status,
            "started_at": timestamp(started),
            "ended_at": timestamp(started + duration),
            "duration_ms": round(duration * 1000, 3),
            "log_level": level,
            "tags": [t.to_dict() for t in (*flow.tags, *step.tags)],
            "merge_field": step.merge_field,
            "authorization": auth_name,
            "attempt": attempt,
            "error": error,
            "logs": log_lines,
        }
        report = reporter.step(report)
        if status == "failed" and next_id is None and state.status == "running":
            state.status = "failed"
        state.position = next_id
        await self.s.journal.step_finished(state, step, report)

    async def _config(self, state: RunState, step: FlowStep, step_type: StepType) -> dict[str, Any]:
        if not _has_template(step.config):
            return step.config  # checked statically before the run
        try:
            config: dict[str, Any] = await self.s.render(step.config, state.variables())
        except TemplateProblem as exc:
            raise StepError(
                f"config of step {step.id!r}: {exc.message}", type="template_error", code=exc.code
            ) from None
        problem = self.s.config_problem(step_type, config)
        if problem is not None:
            from .schemas import describe

            where = ".".join(str(p) for p in problem.absolute_path) or "config"
            raise StepError(
                f"config of step {step.id!r} after rendering templates: {where}: "
                f"{describe(problem)}",
                type="invalid_config",
                param=where,
            )
        return config

    def _timeout(self, step: FlowStep, deadline: float | None) -> tuple[float | None, bool]:
        """The step's time limit, and whether it is the run's deadline that binds."""
        if deadline is None:
            return step.timeout, False
        remaining = max(deadline - time.time(), 0.0)
        if step.timeout is not None and step.timeout < remaining:
            return step.timeout, False
        return remaining, True

    def _error_exit(
        self, state: RunState, step: FlowStep, exc: StepError
    ) -> tuple[str, str | None]:
        """The step's status and where the run goes after its error."""
        flow = state.flow
        if exc.code == "run_timeout":
            state.error = {**exc.to_dict(), "step": step.id}
            return "failed", None
        if step.on_error and step.handle_error:
            return "error_handled", None if step.on_error == END else step.on_error
        if flow.on_error and not state.in_handler:
            return "failed", flow.on_error
        state.error = {**exc.to_dict(), "step": step.id}
        return "failed", None


def _cancelled_error(state: RunState, step_id: str) -> dict[str, Any]:
    return {
        "type": "cancelled",
        "message": f"run {state.run_id} was cancelled",
        "code": "run_cancelled",
        "param": None,
        "status": None,
        "request_id": None,
        "step": step_id,
    }


def _has_template(value: Any) -> bool:
    if isinstance(value, str):
        return is_template(value)
    if isinstance(value, dict):
        return any(_has_template(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_template(v) for v in value)
    return False


def _check_json(value: Any, step_type: StepType, depth: int = 0) -> None:
    if value is None or isinstance(value, str | bool | int | float):
        return
    if depth > 100:
        raise StepError(
            f"step type {step_type.type} returned a value nested more than 100 levels deep",
            type="internal_error",
            code="bad_output",
        )
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise StepError(
                    f"step type {step_type.type} returned a mapping with a non-string key "
                    f"{key!r}; step output must be JSON",
                    type="internal_error",
                    code="bad_output",
                )
            _check_json(item, step_type, depth + 1)
        return
    if isinstance(value, list):
        for item in value:
            _check_json(item, step_type, depth + 1)
        return
    raise StepError(
        f"step type {step_type.type} returned a {type(value).__name__}, which is not JSON",
        type="internal_error",
        code="bad_output",
    )


__all__ = ["Journal", "NullJournal", "RunState", "Runner", "Services"]
