"""``openai.delete_model``: ``DELETE /models/{model}`` for a fine-tuned model.

Deleting is idempotent in effect, but an HTTP retry of a delete that did reach the server
answers 404: the model is gone *because of us*. The step therefore sends the request
without blind re-sends (``retry_unsafe=False``) and re-sends itself, so that it knows when
a 404 means "already deleted by this step" (success) and when it means "no such model"
(an error unless ``missing_ok``).
"""

from __future__ import annotations

from typing import Any

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext, StepType
from steprun.steps.openai.client import OpenAIClient, OutcomeUnknown, path_segment, retry_delay

# OpenAI's error code for a model id that does not exist (or that this key cannot see).
_NOT_FOUND_CODE = "model_not_found"


def _gone(model: str) -> dict[str, Any]:
    """The API's DeleteModelResponse shape for a model that was not there to delete."""
    return {"id": model, "object": "model", "deleted": False}


async def _run(config: dict[str, Any], context: StepContext) -> Any:
    model: str = config["model"]
    missing_ok: bool = config.get("missing_ok", False)
    result_format: str = config.get("result_format", "parsed")
    client = OpenAIClient(context)
    path = "/models/" + path_segment(model)
    # A resumed step whose interrupted attempt had already sent the delete may find the
    # model gone: that is this step's own effect, not a missing model.
    sent_before = bool(context.resumed and context.saved.get("sent"))
    resends = 0
    await context.checkpoint(sent=True)
    while True:
        try:
            response = await client.request("DELETE", path, retry_unsafe=False)
        except OutcomeUnknown as exc:
            # Dropped connection or 5xx: the delete may have happened. Deleting twice has
            # the effect of deleting once, so send it again (a 404 then means success).
            if resends >= client.max_retries:
                raise
            delay = retry_delay(resends)
            resends += 1
            sent_before = True
            context.log.warn(
                f"deleting {model}: {exc.message}; sending the delete again in {delay:.1f}s "
                f"({resends} of {client.max_retries})"
            )
            await context.sleep(delay)
            continue
        except StepError as exc:
            if exc.status != 404 or exc.code != _NOT_FOUND_CODE:
                raise
            if sent_before:
                context.log.info(f"model {model} is gone: an earlier send of this step deleted it")
                body = {"id": model, "object": "model", "deleted": True}
                return _synthetic(body, exc, result_format)
            if not missing_ok:
                raise StepError(
                    f"{exc.message} (set missing_ok: true to treat a model that is already "
                    "gone as success)",
                    type=exc.type,
                    code=exc.code,
                    param=exc.info.param,
                    status=exc.status,
                    request_id=exc.request_id,
                    step=context.step_id,
                ) from None
            context.log.info(f"model {model} does not exist; nothing to delete (missing_ok)")
            return _synthetic(_gone(model), exc, result_format)
        body = response.object()
        context.log.info(f"deleted model {body.get('id', model)}: deleted={body.get('deleted')}")
        return response.result(result_format)


def _synthetic(body: dict[str, Any], exc: StepError, result_format: str) -> Any:
    """The output built after a 404: ``raw`` keeps the real status and the request id.

    The error gives no other headers, and its body is OpenAI's error, not the object a
    flow reads, so ``body`` is the DeleteModelResponse shape in both formats.
    """
    if result_format != "raw":
        return body
    headers = {"x-request-id": exc.request_id} if exc.request_id else {}
    return {"status": exc.status, "headers": headers, "body": body}


DELETE_MODEL = StepType(
    type="openai.delete_model",
    title="Delete fine-tuned model",
    version="1.0.0",
    run=_run,
    effect="idempotent",
    description=(
        "DELETE /models/{model}: deletes a fine-tuned model (the key needs the Owner role)."
    ),
)

STEP_TYPES: list[StepType] = [DELETE_MODEL]

__all__ = ["DELETE_MODEL", "STEP_TYPES"]
