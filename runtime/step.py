"""What a step plugin sees: the step type it declares and the context it runs in.

A step is an async function ``run(config, context)`` that returns JSON (or a
:class:`StepResult` to choose its exit) and raises :class:`~steprun.runtime.errors.StepError`
to take the error exit. The context gives it its authorization, the runtime's HTTP client,
a logger at the step's level, and nothing global.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    import httpx

    from .authorizations import Authorization

# How a step touches the world, which decides what a resumed run may do with a step that
# was started but has no recorded result:
#   "none"        reads only (retrieve, list, wait, local checks): simply run it again;
#   "idempotent"  running it twice has the effect of once (cancel, delete): run it again;
#   "reconcile"   must not be repeated blindly (create a job, upload a file): the step is
#                 told it is resuming (context.resumed) and finds its earlier effect first.
#   A step with an effect has its start committed (durable runs) before its first request
#   through ``context.http`` that may have one (any method but GET, HEAD and OPTIONS), its
#   first ``context.checkpoint``, or its end, whichever comes first: one whose effect goes
#   another way (its own client, a file) checkpoints before it.
Effect = Literal["none", "idempotent", "reconcile"]

# Requests that have no effect (RFC 9110 safe methods): a step with an effect may send
# these before its start is committed (a look-up before a create).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# While a step with an effect runs: what must be done before it sends a request that may
# have one. Set by the runner (the journal commits the step's start), awaited by the
# runtime's HTTP client (http_client.py); a context variable, so it follows the step's
# task and the tasks it starts, and no other run's.
BEFORE_EFFECT: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar(
    "steprun_before_effect", default=None
)

ConfigPath = tuple[str | int, ...]

LEVELS: dict[str, int] = {"debug": 10, "info": 20, "warn": 30, "error": 40}

_TYPE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
_SEMVER_RE = re.compile(r"^\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$")


@dataclass(frozen=True, slots=True)
class StepResult:
    """Returned by a step that chooses its own success exit (``core.condition`` does)."""

    output: Any
    next: str | None = None


class StepFunction(Protocol):
    def __call__(self, config: dict[str, Any], context: StepContext) -> Awaitable[Any]: ...


@dataclass(frozen=True, slots=True)
class StepType:
    """The declaration a plugin returns from ``steprun_step_types``.

    ``schema`` is the config's JSON Schema: a dict, a path to a JSON file, or ``None`` for
    the built-in file ``schemas/<type>.schema.json``. ``exits`` lists the step ids a config
    may jump to (as ``(path, step_id)`` pairs) so that validation can check them before the
    run; only steps that choose their own exit need it. ``check`` returns what a schema
    cannot say (settings compared with each other) as ``(path, message)`` pairs; validation
    calls it on configs without templates, so a run never starts only to fail on them.
    """

    type: str
    title: str
    version: str
    run: StepFunction
    schema: Mapping[str, Any] | Path | None = None
    effect: Effect = "none"
    description: str = ""
    exits: Callable[[Mapping[str, Any]], Iterable[tuple[ConfigPath, str]]] | None = None
    check: Callable[[Mapping[str, Any]], Iterable[tuple[ConfigPath, str]]] | None = None

    def problems(self) -> list[str]:
        """What is wrong with this declaration, in words a plugin author can act on."""
        found: list[str] = []
        if not isinstance(self.type, str) or not _TYPE_RE.match(self.type):
            found.append(
                f"type {self.type!r} is not of the form 'pack.name' "
                "(lower-case letters, digits and underscores, dot-separated)"
            )
        if not isinstance(self.version, str) or not _SEMVER_RE.match(self.version):
            found.append(f"version {self.version!r} is not semver (e.g. '1.0.0')")
        if not isinstance(self.title, str) or not self.title.strip():
            found.append("title is empty")
        if not callable(self.run):
            found.append("run is not callable")
        if self.effect not in ("none", "idempotent", "reconcile"):
            found.append(f"effect {self.effect!r} is not one of none, idempotent, reconcile")
        return found


class StepLogger:
    """Log lines of one step. Lines below the step's level are dropped here, at the source."""

    __slots__ = ("_emit", "_progress", "_threshold", "level", "lines")

    def __init__(
        self,
        level: str,
        emit: Callable[[str, str, dict[str, Any]], None],
        progress: Callable[[str, str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.level = level
        self._threshold = LEVELS[level]
        self._emit = emit
        self._progress = progress
        self.lines: list[dict[str, Any]] = []

    def enabled(self, level: str) -> bool:
        return LEVELS[level] >= self._threshold

    def log(self, level: str, message: str, **fields: Any) -> None:
        if LEVELS[level] < self._threshold:
            return
        self._emit(level, message, fields)

    def debug(self, message: str, **fields: Any) -> None:
        self.log("debug", message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self.log("info", message, **fields)

    def warn(self, message: str, **fields: Any) -> None:
        self.log("warn", message, **fields)

    def error(self, message: str, **fields: Any) -> None:
        self.log("error", message, **fields)

    def progress(self, message: str, **fields: Any) -> None:
        """An info line that reports progress (a wait's heartbeat): on a terminal, the
        console shows the latest one as a single updating line; elsewhere it is a line."""
        if LEVELS["info"] < self._threshold:
            return
        (self._progress or self._emit)("info", message, fields)


async def _plain_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


async def _no_checkpoint(data: dict[str, Any]) -> None:
    return None


@dataclass(eq=False, init=False)
class StepContext:
    """Everything a step may use while it runs. Built fresh for every step execution.

    ``resumed`` is true when an earlier attempt of this very step (same run) started and
    left no result: a step with ``effect="reconcile"`` must then look for what that attempt
    did before doing it again. ``saved`` holds what the earlier attempt recorded with
    :meth:`checkpoint`.

    ``http`` may be given as a function that returns the client: it is called on the first
    use of :attr:`http`, so a run whose steps make no request never builds a client (httpx
    and an SSL context cost a quarter of a second of a cold start).
    """

    run_id: str
    flow: str
    step_id: str
    step_type: str
    authorization: Authorization | None
    log: StepLogger
    timeout: float | None
    attempt: int
    resumed: bool
    saved: dict[str, Any]
    base_dir: Path
    _sleep: Callable[[float], Awaitable[None]]
    _checkpoint: Callable[[dict[str, Any]], Awaitable[None]]

    def __init__(
        self,
        *,
        run_id: str,
        flow: str,
        step_id: str,
        step_type: str,
        authorization: Authorization | None,
        http: httpx.AsyncClient | Callable[[], httpx.AsyncClient],
        log: StepLogger,
        timeout: float | None = None,
        attempt: int = 1,
        resumed: bool = False,
        saved: dict[str, Any] | None = None,
        base_dir: Path | None = None,
        _sleep: Callable[[float], Awaitable[None]] = _plain_sleep,
        _checkpoint: Callable[[dict[str, Any]], Awaitable[None]] = _no_checkpoint,
    ) -> None:
        self.run_id = run_id
        self.flow = flow
        self.step_id = step_id
        self.step_type = step_type
        self.authorization = authorization
        self._http = http
        self.log = log
        self.timeout = timeout
        self.attempt = attempt
        self.resumed = resumed
        self.saved = {} if saved is None else saved
        self.base_dir = Path.cwd() if base_dir is None else base_dir
        self._sleep = _sleep
        self._checkpoint = _checkpoint

    @property
    def http(self) -> httpx.AsyncClient:
        """The runtime's one HTTP client."""
        if callable(self._http):
            self._http = self._http()
        return self._http

    def path(self, value: str) -> Path:
        """A file path from a config, relative to the flow file's folder."""
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else self.base_dir / candidate

    async def sleep(self, seconds: float) -> None:
        """Wait. With a run store, the wake-up time is persisted so a resumed run keeps it."""
        await self._sleep(seconds)

    async def checkpoint(self, **data: Any) -> None:
        """Record JSON facts about this attempt (durably, with a run store) before an effect."""
        self.saved.update(data)
        await self._checkpoint(dict(self.saved))


__all__ = [
    "BEFORE_EFFECT",
    "LEVELS",
    "SAFE_METHODS",
    "Effect",
    "StepContext",
    "StepFunction",
    "StepLogger",
    "StepResult",
    "StepType",
]
