"""What every handler of one backend shares: its store, clock, settings and caches.

One :class:`Context` per :class:`~steprun.runtime.local.LocalBackend`; nothing lives at
module level, so two backends in one process share nothing.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request

from . import catalog, jobs, params
from .errors import invalid, invalid_json, model_not_found
from .faults import Faults
from .model import BASE_EXAMPLES, RetrievalModel
from .state import ModelRecord, Store
from .training import Example

Clock = Callable[[], float]

CHECKPOINT_MARK = ":ckpt-step-"


@dataclass
class RateWindow:
    """Requests and tokens counted per minute, reported in ``x-ratelimit-*`` headers."""

    requests_limit: int = 10_000
    tokens_limit: int = 2_000_000
    started: float = 0.0
    requests: int = 0
    tokens: int = 0

    def roll(self, now: float) -> None:
        if now - self.started >= 60:
            self.started, self.requests, self.tokens = now, 0, 0


@dataclass
class Context:
    store: Store
    clock: Clock
    job_seconds: float
    organization: str
    api_key: str | None
    faults: Faults
    rate: RateWindow = field(default_factory=RateWindow)
    _models: dict[str, RetrievalModel] = field(default_factory=dict)

    @property
    def organization_name(self) -> str:
        """The organization as fine-tuned model names spell it (``org-`` dropped)."""
        return self.organization.removeprefix("org-")

    def now(self) -> float:
        return self.clock()

    def settle(self) -> None:
        """Bring every unfinished job up to now (see ``jobs.settle``)."""
        now = self.now()
        for job in list(self.store.jobs.values()):
            if job.status is None:
                jobs.settle(self.store, job, now)

    # -- models --

    def fine_tuned(self, model_id: str) -> ModelRecord | None:
        """A fine-tuned model that exists (a checkpoint name resolves to its model)."""
        name = model_id.split(CHECKPOINT_MARK, 1)[0]
        record = self.store.models.get(name)
        if record is None or record.deleted:
            return None
        if name != model_id and not self._is_checkpoint(record, model_id):
            return None
        return record

    def _is_checkpoint(self, record: ModelRecord, model_id: str) -> bool:
        job = self.store.jobs.get(record.job_id)
        if job is None:
            return False
        return any(c.model == model_id for c in jobs.checkpoints(job, self.now()))

    def serving(self, model_id: str) -> tuple[catalog.Kind, RetrievalModel]:
        """The kind and retrieval model answering for ``model_id``; 404 when there is none."""
        record = self.fine_tuned(model_id)
        if record is not None:
            key = record.id
            if key not in self._models:
                examples = [Example(*example) for example in record.examples]
                self._models[key] = RetrievalModel(examples or list(BASE_EXAMPLES))
            return record.kind, self._models[key]
        base = catalog.resolve(model_id)
        if base is None:
            raise model_not_found(model_id)
        if "" not in self._models:
            self._models[""] = RetrievalModel(BASE_EXAMPLES)
        return base.kind, self._models[""]

    def forget_model(self, model_id: str) -> None:
        self._models.pop(model_id, None)


# --- request helpers -------------------------------------------------------------------------


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        value = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise invalid_json() from None
    return params.json_object(value)


def query_int(
    request: Request, name: str, default: int, *, minimum: int = 1, maximum: int | None = None
) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise invalid(
            f"Invalid type for '{name}': expected an integer, but got a string instead.",
            param=name,
            code="invalid_type",
        ) from None
    params.check_value(name, value, params.Param(("integer",), minimum=minimum, maximum=maximum))
    return value


def page(
    items: list[Any], *, after: str | None, limit: int, key: Callable[[Any], str]
) -> tuple[list[Any], bool]:
    """A page of ``items`` (already in the listing order) after the one whose id is ``after``.

    An ``after`` that names nothing in the listing gives an empty page, so that a client
    paginating on a vanished id stops instead of starting over.
    """
    start = 0
    if after is not None:
        positions = [i for i, item in enumerate(items) if key(item) == after]
        if not positions:
            return [], False
        start = positions[0] + 1
    chunk = items[start : start + limit]
    return chunk, start + limit < len(items)


__all__ = [
    "CHECKPOINT_MARK",
    "Clock",
    "Context",
    "RateWindow",
    "json_body",
    "page",
    "query_int",
]
