"""What every part of the template engine says about a template, with or without Jinja."""

from __future__ import annotations

from dataclasses import dataclass, field


class TemplateProblem(Exception):
    """A template cannot be compiled or rendered. ``message`` is for people."""

    def __init__(self, message: str, *, code: str = "template_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass
class References:
    """What a template reads: root names, and the input names it reads."""

    roots: set[str] = field(default_factory=set)
    inputs: set[str] = field(default_factory=set)


def show(source: str) -> str:
    text = source if len(source) <= 80 else source[:77] + "..."
    return repr(text)


__all__ = ["References", "TemplateProblem", "show"]
