"""Every failure of a request as a :class:`StepError` with OpenAI's error fields.

A provider's error body is read by its adapter (``error_fields``), so the error is in
OpenAI's shape with the provider's own message and request id. Nothing here carries a
secret: messages are built only from scrubbed text (every form of every secret the
client sends, masked).
"""

from __future__ import annotations

import json as jsonlib
from typing import TYPE_CHECKING, Any

import httpx

from steprun.runtime.errors import StepError
from steprun.runtime.secrets import Redactor

from .answers import OutcomeUnknown, json_kind, opt_str
from .retries import NOT_SENT

if TYPE_CHECKING:
    from .providers import Adapter

CONNECT_TIMEOUT = 5.0
_SNIPPET = 200
# OpenAI's error `type` for statuses whose body does not say (the SDK maps the same
# statuses to BadRequestError, AuthenticationError, PermissionDeniedError, ...).
TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout",
    409: "conflict_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


class Failures:
    """The error-building half of the client: what it needs is set by the client."""

    _adapter: Adapter
    _auth_name: str
    _redactor: Redactor
    _step: str
    base_url: str
    read_timeout: float

    @property
    def _origin(self) -> str:
        """Scheme, host and port of the base URL, for error messages.

        Computed when an error needs it, not per client: parsing the URL was most of the
        cost of building a client, and a client is built for every step execution.
        """
        return str(httpx.URL(self.base_url).copy_with(path="/", query=None)).rstrip("/")

    def _request_id(self, response: httpx.Response) -> str | None:
        return self._adapter.request_id(response.headers)

    def _error_fields(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = jsonlib.loads(response.content) if response.content else None
        except (ValueError, UnicodeDecodeError):
            return {}
        return self._adapter.error_fields(response.status_code, body)

    def _status_error(self, response: httpx.Response, what: str) -> StepError:
        status = response.status_code
        request_id = self._request_id(response)
        fields = self._error_fields(response)
        message = fields.get("message") or self._snippet(response.text) or response.reason_phrase
        text = f"{what} failed with HTTP {status}: {self._scrub(str(message))}"
        if status == 401:
            text += f" (check the api_key of authorization {self._auth_name!r})"
        elif status == 403:
            text += (
                f" (check the organization, project and key permissions of authorization "
                f"{self._auth_name!r})"
            )
        default_type = "server_error" if status >= 500 else TYPE_BY_STATUS.get(status, "api_error")
        error_class = OutcomeUnknown if status >= 500 else StepError
        return error_class(
            text,
            type=self._scrub(str(fields.get("type") or default_type)),
            code=opt_str(fields.get("code"), self._scrub),
            param=opt_str(fields.get("param"), self._scrub),
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
        error_class = StepError if isinstance(exc, NOT_SENT) else OutcomeUnknown
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
                code=opt_str(fields.get("code"), self._scrub),
                param=opt_str(fields.get("param"), self._scrub),
                status=response.status_code,
                request_id=self._request_id(response),
                step=self._step,
            )
        if not isinstance(payload, dict):
            raise self._invalid_stream(
                response, what, f"event {received + 1} is {json_kind(payload)}, not an object"
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
            request_id=self._request_id(response),
            step=self._step,
        )

    def _invalid_stream(self, response: httpx.Response, what: str, detail: str) -> StepError:
        return StepError(
            f"the event stream of {what} is malformed: {self._scrub(detail)}",
            type="invalid_response",
            code="malformed_stream",
            status=response.status_code,
            request_id=self._request_id(response),
            step=self._step,
        )

    def _not_a_stream(self, response: httpx.Response, what: str, content_type: str) -> StepError:
        fields = self._error_fields(response)
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


__all__ = ["CONNECT_TIMEOUT", "TYPE_BY_STATUS", "Failures"]
