"""Small step types for the runtime's tests: a plugin module, registered like any other.

In-process tests pass this module to ``Runtime(plugins=[steptypes])``; CLI tests copy it
into a folder on ``PYTHONPATH`` with an entry point (see ``conftest.install_entry_point``),
so the subprocess loads it exactly as a third-party plugin.

Every type is named ``test.*`` and has its schema inline.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from steprun.runtime import StepContext, StepError, StepType, hookimpl

OPEN = {"type": "object"}


async def sleep(config: dict[str, Any], context: StepContext) -> Any:
    await asyncio.sleep(config["seconds"])
    return {"slept": config["seconds"]}


async def crash(config: dict[str, Any], context: StepContext) -> Any:
    raise RuntimeError(config.get("message", "the plugin has a bug"))


async def not_json(config: dict[str, Any], context: StepContext) -> Any:
    return {"a set": {1, 2}}


async def api(config: dict[str, Any], context: StepContext) -> Any:
    """Output shaped like an API response whose text happens to hold template syntax."""
    return {
        "id": "resp_1",
        "text": "{{ 7 * 6 }}",
        "nested": ["{% for i in range(10**9) %}x{% endfor %}", {"deep": "{{ error }}"}],
    }


async def whoami(config: dict[str, Any], context: StepContext) -> Any:
    """Which authorization the step got; the key only as a digest, never as text."""
    auth = context.authorization
    if auth is None:
        return {"name": None, "provider": None}
    key = auth.api_key.get_secret_value() if auth.api_key is not None else None
    return {
        "name": auth.name,
        "provider": auth.provider,
        "base_url": auth.base_url,
        "key_sha256": hashlib.sha256(key.encode()).hexdigest() if key else None,
    }


async def leak(config: dict[str, Any], context: StepContext) -> Any:
    """Does its best to show the authorization's key: the runtime must hide it everywhere."""
    assert context.authorization is not None and context.authorization.api_key is not None
    key = context.authorization.api_key.get_secret_value()
    how = config["how"]
    if how == "log":
        context.log.debug(f"debug: the key is {key}", key=key)
        context.log.info(f"info: the key is {key}", nested={"k": [key], key: "as a key"})
        context.log.error(f"error: Bearer {key}")
        context.log.info(f"repr: {context.authorization!r}")
        return {"logged": True}
    if how == "return":
        return {"key": key, "header": f"Authorization: Bearer {key}", "list": [key], key: 1}
    if how == "step_error":
        raise StepError(
            f"the API rejected key {key}",
            type="authentication_error",
            code="invalid_api_key",
            param=key,
            request_id=f"req_{key}",
            extra={"echo": {"key": key}},
        )
    if how == "crash":
        raise ValueError(f"unexpected response for {key}")
    raise AssertionError(f"unknown how {how!r}")


async def append(config: dict[str, Any], context: StepContext) -> Any:
    """An effect outside the process (a line appended to a file), reconciled on resume:
    a resumed attempt that finds its line does not append it again."""
    path = context.path(config["path"])
    line = f"{context.run_id} {config['text']}\n"
    if context.resumed and path.exists() and line in path.read_text(encoding="utf-8"):
        return {"appended": False}
    # Its effect does not go through context.http: it checkpoints first, as a step must.
    await context.checkpoint(appending=line)
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line)
    return {"appended": True}


async def http_effect(config: dict[str, Any], context: StepContext) -> Any:
    """A create-like step: a look-up (GET), then the request with the effect (POST; several
    at once if the config asks), with a checkpoint before it if the config asks."""
    await context.http.get(config["url"])
    if config.get("checkpoint"):
        await context.checkpoint(tag=context.run_id)
    posts = [
        context.http.post(config["url"], json={"tag": context.run_id})
        for _ in range(config.get("posts", 1))
    ]
    responses = await asyncio.gather(*posts)  # at once, as a step may send several
    return {"status": responses[0].status_code}


STEP_TYPES = [
    StepType(
        type="test.sleep",
        title="Sleep",
        version="1.0.0",
        run=sleep,
        schema={
            "type": "object",
            "required": ["seconds"],
            "properties": {"seconds": {"type": "number"}},
        },
    ),
    StepType(
        type="test.append",
        title="Append a line to a file",
        version="1.0.0",
        run=append,
        effect="reconcile",
        schema={
            "type": "object",
            "required": ["path", "text"],
            "properties": {"path": {"type": "string"}, "text": {"type": "string"}},
        },
    ),
    StepType(
        type="test.http_effect",
        title="Look up, then POST",
        version="1.0.0",
        run=http_effect,
        effect="reconcile",
        schema={
            "type": "object",
            "required": ["url"],
            "properties": {
                "url": {"type": "string"},
                "checkpoint": {"type": "boolean"},
                "posts": {"type": "integer"},
            },
        },
    ),
    StepType(type="test.crash", title="Crash", version="1.0.0", run=crash, schema=OPEN),
    StepType(type="test.not_json", title="Not JSON", version="1.0.0", run=not_json, schema=OPEN),
    StepType(type="test.api", title="API-like output", version="1.0.0", run=api, schema=OPEN),
    StepType(type="test.whoami", title="Who am I", version="1.0.0", run=whoami, schema=OPEN),
    StepType(
        type="test.leak",
        title="Leak the key",
        version="2.1.0",
        run=leak,
        schema={
            "type": "object",
            "required": ["how"],
            "additionalProperties": False,
            "properties": {"how": {"enum": ["log", "return", "step_error", "crash"]}},
        },
    ),
]


@hookimpl
def steprun_step_types() -> list[StepType]:
    return list(STEP_TYPES)
