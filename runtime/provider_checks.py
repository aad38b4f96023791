"""Refuse, while a flow is validated, a step that its provider cannot run.

Which authorization a step uses is known before the run: its own, or (``inherit``) the one
the previous executed step used. Over the exit graph that is a may-analysis, like the
merge fields': every authorization some path can bring to the step. Each provider among
them is asked (``Provider.refusal``) whether it can run the step with its config; a
refusal is one sentence, reported at the step's line.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from .flow import INHERIT, Flow
from .providers import Provider


def possible_authorizations(
    flow: Flow, edges: Mapping[str, list[tuple[str, bool]]]
) -> dict[str, set[str]]:
    """The authorizations each reachable step may run with (by step id)."""
    start = {flow.authorization} if flow.authorization else set()
    first = flow.steps[0].id
    arriving: dict[str, set[str]] = {first: set(start)}
    work = [first]
    while work:
        current = work.pop()
        step = flow.by_id[current]
        used = arriving[current] if step.authorization == INHERIT else {step.authorization}
        for target, _ in edges.get(current, []):
            if target not in flow.by_id:
                continue
            before = arriving.get(target)
            if before is None or not used <= before:
                arriving[target] = (before or set()) | used
                work.append(target)
    possible: dict[str, set[str]] = {}
    for step_id, names in arriving.items():
        step = flow.by_id[step_id]
        possible[step_id] = names if step.authorization == INHERIT else {step.authorization}
    return possible


def refusals(
    flow: Flow,
    edges: Mapping[str, list[tuple[str, bool]]],
    authorizations: Mapping[str, Any],
    providers: Mapping[str, Provider],
) -> Iterator[tuple[str, str]]:
    """``(step id, sentence)`` for each step a provider it may run with cannot run."""
    for step_id, names in sorted(possible_authorizations(flow, edges).items()):
        step = flow.by_id[step_id]
        for name in sorted(names):
            spec = authorizations.get(name)
            provider_name = spec.get("provider") if isinstance(spec, Mapping) else None
            provider = providers.get(provider_name) if isinstance(provider_name, str) else None
            if provider is None or provider.refusal is None:
                continue
            sentence = provider.refusal(step.type, step.config)
            if sentence:
                yield step_id, f"authorization {name!r} (provider {provider.name}): {sentence}"


__all__ = ["possible_authorizations", "refusals"]
