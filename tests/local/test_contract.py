"""The contract helper other tests rely on: path matching, request/response checks, and
the explicit repairs of the upstream documents' quirks."""

from __future__ import annotations

from typing import Any

import pytest

from tests.contract import (
    ContractError,
    iter_templates,
    match_path,
    spec_for,
    sse_data,
    validate_query,
    validate_request,
    validate_response,
    validate_schema,
    validate_sse,
)

JOB = {
    "object": "fine_tuning.job",
    "id": "ftjob-abc",
    "model": "gpt-4o-mini-2024-07-18",
    "created_at": 1,
    "finished_at": None,
    "fine_tuned_model": None,
    "organization_id": "org-x",
    "result_files": [],
    "status": "running",
    "validation_file": None,
    "training_file": "file-abc",
    "hyperparameters": {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.8},
    "trained_tokens": None,
    "error": None,
    "seed": 1,
}


def test_match_path_strips_server_prefix_and_query_and_prefers_literal_segments() -> None:
    assert match_path("current", "GET", "/v1/fine_tuning/jobs?limit=2") == "/fine_tuning/jobs"
    assert (
        match_path("current", "POST", "http://h/v1/fine_tuning/jobs/ftjob-1/cancel")
        == "/fine_tuning/jobs/{fine_tuning_job_id}/cancel"
    )
    assert match_path("legacy", "GET", "/v1/fine-tunes/ft-1/events") == (
        "/fine-tunes/{fine_tune_id}/events"
    )


def test_match_path_rejects_an_undocumented_operation() -> None:
    with pytest.raises(ContractError, match="no operation"):
        match_path("current", "PUT", "/v1/files")


def test_spec_for_prefers_the_current_spec_and_falls_back_to_legacy() -> None:
    assert spec_for("POST", "/v1/completions") == ("current", "/completions")
    assert spec_for("POST", "/v1/fine-tunes") == ("legacy", "/fine-tunes")


def test_both_specs_document_the_operations_the_backend_serves() -> None:
    current = set(iter_templates("current"))
    assert ("POST", "/fine_tuning/jobs/{fine_tuning_job_id}/pause") in current
    assert ("GET", "/fine-tunes/{fine_tune_id}/events") in set(iter_templates("legacy"))


def test_learning_rate_below_one_is_valid_despite_boolean_exclusive_minimum() -> None:
    # Unrepaired, `exclusiveMinimum: true` reads as "> 1" under Draft 2020-12.
    body = {
        "model": "gpt-4o-mini",
        "training_file": "file-abc",
        "method": {
            "type": "supervised",
            "supervised": {"hyperparameters": {"learning_rate_multiplier": 0.1}},
        },
    }
    validate_request("current", "POST", "/fine_tuning/jobs", body)


def test_exclusive_minimum_still_rejects_zero() -> None:
    body = {"model": "m", "training_file": "f", "hyperparameters": {"learning_rate_multiplier": 0}}
    with pytest.raises(ContractError, match="learning_rate_multiplier"):
        validate_request("current", "POST", "/fine_tuning/jobs", body)


def test_nullable_properties_of_the_current_spec_accept_null() -> None:
    validate_request(
        "current",
        "POST",
        "/completions",
        {"model": "m", "prompt": "p", "max_tokens": None, "stop": None, "logprobs": None},
    )
    validate_request(
        "current", "POST", "/fine_tuning/jobs", {"model": "m", "training_file": "f", "suffix": None}
    )


def test_non_nullable_properties_still_reject_null() -> None:
    with pytest.raises(ContractError, match="model"):
        validate_request("current", "POST", "/completions", {"model": None, "prompt": "p"})


def test_unknown_request_argument_is_rejected_when_strict() -> None:
    body = {"model": "m", "training_file": "f", "trainingfile": "typo"}
    with pytest.raises(ContractError, match="trainingfile"):
        validate_request("current", "POST", "/fine_tuning/jobs", body)
    validate_request("current", "POST", "/fine_tuning/jobs", body, strict=False)


def test_chat_request_arguments_from_shared_allof_parts_are_known() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}
    validate_request("current", "POST", "/chat/completions", body)


def test_multipart_upload_body_takes_bytes_for_the_file() -> None:
    body = {"file": b"{}\n", "purpose": "fine-tune"}
    validate_request("current", "POST", "/files", body, content_type="multipart/form-data")
    with pytest.raises(ContractError, match="purpose"):
        validate_request(
            "current", "POST", "/files", {"file": b"x"}, content_type="multipart/form-data"
        )


def test_legacy_create_fine_tune_request_uses_oas30_nullable() -> None:
    validate_request("legacy", "POST", "/fine-tunes", {"training_file": "f", "suffix": None})
    with pytest.raises(ContractError, match="too long"):
        validate_request(
            "legacy", "POST", "/fine-tunes", {"training_file": "f", "suffix": "x" * 41}
        )


def test_query_parameters_are_typed_and_deep_objects_understood() -> None:
    validate_query("current", "GET", "/fine_tuning/jobs", "limit=5&after=ftjob-1&metadata[k]=v")
    with pytest.raises(ContractError, match="limit"):
        validate_query("current", "GET", "/fine_tuning/jobs", "limit=many")
    with pytest.raises(ContractError, match="unknown query parameter"):
        validate_query("current", "GET", "/fine_tuning/jobs", "page=2")
    # The documented filter for "jobs without metadata".
    validate_query("current", "GET", "/fine_tuning/jobs", {"metadata": "null"})


def test_paused_job_status_is_accepted() -> None:
    validate_response(
        "current", "POST", "/fine_tuning/jobs/{fine_tuning_job_id}/pause", 200,
        {**JOB, "status": "paused"},
    )  # fmt: skip


def test_unknown_job_status_other_than_paused_is_rejected() -> None:
    with pytest.raises(ContractError, match="status"):
        validate_schema("current", "FineTuningJob", {**JOB, "status": "exploded"})


def test_missing_required_response_fields_are_all_listed() -> None:
    partial = {k: v for k, v in JOB.items() if k not in ("seed", "error")}
    with pytest.raises(ContractError) as caught:
        validate_response("current", "GET", "/fine_tuning/jobs/{fine_tuning_job_id}", 200, partial)
    assert len(caught.value.errors) == 2


def test_undocumented_error_statuses_are_checked_against_error_response() -> None:
    body = {"error": {"message": "m", "type": "t", "param": None, "code": None}}
    validate_response("legacy", "GET", "/fine-tunes", 404, body)
    with pytest.raises(ContractError, match="param"):
        validate_response(
            "current", "GET", "/models", 401, {"error": {"message": "m", "type": "t"}}
        )


def test_empty_file_list_may_have_null_first_and_last_ids() -> None:
    body: dict[str, Any] = {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    validate_response("current", "GET", "/files", 200, body)


def test_legacy_completion_top_logprobs_are_floats() -> None:
    body: dict[str, Any] = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1,
        "model": "curie",
        "choices": [
            {
                "text": " hi",
                "index": 0,
                "finish_reason": "stop",
                "logprobs": {
                    "tokens": [" hi"],
                    "token_logprobs": [-0.25],
                    "top_logprobs": [{" hi": -0.25}],
                    "text_offset": [0],
                },
            }
        ],
    }
    validate_response("legacy", "POST", "/completions", 200, body)


def test_event_stream_must_end_with_done_and_chunks_follow_the_stream_schema() -> None:
    chunk = (
        '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m",'
        '"choices":[{"index":0,"delta":{"content":"x"},"finish_reason":null}]}'
    )
    stream = f"data: {chunk}\n\ndata: [DONE]\n\n"
    assert validate_sse("current", "POST", "/chat/completions", stream)[0]["id"] == "c"
    with pytest.raises(ContractError, match="DONE"):
        validate_sse("current", "POST", "/chat/completions", f"data: {chunk}\n\n")
    assert sse_data("data: a\r\n\r\ndata: b\n\n") == ["a", "b"]


def test_completion_stream_chunks_may_have_a_null_finish_reason() -> None:
    chunk = (
        '{"id":"c","object":"text_completion","created":1,"model":"m",'
        '"choices":[{"text":"x","index":0,"logprobs":null,"finish_reason":null}]}'
    )
    validate_sse("current", "POST", "/completions", f"data: {chunk}\n\ndata: [DONE]\n\n")
