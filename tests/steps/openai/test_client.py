"""The OpenAI HTTP client over real loopback HTTP, against the fault server."""

from __future__ import annotations

import email.utils
import io
import json
import time
from importlib import metadata
from typing import Any

import pytest

from steprun.runtime.errors import StepError
from steprun.steps.openai.client import (
    MAX_RETRY_AFTER,
    ApiResponse,
    OpenAIClient,
    OutcomeUnknown,
    path_segment,
    retry_delay,
)

from .conftest import CANARY_KEY, Harness, MakeContext
from .faultserver import Chunks, Drop, FaultServer, Hang, Reply, Reset

pytestmark = pytest.mark.anyio

OK = Reply.json({"object": "list", "data": [], "has_more": False}, x_request_id="req_ok")


def assert_no_key(error: BaseException | None, harness: Harness | None = None) -> None:
    """The canary key is nowhere: message, error object, exception chain, log lines."""
    seen = error
    while seen is not None:
        assert CANARY_KEY not in str(seen)
        assert CANARY_KEY not in repr(seen.args)
        if isinstance(seen, StepError):
            assert CANARY_KEY not in json.dumps(seen.to_dict())
        seen = seen.__cause__ or seen.__context__
    if harness is not None:
        assert CANARY_KEY not in harness.log_text()


async def fail(
    client: OpenAIClient, method: str = "GET", path: str = "/fine_tuning/jobs", **kwargs: Any
) -> StepError:
    with pytest.raises(StepError) as caught:
        await client.request(method, path, **kwargs)
    return caught.value


# -- headers and answers -------------------------------------------------------------------


async def test_sends_auth_organization_project_and_user_agent(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(OK)
    harness = make_context(fault_server.base_url, organization="org-42", project="proj_7")
    await OpenAIClient(harness.context).request("GET", "/fine_tuning/jobs")
    headers = fault_server.requests[0].headers
    assert headers["authorization"] == f"Bearer {CANARY_KEY}"
    assert headers["openai-organization"] == "org-42"
    assert headers["openai-project"] == "proj_7"
    assert headers["user-agent"].startswith(f"steprun/{metadata.version('steprun')} ")
    assert headers["accept"] == "application/json"
    assert fault_server.requests[0].target == "/v1/fine_tuning/jobs"


async def test_leaves_out_organization_project_and_key_when_unset(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(OK)
    harness = make_context(fault_server.base_url, api_key=None)
    await OpenAIClient(harness.context).request("GET", "/models")
    headers = fault_server.requests[0].headers
    assert not {"authorization", "openai-organization", "openai-project"} & set(headers)


async def test_answer_carries_status_lowercase_headers_body_and_request_id(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(Reply.json({"id": "ftjob-1"}, X_Request_ID="req_abc", X_Custom="v"))
    client = OpenAIClient(make_context(fault_server.base_url).context)
    response = await client.request("GET", "/fine_tuning/jobs/ftjob-1")
    assert response.request_id == "req_abc"
    assert response.headers["x-custom"] == "v"
    assert response.result("parsed") == {"id": "ftjob-1"}
    raw = response.result("raw")
    assert raw["status"] == 200 and raw["body"] == {"id": "ftjob-1"}
    assert raw["headers"]["x-request-id"] == "req_abc"


async def test_text_answer_is_returned_as_text(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    jsonl = b'{"prompt": "a", "completion": "b"}\n{"prompt": "c", "completion": "d"}\n'
    fault_server.script(Reply(200, jsonl, {"content-type": "application/octet-stream"}))
    client = OpenAIClient(make_context(fault_server.base_url).context)
    response = await client.request("GET", "/files/file-1/content")
    assert response.body == jsonl.decode()


async def test_mapping_params_are_sent_as_deep_objects(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(OK)
    client = OpenAIClient(make_context(fault_server.base_url).context)
    await client.request(
        "GET",
        "/fine_tuning/jobs",
        params={"limit": 5, "after": None, "metadata": {"team": "support bot"}, "flag": True},
    )
    assert fault_server.requests[0].query == [
        ("limit", "5"),
        ("metadata[team]", "support bot"),
        ("flag", "true"),
    ]


async def test_object_refuses_a_body_that_is_not_an_object() -> None:
    response = ApiResponse(status=200, headers={}, body=["x"], request_id="req_1")
    with pytest.raises(StepError) as caught:
        response.object()
    assert caught.value.type == "invalid_response"
    assert caught.value.request_id == "req_1"


def test_path_segment_encodes_slashes_and_refuses_dot_segments() -> None:
    assert path_segment("ft:gpt-4o-mini:org:bot:abc") == "ft:gpt-4o-mini:org:bot:abc"
    assert path_segment("a/../b") == "a%2F..%2Fb"
    # A literal "%" is encoded too, so "%2e" cannot smuggle in a dot segment.
    assert path_segment("%2e%2E") == "%252e%252E"
    for bad in ("", ".", ".."):
        with pytest.raises(StepError):
            path_segment(bad)


# -- errors ----------------------------------------------------------------------------------


async def test_error_answer_becomes_a_step_error_with_openai_fields(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(
        Reply.error(
            404,
            "Could not find fine-tune: ftjob-x",
            code="fine_tune_not_found",
            param="fine_tune_id",
            x_request_id="req_404",
        )
    )
    client = OpenAIClient(make_context(fault_server.base_url).context)
    error = await fail(client, "GET", "/fine_tuning/jobs/ftjob-x")
    assert error.to_dict() | {"message": None} == {
        "type": "invalid_request_error",
        "code": "fine_tune_not_found",
        "param": "fine_tune_id",
        "status": 404,
        "request_id": "req_404",
        "step": "job",
        "message": None,
    }
    assert "Could not find fine-tune: ftjob-x" in error.message
    assert "HTTP 404" in error.message
    assert not isinstance(error, OutcomeUnknown)
    assert len(fault_server.requests) == 1


async def test_error_without_openai_body_still_has_a_type_and_the_text(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(
        Reply(403, b"<html>Forbidden by proxy</html>", {"content-type": "text/html"})
    )
    error = await fail(OpenAIClient(make_context(fault_server.base_url).context))
    assert error.type == "permission_error"
    assert "Forbidden by proxy" in error.message


async def test_key_echoed_by_the_server_is_masked(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(
        Reply.error(401, f"Incorrect API key provided: {CANARY_KEY}.", code="invalid_api_key")
    )
    harness = make_context(fault_server.base_url)
    error = await fail(OpenAIClient(harness.context))
    assert error.type == "invalid_request_error"
    assert error.code == "invalid_api_key"
    assert "Incorrect API key provided: ***" in error.message
    assert "check the api_key of authorization 't'" in error.message
    assert_no_key(error, harness)


async def test_malformed_json_is_a_step_error_and_not_retried(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(
        Reply(200, b'{"id": "ftjob-1", "status": ', {"content-type": "application/json"})
    )
    harness = make_context(fault_server.base_url)
    error = await fail(OpenAIClient(harness.context))
    assert isinstance(error, OutcomeUnknown)
    assert (error.type, error.code, error.status) == ("invalid_response", "malformed_json", 200)
    assert '{"id": "ftjob-1", "status":' in error.message
    assert len(fault_server.requests) == 1
    assert harness.sleeps == []
    assert_no_key(error, harness)


# -- retries ----------------------------------------------------------------------------------


async def test_429_waits_for_retry_after_seconds(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(
        Reply.error(
            429, "Rate limit reached", type="requests", code="rate_limit_exceeded", retry_after="2"
        ),
        OK,
    )
    harness = make_context(fault_server.base_url)
    response = await OpenAIClient(harness.context).request("GET", "/fine_tuning/jobs")
    assert response.request_id == "req_ok"
    assert harness.sleeps == [2.0]
    [warning] = harness.lines("warn")
    assert (
        "HTTP 429 rate_limit_exceeded" in warning and "retrying in 2.0s (retry 1 of 2)" in warning
    )
    assert len(fault_server.requests) == 2


async def test_retry_after_ms_wins_over_retry_after(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(Reply.error(429, "slow down", retry_after_ms="250", retry_after="9"), OK)
    harness = make_context(fault_server.base_url)
    await OpenAIClient(harness.context).request("GET", "/fine_tuning/jobs")
    assert harness.sleeps == [0.25]


async def test_retry_after_as_http_date(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    fault_server.script(Reply.error(503, "busy", retry_after=when), OK)
    harness = make_context(fault_server.base_url)
    await OpenAIClient(harness.context).request("GET", "/fine_tuning/jobs")
    [slept] = harness.sleeps
    assert 27 < slept <= 30


async def test_retry_after_over_two_minutes_is_not_retried(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(
        Reply.error(429, "come back tomorrow", retry_after=str(MAX_RETRY_AFTER + 1))
    )
    harness = make_context(fault_server.base_url)
    error = await fail(OpenAIClient(harness.context))
    assert error.status == 429
    assert harness.sleeps == []
    assert len(fault_server.requests) == 1


async def test_503_backs_off_exponentially_then_gives_up(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(*[Reply.error(503, "overloaded", type="server_error")] * 3)
    harness = make_context(fault_server.base_url, max_retries=2)
    error = await fail(OpenAIClient(harness.context))
    assert isinstance(error, OutcomeUnknown)
    assert (error.type, error.status) == ("server_error", 503)
    assert "gave up after 2 retries" in error.message
    first, second = harness.sleeps
    # 0.5 s * 2^n, less up to 25 % jitter.
    assert 0.375 <= first <= 0.5 and 0.75 <= second <= 1.0
    assert len(fault_server.requests) == 3
    assert len(harness.lines("warn")) == 2


def test_backoff_is_capped_at_eight_seconds() -> None:
    assert all(6.0 <= retry_delay(n) <= 8.0 for n in (4, 10, 2000))


async def test_x_should_retry_false_is_obeyed(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(
        Reply.error(500, "do not bother", type="server_error", x_should_retry="false")
    )
    harness = make_context(fault_server.base_url)
    error = await fail(OpenAIClient(harness.context))
    assert error.status == 500
    assert len(fault_server.requests) == 1 and harness.sleeps == []


async def test_x_should_retry_true_retries_even_a_400(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(Reply.error(400, "try again", x_should_retry="true"), OK)
    harness = make_context(fault_server.base_url)
    await OpenAIClient(harness.context).request("GET", "/fine_tuning/jobs")
    assert len(fault_server.requests) == 2
    assert "x-should-retry: true" in harness.lines("warn")[0]


async def test_insufficient_quota_is_never_retried(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(
        Reply.error(
            429,
            "You exceeded your current quota, please check your plan and billing details.",
            type="insufficient_quota",
            code="insufficient_quota",
        )
    )
    harness = make_context(fault_server.base_url)
    error = await fail(OpenAIClient(harness.context))
    assert (error.type, error.code, error.status) == (
        "insufficient_quota",
        "insufficient_quota",
        429,
    )
    assert "exceeded your current quota" in error.message
    assert len(fault_server.requests) == 1 and harness.sleeps == []


async def test_400_is_not_retried(fault_server: FaultServer, make_context: MakeContext) -> None:
    fault_server.script(Reply.error(400, "bad", param="model"))
    harness = make_context(fault_server.base_url)
    error = await fail(OpenAIClient(harness.context))
    assert error.info.param == "model"
    assert len(fault_server.requests) == 1


async def test_reset_before_the_request_is_read_is_retried(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(Reset(), OK)
    harness = make_context(fault_server.base_url)
    response = await OpenAIClient(harness.context).request("GET", "/fine_tuning/jobs")
    assert response.request_id == "req_ok"
    assert len(harness.sleeps) == 1
    assert len(fault_server.requests) == 1  # the reset connection never delivered it
    assert_no_key(None, harness)


async def test_drop_after_the_request_is_read_is_retried_when_safe(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(Drop(), OK)
    harness = make_context(fault_server.base_url)
    await OpenAIClient(harness.context).request("GET", "/fine_tuning/jobs")
    assert len(fault_server.requests) == 2
    assert "connection_dropped" in harness.lines("warn")[0]


async def test_drop_after_the_request_is_read_is_not_resent_when_unsafe(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(Drop(), OK)
    harness = make_context(fault_server.base_url)
    client = OpenAIClient(harness.context)
    error = await fail(client, "POST", "/fine_tuning/jobs", json={"model": "m"}, retry_unsafe=False)
    assert isinstance(error, OutcomeUnknown)
    assert (error.type, error.code) == ("connection_error", "connection_dropped")
    assert "may or may not have acted" in error.message
    assert len(fault_server.requests) == 1 and harness.sleeps == []
    assert_no_key(error, harness)


async def test_unsafe_request_is_not_resent_after_a_5xx_but_is_after_a_429(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(Reply.error(429, "slow"), Reply.error(500, "oops", type="server_error"))
    harness = make_context(fault_server.base_url)
    error = await fail(
        OpenAIClient(harness.context), "POST", "/fine_tuning/jobs", json={}, retry_unsafe=False
    )
    assert isinstance(error, OutcomeUnknown) and error.status == 500
    assert len(fault_server.requests) == 2 and len(harness.sleeps) == 1


async def test_refused_connection_is_retried_then_reported(make_context: MakeContext) -> None:
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    harness = make_context(f"http://127.0.0.1:{port}/v1")
    error = await fail(
        OpenAIClient(harness.context), "POST", "/fine_tuning/jobs", json={}, retry_unsafe=False
    )
    # Nothing was sent, so even an unsafe request is retried.
    assert len(harness.sleeps) == 2
    assert (error.type, error.code) == ("connection_error", "connect_failed")
    assert f"127.0.0.1:{port}" in error.message and "check base_url" in error.message
    assert not isinstance(error, OutcomeUnknown)
    assert_no_key(error, harness)


async def test_read_timeout_names_the_setting_to_raise(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(Hang(1.0))
    harness = make_context(fault_server.base_url, max_retries=0, timeout=0.2)
    error = await fail(OpenAIClient(harness.context))
    assert isinstance(error, OutcomeUnknown)
    assert (error.type, error.code) == ("timeout", "read_timeout")
    assert "within 0.2s" in error.message and "timeout" in error.message
    assert_no_key(error, harness)


async def test_step_timeout_overrides_the_authorization_timeout(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    harness = make_context(fault_server.base_url, auth_timeout=42.0, timeout=7.0)
    assert OpenAIClient(harness.context).read_timeout == 7.0
    assert (
        OpenAIClient(make_context(fault_server.base_url, auth_timeout=42.0).context).read_timeout
        == 42.0
    )


async def test_multipart_file_is_rewound_before_a_retry(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(Reply.error(503, "busy"), Reply.json({"id": "file-1"}))
    harness = make_context(fault_server.base_url)
    content = b'{"messages": []}\n' * 50
    handle = io.BytesIO(content)
    await OpenAIClient(harness.context).request(
        "POST", "/files", files={"file": ("train.jsonl", handle)}, data={"purpose": "fine-tune"}
    )
    first, second = fault_server.requests
    assert content in first.body and content in second.body
    assert len(first.body) == len(second.body)


async def test_a_key_with_a_newline_is_refused_without_quoting_it(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    with pytest.raises(StepError) as caught:
        OpenAIClient(make_context(fault_server.base_url, api_key=CANARY_KEY + "\n").context)
    assert caught.value.code == "invalid_api_key"
    assert_no_key(caught.value)


# -- server-sent events -----------------------------------------------------------------------


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


async def collect(client: OpenAIClient) -> list[dict[str, Any]]:
    return [event async for event in client.stream("POST", "/completions", json={"stream": True})]


async def test_stream_with_crlf_cr_lf_and_utf8_split_across_chunks(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    text = json.dumps({"text": "héllo wörld ✓"}, ensure_ascii=False).encode()
    accent = text.index("é".encode()) + 1  # split inside the two bytes of é
    check = text.index("✓".encode()) + 2  # and inside the three bytes of ✓
    chunks = [
        b": keep-alive\r\n\r\n",
        b"data: " + text[:accent],
        text[accent:check],
        text[check:] + b"\r",
        b"\n\r\n",  # the CRLF is split across chunks, then an empty line ends the event
        b'event: message\rdata: {"text": "b"}\r\r',
        b'data: {"text": "c"}\n\n',
        b"data: [DONE]\n\n",
    ]
    fault_server.script(Chunks(chunks))
    events = await collect(OpenAIClient(make_context(fault_server.base_url).context))
    assert events == [{"text": "héllo wörld ✓"}, {"text": "b"}, {"text": "c"}]
    assert fault_server.requests[0].json() == {"stream": True}


async def test_stream_cut_midway_raises_after_the_events_so_far(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(Chunks([sse({"n": 1}), sse({"n": 2}), b'data: {"n": 3'], cut=True))
    harness = make_context(fault_server.base_url)
    received: list[dict[str, Any]] = []
    with pytest.raises(StepError) as caught:
        async for event in OpenAIClient(harness.context).stream("POST", "/completions", json={}):
            received.append(event)
    assert received == [{"n": 1}, {"n": 2}]
    assert (caught.value.type, caught.value.code) == ("connection_error", "stream_cut")
    assert "after 2 event(s)" in caught.value.message and "discarded" in caught.value.message
    assert_no_key(caught.value, harness)


async def test_stream_that_ends_without_done_is_an_error(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(Chunks([sse({"n": 1})]))
    with pytest.raises(StepError) as caught:
        await collect(OpenAIClient(make_context(fault_server.base_url).context))
    assert caught.value.code == "stream_incomplete"


async def test_stream_error_event_raises_with_its_fields(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    error = {
        "error": {
            "message": "The server had an error",
            "type": "server_error",
            "code": "internal",
            "param": None,
        }
    }
    fault_server.script(
        Chunks(
            [sse({"n": 1}), b"event: error\ndata: " + json.dumps(error).encode() + b"\n\n"],
            headers={"content-type": "text/event-stream", "x-request-id": "req_s"},
        )
    )
    with pytest.raises(StepError) as caught:
        await collect(OpenAIClient(make_context(fault_server.base_url).context))
    assert caught.value.to_dict() | {"message": None} == {
        "type": "server_error",
        "code": "internal",
        "param": None,
        "status": 200,
        "request_id": "req_s",
        "step": "job",
        "message": None,
    }
    assert "The server had an error" in caught.value.message


async def test_stream_data_that_is_not_json_is_an_error(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(Chunks([b"data: {not json\n\n", b"data: [DONE]\n\n"]))
    with pytest.raises(StepError) as caught:
        await collect(OpenAIClient(make_context(fault_server.base_url).context))
    assert (caught.value.type, caught.value.code) == ("invalid_response", "malformed_stream")


async def test_stream_is_retried_before_it_starts(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(
        Reply.error(429, "slow", retry_after="1"), Chunks([sse({"n": 1}), b"data: [DONE]\n\n"])
    )
    harness = make_context(fault_server.base_url)
    assert await collect(OpenAIClient(harness.context)) == [{"n": 1}]
    assert harness.sleeps == [1.0]


async def test_stream_answered_with_plain_json_is_refused(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(Reply.json({"id": "cmpl-1", "choices": []}))
    with pytest.raises(StepError) as caught:
        await collect(OpenAIClient(make_context(fault_server.base_url).context))
    assert "expected text/event-stream" in caught.value.message
