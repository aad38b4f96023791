"""Named authorizations: what a step authenticates with, and where it sends requests.

A flow names its authorizations (or reads them from a separate file given with
``--authorizations``, so the flow carries no secrets). A step uses ``inherit`` (the one the
previous executed step used) or selects one by name. Secret settings are resolved from
``${env:NAME}``/``${file:PATH}`` just before the run and registered with the redactor.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import secrets
from .errors import SecretError

if TYPE_CHECKING:
    from .authorization import Authorization
    from .providers import Provider

OPENAI_BASE_URL = "https://api.openai.com/v1"
# The embedded backend is mounted on the runtime's HTTP client under this origin; the
# reserved .invalid TLD guarantees a request can never leave the process by mistake.
LOCAL_ORIGIN = "http://local.steprun.invalid"
LOCAL_BASE_URL = LOCAL_ORIGIN + "/v1"
DEFAULT_TIMEOUT = 600.0
DEFAULT_MAX_RETRIES = 2


def setting_problems(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(setting, problem) pairs no schema can see: what this installation lacks."""
    if spec.get("provider") == "local" and spec.get("trainer") == "transformers":
        # Imported here: most flows never ask for the real trainer.
        from .local.trainer.settings import missing_extra_message

        message = missing_extra_message()
        if message is not None:
            return [("trainer", message)]
    return []


def resolve_authorization(
    name: str,
    spec: Mapping[str, Any],
    *,
    environ: Mapping[str, str],
    base_dir: Path,
    redactor: secrets.Redactor,
    providers: Mapping[str, Provider] | None = None,
) -> Authorization:
    """Turn a validated authorization spec from a flow into an :class:`Authorization`.

    ``providers`` are a runtime's; without them, those of the built-in and installed plugins.
    """
    if providers is None:
        from .plugins import collect_providers, make_plugin_manager

        providers = collect_providers(make_plugin_manager())
    provider = spec.get("provider")
    declared = providers.get(provider) if isinstance(provider, str) else None
    if declared is None:
        raise SecretError(
            f"authorization {name!r}: provider {provider!r} is unknown; "
            f"use one of {', '.join(providers)}"
        )
    values: dict[str, Any] = {}
    options: dict[str, Any] = {}
    known = {"api_key", "organization", "project", "base_url", "timeout", "max_retries"}
    for key, value in spec.items():
        if key == "provider":
            continue
        if isinstance(value, str) and secrets.has_reference(value):
            value = secrets.resolve(
                value,
                environ=environ,
                base_dir=base_dir,
                where=f"authorization {name!r} setting {key!r}",
                redactor=redactor,
            )
        elif key in declared.secrets and isinstance(value, str):
            # A literal secret in a flow still must never be shown.
            redactor.add(value)
        (values if key in known else options)[key] = value
    values["base_url"] = declared.base_url({**options, **values}).rstrip("/")
    from .authorization import Authorization

    return Authorization(name=name, provider=declared.name, options=options, **values)


def __getattr__(name: str) -> Any:
    # The model lives in .authorization, with pydantic: a flow without authorizations
    # never imports either (see bench/cold_start.py).
    if name == "Authorization":
        from .authorization import Authorization

        return Authorization
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "LOCAL_BASE_URL",
    "LOCAL_ORIGIN",
    "OPENAI_BASE_URL",
    "Authorization",
    "read_authorizations_file",
    "resolve_authorization",
    "setting_problems",
]


def read_authorizations_file(path: Path, schemas: Any) -> dict[str, Any]:
    """Named authorizations from a YAML file (``--authorizations``), checked like a flow's."""
    from .errors import FlowInvalid, InvalidInput, Problem
    from .schemas import SCHEMA_ID_PREFIX, describe, error_schema, unknown_key
    from .yamlsource import MAX_BYTES, dotted, load_text, too_large

    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise too_large(str(path), size)
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InvalidInput(f"{path}: no such authorizations file; check the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"{path}: cannot be read as UTF-8 text: {exc}") from None
    source = load_text(text, str(path))
    schema = {
        "type": "object",
        "propertyNames": {"pattern": "^[A-Za-z_][A-Za-z0-9_-]*$"},
        "additionalProperties": {
            "$ref": SCHEMA_ID_PREFIX + "flow.schema.json#/$defs/authorization"
        },
    }
    if not isinstance(source.data, dict):
        raise FlowInvalid(
            [
                Problem(
                    "an authorizations file is a mapping of names to authorizations", file=str(path)
                )
            ]
        )
    problems: list[Problem] = []
    for error in schemas.validator(schema).iter_errors(source.data):
        where = tuple(error.absolute_path)
        found = [(where, describe(error))]
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            # One problem per unknown key, on the key's own line, as a flow's are reported.
            allowed = sorted((error_schema(error).get("properties") or {}).keys())
            found = [
                ((*where, k), unknown_key(k, allowed)) for k in error.instance if k not in allowed
            ]
        problems += [
            Problem(message, file=str(path), line=source.line(at), path=dotted(at) or None)
            for at, message in found
        ]
    if problems:
        raise FlowInvalid(problems)
    return dict(source.data)
