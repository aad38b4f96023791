"""An in-memory fine-tuning API (today's /fine_tuning/jobs and the legacy /fine-tunes),
answering on the fault server so tests can mix its answers with scripted faults.

It answers what the shared OpenAPI files describe (tests check its answers against them),
and it lets a test drive a job: :meth:`FakeOpenAI.plan` lists the states a job moves
through, one per retrieval, as a real job does between two polls.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Iterator
from typing import Any

from .faultserver import Action, Reply, Request

_TERMINAL = {"succeeded", "failed", "cancelled"}
_REQUEST_FIELDS = {
    "model",
    "training_file",
    "validation_file",
    "suffix",
    "seed",
    "method",
    "hyperparameters",
    "integrations",
    "metadata",
}
_JOB = re.compile(r"^/v1/fine_tuning/jobs/([^/]+)(?:/(cancel|pause|resume|events|checkpoints))?$")
_LEGACY = re.compile(r"^/v1/fine-tunes/([^/]+)(?:/(cancel|events))?$")


class FakeOpenAI:
    def __init__(self, *, now: int | None = None) -> None:
        self.jobs: dict[str, dict[str, Any]] = {}
        self.legacy: dict[str, dict[str, Any]] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}
        self.checkpoints: dict[str, list[dict[str, Any]]] = {}
        self.creates = 0
        # (request, status, body) of every successful answer, for contract checks.
        self.answers: list[tuple[Request, int, Any]] = []
        self._request: Request | None = None
        self._plans: dict[str, Iterator[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._requests = itertools.count(1)
        # Real time: the legacy create step matches jobs created since its attempt began.
        self.now = int(time.time()) if now is None else now

    # -- driving jobs ---------------------------------------------------------------------

    def plan(self, job_id: str, *states: dict[str, Any]) -> None:
        """Each later retrieval of ``job_id`` first applies the next of ``states``.

        A state's ``_events`` (keyword arguments of :meth:`add_event`) are added with it.
        """
        self._plans[job_id] = iter(states)

    def add_checkpoint(self, job_id: str, step: int, **metrics: float) -> dict[str, Any]:
        self.now += 1
        checkpoint = {
            "object": "fine_tuning.job.checkpoint",
            "id": f"ftckpt_{next(self._ids):06d}",
            "created_at": self.now,
            "fine_tuned_model_checkpoint": f"ft:gpt-4o-mini:org::x:ckpt-step-{step}",
            "fine_tuning_job_id": job_id,
            "metrics": {"step": step, **metrics},
            "step_number": step,
        }
        self.checkpoints.setdefault(job_id, []).append(checkpoint)
        return checkpoint

    def add_event(
        self,
        job_id: str,
        message: str,
        *,
        type: str = "message",
        level: str = "info",
        data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        self.now += 1
        if job_id in self.legacy:
            event = {"object": "fine-tune-event", "created_at": self.now, "level": level}
            event["message"] = message
        else:
            event = {
                "object": "fine_tuning.job.event",
                "id": f"ftevent-{next(self._ids)}",
                "created_at": self.now,
                "level": level,
                "message": message,
                "type": type,
                "data": data if data is not None else {},
            }
        self.events.setdefault(job_id, []).append(event)
        return event

    def make_job(self, **fields: Any) -> dict[str, Any]:
        """A job that exists already (created by someone else, or earlier).

        Request fields (model, metadata, ...) create it; others (status, ...) are then set.
        """
        request = {k: v for k, v in fields.items() if k in _REQUEST_FIELDS}
        job = self._create_current({"model": "gpt-4o-mini", "training_file": "file-x", **request})
        job.update({k: v for k, v in fields.items() if k not in _REQUEST_FIELDS})
        return job

    # -- routing --------------------------------------------------------------------------

    def __call__(self, request: Request) -> Action:
        self._request = request
        path, method = request.path, request.method
        if path == "/v1/fine_tuning/jobs":
            if method == "POST":
                return self._reply(self._create_current(request.json()))
            return self._reply(self._list_current(request))
        if path == "/v1/fine-tunes":
            if method == "POST":
                return self._reply(self._create_legacy(request.json()))
            return self._reply({"object": "list", "data": list(self.legacy.values())})
        match = _JOB.match(path)
        if match:
            return self._current_job(method, match[1], match[2], request)
        match = _LEGACY.match(path)
        if match:
            return self._legacy_job(method, match[1], match[2])
        return Reply.error(404, f"Invalid URL ({method} {path})")

    def _reply(self, body: Any, status: int = 200) -> Reply:
        # Deep-copied through JSON: what the client got, frozen, to check against the spec.
        assert self._request is not None
        self.answers.append((self._request, status, json.loads(json.dumps(body))))
        return Reply.json(body, status, x_request_id=f"req_{next(self._requests):04d}")

    def _not_found(self, job_id: str) -> Reply:
        return Reply.error(
            404,
            f"Could not find fine-tune: {job_id}",
            code="fine_tune_not_found",
            param="fine_tune_id",
            x_request_id=f"req_{next(self._requests):04d}",
        )

    # -- today's API ----------------------------------------------------------------------

    def _create_current(self, body: dict[str, Any]) -> dict[str, Any]:
        self.creates += 1
        self.now += 1
        job_id = f"ftjob-{next(self._ids):06d}"
        method = body.get("method") or {
            "type": "supervised",
            "supervised": {
                "hyperparameters": body.get("hyperparameters")
                or {"batch_size": "auto", "learning_rate_multiplier": "auto", "n_epochs": "auto"}
            },
        }
        job = {
            "object": "fine_tuning.job",
            "id": job_id,
            "model": body["model"],
            "created_at": self.now,
            "error": None,
            "fine_tuned_model": None,
            "finished_at": None,
            "hyperparameters": body.get("hyperparameters")
            or {"batch_size": "auto", "learning_rate_multiplier": "auto", "n_epochs": "auto"},
            "organization_id": "org-test",
            "result_files": [],
            "status": "validating_files",
            "trained_tokens": None,
            "training_file": body["training_file"],
            "validation_file": body.get("validation_file"),
            "integrations": body.get("integrations"),
            "seed": body.get("seed", 42),
            "estimated_finish": None,
            "method": method,
            "metadata": body.get("metadata"),
        }
        self.jobs[job_id] = job
        self.add_event(job_id, f"Created fine-tuning job: {job_id}")
        return job

    def _list_current(self, request: Request) -> dict[str, Any]:
        query = request.query
        wanted = {k[len("metadata[") : -1]: v for k, v in query if k.startswith("metadata[")}
        params = dict(query)
        jobs = sorted(self.jobs.values(), key=lambda j: j["created_at"], reverse=True)
        jobs = [
            j for j in jobs if all((j.get("metadata") or {}).get(k) == v for k, v in wanted.items())
        ]
        return self._page(jobs, params)

    def _page(self, items: list[dict[str, Any]], params: dict[str, str]) -> dict[str, Any]:
        after = params.get("after")
        if after is not None:
            ids = [item["id"] for item in items]
            items = items[ids.index(after) + 1 :] if after in ids else []
        limit = int(params.get("limit", "20"))
        return {"object": "list", "data": items[:limit], "has_more": len(items) > limit}

    def _current_job(self, method: str, job_id: str, action: str | None, request: Request) -> Reply:
        job = self.jobs.get(job_id)
        if job is None:
            return self._not_found(job_id)
        if action is None and method == "GET":
            plan = self._plans.get(job_id)
            step = next(plan, None) if plan is not None else None
            if step is not None:
                for event in step.pop("_events", []):
                    self.add_event(job_id, **event)
                job.update(step)
            return self._reply(job)
        if action == "events":
            events = list(reversed(self.events.get(job_id, [])))  # newest first, as the API
            return self._reply(self._page(events, dict(request.query)))
        if action == "checkpoints":
            checkpoints = list(reversed(self.checkpoints.get(job_id, [])))
            page = self._page(checkpoints, dict(request.query))
            page["first_id"] = page["data"][0]["id"] if page["data"] else None
            page["last_id"] = page["data"][-1]["id"] if page["data"] else None
            return self._reply(page)
        if action == "cancel":
            if job["status"] in _TERMINAL:
                return Reply.error(
                    400, f"Job has already completed: {job['status']}", code="invalid_state"
                )
            job.update(status="cancelled", finished_at=self.now)
            return self._reply(job)
        if action == "pause":
            if job["status"] != "running":
                return Reply.error(400, f"Job cannot be paused: {job['status']}")
            job["status"] = "paused"
            return self._reply(job)
        if action == "resume":
            if job["status"] != "paused":
                return Reply.error(400, f"Job is not paused: {job['status']}")
            job["status"] = "running"
            return self._reply(job)
        return Reply.error(405, "method not allowed")

    # -- legacy /fine-tunes ---------------------------------------------------------------

    def _file(self, file_id: str) -> dict[str, Any]:
        return {
            "id": file_id,
            "object": "file",
            "bytes": 1024,
            "created_at": self.now - 100,
            "filename": f"{file_id}.jsonl",
            "purpose": "fine-tune",
            "status": "processed",
            "status_details": None,
        }

    def _create_legacy(self, body: dict[str, Any]) -> dict[str, Any]:
        self.creates += 1
        self.now += 1
        job_id = f"ft-{next(self._ids):06d}"
        hyperparams = {
            "n_epochs": body.get("n_epochs") or 4,
            "batch_size": body.get("batch_size") or 1,
            "prompt_loss_weight": body.get("prompt_loss_weight") or 0.01,
            "learning_rate_multiplier": body.get("learning_rate_multiplier") or 0.1,
        }
        job = {
            "id": job_id,
            "object": "fine-tune",
            "model": body.get("model") or "curie",
            "created_at": self.now,
            "updated_at": self.now,
            "fine_tuned_model": None,
            "organization_id": "org-test",
            "status": "pending",
            "hyperparams": hyperparams,
            "training_files": [self._file(body["training_file"])],
            "validation_files": (
                [self._file(body["validation_file"])] if body.get("validation_file") else []
            ),
            "result_files": [],
        }
        self.legacy[job_id] = job
        job["events"] = [self.add_event(job_id, "Created fine-tune: " + job_id)]
        return job

    def _legacy_job(self, method: str, job_id: str, action: str | None) -> Reply:
        job = self.legacy.get(job_id)
        if job is None:
            return self._not_found(job_id)
        if action is None and method == "GET":
            plan = self._plans.get(job_id)
            step = next(plan, None) if plan is not None else None
            if step is not None:
                for event in step.pop("_events", []):
                    self.add_event(job_id, **event)
                job.update(step)
            # A legacy job carries every event so far.
            job["events"] = list(self.events.get(job_id, []))
            return self._reply(job)
        if action == "events":
            return self._reply({"object": "list", "data": list(self.events.get(job_id, []))})
        if action == "cancel" and method == "POST":
            if job["status"] in _TERMINAL:
                return Reply.error(400, f"Cannot cancel a job with status {job['status']}")
            job.update(status="cancelled", updated_at=self.now)
            return self._reply(job)
        return Reply.error(405, "method not allowed")


__all__ = ["FakeOpenAI"]
