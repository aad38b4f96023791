"""The runtime: what a platform embeds, and what the CLI drives.

    async with Runtime() as runtime:
        result = await runtime.run("flow.yaml", inputs={"training_file": "data.jsonl"})
        outcome = await runtime.run_step("core.set", {"value": 1})

A runtime owns its plugin manager, its step catalog, its providers, its template engine,
its one HTTP client (with each in-process provider, such as the embedded backend of
``provider: local``, mounted at its origin) and nothing global: two runtimes in one
process share no state (only compiled templates, which hold nothing of either).
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets as _random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from . import authorizations as auth
from .errors import FlowInvalid, InvalidInput, Problem, RunFailed, SecretError
from .flow import INHERIT, Flow
from .in_process import InProcess
from .packs import LAZY_PACKS, Catalog, Packs
from .plugins import collect_providers, collect_step_types, make_plugin_manager
from .providers import Provider, authorization_schema
from .reports import Reporter
from .runner import Journal, NullJournal, Runner, RunState, Services
from .schemas import SchemaRegistry
from .secrets import Redactor
from .step import StepType
from .templates import Templates
from .validation import StepTypes, Validator, resolve_schema
from .yamlsource import MAX_BYTES, Source, from_data, load_text, too_large

if TYPE_CHECKING:
    import httpx
    from jsonschema import Draft202012Validator, ValidationError

FlowSource = str | os.PathLike[str] | Mapping[str, Any]
# How many valid rendered configs a runtime remembers before it starts over.
MAX_REMEMBERED_CONFIGS = 4096


@dataclass
class RunResult:
    """What a run leaves: its merge fields, its reports and, if it failed, the error."""

    run_id: str
    flow: str
    status: str
    merge_fields: dict[str, Any]
    reports: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None

    @property
    def succeeded(self) -> bool:
        return self.status == "succeeded"

    def raise_for_status(self) -> RunResult:
        if self.status == "failed":
            message = (self.error or {}).get("message", "the run failed")
            raise RunFailed(message, self.error)
        return self


def new_run_id() -> str:
    """Sortable by start time, unique without coordination."""
    return f"run_{int(time.time() * 1000):011x}{_random.token_hex(5)}"


class Runtime:
    """One embedded steprun: plugins, step catalog, providers, HTTP client."""

    def __init__(
        self,
        *,
        plugins: Iterable[object] = (),
        autoload: bool | None = None,
        environ: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        self.plugin_manager = pm = make_plugin_manager(
            plugins=plugins, autoload=autoload, environ=self.environ, defer=LAZY_PACKS
        )
        # The OpenAI and eval packs are imported when a flow names one of their types or a
        # provider, or when the whole catalog is listed (see .packs): a flow of core steps
        # starts without them.
        packs = Packs(pm, LAZY_PACKS)
        self.step_types: Mapping[str, StepType] = Catalog(
            packs, lambda: collect_step_types(pm), packs.for_type
        )
        self.providers: Mapping[str, Provider] = Catalog(
            packs, lambda: collect_providers(pm), lambda _name: packs.for_providers()
        )
        self.schemas = SchemaRegistry(authorization=lambda: authorization_schema(self.providers))
        self.templates = Templates()
        self._catalog = StepTypes(self.step_types, self.schemas)
        self._validator = Validator(self._catalog, self.templates, self.providers)
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        # In-process providers (the embedded backend), built on first use.
        self._in_process = InProcess(self.providers)
        # Rendered configs known to be valid (see _config_problem); validators live as long
        # as the runtime, so their ids are stable keys.
        self._valid_configs: set[tuple[int, str]] = set()

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> Runtime:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self.templates.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None
        self._in_process.close()

    @property
    def http(self) -> httpx.AsyncClient:
        """The runtime's one HTTP client (created in the running event loop)."""
        if self._http is None:
            from .http_client import new_client

            self._http = new_client(
                transport=self._transport,
                mounts=self._in_process.mounts(),
                timeout=auth.DEFAULT_TIMEOUT,
            )
        return self._http

    @property
    def local_state(self) -> Path | None:
        """Where in-process providers (the embedded backend) keep their state when no
        authorization says: the CLI sets it beside the run store, so that a run resumed by
        another process finds its jobs; None keeps it in memory."""
        return self._in_process.state_dir

    @local_state.setter
    def local_state(self, folder: Path | None) -> None:
        self._in_process.state_dir = folder

    def in_process(self, name: str) -> Any:
        """The in-process provider ``name`` of this runtime (built on first use), e.g. the
        embedded backend of ``local``; platforms and tests use it to arm faults."""
        return self._in_process.get(name)

    @property
    def local_backend(self) -> Any:
        """The embedded backend (``provider: local``) of this runtime, built on first use."""
        return self.in_process("local")

    # -- flows -----------------------------------------------------------------------

    def load(
        self,
        source: FlowSource,
        *,
        inputs: Iterable[str] = (),
        authorizations: Mapping[str, Any] | None = None,
    ) -> Flow:
        """Read and validate a flow from a path, YAML text or a dict; FlowInvalid if wrong."""
        document, base_dir = read_source(source)
        return self._validator.validate(
            document, base_dir=base_dir, inputs=inputs, authorizations=authorizations
        )

    def load_text(
        self,
        text: str,
        *,
        file: str,
        base_dir: Path,
        inputs: Iterable[str] = (),
        authorizations: Mapping[str, Any] | None = None,
    ) -> Flow:
        """A flow from its text, named ``file``, its paths relative to ``base_dir``.

        For flows known by their text rather than their file: the run store keeps the flow
        as it was when the run started, whatever the file says now.
        """
        return self._validator.validate(
            load_text(text, file), base_dir=base_dir, inputs=inputs, authorizations=authorizations
        )

    def validate(self, source: FlowSource, *, inputs: Iterable[str] = ()) -> list[Problem]:
        """Every problem of a flow (empty when it is valid)."""
        try:
            self.load(source, inputs=inputs)
        except FlowInvalid as exc:
            return exc.problems
        return []

    async def run(
        self,
        source: FlowSource | Flow,
        *,
        inputs: Mapping[str, Any] | None = None,
        authorizations: Mapping[str, Any] | None = None,
        log_level: str | None = None,
        report_file: Path | IO[str] | None = None,
        console: IO[str] | None = None,
        journal: Journal | None = None,
        run_id: str | None = None,
    ) -> RunResult:
        """Validate and run a flow. Raises InvalidInput before any effect if it is wrong."""
        inputs = dict(inputs or {})
        flow = (
            source
            if isinstance(source, Flow)
            else self.load(source, inputs=inputs, authorizations=authorizations)
        )
        state = RunState(
            run_id=run_id or new_run_id(),
            flow=flow,
            inputs={**flow.inputs, **inputs},
            position=flow.steps[0].id,
            authorization=flow.authorization,
        )
        return await self.resume(
            state, log_level=log_level, report_file=report_file, console=console, journal=journal
        )

    async def resume(
        self,
        state: RunState,
        *,
        log_level: str | None = None,
        report_file: Path | IO[str] | None = None,
        console: IO[str] | None = None,
        journal: Journal | None = None,
        resolved_authorizations: Mapping[str, auth.Authorization] | None = None,
    ) -> RunResult:
        """Run ``state`` from its position to the end (a new run starts at its first step)."""
        flow = state.flow
        redactor = Redactor()
        resolved = self._resolve_authorizations(flow, redactor, resolved_authorizations or {})
        reporter = Reporter(
            redactor=redactor,
            hook=self.plugin_manager,
            console=console,
            report_file=report_file,
        )
        reporter.say(f"run {state.run_id} of flow {flow.name!r}")
        runner = Runner(
            Services(
                types=self.step_types,
                config_problem=self._config_problem,
                render=self.templates.render_config,
                http=lambda: self.http,  # built when a step first uses it
                authorizations=resolved,
                redactor=redactor,
                reporter=reporter,
                journal=journal or NullJournal(),
                debug=bool(self.environ.get("STEPRUN_DEBUG")),
                log_level=log_level,
            )
        )
        try:
            run_report = await runner.run(state)
        finally:
            reporter.close()
        return RunResult(
            run_id=state.run_id,
            flow=flow.name,
            status=state.status,
            merge_fields=redactor.data(state.merge_fields),
            reports=reporter.reports,
            error=run_report.get("error"),
        )

    def run_sync(self, source: FlowSource | Flow, **options: Any) -> RunResult:
        """:meth:`run` for callers without an event loop; closes the HTTP client after."""

        async def main() -> RunResult:
            try:
                return await self.run(source, **options)
            finally:
                await self.aclose()

        return asyncio.run(main())

    # -- one step --------------------------------------------------------------------

    async def run_step(
        self,
        step_type: str,
        config: Mapping[str, Any],
        *,
        authorization: auth.Authorization | Mapping[str, Any] | None = None,
        inputs: Mapping[str, Any] | None = None,
        log_level: str = "info",
        console: IO[str] | None = None,
        base_dir: Path | None = None,
    ) -> RunResult:
        """Run one step, as a platform that owns its own flow engine does.

        ``authorization`` is an :class:`Authorization` or a spec as a flow would write it
        (``{"provider": "openai", "api_key": "${env:OPENAI_API_KEY}"}``). The step's config
        may use templates over ``inputs``. The result's merge field ``result`` holds the
        output, or the error object if the step failed (status ``failed``).
        """
        spec: dict[str, Any] = {
            "flow": f"step:{step_type}",
            "log_level": log_level,
            "steps": [{"id": "result", "type": step_type, "config": dict(config)}],
        }
        extra: dict[str, Any] = {}
        if authorization is not None and isinstance(authorization, auth.Authorization):
            spec["authorization"] = authorization.name
            extra[authorization.name] = authorization
        elif authorization is not None:
            spec["authorization"] = "step"
            spec["authorizations"] = {"step": dict(authorization)}
        if inputs:
            spec["inputs"] = dict(inputs)
        flow = self._validator.validate(
            from_data(spec, file=f"<step {step_type}>"),
            base_dir=base_dir or Path.cwd(),
            authorizations={k: {"provider": v.provider} for k, v in extra.items()},
        )
        state = RunState(
            run_id=new_run_id(),
            flow=flow,
            inputs=dict(inputs or {}),
            position="result",
            authorization=flow.authorization,
        )
        return await self.resume(state, console=console, resolved_authorizations=extra)

    # -- helpers ---------------------------------------------------------------------

    def prepare(self, flow: Flow) -> dict[str, auth.Authorization]:
        """Resolve every authorization a run of ``flow`` can use, or raise SecretError.

        Running does this itself; call it to learn of a missing secret before recording
        anything about a run (the durable store does).
        """
        return self._resolve_authorizations(flow, Redactor(), {})

    def _schema_validator(self, step_type: StepType) -> Draft202012Validator:
        return self.schemas.validator(self._catalog.schema(step_type))

    def _config_problem(
        self, step_type: StepType, config: dict[str, Any]
    ) -> ValidationError | None:
        """The first problem (by path) of a step's rendered config, or None if it is valid.

        Valid configs are remembered by their JSON text: checking one with jsonschema was the
        largest cost of a step of the engine's own (bench/concurrent_runs.py), and a flow run
        over many rows renders the same config, run after run, for every step whose
        templates do not read the row.
        """
        schema = self._catalog.schema(step_type)
        if self.schemas.surely_valid(schema, config):
            return None  # decided without jsonschema (schema_check)
        validator = self._schema_validator(step_type)
        try:
            key: tuple[int, str] | None = (
                id(validator),
                json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False),
            )
        except (TypeError, ValueError):  # not plain JSON: check it every time
            key = None
        if key is not None and key in self._valid_configs:
            return None
        problems: list[ValidationError] = sorted(
            validator.iter_errors(config), key=lambda e: list(e.absolute_path)
        )
        if problems:
            return problems[0]
        if key is not None:
            if len(self._valid_configs) >= MAX_REMEMBERED_CONFIGS:
                self._valid_configs.clear()
            self._valid_configs.add(key)
        return None

    def step_schema(self, step_type: str) -> Mapping[str, Any]:
        found = self.step_types.get(step_type)
        if found is None:
            import difflib

            close = difflib.get_close_matches(step_type, list(self.step_types), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else "; run `steprun steps`"
            raise InvalidInput(f"unknown step type {step_type!r}{hint}")
        return resolve_schema(found, self.schemas)

    def _resolve_authorizations(
        self, flow: Flow, redactor: Redactor, preset: Mapping[str, auth.Authorization]
    ) -> dict[str, auth.Authorization]:
        """Resolve, before any effect, every authorization a step of this run can use.

        Only those: a flow may define an authorization for another environment whose
        secret is not set here, and that must not stop a run that never uses it.
        """
        used = {flow.authorization} | {
            s.authorization for s in flow.steps if s.authorization != INHERIT
        }
        resolved: dict[str, auth.Authorization] = {}
        for name in sorted(n for n in used if n):
            given = preset.get(name)
            if given is not None:
                if given.api_key is not None:
                    redactor.add(given.api_key.get_secret_value())
                resolved[name] = given
                continue
            try:
                resolved[name] = auth.resolve_authorization(
                    name,
                    flow.authorizations[name],
                    environ=self.environ,
                    base_dir=flow.base_dir,
                    redactor=redactor,
                    providers=self.providers,
                )
            except SecretError as exc:
                line = flow.source.line(("authorizations", name))
                where = f"{flow.file}:{line}" if line else flow.file
                raise SecretError(f"{where}: {exc}") from None
        return self._in_process.register(
            resolved, default=flow.authorization, base_dir=flow.base_dir
        )


def _looks_like_text(source: str) -> bool:
    """Whether a str is a flow document rather than a path (a Path is always a path)."""
    head = source.lstrip()
    return "\n" in source or head.startswith(("{", "flow:", "---", "#"))


def read_source(source: FlowSource) -> tuple[Source, Path]:
    """A flow document from a path, YAML text or a dict, and the folder paths are relative to."""
    if isinstance(source, Mapping):
        return from_data(source), Path.cwd()
    if isinstance(source, str) and _looks_like_text(source):
        return load_text(source, "<string>"), Path.cwd()
    path = Path(source)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise too_large(str(path), size)  # said without reading it into memory
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such flow file; check the path") from None
    except IsADirectoryError:
        raise InvalidInput(f"{path} is a folder; give the path of a flow file") from None
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            f"{path}: not UTF-8 text (byte {exc.start}); save the flow file as UTF-8"
        ) from None
    except OSError as exc:
        raise InvalidInput(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return load_text(text, str(path)), path.parent.resolve()


__all__ = [
    "MAX_REMEMBERED_CONFIGS",
    "FlowSource",
    "RunResult",
    "Runtime",
    "new_run_id",
    "read_source",
]
