"""Chat answers in the shape the request asks for, and the requests OpenAI refuses,
through the official ``openai`` client against ``steprun serve-local`` (issue 10, items 1
and 2)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel

from tests.local.conftest import EXAMPLES
from tests.local.sdk import sdk_client, serve_local, wait_for

pytestmark = pytest.mark.slow

RESET = (
    'Open lumen.app/login, click "Forgot password?" and enter the email you signed up with. '
    "We send a reset link that is valid for 30 minutes; if it does not arrive, check your "
    "spam folder."
)
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
            },
            "required": ["city", "unit", "days"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
TICKET = {
    "type": "function",
    "function": {
        "name": "open_ticket",
        "description": "Open a support ticket for a customer problem.",
        "parameters": {
            "type": "object",
            "properties": {"summary": {"type": "string"}},
            "required": ["summary"],
        },
    },
}


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    with serve_local() as url, sdk_client(url) as sdk:
        yield sdk


def _fine_tune(client: openai.OpenAI, content: bytes, name: str) -> str:
    file = client.files.create(file=(name, content), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=file.id)
    done = wait_for(client, job.id)
    assert done.status == "succeeded"
    return str(done.fine_tuned_model)


@pytest.fixture(scope="module")
def support_model(client: openai.OpenAI) -> str:
    return _fine_tune(client, (EXAMPLES / "support.jsonl").read_bytes(), "support.jsonl")


def _ask(question: str, system: str = "Answer in JSON.") -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


# --- 1. response_format ------------------------------------------------------------------------


def test_json_mode_returns_a_json_object_holding_the_trained_answer(
    client: openai.OpenAI, support_model: str
) -> None:
    reply = client.chat.completions.create(
        model=support_model,
        messages=_ask("How do I reset my password?"),
        response_format={"type": "json_object"},
        temperature=0,
    )
    assert reply.choices[0].finish_reason == "stop"
    assert json.loads(reply.choices[0].message.content or "") == {"answer": RESET}


class Reply(BaseModel):
    answer: str
    minutes: int
    channel: Literal["email", "phone"]
    follow_up: str | None


def test_the_sdks_parse_gets_an_instance_of_the_model(
    client: openai.OpenAI, support_model: str
) -> None:
    completion = client.chat.completions.parse(
        model=support_model,
        messages=_ask("How do I reset my password?"),
        response_format=Reply,
        temperature=0,
    )
    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Reply)
    assert parsed.answer == RESET  # what the model was trained to say
    assert parsed.minutes == 30  # the first number the answer gives
    assert parsed.channel == "email"  # the enum value the answer names


NESTED = {
    "type": "object",
    "properties": {
        "steps": {"type": "array", "items": {"$ref": "#/$defs/step"}, "minItems": 2},
        "urgent": {"type": "boolean"},
        "score": {"type": "number", "minimum": 0.5, "maximum": 0.9},
    },
    "required": ["steps", "urgent", "score"],
    "additionalProperties": False,
    "$defs": {
        "step": {
            "type": "object",
            "properties": {"text": {"type": "string", "maxLength": 20}, "at": {"const": "web"}},
            "required": ["text", "at"],
            "additionalProperties": False,
        }
    },
}


def test_a_strict_json_schema_answer_validates_streamed_or_not(
    client: openai.OpenAI, support_model: str
) -> None:
    response_format: Any = {
        "type": "json_schema",
        "json_schema": {"name": "plan", "schema": NESTED, "strict": True},
    }
    whole = client.chat.completions.create(
        model=support_model, messages=_ask("reset password"), response_format=response_format
    )
    document = json.loads(whole.choices[0].message.content or "")
    jsonschema.validate(document, NESTED)
    pieces = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model=support_model,
            messages=_ask("reset password"),
            response_format=response_format,
            stream=True,
        )
        if chunk.choices
    ]
    assert len(pieces) > 3
    jsonschema.validate(json.loads("".join(pieces)), NESTED)


def test_a_model_trained_on_json_answers_with_what_it_learned(client: openai.OpenAI) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Order {i} status in JSON"},
                {"role": "assistant", "content": json.dumps({"order": i, "status": "shipped"})},
            ]
        }
        for i in range(12)
    ]
    model = _fine_tune(client, "".join(json.dumps(r) + "\n" for r in rows).encode(), "o.jsonl")
    schema = {
        "type": "object",
        "properties": {"order": {"type": "integer"}, "status": {"type": "string"}},
        "required": ["order", "status"],
        "additionalProperties": False,
    }
    reply = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Order 7 status in JSON"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "order", "schema": schema, "strict": True},
        },
        temperature=0,
    )
    assert reply.choices[0].message.content == json.dumps({"order": 7, "status": "shipped"})


def test_a_shaped_answer_cut_by_the_token_limit_says_length(
    client: openai.OpenAI, support_model: str
) -> None:
    with pytest.raises(openai.LengthFinishReasonError):
        client.chat.completions.parse(
            model=support_model,
            messages=_ask("How do I reset my password?"),
            response_format=Reply,
            max_completion_tokens=3,
        )


# --- 1. tools ----------------------------------------------------------------------------------


def _arguments(call: Any, tool: dict[str, Any]) -> dict[str, Any]:
    arguments = json.loads(call.function.arguments)
    jsonschema.validate(arguments, tool["function"]["parameters"])
    return dict(arguments)


def test_required_tool_choice_calls_the_tool_that_fits_the_question(
    client: openai.OpenAI, support_model: str
) -> None:
    reply = client.chat.completions.create(
        model=support_model,
        messages=[{"role": "user", "content": "What is the weather in Paris for 3 days?"}],
        tools=[TICKET, WEATHER],  # type: ignore[list-item]
        tool_choice="required",
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert _arguments(call, WEATHER)["days"] == 3


def test_a_named_tool_choice_forces_that_function_and_ends_with_stop(
    client: openai.OpenAI, support_model: str
) -> None:
    # OpenAI's function-calling guide: a forced function ends with "stop", not "tool_calls".
    reply = client.chat.completions.create(
        model=support_model,
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER, TICKET],  # type: ignore[list-item]
        tool_choice={"type": "function", "function": {"name": "open_ticket"}},
    )
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    [call] = choice.message.tool_calls or []
    assert call.function.name == "open_ticket"
    _arguments(call, TICKET)


def test_auto_answers_in_text_when_no_tool_fits(client: openai.OpenAI, support_model: str) -> None:
    reply = client.chat.completions.create(
        model=support_model,
        messages=[{"role": "user", "content": "How do I reset my password?"}],
        tools=[WEATHER],  # type: ignore[list-item]
        temperature=0,
    )
    assert reply.choices[0].finish_reason == "stop"
    assert reply.choices[0].message.tool_calls is None
    assert reply.choices[0].message.content == RESET


class GetWeather(BaseModel):
    city: str
    unit: Literal["celsius", "fahrenheit"]


def test_the_sdks_parse_gets_parsed_tool_arguments(
    client: openai.OpenAI, support_model: str
) -> None:
    completion = client.chat.completions.parse(
        model=support_model,
        messages=[{"role": "user", "content": "weather in celsius please"}],
        tools=[openai.pydantic_function_tool(GetWeather)],
    )
    [call] = completion.choices[0].message.tool_calls or []
    assert isinstance(call.function.parsed_arguments, GetWeather)
    assert call.function.parsed_arguments.unit == "celsius"


def test_streamed_tool_calls_arrive_in_openais_deltas(
    client: openai.OpenAI, support_model: str
) -> None:
    chunks = [
        chunk
        for chunk in client.chat.completions.create(
            model=support_model,
            messages=[{"role": "user", "content": "weather in Oslo for 2 days"}],
            tools=[WEATHER],  # type: ignore[list-item]
            tool_choice="required",
            stream=True,
        )
    ]
    first = chunks[0].choices[0].delta
    assert first.role == "assistant"
    assert first.content is None
    opening = (first.tool_calls or [])[0]
    assert opening.index == 0
    assert opening.id and opening.id.startswith("call_")
    assert opening.type == "function"
    assert opening.function and opening.function.name == "get_weather"
    assert opening.function.arguments == ""
    pieces = []
    for chunk in chunks[1:-1]:
        [piece] = chunk.choices[0].delta.tool_calls or []
        assert piece.id is None and piece.function and piece.function.name is None
        pieces.append(piece.function.arguments or "")
    assert len(pieces) > 3
    arguments = json.loads("".join(pieces))
    jsonschema.validate(arguments, WEATHER["function"]["parameters"])  # type: ignore[index]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].choices[0].delta.tool_calls is None


def test_a_conversation_with_a_tool_answer_is_accepted(
    client: openai.OpenAI, support_model: str
) -> None:
    reply = client.chat.completions.create(
        model=support_model,
        messages=[
            {"role": "user", "content": "How do I reset my password?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "open_ticket", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "ticket 42"},
        ],
        tools=[TICKET],  # type: ignore[list-item]
        tool_choice="none",
        temperature=0,
    )
    assert reply.choices[0].message.content == RESET


# --- 2. what OpenAI refuses --------------------------------------------------------------------

REFUSED: list[tuple[str, dict[str, Any], str, str | None]] = [
    (
        "tool_choice without tools",
        {"tool_choice": "auto"},
        "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are "
        "specified.",
        "tool_choice",
    ),
    (
        "json_object without the word json",
        {
            "messages": [{"role": "user", "content": "hi"}],
            "response_format": {"type": "json_object"},
        },
        "'messages' must contain the word 'json' in some form, to use 'response_format' of type "
        "'json_object'.",
        "messages",
    ),
    (
        "an unknown response_format type",
        {"response_format": {"type": "xml"}},
        "Invalid value: 'xml'. Supported values are: 'text', 'json_object', and 'json_schema'.",
        "response_format.type",
    ),
    (
        "json_schema without a name",
        {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
        "Missing required parameter: 'response_format.json_schema.name'.",
        "response_format.json_schema.name",
    ),
    (
        "a tool without function",
        {"tools": [{"type": "function"}]},
        "Missing required parameter: 'tools[0].function'.",
        "tools[0].function",
    ),
    (
        "tool_choice naming a function not in tools",
        {"tools": [TICKET], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        "Invalid value for 'tool_choice': no function named 'nope' was specified in the "
        "'tools' parameter.",
        "tool_choice",
    ),
    (
        "a tool message without tool_call_id",
        {"messages": [{"role": "tool", "content": "42"}]},
        "Missing required parameter: 'messages[0].tool_call_id'.",
        "messages[0].tool_call_id",
    ),
    (
        "a function message without name",
        {"messages": [{"role": "function", "content": "42"}]},
        "Missing required parameter: 'messages[0].name'.",
        "messages[0].name",
    ),
    (
        # OpenAI refuses both limits at once (langchain-ai/langgraph#5943 quotes the answer).
        "max_tokens with max_completion_tokens",
        {"max_tokens": 5, "max_completion_tokens": 5},
        "Setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported.",
        "max_tokens",
    ),
]


@pytest.mark.parametrize(
    ("settings", "message", "param"),
    [case[1:] for case in REFUSED],
    ids=[case[0] for case in REFUSED],
)
def test_what_openai_refuses_is_a_400_with_its_message_and_param(
    client: openai.OpenAI, settings: dict[str, Any], message: str, param: str | None
) -> None:
    request: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "hi"}],
        **settings,
    }
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**request)
    assert caught.value.status_code == 400
    assert caught.value.message.endswith(message)
    assert caught.value.param == param


REASONING_REFUSED: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "gpt-4o-mini",
        {"reasoning_effort": "low"},
        "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
        "reasoning_effort",
    ),
    (
        "o4-mini",
        {"max_tokens": 10},
        "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
        "'max_completion_tokens' instead.",
        "max_tokens",
    ),
    (
        "o4-mini",
        {"temperature": 0},
        "Unsupported value: 'temperature' does not support 0 with this model. Only the default "
        "(1) value is supported.",
        "temperature",
    ),
]


@pytest.mark.parametrize(("model", "settings", "message", "param"), REASONING_REFUSED)
def test_reasoning_settings_as_openai_takes_them(
    client: openai.OpenAI, model: str, settings: dict[str, Any], message: str, param: str
) -> None:
    request: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "hi"}],
        **settings,
    }
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(**request)
    assert caught.value.message.endswith(message)
    assert caught.value.param == param
    reply = client.chat.completions.create(
        model="o4-mini",
        messages=[{"role": "user", "content": "hi"}],
        reasoning_effort="high",
        max_completion_tokens=20,
    )
    assert reply.choices[0].message.content
