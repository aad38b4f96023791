"""The one HTTP client every OpenAI step uses.

It sends requests on the runtime's pooled ``httpx.AsyncClient`` (``context.http``) and adds
what the official SDK adds: the auth and organization headers, a connect timeout of 5 s
with a configurable read timeout, and the SDK's retry policy (``openai/_base_client.py``:
``_should_retry``, ``_calculate_retry_timeout``, ``_parse_retry_after_header``). It turns
every failure into a :class:`StepError` with OpenAI's error fields, and it decodes
server-sent events strictly: a stream that does not end with ``[DONE]`` is an error.

Nothing it raises, logs or returns in an error carries the API key: messages are built
only from scrubbed text, and errors are raised outside ``except`` blocks so no httpx
exception (whose text we do not control) rides along as ``__context__``.
"""

from __future__ import annotations

import email.utils
import json as jsonlib
import math
import platform
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import httpx

from steprun.runtime.errors import StepError
from steprun.runtime.secrets import Redactor

from .sse import DONE, iter_events

if TYPE_CHECKING:
    from steprun.runtime.step import StepContext

CONNECT_TIMEOUT = 5.0
# The SDK's constants (openai/_constants.py).
INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 120.0

_SNIPPET = 200
# OpenAI's error `type` for statuses whose body does not say (the SDK maps the same
# statuses to BadRequestError, AuthenticationError, PermissionDeniedError, ...).
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}
# Transport failures after which the server cannot have acted on the request: the
# connection never opened, or the request was not sent whole (an HTTP server acts on a
# request only once it has all of it).
_NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.WriteError,
    httpx.WriteTimeout,
)
# Not worth a retry: the same request fails the same way.
_PERMANENT = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)


class OutcomeUnknown(StepError):
    """The request may have reached the server and taken effect, but no usable answer came.

    Raised for a connection that dropped or timed out after the request was sent, for a
    5xx answer, and for a 2xx answer whose body cannot be read. A step whose request has an
    effect (creating a job, uploading a file) catches it and looks for that effect before
    sending the request again.
    """


@cache
def user_agent() -> str:
    from importlib import metadata

    try:
        version = metadata.version("steprun")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"steprun/{version} httpx/{httpx.__version__} python/{platform.python_version()}"


def retry_delay(retries_taken: int, headers: httpx.Headers | None = None) -> float:
    """Seconds to wait before retry number ``retries_taken + 1``, as the SDK computes it.

    A server-directed delay (``retry-after-ms``, then ``retry-after``) is honoured when it
    is above 0 and at most 120 s; otherwise 0.5 s * 2^n, capped at 8 s, minus up to 25 %
    jitter so that many clients do not retry in lockstep.
    """
    retry_after = parse_retry_after(headers)
    if (
        retry_after is not None
        and math.isfinite(retry_after)
        and 0 < retry_after <= MAX_RETRY_AFTER
    ):
        return retry_after
    delay = min(INITIAL_RETRY_DELAY * 2.0 ** min(retries_taken, 1000), MAX_RETRY_DELAY)
    return max(delay * (1 - 0.25 * random.random()), 0.0)


def parse_retry_after(headers: httpx.Headers | None) -> float | None:
    """The server's requested delay in seconds, or None when it gives none we can read."""
    if headers is None:
        return None
    # Milliseconds first, then seconds (floats allowed, as the SDK allows them).
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay = float(value)
        except ValueError:
            continue
        if math.isnan(delay):
            continue
        if math.isinf(delay):
            # An overflowing number is an excessive delay, not a reason to retry sooner.
            return MAX_RETRY_AFTER + 1
        return delay / divisor
    # Last, an HTTP date (RFC 9110 allows it in Retry-After).
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when.timestamp() - time.time()


def path_segment(value: str) -> str:
    """``value`` percent-encoded as one URL path segment (a job id, a model name).

    Like the SDK's ``path_template``: ``/`` is encoded so an id cannot add segments, and
    ``.``/``..`` are refused because URL normalisation would turn them into a parent path.
    """
    encoded = quote(str(value), safe="!$&'()*+,;=:@")
    if encoded in ("", ".", ".."):
        raise StepError(
            f"{value!r} cannot be used as an id in a URL path; expected an id such as "
            "'ftjob-abc123'",
            type="invalid_config",
            code="invalid_id",
        )
    return encoded


@dataclass(frozen=True)
class ApiResponse:
    """A successful answer: status, lower-case headers, the parsed body and the request id."""

    status: int
    headers: dict[str, str]
    body: Any
    request_id: str | None

    def result(self, result_format: str = "parsed") -> Any:
        """The step output: ``parsed`` is the API object, ``raw`` is status, headers and body."""
        if result_format == "raw":
            return {"status": self.status, "headers": dict(self.headers), "body": self.body}
        if result_format == "parsed":
            return self.body
        raise StepError(
            f"result_format {result_format!r} is unknown; use 'parsed' or 'raw'",
            type="invalid_config",
            param="result_format",
        )

    def object(self) -> dict[str, Any]:
        """The body as a JSON object; a StepError when the server sent anything else."""
        if isinstance(self.body, dict):
            return self.body
        raise StepError(
            f"expected a JSON object in the response, found {_json_kind(self.body)}; "
            "the server is not answering like the OpenAI API (check base_url)",
            type="invalid_response",
            code="unexpected_body",
            status=self.status,
            request_id=self.request_id,
        )


class OpenAIClient:
    """Requests to the OpenAI API (or a compatible server) for one step execution."""

    def __init__(self, context: StepContext) -> None:
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
        # The status line and headers of the last stream, once its answer arrived (a
        # stream's events carry neither): what a `raw` result of a streamed call reports.
        self.stream_response: ApiResponse | None = None
        self._http = context.http
        self._log = context.log
        self._step = context.step_id
        self.base_url = auth.base_url.rstrip("/")
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
        if auth.api_key is not None:
            key = auth.api_key.get_secret_value()
            self._add_secret(key)
            if not key.isascii() or not key.isprintable() or any(c.isspace() for c in key):
                # h11 would otherwise refuse the header with an error that quotes it.
                raise StepError(
                    f"the api_key of authorization {auth.name!r} contains whitespace, "
                    "control or non-ASCII characters and cannot be sent; check the secret "
                    "for a stray newline or quote",
                    type="invalid_config",
                    code="invalid_api_key",
                    step=self._step,
                )
            self._headers["Authorization"] = f"Bearer {key}"
        if auth.organization:
            self._add_secret(auth.organization)
            self._headers["OpenAI-Organization"] = auth.organization
        if auth.project:
            self._add_secret(auth.project)
            self._headers["OpenAI-Project"] = auth.project
        self._auth_name = auth.name

    @property
    def _origin(self) -> str:
        """Scheme, host and port of the base URL, for error messages.

        Computed when an error needs it, not per client: parsing the URL was most of the
        cost of building a client, and a client is built for every step execution.
        """
        return str(httpx.URL(self.base_url).copy_with(path="/", query=None)).rstrip("/")

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
        response = await self._send(
            method,
            path,
            json=json,
            params=params,
            files=files,
            data=data,
            retry_unsafe=retry_unsafe,
            stream=False,
        )
        return self._parse(response, f"{method} {path}")

    async def stream(self, method: str, path: str, *, json: Any) -> AsyncIterator[dict[str, Any]]:
        """The parsed ``data`` of each server-sent event, until ``data: [DONE]``.

        Raises StepError on an ``error`` event, on data that is not a JSON object, and when
        the stream ends or is cut before ``[DONE]``: a partial answer is never passed on as
        if it were whole.
        """
        what = f"{method} {path}"
        response = await self._send(method, path, json=json, retry_unsafe=True, stream=True)
        request_id = response.headers.get("x-request-id")
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
            content_type = _mime(response.headers.get("content-type", ""))
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
        query = _query(params)
        replay = _FilesReplay(files)
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
                retryable = not isinstance(exc, _PERMANENT) and (
                    retry_unsafe or isinstance(exc, _NOT_SENT)
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
                    request_id=response.headers.get("x-request-id"),
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
            return f"{label} ({_TYPE_BY_STATUS[status]})"
        if status >= 500:
            return f"{label} (server error)" if retry_unsafe else None
        return None

    # -- answers --------------------------------------------------------------------------

    def _parse(self, response: httpx.Response, what: str) -> ApiResponse:
        headers = {k.lower(): v for k, v in response.headers.items()}
        request_id = headers.get("x-request-id")
        body: Any = None
        if response.content:
            mime = _mime(headers.get("content-type", ""))
            if mime == "application/json" or mime.endswith("+json"):
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

    def _status_error(self, response: httpx.Response, what: str) -> StepError:
        status = response.status_code
        request_id = response.headers.get("x-request-id")
        fields = _error_fields(response)
        message = fields.get("message") or self._snippet(response.text) or response.reason_phrase
        text = f"{what} failed with HTTP {status}: {self._scrub(str(message))}"
        if status == 401:
            text += f" (check the api_key of authorization {self._auth_name!r})"
        elif status == 403:
            text += (
                f" (check the organization, project and key permissions of authorization "
                f"{self._auth_name!r})"
            )
        default_type = "server_error" if status >= 500 else _TYPE_BY_STATUS.get(status, "api_error")
        error_class = OutcomeUnknown if status >= 500 else StepError
        return error_class(
            text,
            type=self._scrub(str(fields.get("type") or default_type)),
            code=_opt_str(fields.get("code"), self._scrub),
            param=_opt_str(fields.get("param"), self._scrub),
            status=status,
            request_id=request_id,
            step=self._step,
        )

    def _transport_error(self, exc: httpx.TransportError, what: str) -> StepError:
        detail = self._scrub(f"{type(exc).__name__}: {exc}".rstrip(": "))
        where = self._origin
        kind, code, text = "connection_error", "transport_error", ""
        if isinstance(exc, httpx.ConnectTimeout):
            kind, code = "timeout", "connect_timeout"
            text = (
                f"could not connect to {where} within {CONNECT_TIMEOUT:.0f}s for {what}; "
                "check that base_url is right and reachable from here (network, proxy, firewall)"
            )
        elif isinstance(exc, httpx.ReadTimeout):
            kind, code = "timeout", "read_timeout"
            text = (
                f"no answer to {what} from {where} within {self.read_timeout:g}s; the server "
                "may be overloaded or the request slow: raise the step's or the "
                "authorization's timeout if this is expected"
            )
        elif isinstance(exc, httpx.WriteTimeout):
            kind, code = "timeout", "write_timeout"
            text = (
                f"sending {what} to {where} stalled for {self.read_timeout:g}s; check the network"
            )
        elif isinstance(exc, httpx.PoolTimeout):
            kind, code = "timeout", "pool_timeout"
            text = (
                f"no free connection to {where} for {what} within {self.read_timeout:g}s; "
                "too many requests are running at once"
            )
        elif isinstance(exc, httpx.ConnectError | httpx.ProxyError):
            code = "connect_failed"
            text = (
                f"could not connect to {where} for {what} ({detail}); check base_url, DNS, "
                "the network and any proxy settings"
            )
        elif isinstance(exc, httpx.UnsupportedProtocol):
            code = "invalid_base_url"
            text = f"cannot send {what}: {detail}; base_url must start with http:// or https://"
        elif isinstance(exc, httpx.WriteError):
            code = "send_failed"
            text = f"the connection to {where} broke while sending {what} ({detail})"
        else:
            code = "connection_dropped"
            text = (
                f"the connection to {where} dropped during {what} before a complete answer "
                f"arrived ({detail}); the server may or may not have acted on the request"
            )
        error_class = StepError if isinstance(exc, _NOT_SENT) else OutcomeUnknown
        return error_class(text, type=kind, code=code, step=self._step)

    def _response_unreadable(self, exc: httpx.HTTPError, what: str) -> StepError:
        return OutcomeUnknown(
            f"the answer to {what} from {self._origin} could not be read "
            f"({self._scrub(f'{type(exc).__name__}: {exc}')})",
            type="invalid_response",
            code="unreadable_response",
            step=self._step,
        )

    # -- streams --------------------------------------------------------------------------

    def _event_payload(
        self, name: str | None, data: str, response: httpx.Response, what: str, received: int
    ) -> dict[str, Any] | None:
        if not data and name != "error":
            return None  # a named event without data (a keep-alive) carries nothing
        try:
            payload = jsonlib.loads(data) if data else {}
        except ValueError:
            if name != "error":
                raise self._invalid_stream(
                    response,
                    what,
                    f"event {received + 1} holds data that is not JSON: {data[:80]!r}",
                ) from None
            payload = {"message": data}
        error = payload.get("error") if isinstance(payload, dict) else None
        if name == "error" or error:
            fields = (
                error if isinstance(error, dict) else payload if isinstance(payload, dict) else {}
            )
            message = fields.get("message") or "the server sent an error event"
            raise StepError(
                f"{what} failed mid-stream after {received} event(s): {self._scrub(str(message))}",
                type=self._scrub(str(fields.get("type") or "server_error")),
                code=_opt_str(fields.get("code"), self._scrub),
                param=_opt_str(fields.get("param"), self._scrub),
                status=response.status_code,
                request_id=response.headers.get("x-request-id"),
                step=self._step,
            )
        if not isinstance(payload, dict):
            raise self._invalid_stream(
                response, what, f"event {received + 1} is {_json_kind(payload)}, not an object"
            )
        return payload

    def _cut_stream(
        self, exc: httpx.TransportError, what: str, received: int, response: httpx.Response
    ) -> StepError:
        kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection_error"
        return StepError(
            f"the event stream of {what} was cut after {received} event(s) "
            f"({self._scrub(f'{type(exc).__name__}: {exc}')}); the answer is incomplete "
            "and was discarded",
            type=kind,
            code="stream_cut",
            status=response.status_code,
            request_id=response.headers.get("x-request-id"),
            step=self._step,
        )

    def _invalid_stream(self, response: httpx.Response, what: str, detail: str) -> StepError:
        return StepError(
            f"the event stream of {what} is malformed: {self._scrub(detail)}",
            type="invalid_response",
            code="malformed_stream",
            status=response.status_code,
            request_id=response.headers.get("x-request-id"),
            step=self._step,
        )

    def _not_a_stream(self, response: httpx.Response, what: str, content_type: str) -> StepError:
        fields = _error_fields(response)
        if fields.get("message"):
            return self._status_error(response, what)
        return self._invalid_stream(
            response,
            what,
            f"expected text/event-stream, found {content_type or 'no content type'}; "
            "does the server support `stream: true`?",
        )

    # -- secrets --------------------------------------------------------------------------

    def _add_secret(self, secret: str) -> None:
        self._redactor.add(secret)

    def _scrub(self, text: str) -> str:
        return self._redactor.text(text)

    def _snippet(self, text: str) -> str:
        text = self._scrub(text.strip())
        return text if len(text) <= _SNIPPET else text[:_SNIPPET] + "…"


class _FilesReplay:
    """Rewinds file objects of a multipart body before a retry (the SDK's _RequestBodyReplay).

    A retry must send the same bytes again: file objects are seeked back to where they
    were; a body that cannot be rewound (a pipe, an iterator) is never retried.
    """

    def __init__(self, files: Any) -> None:
        self._positions: list[tuple[Any, int]] = []
        self._replayable = all(self._capture(content) for content in _file_contents(files))

    def _capture(self, content: Any) -> bool:
        if content is None or isinstance(content, bytes | bytearray | str):
            return True
        if not callable(getattr(content, "read", None)):
            return False
        try:
            if not content.seekable():
                return False
            position = content.tell()
        except (AttributeError, OSError, ValueError):
            return False
        if not isinstance(position, int):
            return False
        self._positions.append((content, position))
        return True

    def rewind(self) -> bool:
        if not self._replayable:
            return False
        try:
            for content, position in self._positions:
                content.seek(position)
        except (OSError, ValueError):
            return False
        return True


def _file_contents(files: Any) -> Iterator[Any]:
    if files is None:
        return
    entries = files.items() if isinstance(files, Mapping) else files
    for _, file in entries:
        yield file[1] if isinstance(file, tuple) and len(file) > 1 else file


_QueryItem = tuple[str, str | int | float | bool | None]


def _query(params: Mapping[str, Any] | None) -> list[_QueryItem] | None:
    if not params:
        return None
    items: list[_QueryItem] = []

    def add(name: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            # OpenAPI style: deepObject, explode: true (the `metadata` filter of list jobs).
            for key, item in value.items():
                add(f"{name}[{key}]", item)
        elif isinstance(value, bool):
            items.append((name, "true" if value else "false"))
        elif isinstance(value, Sequence) and not isinstance(value, str):
            for item in value:
                add(name, item)
        else:
            items.append((name, value if isinstance(value, int | float) else str(value)))

    for name, value in params.items():
        add(name, value)
    return items


def _error_fields(response: httpx.Response) -> dict[str, Any]:
    """OpenAI's ``{"error": {...}}`` (or a bare error object, as some compatible servers send)."""
    try:
        body = jsonlib.loads(response.content) if response.content else None
    except (ValueError, UnicodeDecodeError):
        return {}
    if not isinstance(body, dict):
        return {}
    error = body.get("error")
    if isinstance(error, dict):
        return error
    if isinstance(error, str):
        return {"message": error}
    return body if isinstance(body.get("message"), str) else {}


def _opt_str(value: Any, scrub: Callable[[str], str]) -> str | None:
    return None if value is None else scrub(str(value))


def _mime(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _json_kind(value: Any) -> str:
    if value is None:
        return "no body"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a JSON array"
    return f"a JSON {type(value).__name__}"


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
