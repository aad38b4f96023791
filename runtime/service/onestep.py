"""One step, one JSON object: what ``steprun step`` prints and ``POST /v1/steps/{type}`` answers.

    {"status": "succeeded" | "failed" | "invalid", "output": …, "error": …, "report": …}

``output`` is the step's JSON result (for ``openai.*`` steps, the API object), ``error``
the error object a merge field would hold (``{type, message, code, param, status,
request_id, step}``), ``report`` the step's report (redacted, like every report).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import FlowInvalid, InvalidInput

if TYPE_CHECKING:
    from ..runtime import RunResult, Runtime

EXIT_CODES = {"succeeded": 0, "failed": 1, "invalid": 2}


def outcome(result: RunResult) -> dict[str, Any]:
    """The JSON object of a one-step run."""
    report = next((r for r in result.reports if r.get("kind") == "step"), None)
    succeeded = result.status == "succeeded"
    return {
        "status": "succeeded" if succeeded else "failed",
        "output": result.merge_fields.get("result") if succeeded else None,
        "error": None if succeeded else (result.error or result.merge_fields.get("result")),
        "report": report,
    }


def invalid(exc: InvalidInput) -> dict[str, Any]:
    """The JSON object for input that was refused before the step ran (exit 2, HTTP 400)."""
    error: dict[str, Any] = {"type": "invalid_input", "message": str(exc)}
    if isinstance(exc, FlowInvalid):
        # A one-step flow is built from the request: its file and line mean nothing to
        # the caller, the config path does.
        problems: list[dict[str, Any]] = [
            {"path": _step_path(p.path), "message": p.message} for p in exc.problems
        ]
        error["message"] = "; ".join(
            f"{p['path']}: {p['message']}" if p["path"] else p["message"] for p in problems
        )
        error["problems"] = problems
    return {"status": "invalid", "output": None, "error": error, "report": None}


def _step_path(path: str | None) -> str | None:
    """``steps[0].config.x`` -> ``config.x``: the caller sent a config, not a flow."""
    return path.removeprefix("steps[0].") if path else path


async def run_one(
    runtime: Runtime,
    step_type: str,
    config: Mapping[str, Any],
    *,
    authorization: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    base_dir: Path | None = None,
) -> dict[str, Any]:
    """Run one step and describe it as one JSON object; refused input is described too."""
    try:
        result = await runtime.run_step(
            step_type,
            config,
            authorization=authorization,
            inputs=inputs,
            base_dir=base_dir,
        )
    except InvalidInput as exc:
        return invalid(exc)
    return outcome(result)


def pick_authorization(
    name: str | None, authorizations: Mapping[str, Any] | None, *, where: str
) -> dict[str, Any] | None:
    """The authorization spec called ``name`` from an authorizations file, or None."""
    if name is None:
        return None
    known = dict(authorizations or {})
    if name not in known:
        listed = ", ".join(sorted(known)) or "none"
        raise InvalidInput(
            f"authorization {name!r} is not defined {where} (defined: {listed}); "
            "define it in the authorizations file"
        )
    return dict(known[name])


__all__ = ["EXIT_CODES", "invalid", "outcome", "pick_authorization", "run_one"]
