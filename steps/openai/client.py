"""The one HTTP client every fine-tuning step uses, whatever the provider.

It sends requests on the runtime's pooled ``httpx.AsyncClient`` (``context.http``) and adds
what the official SDK adds: the auth headers, a connect timeout of 5 s with a configurable
read timeout, and the SDK's retry policy (:mod:`.retries`). Steps speak OpenAI's API; the
adapter of the authorization's provider (:mod:`.providers`) rewrites each request for the
provider and its answer back. It turns every failure into a :class:`StepError` with
OpenAI's error fields (:mod:`.failures`), and it decodes server-sent events strictly: a
stream that does not end with ``[DONE]`` is an error.

Nothing it raises, logs or returns in an error carries a secret: messages are built only
from scrubbed text, and errors are raised outside ``except`` blocks so no httpx exception
(whose text we do not control) rides along as ``__context__``.
"""

from __future__ import annotations

import json as jsonlib
import math
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import httpx

from steprun.runtime.errors import StepError
from steprun.runtime.secrets import Redactor

from .answers import (
    ApiResponse,
    OutcomeUnknown,
    mime,
    path_segment,
    query_items,
    user_agent,
)
from .failures import CONNECT_TIMEOUT, TYPE_BY_STATUS, Failures
from .providers import Call, adapter_for, route
from .retries import (
    MAX_RETRY_AFTER,
    NOT_SENT,
    PERMANENT,
    FilesReplay,
    parse_retry_after,
    retry_delay,
)
from .sse import DONE, iter_events

if TYPE_CHECKING:
    from steprun.runtime.step import StepContext


class OpenAIClient(Failures):
    """Requests to the authorization's provider, OpenAI-shaped, for one step execution."""

    def __init__(
        self,
        context: StepContext,
        *,
        base_url: str | None = None,
        auth_headers: dict[str, str] | None = None,
    ) -> None:
        """``base_url`` and ``auth_headers`` send to another API of the same provider
        (Azure's management API) instead of the authorization's."""
        auth = context.authorization
        if auth is None:
            # Runtime.run_step names its one-step flow "step:TYPE": no flow to edit there.
            fix = (
                "pass authorization= to Runtime.run_step (an Authorization, or a spec such as "
                "{'provider': 'openai', 'api_key': '${env:OPENAI_API_KEY}'})"
                if context.flow.startswith("step:")
                else "set the flow's `authorization`, or name one in the step"
            )
            raise StepError(
                f"step {context.step_id!r} ({context.step_type}) has no authorization; {fix}",
                type="invalid_config",
                code="missing_authorization",
                step=context.step_id,
            )
        self._context = context
        self._auth = auth
        self._adapter = adapter_for(auth)
        # The status line and headers of the last stream, once its answer arrived (a
        # stream's events carry neither): what a `raw` result of a streamed call reports.
        self.stream_response: ApiResponse | None = None
        self._http = context.http
        self._log = context.log
        self._step = context.step_id
        self._auth_name = auth.name
        self.base_url = (base_url or auth.base_url).rstrip("/")
        self.max_retries = max(0, auth.max_retries)
        # The step's own limit (its `timeout`, or what is left of the run's) caps the
        # authorization's read timeout: a read can never usefully outlast its step.
        self.read_timeout = (
            min(context.timeout, auth.timeout) if context.timeout is not None else auth.timeout
        )
        # The SDK's default is httpx.Timeout(600, connect=5.0): read, write and pool share it.
        self._timeout = httpx.Timeout(self.read_timeout, connect=CONNECT_TIMEOUT)
        # The runtime's redactor: every form of a secret an echoing server may send back.
        self._redactor = Redactor()
        self._headers = {"User-Agent": user_agent(), "Accept": "application/json"}
        given = auth_headers if auth_headers is not None else self._adapter.headers(auth)
        for name, value in given.items():
            secret = value.removeprefix("Bearer ")
            self._add_secret(secret)
            if not secret.isascii() or not secret.isprintable() or any(c.isspace() for c in secret):
                # h11 would otherwise refuse the header with an error that quotes it.
                raise StepError(
                    f"the {'api_key' if name in ('Authorization', 'api-key') else name} of "
                    f"authorization {auth.name!r} contains whitespace, control or non-ASCII "
                    "characters and cannot be sent; check the secret for a stray newline "
                    "or quote",
                    type="invalid_config",
                    code="invalid_api_key",
                    step=self._step,
                )
            self._headers[name] = value
        self._query = self._adapter.query(auth) if base_url is None else {}

    @property
    def provider(self) -> str:
        """The authorization's provider (``openai``, ``azure``, ``together``, ...)."""
        return self._adapter.name

    @property
    def keeps_metadata(self) -> bool:
        """Whether the provider keeps a job's metadata (to find a job after a lost answer)."""
        return self._adapter.keeps_metadata

    # -- public ---------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        files: Any = None,
        data: Mapping[str, Any] | None = None,
        retry_unsafe: bool = True,
    ) -> ApiResponse:
        """Send a request, with retries, and return the parsed answer.

        ``path`` is relative to the base URL (``"/fine_tuning/jobs"``). ``params`` values
        that are mappings become deepObject parameters (``metadata[key]=value``); None
        values are left out. With ``retry_unsafe=False`` nothing is re-sent once the
        request may have reached the server: the caller gets :class:`OutcomeUnknown` and
        decides (retries that are safe, e.g. after a 429 or a refused connection, still
        happen).
        """
        call = self._outgoing(method, path, json=json, params=params, files=files, data=data)
        response = await self._send(
            call.method,
            call.path,
            json=call.json,
            params=call.params,
            files=call.files,
            data=call.data,
            retry_unsafe=retry_unsafe,
            stream=False,
        )
        answer = self._parse(response, f"{call.method} {call.path}")
        body = self._adapter.incoming(call, answer.body)
        if body is answer.body:
            return answer
        return ApiResponse(
            status=answer.status, headers=answer.headers, body=body, request_id=answer.request_id
        )

    def _outgoing(self, method: str, path: str, **parts: Any) -> Call:
        """The provider's request for an OpenAI-shaped one; refuses what it cannot do."""
        operation, ids = route(method, path)
        refusal = self._adapter.unsupported.get(operation)
        if refusal is not None:
            raise StepError(
                f"{method} {path}: {refusal}",
                type="invalid_config",
                code="unsupported_by_provider",
                step=self._step,
            )
        call = Call(operation=operation, method=method, path=path, ids=ids, **parts)
        return self._adapter.outgoing(call, self._auth)

    async def stream(self, method: str, path: str, *, json: Any) -> AsyncIterator[dict[str, Any]]:
        """The parsed ``data`` of each server-sent event, until ``data: [DONE]``.

        Raises StepError on an ``error`` event, on data that is not a JSON object, and when
        the stream ends or is cut before ``[DONE]``: a partial answer is never passed on as
        if it were whole.
        """
        call = self._outgoing(method, path, json=json)
        what = f"{call.method} {call.path}"
        response = await self._send(
            call.method, call.path, json=call.json, retry_unsafe=True, stream=True
        )
        request_id = self._request_id(response)
        self.stream_response = ApiResponse(
            status=response.status_code,
            headers={k.lower(): v for k, v in response.headers.items()},
            body=None,
            request_id=request_id,
        )
        failure: StepError | None = None
        received = 0
        done = False
        try:
            content_type = mime(response.headers.get("content-type", ""))
            if content_type != "text/event-stream":
                await response.aread()
                raise self._not_a_stream(response, what, content_type)
            events = iter_events(response.aiter_bytes())
            while True:
                try:
                    event = await anext(events)
                except StopAsyncIteration:
                    break
                except httpx.TransportError as exc:
                    failure = self._cut_stream(exc, what, received, response)
                    break
                except UnicodeDecodeError:
                    failure = self._invalid_stream(
                        response, what, f"event {received + 1} is not UTF-8 text"
                    )
                    break
                if event.data == DONE:
                    done = True
                    break
                payload = self._event_payload(event.event, event.data, response, what, received)
                if payload is None:
                    continue
                received += 1
                yield payload
        finally:
            await response.aclose()
        if failure is not None:
            raise failure
        if not done:
            raise StepError(
                f"the event stream of {what} ended after {received} event(s) without "
                "`data: [DONE]`; the answer is incomplete and was discarded",
                type="connection_error",
                code="stream_incomplete",
                status=response.status_code,
                request_id=request_id,
                step=self._step,
            )

    # -- sending and retrying -------------------------------------------------------------

    async def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        files: Any = None,
        data: Mapping[str, Any] | None = None,
        retry_unsafe: bool,
        stream: bool,
    ) -> httpx.Response:
        what = f"{method} {path}"
        url = self.base_url + (path if path.startswith("/") else "/" + path)
        query = query_items({**self._query, **(params or {})})
        replay = FilesReplay(files)
        retries = 0
        while True:
            request = self._http.build_request(
                method,
                url,
                headers=self._headers,
                json=json,
                params=query,
                files=files,
                data=data,
                timeout=self._timeout,
            )
            started = time.monotonic()
            error: StepError | None = None
            retryable = False
            reason = ""
            response: httpx.Response | None = None
            try:
                response = await self._http.send(request, stream=stream, follow_redirects=True)
                if stream and not response.is_success:
                    await response.aread()
            except httpx.TransportError as exc:
                error = self._transport_error(exc, what)
                reason = f"{error.code} ({self._scrub(f'{type(exc).__name__}: {exc}')})"
                retryable = not isinstance(exc, PERMANENT) and (
                    retry_unsafe or isinstance(exc, NOT_SENT)
                )
                if response is not None:
                    await response.aclose()
            except httpx.HTTPError as exc:  # DecodingError, TooManyRedirects
                error = self._response_unreadable(exc, what)
            if response is not None and error is None:
                elapsed = time.monotonic() - started
                self._log.debug(
                    f"{what} → HTTP {response.status_code} in {elapsed:.2f}s",
                    status=response.status_code,
                    request_id=self._request_id(response),
                )
                if response.is_success:
                    return response
                error = self._status_error(response, what)
                why = self._retry_reason(response, error, retry_unsafe)
                retryable, reason = why is not None, why or ""
            assert error is not None
            if retryable and retries < self.max_retries and replay.rewind():
                delay = retry_delay(retries, response.headers if response is not None else None)
                retries += 1
                self._log.warn(
                    f"{what}: {reason}; retrying in {delay:.1f}s "
                    f"(retry {retries} of {self.max_retries})",
                    retry=retries,
                    delay=round(delay, 3),
                    status=error.status,
                    request_id=error.request_id,
                )
                await self._context.sleep(delay)
                continue
            if retries:
                error.info.message += (
                    f" (gave up after {retries} retr{'y' if retries == 1 else 'ies'})"
                )
                error.args = (error.info.message,)
            raise error

    def _retry_reason(
        self, response: httpx.Response, error: StepError, retry_unsafe: bool
    ) -> str | None:
        """Why an error answer is worth retrying, or None: the SDK's ``_should_retry``."""
        status = response.status_code
        headers = response.headers
        retry_after = parse_retry_after(headers)
        if retry_after is not None and math.isfinite(retry_after) and retry_after > MAX_RETRY_AFTER:
            self._log.debug(
                f"not retrying: Retry-After of {retry_after:.0f}s is over {MAX_RETRY_AFTER:.0f}s"
            )
            return None
        if status == 429 and "insufficient_quota" in (error.code, error.type):
            # Retrying cannot help: the account has no quota left until someone pays.
            return None
        label = f"HTTP {status}" + (f" {error.code}" if error.code else "")
        should_retry = headers.get("x-should-retry")
        # The server's explicit word wins (OpenAI sends it); "true" also means the server
        # vouches that a re-send is safe, so it is obeyed even for unsafe requests.
        if should_retry == "true":
            return f"{label}, and the server asked for a retry (x-should-retry: true)"
        if should_retry == "false":
            return None
        if status in (408, 409, 429):
            # Request timeout, lock timeout, rate limit: the server did not act on it.
            return f"{label} ({TYPE_BY_STATUS[status]})"
        if status >= 500:
            return f"{label} (server error)" if retry_unsafe else None
        return None

    # -- answers --------------------------------------------------------------------------

    def _parse(self, response: httpx.Response, what: str) -> ApiResponse:
        headers = {k.lower(): v for k, v in response.headers.items()}
        request_id = self._adapter.request_id(headers)
        body: Any = None
        if response.content:
            kind = mime(headers.get("content-type", ""))
            if kind == "application/json" or kind.endswith("+json"):
                try:
                    body = jsonlib.loads(response.content)
                except (ValueError, UnicodeDecodeError) as exc:
                    detail = (
                        f"{exc.msg} at line {exc.lineno} column {exc.colno}"
                        if isinstance(exc, jsonlib.JSONDecodeError)
                        else "not UTF-8"
                    )
                    raise OutcomeUnknown(
                        f"{what} answered HTTP {response.status_code} with a body that is not "
                        f"valid JSON ({detail}); it starts with "
                        f"{self._snippet(response.text)!r}. The server at {self._origin} is "
                        "not answering like the OpenAI API: check base_url",
                        type="invalid_response",
                        code="malformed_json",
                        status=response.status_code,
                        request_id=request_id,
                        step=self._step,
                    ) from None
            else:
                body = response.text
        return ApiResponse(
            status=response.status_code, headers=headers, body=body, request_id=request_id
        )


__all__ = [
    "CONNECT_TIMEOUT",
    "ApiResponse",
    "OpenAIClient",
    "OutcomeUnknown",
    "parse_retry_after",
    "path_segment",
    "retry_delay",
    "user_agent",
]
