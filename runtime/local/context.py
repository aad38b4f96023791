"""What every handler of one backend shares: its store, clock, settings and caches.

One :class:`Context` per :class:`~steprun.runtime.local.LocalBackend`; nothing lives at
module level, so two backends in one process share nothing.
"""

from __future__ import annotations

import heapq
import itertools
import json
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from . import catalog, jobs, params
from .errors import invalid, invalid_json, model_not_found
from .faults import Faults
from .model import BASE_EXAMPLES, RetrievalModel
from .records import JobRecord, ModelRecord
from .state import Store
from .training import Example, TrainingData, parse

if TYPE_CHECKING:
    from .trainer import TrainedModel, Trainer

Clock = Callable[[], float]

CHECKPOINT_MARK = ":ckpt-step-"
# Parsed training files kept for reuse; a file is parsed again when it comes back.
PARSED_FILES_KEPT = 32
# JSON request bodies nested deeper than this are refused (Python's parser would recurse).
MAX_JSON_DEPTH = 64


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
    max_upload_bytes: int
    # The real trainer (``trainer: transformers``); None for the simulated one.
    trainer: Trainer | None = None
    rate: RateWindow = field(default_factory=RateWindow)
    _models: dict[str, RetrievalModel] = field(default_factory=dict)
    # For settle(): a heap of the unfinished jobs by the earliest instant each can end (a
    # pause only delays that), and how many of the store's jobs have been looked at (jobs
    # are only ever added, never removed).
    _due: list[tuple[float, str, JobRecord]] = field(default_factory=list, repr=False)
    _indexed: int = field(default=0, repr=False)
    # Fine-tuned models trained on the same files answer alike: one retrieval model
    # serves them all (it is immutable), instead of one built per model on its first request.
    _by_files: dict[tuple[str, ...], RetrievalModel] = field(default_factory=dict, repr=False)
    # Uploaded files never change: the recently used are parsed once, not at every job
    # created on them (the least recently used are dropped, to bound memory).
    _parsed: OrderedDict[str, TrainingData] = field(default_factory=OrderedDict, repr=False)

    @property
    def organization_name(self) -> str:
        """The organization as fine-tuned model names spell it (``org-`` dropped)."""
        return self.organization.removeprefix("org-")

    def now(self) -> float:
        return self.clock()

    def settle(self) -> None:
        """Bring every unfinished job up to now (see ``jobs.settle``).

        It runs before every request, so it looks only at the unfinished jobs whose end may
        have come, taken from a heap: going through every job ever created (or every open
        one) at each request made a server with a thousand jobs slow at everything. The
        jobs that end together are written in one transaction.
        """
        self.store.refresh()  # what another process on the same state folder changed
        now = self.now()
        known = self.store.jobs
        if len(known) < self._indexed:  # not expected (jobs are never removed): start over
            self._due.clear()
            self._indexed = 0
        if len(known) > self._indexed:
            for job in itertools.islice(known.values(), self._indexed, None):
                if job.status is None:
                    heapq.heappush(self._due, (job.created_at + jobs.end_work(job), job.id, job))
            self._indexed = len(known)
        if not self._due or self._due[0][0] > now:
            return
        with self.store.batch():
            while self._due and self._due[0][0] <= now:
                _, job_id, job = heapq.heappop(self._due)
                if job.status is None:
                    jobs.settle(self.store, job, now)
                if job.status is None:  # paused on the way: look again once it could end
                    left = max(0.0, jobs.end_work(job) - jobs.work_done(job, now))
                    heapq.heappush(self._due, (now + max(left, 0.001), job_id, job))

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

    def serving(self, model_id: str) -> tuple[catalog.Kind, RetrievalModel | TrainedModel]:
        """The kind and model answering for ``model_id``; 404 when there is none."""
        if self.trainer is not None:
            weights = self.trainer.weights(self.store, model_id)
            if weights is not None:
                record = self.fine_tuned(model_id)
                return (record.kind if record else "chat"), self.trainer.model(weights)
        record = self.fine_tuned(model_id)
        if record is not None:
            key = record.id
            if key not in self._models:
                files = tuple(record.learns_from)
                shared = self._by_files.get(files)
                if shared is None:
                    examples = [e for name in files for e in self._examples(name)]
                    shared = RetrievalModel(examples or BASE_EXAMPLES)
                    self._by_files[files] = shared
                self._models[key] = shared
            return record.kind, self._models[key]
        base = catalog.resolve(model_id)
        if base is None:
            raise model_not_found(model_id)
        if "" not in self._models:
            self._models[""] = RetrievalModel(BASE_EXAMPLES)
        return base.kind, self._models[""]

    def forget_model(self, model_id: str) -> None:
        self._models.pop(model_id, None)

    def forget_file(self, file_id: str) -> None:
        self._parsed.pop(file_id, None)

    def training_data(self, file_id: str) -> TrainingData:
        """The parsed content of an uploaded file (the recently used are kept parsed)."""
        data = self._parsed.get(file_id)
        if data is None:
            data = self._parsed[file_id] = parse(self.store.content(file_id))
            while len(self._parsed) > PARSED_FILES_KEPT:
                self._parsed.popitem(last=False)
        else:
            self._parsed.move_to_end(file_id)
        return data

    def _examples(self, file_id: str) -> list[Example]:
        """What a model learned from a file; nothing when its bytes are gone (removed by
        hand from the state folder), so the model answers like its base."""
        try:
            return self.training_data(file_id).examples
        except FileNotFoundError:
            return []


# --- request helpers -------------------------------------------------------------------------


async def json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        value = json.loads(raw)
        too_deep = _deeper_than(value, MAX_JSON_DEPTH)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise invalid_json() from None
    except RecursionError:  # deeper than Python's parser goes
        too_deep = True
    if too_deep:
        raise invalid(
            f"The JSON body of your request is nested more than {MAX_JSON_DEPTH} levels "
            "deep. Send a flatter object.",
            code="invalid_json",
        )
    return params.json_object(value)


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (without recursing)."""
    if not isinstance(value, dict | list):
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


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
