"""What the check found: each problem by line, the counts, tokens and billing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from .limits import ESTIMATOR, Format
from .tokens import TokenStats


@dataclass(frozen=True, slots=True)
class LineProblem:
    """One problem; ``line`` is 1-based, ``None`` for the file as a whole."""

    line: int | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message}

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"


@dataclass
class TrainingDataReport:
    """What :func:`check_training_data` found; :meth:`to_dict` is the step's output."""

    file: str
    format: Format | None
    lines: int
    examples: int
    valid: int
    problem_count: int
    problems: list[LineProblem]
    tokens: TokenStats
    max_tokens_per_example: int
    n_epochs: int
    n_epochs_source: Literal["config", "default"]

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def summary(self, limit: int = 3) -> str:
        """Words for an error message: the count and the first few problems."""
        noun = "problem" if self.problem_count == 1 else "problems"
        shown = "; ".join(str(p) for p in self.problems[:limit])
        more = self.problem_count - min(limit, len(self.problems))
        tail = f" (and {more} more)" if more > 0 else ""
        return f"{self.problem_count} {noun} in {self.file}: {shown}{tail}"

    def to_dict(self) -> dict[str, Any]:
        stats = self.tokens
        return {
            "file": self.file,
            "format": self.format,
            "ok": self.ok,
            "counts": {
                "lines": self.lines,
                "examples": self.examples,
                "valid": self.valid,
                "invalid": self.examples - self.valid,
                "problems": self.problem_count,
            },
            "problems": [p.to_dict() for p in self.problems],
            "problems_not_listed": self.problem_count - len(self.problems),
            "tokens": {
                "estimate": ESTIMATOR,
                "examples_counted": stats.count,
                "per_example": {
                    "min": stats.minimum,
                    "mean": round(stats.total / stats.count, 1) if stats.count else 0,
                    "max": stats.maximum,
                },
                "total": stats.total,
                "max_tokens_per_example": self.max_tokens_per_example,
                "examples_over_limit": stats.over_limit,
            },
            "billing": {
                "n_epochs": self.n_epochs,
                "n_epochs_source": self.n_epochs_source,
                "billed_tokens_per_epoch": stats.billed,
                "billed_tokens": stats.billed * self.n_epochs,
            },
        }


__all__ = [
    "LineProblem",
    "TrainingDataReport",
]
