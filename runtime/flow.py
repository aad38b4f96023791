"""The flow model: a validated flow file as typed objects the runner walks.

Built only from a document that passed the flow schema (see ``validation``), so the
constructors here convert and apply defaults but do not re-check.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .durations import parse_duration
from .yamlsource import Source

END = "end"
INHERIT = "inherit"
DEFAULT_MAX_STEPS = 10_000


@dataclass(frozen=True, slots=True)
class Tag:
    category: str
    label: str
    value: str | int | float | bool

    def to_dict(self) -> dict[str, Any]:
        return {"category": self.category, "label": self.label, "value": self.value}


@dataclass(slots=True)
class FlowStep:
    id: str
    type: str
    index: int
    config: dict[str, Any] = field(default_factory=dict)
    authorization: str = INHERIT
    merge_field: str = ""
    next: str | None = None  # None: the next step in the list (or the end)
    on_error: str | None = None
    handle_error: bool = True
    log_level: str | None = None
    tags: tuple[Tag, ...] = ()
    timeout: float | None = None
    line: int | None = None


@dataclass(slots=True)
class Flow:
    name: str
    steps: list[FlowStep]
    source: Source
    base_dir: Path
    log_level: str = "info"
    timeout: float | None = None
    max_steps: int = DEFAULT_MAX_STEPS
    tags: tuple[Tag, ...] = ()
    authorization: str | None = None
    authorizations: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs: dict[str, Any] = field(default_factory=dict)
    on_error: str | None = None
    description: str = ""
    by_id: dict[str, FlowStep] = field(default_factory=dict)
    read_inputs: frozenset[str] = frozenset()  # inputs.NAME read by templates (validation)

    def check_inputs(self, names: Iterable[str], where: str) -> None:
        """InvalidInput (exit 2) for a name given as an input that the flow neither declares
        nor reads: a typo would otherwise run silently with the default."""
        known = sorted(set(self.inputs) | self.read_inputs)
        unknown = sorted(set(names) - set(known))
        if not unknown:
            return
        import difflib

        from .errors import InvalidInput

        name = unknown[0]
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        listed = ", ".join(known) if known else "none"
        raise InvalidInput(
            f"{where}: flow {self.name!r} ({self.file}) has no input {name!r}.{hint} "
            f"Its inputs: {listed}."
        )

    @property
    def file(self) -> str:
        return self.source.file

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.source.text.encode("utf-8")).hexdigest()

    def following(self, step: FlowStep) -> str | None:
        """Where a step's success exit leads when it sets no ``next``."""
        if step.next is not None:
            return None if step.next == END else step.next
        if step.index + 1 < len(self.steps):
            return self.steps[step.index + 1].id
        return None


def _tags(raw: Any) -> tuple[Tag, ...]:
    return tuple(Tag(t["category"], t["label"], t["value"]) for t in raw or ())


def build_flow(source: Source, base_dir: Path) -> Flow:
    data: Mapping[str, Any] = source.data
    steps = []
    for index, raw in enumerate(data["steps"]):
        timeout = raw.get("timeout")
        steps.append(
            FlowStep(
                id=raw["id"],
                type=raw["type"],
                index=index,
                config=dict(raw.get("config") or {}),
                authorization=raw.get("authorization", INHERIT),
                merge_field=raw.get("merge_field") or raw["id"],
                next=raw.get("next"),
                on_error=raw.get("on_error"),
                handle_error=raw.get("handle_error", True),
                log_level=raw.get("log_level"),
                tags=_tags(raw.get("tags")),
                timeout=parse_duration(timeout) if timeout is not None else None,
                line=source.line(("steps", index)),
            )
        )
    timeout = data.get("timeout")
    flow = Flow(
        name=data["flow"],
        steps=steps,
        source=source,
        base_dir=base_dir,
        log_level=data.get("log_level", "info"),
        timeout=parse_duration(timeout) if timeout is not None else None,
        max_steps=data.get("max_steps", DEFAULT_MAX_STEPS),
        tags=_tags(data.get("tags")),
        authorization=data.get("authorization"),
        authorizations={k: dict(v) for k, v in (data.get("authorizations") or {}).items()},
        inputs=dict(data.get("inputs") or {}),
        on_error=data.get("on_error"),
        description=data.get("description", ""),
    )
    flow.by_id = {s.id: s for s in steps}
    return flow


__all__ = ["END", "INHERIT", "Flow", "FlowStep", "Tag", "build_flow"]
