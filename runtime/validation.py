"""Check a whole flow before anything runs, and report every problem at once.

Order of checks: the document's shape (the flow schema), then what a schema cannot say:
duplicate ids, unknown step types, each step's config against its type's schema (templated
values are skipped here and checked after rendering), exits to missing steps, unknown
authorizations, template syntax, templates that read a merge field no earlier step on any
path can have written, ``error`` read where no error exit leads, and inputs never supplied.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import authorizations as auth
from . import secrets
from .dataflow import Dataflow
from .errors import FlowInvalid, Problem
from .flow import END, INHERIT, Flow, build_flow
from .provider_checks import refusals
from .providers import Provider
from .schemas import SchemaRegistry, describe, error_schema, unknown_key
from .step import StepType
from .templates import TEMPLATE_GLOBALS, Templates, is_template
from .yamlsource import Source, dotted

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError

RESERVED_IDS = frozenset({"inputs", "error", END, INHERIT})
# How deep a config value may nest: what the runner accepts as a step's output.
MAX_NESTING = 100


@dataclass
class StepTypes:
    """The catalog the validator checks step types and configs against."""

    types: Mapping[str, StepType]
    schemas: SchemaRegistry
    resolved: dict[str, Mapping[str, Any]] = field(default_factory=dict)

    def schema(self, step_type: StepType) -> Mapping[str, Any]:
        found = self.resolved.get(step_type.type)
        if found is None:
            found = resolve_schema(step_type, self.schemas)
            self.resolved[step_type.type] = found
        return found


def resolve_schema(step_type: StepType, schemas: SchemaRegistry) -> Mapping[str, Any]:
    from .errors import PluginError
    from .schemas import read_schema

    if isinstance(step_type.schema, Mapping):
        return step_type.schema
    if isinstance(step_type.schema, Path):
        try:
            return read_schema(step_type.schema)
        except (OSError, ValueError) as exc:
            raise PluginError(
                f"step type {step_type.type}: cannot read its schema {step_type.schema}: {exc}"
            ) from None
    found = schemas.builtin(f"{step_type.type}.schema.json")
    if found is None:
        raise PluginError(
            f"step type {step_type.type} declares no schema and there is no built-in "
            f"schemas/{step_type.type}.schema.json; pass schema= to its StepType"
        )
    return found


class Validator:
    def __init__(
        self,
        catalog: StepTypes,
        templates: Templates,
        providers: Mapping[str, Provider] | None = None,
    ) -> None:
        self.catalog = catalog
        self.templates = templates
        # Kept as given: a runtime's catalog imports a step pack only when asked for it.
        self.providers: Mapping[str, Provider] = {} if providers is None else providers

    def validate(
        self,
        source: Source,
        *,
        base_dir: Path,
        inputs: Iterable[str] = (),
        authorizations: Mapping[str, Any] | None = None,
    ) -> Flow:
        """The flow, or FlowInvalid with every problem found."""
        check = _Check(self, source, set(inputs), dict(authorizations or {}))
        check.run()
        if check.problems:
            raise FlowInvalid(check.problems)
        flow = build_flow(source, base_dir)
        flow.read_inputs = frozenset(check.read_inputs)
        for name, spec in (authorizations or {}).items():
            flow.authorizations[name] = dict(spec)
        return flow


class _Check:
    def __init__(
        self,
        validator: Validator,
        source: Source,
        inputs: set[str],
        authorizations: dict[str, Any],
    ) -> None:
        self.v = validator
        self.source = source
        self.supplied_inputs = inputs
        self.extra_authorizations = authorizations
        self.problems: list[Problem] = []
        self.too_deep = False
        self.unknown_keys = 0  # problems that leave the flow's shape intact
        self.read_inputs: set[str] = set()  # every inputs.NAME a template reads

    # -- helpers ---------------------------------------------------------------------

    def problem(
        self, message: str, path: tuple[str | int, ...] = (), step: str | None = None
    ) -> None:
        self.problems.append(
            Problem(
                message,
                file=self.source.file,
                line=self.source.line(path),
                step=step,
                path=dotted(path) or None,
            )
        )

    # -- checks ----------------------------------------------------------------------

    def run(self) -> None:
        data = self.source.data
        if not isinstance(data, dict):
            kind = "a list" if isinstance(data, list) else f"the single value {data!r}"
            self.problem(
                f"a flow file must be a mapping with keys such as 'flow' and 'steps', "
                f"found {kind}; see the flow file reference in the README"
            )
            return
        self.schema_problems(data)
        raw_steps = data.get("steps")
        ids = self.id_problems(raw_steps if isinstance(raw_steps, list) else [])
        # The exit graph can only be analysed when the document has the flow's shape; an
        # unknown key (a typo such as `confg`) leaves the shape intact, so the template and
        # exit problems are reported in the same pass.
        structurally_sound = len(self.problems) == self.unknown_keys
        self.authorization_problems(data, raw_steps if isinstance(raw_steps, list) else [])
        for index, raw in enumerate(raw_steps if isinstance(raw_steps, list) else []):
            if isinstance(raw, dict):
                self.step_problems(index, raw, ids)
        if isinstance(data.get("on_error"), str) and data["on_error"] not in ids:
            self.problem(self._missing_step("on_error", data["on_error"], ids), ("on_error",))
        if structurally_sound and not self.too_deep:
            self.dataflow_problems()

    def schema_problems(self, data: dict[str, Any]) -> None:
        schema = self.v.catalog.schemas.builtin("flow.schema.json")
        assert schema is not None, "flow.schema.json ships with the package"
        if self.v.catalog.schemas.surely_valid(schema, data):
            return  # jsonschema need not be asked (or imported): see schema_check
        validator = self.v.catalog.schemas.validator(schema)
        for error in _leaves(validator.iter_errors(data)):
            path = tuple(error.absolute_path)
            step = _step_id(data, path)
            if error.validator == "additionalProperties" and isinstance(error.instance, dict):
                allowed = sorted((error_schema(error).get("properties") or {}).keys())
                for key in error.instance:
                    if key not in allowed:
                        self.problem(unknown_key(key, allowed), (*path, key), step)
                        self.unknown_keys += 1
                continue
            self.problem(describe(error), path, step)

    def id_problems(self, raw_steps: list[Any]) -> dict[str, int]:
        ids: dict[str, int] = {}
        for index, raw in enumerate(raw_steps):
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
                continue  # the schema already said what is wrong
            step_id = raw["id"]
            if step_id in ids:
                first = self.source.line(("steps", ids[step_id]))
                self.problem(
                    f"step id {step_id!r} is used twice (first at line {first}); "
                    "every step needs its own id",
                    ("steps", index, "id"),
                    step_id,
                )
            elif step_id in RESERVED_IDS:
                self.problem(
                    f"{step_id!r} is reserved and cannot be a step id; choose another name",
                    ("steps", index, "id"),
                    step_id,
                )
            else:
                ids[step_id] = index
            merge_field = raw.get("merge_field")
            if isinstance(merge_field, str) and merge_field in RESERVED_IDS:
                self.problem(
                    f"{merge_field!r} is reserved and cannot be a merge field; choose another name",
                    ("steps", index, "merge_field"),
                    step_id,
                )
            # A merge field named like a template function (range, dict) could never be
            # read: templates would see the function. Say so now, not at run time.
            field_name = merge_field if isinstance(merge_field, str) else step_id
            if field_name in TEMPLATE_GLOBALS:
                key = "merge_field" if isinstance(merge_field, str) else "id"
                self.problem(
                    f"{field_name!r} is the name of a template function, so templates could "
                    f"not read this step's merge field; choose another {key.replace('_', ' ')}",
                    ("steps", index, key),
                    step_id,
                )
        return ids

    def authorization_problems(self, data: dict[str, Any], raw_steps: list[Any]) -> None:
        defined = (
            dict(data.get("authorizations") or {})
            if isinstance(data.get("authorizations"), dict)
            else {}
        )
        for name, spec in defined.items():
            self.literal_secret_problems(name, spec)
        defined.update(self.extra_authorizations)
        names = sorted(defined)
        for name, spec in defined.items():
            if not isinstance(spec, dict):
                continue
            for key, value in spec.items():
                if isinstance(value, str):
                    for message in secrets.reference_problems(value):
                        self.problem(message, ("authorizations", name, key))
            for key, message in auth.setting_problems(spec):
                self.problem(message, ("authorizations", name, key))
        default = data.get("authorization")
        if isinstance(default, str) and default not in defined:
            self.problem(self._unknown_authorization(default, names), ("authorization",))
        for index, raw in enumerate(raw_steps):
            if not isinstance(raw, dict):
                continue
            chosen = raw.get("authorization")
            if isinstance(chosen, str) and chosen != INHERIT and chosen not in defined:
                self.problem(
                    self._unknown_authorization(chosen, names),
                    ("steps", index, "authorization"),
                    raw.get("id") if isinstance(raw.get("id"), str) else None,
                )

    def literal_secret_problems(self, name: str, spec: Any) -> None:
        """A key written into the flow is refused: the flow text is kept with every run in
        the run store (and in version control), so the key would be kept in clear."""
        value = spec.get("api_key") if isinstance(spec, dict) else None
        if isinstance(value, str) and not secrets.has_reference(value):
            self.problem(
                f"authorization {name!r} has a literal api_key in the flow, which would be "
                "stored in clear with every run; write api_key: ${env:NAME} (e.g. "
                "${env:OPENAI_API_KEY}) or ${file:PATH}, or move the authorization to "
                "--authorizations FILE",
                ("authorizations", name, "api_key"),
            )

    def step_problems(self, index: int, raw: dict[str, Any], ids: Mapping[str, int]) -> None:
        step_id = raw.get("id") if isinstance(raw.get("id"), str) else None
        base = ("steps", index)
        for exit_name in ("next", "on_error"):
            target = raw.get(exit_name)
            if isinstance(target, str) and target != END and target not in ids:
                self.problem(
                    self._missing_step(exit_name, target, ids), (*base, exit_name), step_id
                )
        if raw.get("handle_error") is False and isinstance(raw.get("on_error"), str):
            self.problem(
                "on_error is never taken: handle_error is false, so this step's errors go to "
                "the flow's on_error (or fail the run); remove one of the two",
                (*base, "handle_error"),
                step_id,
            )
        type_name = raw.get("type")
        if not isinstance(type_name, str):
            return
        step_type = self.v.catalog.types.get(type_name)
        config = raw.get("config", {})
        if not isinstance(config, dict):
            return
        for key, value in config.items():
            if nested_deeper(value, MAX_NESTING):
                self.problem(
                    f"{key} is nested more than {MAX_NESTING} levels deep; a step's output may "
                    f"nest at most {MAX_NESTING} levels, so this step could not run. Flatten it.",
                    (*base, "config", key),
                    step_id,
                )
                self.too_deep = True  # nothing else may walk it: Python's stack would run out
                return
        for path, text in _strings(config, (*base, "config")):
            if is_template(text):
                syntax = self.v.templates.check(text)
                if syntax is not None:
                    self.problem(syntax, path, step_id)
        if step_type is None:
            # Only a near miss is worth naming: `acme.shout` is not a typo of `core.set`.
            # Within the same pack a looser match is still a likely typo.
            pack = type_name.partition(".")[0] + "."
            same = [t for t in self.v.catalog.types if t.startswith(pack)]
            close = difflib.get_close_matches(type_name, same, n=1, cutoff=0.5)
            close = close or difflib.get_close_matches(
                type_name, list(self.v.catalog.types), n=1, cutoff=0.8
            )
            hint = f"did you mean {close[0]!r}?" if close else "run `steprun steps` for the list"
            self.problem(f"unknown step type {type_name!r}; {hint}", (*base, "type"), step_id)
            return
        schema = self.v.catalog.schema(step_type)
        # Templates are checked once rendered: only problems elsewhere are reported now.
        quick = self.v.catalog.schemas.surely_valid(schema, config, wild=_a_template)
        validator = None if quick else self.v.catalog.schemas.validator(schema)
        for error in _leaves(validator.iter_errors(config)) if validator else ():
            if _about_templates(error):
                continue  # checked after rendering, when the value is known
            path = (*base, "config", *error.absolute_path)
            if error.validator == "additionalProperties" and isinstance(error.instance, dict):
                allowed = sorted((error_schema(error).get("properties") or {}).keys())
                for key in error.instance:
                    if key not in allowed:
                        self.problem(
                            unknown_key(key, allowed) + f" (see `steprun schema {type_name}`)",
                            (*path, key),
                            step_id,
                        )
                continue
            self.problem(describe(error), path, step_id)
        config_valid = not any(
            p.step == step_id and "config" in (p.path or "") for p in self.problems
        )
        if step_type.check is not None and config_valid and not _contains_template(config):
            for where, message in step_type.check(config):
                self.problem(message, (*base, "config", *where), step_id)
        if step_type.exits is not None and config_valid:
            for where, target in step_type.exits(config):
                if target != END and target not in ids:
                    self.problem(
                        self._missing_step("exit", target, ids), (*base, "config", *where), step_id
                    )

    def dataflow_problems(self) -> None:
        flow = build_flow(self.source, Path("."))
        analysis = Dataflow(flow, self.v.catalog.types)
        defined = {**(self.source.data.get("authorizations") or {}), **self.extra_authorizations}
        for step_id, sentence in refusals(flow, analysis.edges, defined, self.v.providers):
            step = flow.by_id[step_id]
            self.problem(sentence, ("steps", step.index, "type"), step_id)
        all_fields = {s.merge_field: s.id for s in flow.steps}
        declared_inputs = set(flow.inputs) | self.supplied_inputs
        for step in flow.steps:
            reachable = analysis.reachable(step.id)
            for path, text in _strings(step.config, ("steps", step.index, "config")):
                if not is_template(text):
                    continue
                refs = self.v.templates.references(text)
                self.read_inputs |= refs.inputs
                for name in sorted(refs.inputs - declared_inputs):
                    close = difflib.get_close_matches(name, sorted(declared_inputs), n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    self.problem(
                        f"reads inputs.{name}, but the flow declares no input {name!r} and "
                        f"none is supplied; add it under 'inputs:' with a default or pass "
                        f"--input {name}=VALUE{hint}",
                        path,
                        step.id,
                    )
                for root in sorted(refs.roots - {"inputs"}):
                    if root == "error":
                        if reachable and not analysis.error_possible(step.id):
                            self.problem(
                                "reads 'error', but no error exit leads to this step, so there "
                                "is never an error to read; use it in a step named by an "
                                "on_error exit",
                                path,
                                step.id,
                            )
                    elif root in all_fields:
                        if reachable and not analysis.may_have(step.id, root):
                            self.problem(
                                f"reads merge field {root!r}, which no step that can run "
                                f"before this one writes (step {all_fields[root]!r} writes it); "
                                "move this step after it or fix the exits",
                                path,
                                step.id,
                            )
                    else:
                        close = difflib.get_close_matches(root, sorted(all_fields), n=1)
                        hint = f"did you mean {close[0]!r}? " if close else ""
                        self.problem(
                            f"reads {root!r}, which is not a merge field of any step, "
                            f"'inputs' or 'error'; {hint}templates read inputs.NAME, "
                            "a step's merge field (its id unless merge_field is set) and error",
                            path,
                            step.id,
                        )

    def _missing_step(self, exit_name: str, target: str, ids: Mapping[str, int]) -> str:
        close = difflib.get_close_matches(target, list(ids), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"use a step id or {END!r}"
        return f"{exit_name} leads to {target!r}, but there is no step with that id; {hint}"

    def _unknown_authorization(self, name: str, names: list[str]) -> str:
        if not names:
            return (
                f"authorization {name!r} is not defined: the flow has no 'authorizations' "
                "(define it there or in a file passed with --authorizations)"
            )
        close = difflib.get_close_matches(name, names, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"defined: {', '.join(names)}"
        return f"authorization {name!r} is not defined; {hint}"


def nested_deeper(value: Any, limit: int, depth: int = 0) -> bool:
    """Whether ``value`` nests lists or mappings deeper than ``limit`` (counted as the
    runner counts a step's output: the value itself is level 0). Stops at the limit."""
    if isinstance(value, dict):
        items: Iterable[Any] = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return False
    return depth > limit or any(nested_deeper(v, limit, depth + 1) for v in items)


def _strings(
    value: Any, path: tuple[str | int, ...]
) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


def _a_template(value: Any) -> bool:
    return isinstance(value, str) and is_template(value)


def _contains_template(value: Any) -> bool:
    return any(is_template(text) for _, text in _strings(value, ()))


def _about_templates(error: ValidationError) -> bool:
    """Whether an error may vanish once templates are rendered, so it must wait until then."""
    if error.validator in ("required", "additionalProperties", "dependentRequired"):
        return False
    return _contains_template(error.instance)


def _leaves(errors: Iterable[ValidationError]) -> Iterator[ValidationError]:
    """Errors as users think of them: for an allOf/if-then, the failing inner error."""
    for error in errors:
        if error.validator in ("allOf", "then", "else") and error.context:
            yield from _leaves(error.context)
        else:
            yield error


def _step_id(data: Mapping[str, Any], path: tuple[Any, ...]) -> str | None:
    if len(path) >= 2 and path[0] == "steps" and isinstance(path[1], int):
        steps = data.get("steps")
        if isinstance(steps, list) and path[1] < len(steps) and isinstance(steps[path[1]], dict):
            step_id = steps[path[1]].get("id")
            return step_id if isinstance(step_id, str) else None
    return None


__all__ = [
    "MAX_NESTING",
    "RESERVED_IDS",
    "StepTypes",
    "Validator",
    "nested_deeper",
    "resolve_schema",
]
