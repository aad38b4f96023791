"""Other providers' dialects of the embedded backend, over the same files, jobs and models.

``/v1`` is OpenAI's API, and Nebius's (with its own hyperparameters). In front of it:
``/openai/v1``, Azure OpenAI's v1 API (an ``api-key`` header, ``api-version``,
``trainingType``, deployments through the management API's paths) and ``/together/v1``,
Together AI's own jobs API.
Each translates its requests into ``/v1`` requests to the backend behind it, so whatever
answers ``/v1`` (either trainer) answers every dialect.
"""

from __future__ import annotations

from starlette.types import ASGIApp

from ..context import Context
from .azure import AzureDialect
from .nebius import NebiusDialect
from .together import TogetherDialect


def with_dialects(app: ASGIApp, ctx: Context) -> ASGIApp:
    """``app`` (the ``/v1`` backend, middleware included) with every dialect in front."""
    return TogetherDialect(AzureDialect(NebiusDialect(app), ctx), ctx)


__all__ = ["AzureDialect", "NebiusDialect", "TogetherDialect", "with_dialects"]
