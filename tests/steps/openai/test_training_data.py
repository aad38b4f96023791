"""openai.validate_training_data: real JSONL files on disk, every problem with its line."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from steprun.runtime.errors import StepError
from steprun.runtime.schemas import SchemaRegistry
from steprun.runtime.step import StepContext, StepLogger
from steprun.steps.openai import training_data
from steprun.steps.openai.training_data import (
    STEP_TYPES,
    VALIDATE_TRAINING_DATA,
    check_training_data,
    default_epochs,
    estimate_tokens,
)

SCHEMA_FILE = (
    Path(__file__).resolve().parents[3] / "schemas" / "openai.validate_training_data.schema.json"
)
EXAMPLES_DATA = Path(__file__).resolve().parents[3] / "examples" / "data"

CHAT: dict[str, Any] = {
    "messages": [
        {"role": "system", "content": "You answer support questions in one sentence."},
        {"role": "user", "content": "How do I reset my password?"},
        {"role": "assistant", "content": "Use the 'Forgot password' link on the sign-in page."},
    ]
}
COMPLETION: dict[str, Any] = {"prompt": "Reset password ->", "completion": " Use the link."}
PREFERENCE: dict[str, Any] = {
    "input": {"messages": [{"role": "user", "content": "How cold is it in Oslo?"}]},
    "preferred_output": [{"role": "assistant", "content": "About -3 °C this morning."}],
    "non_preferred_output": [{"role": "assistant", "content": "Cold."}],
}


def write(tmp_path: Path, lines: list[Any], *, name: str = "data.jsonl", end: str = "\n") -> Path:
    """Write lines (dicts are dumped as JSON, strings written as they are)."""
    text = end.join(line if isinstance(line, str) else json.dumps(line) for line in lines)
    path = tmp_path / name
    path.write_text(text + end, encoding="utf-8", newline="")
    return path


def chat_with(*messages: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"messages": list(messages), **extra}


USER = {"role": "user", "content": "Hi"}
ASSISTANT = {"role": "assistant", "content": "Hello."}


def problems_of(path: Path, **options: Any) -> list[tuple[int | None, str]]:
    report = check_training_data(path, **options)
    return [(p.line, p.message) for p in report.problems]


# --- valid files, every format ----------------------------------------------------------


@pytest.mark.parametrize(
    ("example", "fmt"), [(CHAT, "chat"), (COMPLETION, "completion"), (PREFERENCE, "preference")]
)
def test_a_valid_file_of_each_format_has_no_problems(
    tmp_path: Path, example: dict[str, Any], fmt: str
) -> None:
    report = check_training_data(write(tmp_path, [example] * 12))
    data = report.to_dict()
    assert data["ok"] is True
    assert data["format"] == fmt
    assert data["counts"] == {
        "lines": 12,
        "examples": 12,
        "valid": 12,
        "invalid": 0,
        "problems": 0,
    }
    assert data["problems"] == []
    per_example = data["tokens"]["per_example"]
    assert 0 < per_example["min"] == per_example["max"] == per_example["mean"]
    assert data["tokens"]["total"] == 12 * per_example["min"]


def test_chat_tokens_follow_the_cookbook_formula(tmp_path: Path) -> None:
    # 3 messages x 3 framing tokens + 3 priming + the role and content text of each.
    texts = [m[k] for m in CHAT["messages"] for k in ("role", "content")]
    expected = 3 * 3 + 3 + sum(estimate_tokens(t) for t in texts)
    report = check_training_data(write(tmp_path, [CHAT] * 10))
    assert report.tokens.minimum == expected


def test_crlf_line_endings_are_accepted(tmp_path: Path) -> None:
    report = check_training_data(write(tmp_path, [CHAT] * 10, end="\r\n"))
    assert report.ok, report.problems


def test_billing_uses_the_default_epochs_and_truncates_long_examples(tmp_path: Path) -> None:
    report = check_training_data(write(tmp_path, [CHAT] * 20), max_tokens_per_example=10)
    data = report.to_dict()
    assert data["tokens"]["examples_over_limit"] == 20
    # 20 examples: 3 epochs would be 60 example passes < 100, so OpenAI picks 100 // 20 = 5.
    assert data["billing"] == {
        "n_epochs": 5,
        "n_epochs_source": "default",
        "billed_tokens_per_epoch": 200,
        "billed_tokens": 1000,
    }


def test_configured_epochs_replace_the_default(tmp_path: Path) -> None:
    report = check_training_data(write(tmp_path, [CHAT] * 10), n_epochs=2)
    billing = report.to_dict()["billing"]
    assert billing["n_epochs"] == 2
    assert billing["n_epochs_source"] == "config"
    assert billing["billed_tokens"] == 2 * report.tokens.total


@pytest.mark.parametrize(
    ("n_examples", "epochs"),
    # 5 examples -> 20 epochs is the cookbook notebook's own printed result.
    [(5, 20), (3, 25), (12, 8), (34, 3), (100, 3), (8333, 3), (10_000, 2), (30_000, 1)],
)
def test_default_epochs_match_the_cookbook(n_examples: int, epochs: int) -> None:
    assert default_epochs(n_examples) == epochs


# --- the token estimate -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "cl100k"),
    # Real cl100k_base counts published in OpenAI's "How to count tokens with tiktoken".
    [("2 + 2 = 4", 7), ("お誕生日おめでとう", 9)],
)
def test_estimate_is_exact_where_the_pre_tokenizer_decides(text: str, cl100k: int) -> None:
    assert estimate_tokens(text) == cl100k


def test_estimate_is_within_five_percent_of_the_cookbook_chat_example(tmp_path: Path) -> None:
    # The cookbook's six-message example: 129 prompt tokens by tiktoken and by the API.
    messages = [
        {
            "role": "system",
            "content": "You are a helpful, pattern-following assistant that translates "
            "corporate jargon into plain English.",
        },
        {
            "role": "system",
            "name": "example_user",
            "content": "New synergies will help drive top-line growth.",
        },
        {
            "role": "system",
            "name": "example_assistant",
            "content": "Things working well together will increase revenue.",
        },
        {
            "role": "system",
            "name": "example_user",
            "content": "Let's circle back when we have more bandwidth to touch base on "
            "opportunities for increased leverage.",
        },
        {
            "role": "system",
            "name": "example_assistant",
            "content": "Let's talk later when we're less busy about how to do better.",
        },
        {
            "role": "user",
            "content": "This late pivot means we don't have time to boil the ocean for the "
            "client deliverable.",
        },
        ASSISTANT,
    ]
    # The assistant message makes it a valid training example; take its cost back out.
    report = check_training_data(write(tmp_path, [{"messages": messages}]), min_examples=1)
    assistant_cost = 3 + estimate_tokens("assistant") + estimate_tokens("Hello.")
    assert abs((report.tokens.total - assistant_cost) - 129) <= 129 * 0.05


def test_estimate_of_english_prose_is_in_the_published_characters_per_token_range() -> None:
    # OpenAI's rule of thumb is ~4 characters per token; cl100k does a little better on
    # clean prose. No tiktoken count of this paragraph is available offline, so this pins
    # the plausible range only; the exact calibration points are the tests above.
    prose = (
        "Fine-tuning lets you get more out of the models available through the API by "
        "providing higher quality results than prompting, the ability to train on more "
        "examples than can fit in a prompt, token savings due to shorter prompts, and "
        "lower latency requests. Once a model has been fine-tuned, you won't need to "
        "provide as many examples in the prompt."
    )
    ratio = len(prose) / estimate_tokens(prose)
    assert 3.5 <= ratio <= 5.5


# --- problems, each with its line number ------------------------------------------------


def test_fewer_examples_than_the_minimum_is_a_file_level_problem_listed_first(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, [CHAT] * 3 + ['{"messages": 1}'])
    found = problems_of(path)
    assert found[0] == (None, "the file has 4 examples; fine-tuning needs at least 10")
    assert found[1][0] == 4
    assert check_training_data(write(tmp_path, [CHAT] * 3), min_examples=1).ok


def test_an_empty_file_has_no_examples_and_no_format(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    report = check_training_data(path)
    assert report.format is None
    assert [(p.line, p.message) for p in report.problems] == [
        (None, "the file has 0 examples; fine-tuning needs at least 10")
    ]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            chat_with({"role": "bot", "content": "Hi"}, ASSISTANT),
            "messages[0].role: 'bot' is not one of system, developer, user, assistant, "
            "tool, function",
        ),
        (chat_with({"content": "Hi"}, ASSISTANT), "messages[0]: has no 'role'"),
        (chat_with({"role": "user", "content": ""}, ASSISTANT), "messages[0].content: is empty"),
        (
            chat_with({"role": "user", "content": "  \n"}, ASSISTANT),
            "messages[0].content: is only whitespace",
        ),
        (
            chat_with({"role": "user", "content": 42}, ASSISTANT),
            "messages[0].content: must be a string or a list of content parts, found a number",
        ),
        (chat_with({"role": "user"}, ASSISTANT), "messages[0]: has no 'content'"),
        (
            chat_with(USER, {"role": "assistant", "content": None}),
            "messages[1].content: must be a string or a list of content parts, found null",
        ),
        (
            chat_with(USER, {"role": "user", "content": "Still there?"}),
            "messages: has no assistant message: each example needs at least one",
        ),
        (
            chat_with(USER, {**ASSISTANT, "weight": 2}),
            "messages[1].weight: must be 0 or 1, found 2",
        ),
        (
            chat_with(USER, {**ASSISTANT, "weight": True}),
            "messages[1].weight: must be 0 or 1, found true",
        ),
        (
            chat_with({**USER, "weight": 1}, ASSISTANT),
            "messages[0].weight: is only allowed on assistant messages",
        ),
        (
            chat_with(USER, {**ASSISTANT, "weight": 0}),
            "messages: every assistant message has weight 0, so nothing is learned",
        ),
        (
            chat_with({**USER, "mood": "happy"}, ASSISTANT),
            "messages[0]: unknown key 'mood' (allowed: role, content, name)",
        ),
        (
            chat_with(USER, ASSISTANT, metadata={"id": 1}),
            "unknown key 'metadata' (allowed: messages, tools, functions, parallel_tool_calls)",
        ),
        ({"messages": []}, "messages: is an empty list"),
        ({"messages": "hi"}, "messages: must be a list of messages, found a string"),
        (
            chat_with({"role": "user", "content": [{"type": "text", "text": ""}]}, ASSISTANT),
            "messages[0].content[0].text: is empty",
        ),
        (
            chat_with(
                {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]},
                ASSISTANT,
            ),
            "messages[0].content[0]: content part type 'input_audio' is not accepted in a "
            "user message for fine-tuning (use text, image_url)",
        ),
        (
            chat_with(
                {"role": "user", "content": [{"type": "image_url", "image_url": {}}]}, ASSISTANT
            ),
            "messages[0].content[0].image_url: needs a 'url' (an https URL or a data: URL)",
        ),
        (
            chat_with(USER, {"role": "assistant", "tool_calls": []}),
            "messages[1].tool_calls: must be a non-empty list of tool calls",
        ),
        (
            chat_with({"role": "tool", "content": "42"}, ASSISTANT),
            "messages[0].tool_call_id: must be a string, found null",
        ),
        (
            chat_with(USER, ASSISTANT, parallel_tool_calls="yes"),
            "parallel_tool_calls: must be true or false",
        ),
        (
            chat_with(USER, ASSISTANT, tools=[{"type": "function", "function": {}}]),
            "tools[0].function.name: must be a string, found null",
        ),
    ],
)
def test_each_chat_problem_is_reported_on_its_line(
    tmp_path: Path, bad: dict[str, Any], message: str
) -> None:
    path = write(tmp_path, [CHAT] * 6 + [bad] + [CHAT] * 5)
    report = check_training_data(path)
    assert (7, message) in [(p.line, p.message) for p in report.problems]
    assert all(p.line == 7 for p in report.problems)
    assert report.valid == 11


def test_chat_with_tools_content_parts_and_tool_calls_is_valid(tmp_path: Path) -> None:
    example = {
        "messages": [
            {"role": "developer", "content": [{"type": "text", "text": "Use the tools."}]},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is in this picture?"},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "describe", "arguments": '{"detail": "low"}'},
                    }
                ],
                "weight": 0,
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "a cat"},
            {"role": "assistant", "content": "A cat.", "weight": 1},
        ],
        "tools": [{"type": "function", "function": {"name": "describe", "parameters": {}}}],
        "parallel_tool_calls": False,
    }
    report = check_training_data(write(tmp_path, [example] * 10))
    assert report.ok, report.problems
    # An image is estimated at a fixed 85 tokens: the estimate must include it.
    assert report.tokens.minimum > 85


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"prompt": "a"}, "has no 'completion'"),
        ({"completion": "b"}, "has no 'prompt'"),
        ({"prompt": "a", "completion": ""}, "completion: is empty"),
        ({"prompt": ["a"], "completion": "b"}, "prompt: must be a string, found an array"),
        (
            {"prompt": "a", "completion": "b", "label": 1},
            "unknown key 'label' (allowed: prompt, completion)",
        ),
    ],
)
def test_each_completion_problem_is_reported_on_its_line(
    tmp_path: Path, bad: dict[str, Any], message: str
) -> None:
    path = write(tmp_path, [COMPLETION] * 2 + [bad] + [COMPLETION] * 9)
    assert problems_of(path) == [(3, message)]


def test_an_empty_prompt_is_allowed_in_completion_format(tmp_path: Path) -> None:
    assert check_training_data(write(tmp_path, [{"prompt": "", "completion": "Text."}] * 10)).ok


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (
            {
                "input": PREFERENCE["input"],
                "preferred_completion": PREFERENCE["preferred_output"],
                "non_preferred_output": PREFERENCE["non_preferred_output"],
            },
            "uses the old key 'preferred_completion': OpenAI's DPO format names it "
            "'preferred_output'",
        ),
        (
            {**PREFERENCE, "non_preferred_output": PREFERENCE["preferred_output"]},
            "preferred_output and non_preferred_output are identical: nothing to learn",
        ),
        (
            {k: v for k, v in PREFERENCE.items() if k != "non_preferred_output"},
            "has no 'non_preferred_output' (a list with the assistant's answer)",
        ),
        (
            {**PREFERENCE, "preferred_output": [{"role": "user", "content": "x"}]},
            "preferred_output[0].role: 'user' is not one of assistant, tool",
        ),
        (
            {**PREFERENCE, "input": {"prompt": "x"}},
            "input: unknown key 'prompt' (allowed: messages, tools, parallel_tool_calls)",
        ),
        (
            {**PREFERENCE, "preferred_output": [{**ASSISTANT, "weight": 1}]},
            "preferred_output[0].weight: is only used in supervised chat examples",
        ),
    ],
)
def test_each_preference_problem_is_reported_on_its_line(
    tmp_path: Path, bad: dict[str, Any], message: str
) -> None:
    path = write(tmp_path, [PREFERENCE] * 9 + [bad] + [PREFERENCE] * 2)
    assert (10, message) in problems_of(path)
    assert {line for line, _ in problems_of(path)} == {10}


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            "{bad json",
            "is not valid JSON: Expecting property name enclosed in double quotes (column 2)",
        ),
        ('{"messages": [] ', "is not valid JSON: Expecting ',' delimiter (column 17)"),
        ("[1, 2]", "must be a JSON object (one example per line), found an array"),
        ('{"prompt": NaN, "completion": "x"}', "is not valid JSON: NaN is not valid JSON"),
        (
            '{"prompt": "a", "prompt": "b", "completion": "c"}',
            "key 'prompt' appears twice in the same object",
        ),
        ("", "is blank: a JSONL file has one JSON object per line"),
        ("   \t", "is blank: a JSONL file has one JSON object per line"),
        (
            '{"text": "hello"}',
            "is in no known format: expected 'messages' (chat), 'prompt' and 'completion' "
            "(completion) or 'input', 'preferred_output' and 'non_preferred_output' "
            "(preference); found keys 'text'",
        ),
    ],
)
def test_each_line_level_problem_has_its_line_number(
    tmp_path: Path, line: str, message: str
) -> None:
    path = write(tmp_path, [COMPLETION] * 4 + [line] + [COMPLETION] * 7)
    assert problems_of(path) == [(5, message)]


def test_a_utf8_byte_order_mark_is_a_problem_of_line_one_only(tmp_path: Path) -> None:
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + "\n".join(json.dumps(CHAT) for _ in range(10)).encode())
    report = check_training_data(path)
    assert [(p.line, p.message) for p in report.problems] == [
        (1, "the file starts with a UTF-8 byte order mark (EF BB BF); save it as UTF-8 without BOM")
    ]
    assert report.valid == 9  # line 1 is otherwise fine, and its JSON was still checked


def test_non_utf8_bytes_are_reported_with_line_and_byte(tmp_path: Path) -> None:
    lines = [json.dumps(COMPLETION).encode()] * 10
    lines[3] = b'{"prompt": "caf\xe9", "completion": "x"}'  # Latin-1, not UTF-8
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    assert problems_of(path) == [
        (4, "is not valid UTF-8 (byte 0xe9 at byte 16 of the line); save the file as UTF-8")
    ]


def test_a_utf16_file_is_one_problem_not_one_per_line(tmp_path: Path) -> None:
    path = tmp_path / "utf16.jsonl"
    path.write_text("\n".join(json.dumps(CHAT) for _ in range(10)), encoding="utf-16")
    report = check_training_data(path)
    assert [(p.line, p.message) for p in report.problems] == [
        (
            1,
            "the file is UTF-16 encoded (it starts with a UTF-16 byte order mark); "
            "save it as UTF-8",
        )
    ]


def test_mixed_formats_flag_the_minority_lines_in_line_order(tmp_path: Path) -> None:
    lines: list[Any] = [CHAT] * 12
    lines[2] = COMPLETION
    lines[8] = PREFERENCE
    lines[5] = '{"messages": 3}'  # a chat line with its own problem, between the strays
    report = check_training_data(write(tmp_path, lines))
    assert report.format == "chat"
    assert [(p.line, p.message) for p in report.problems] == [
        (
            3,
            "is a completion example ('prompt', 'completion') but the file is in chat format "
            "(most examples are); a file holds one format",
        ),
        (6, "messages: must be a list of messages, found a number"),
        (
            9,
            "is a preference example ('input', 'preferred_output', 'non_preferred_output') "
            "but the file is in chat format (most examples are); a file holds one format",
        ),
    ]
    assert report.valid == 9


def test_an_explicit_format_rejects_lines_of_another_format(tmp_path: Path) -> None:
    path = write(tmp_path, [CHAT] * 10)
    report = check_training_data(path, format="completion")
    assert report.format == "completion"
    assert report.problem_count == 10
    assert report.problems[0].message == (
        "expected a completion example ('prompt', 'completion'), found a chat example ('messages')"
    )


def test_problems_are_capped_but_all_counted(tmp_path: Path) -> None:
    path = write(tmp_path, [CHAT] + ['{"messages": []}'] * 30)
    data = check_training_data(path, max_problems=5).to_dict()
    assert [p["line"] for p in data["problems"]] == [2, 3, 4, 5, 6]
    assert data["counts"]["problems"] == 30
    assert data["problems_not_listed"] == 25


def test_one_broken_line_cannot_fill_the_problem_list(tmp_path: Path) -> None:
    broken = chat_with(*[{"role": "bot", "content": "x"}] * 20)
    path = write(tmp_path, [broken] + [CHAT] * 8 + ['{"messages": []}'])
    report = check_training_data(path)
    first_line = [p for p in report.problems if p.line == 1]
    assert len(first_line) == 11
    assert first_line[-1].message == "... and 11 more problems on this line"
    assert report.problem_count == 21 + 1  # 20 roles and "no assistant", then line 10
    assert report.problems[-1].line == 10


# --- the step -----------------------------------------------------------------------------


@pytest.fixture
async def context(tmp_path: Path) -> AsyncIterator[StepContext]:
    lines: list[tuple[str, str, dict[str, Any]]] = []
    async with httpx.AsyncClient() as http:
        ctx = StepContext(
            run_id="run-1",
            flow="test",
            step_id="check",
            step_type="openai.validate_training_data",
            authorization=None,
            http=http,
            log=StepLogger("debug", lambda level, msg, fields: lines.append((level, msg, fields))),
            base_dir=tmp_path,
        )
        ctx.emitted = lines  # type: ignore[attr-defined]
        yield ctx


@pytest.mark.anyio
async def test_step_reads_a_path_relative_to_the_flow_folder(
    tmp_path: Path, context: StepContext
) -> None:
    (tmp_path / "data").mkdir()
    write(tmp_path / "data", [CHAT] * 10, name="support.jsonl")
    output = await VALIDATE_TRAINING_DATA.run({"file": "data/support.jsonl"}, context)
    assert output["ok"] is True
    assert output["file"] == "data/support.jsonl"
    info = [msg for level, msg, _ in context.emitted if level == "info"]  # type: ignore[attr-defined]
    assert info and "10 examples in chat format" in info[0] and "(estimate)" in info[0]


@pytest.mark.anyio
async def test_step_takes_the_error_exit_naming_the_first_problems(
    tmp_path: Path, context: StepContext
) -> None:
    write(tmp_path, [CHAT] * 2 + ["{oops"] + [CHAT] * 3 + ['{"messages": []}'] * 5)
    with pytest.raises(StepError) as caught:
        await VALIDATE_TRAINING_DATA.run({"file": "data.jsonl"}, context)
    error = caught.value.to_dict()
    assert error["type"] == "invalid_training_data"
    assert error["step"] == "check"
    assert "line 3: is not valid JSON" in error["message"]
    assert "line 7: messages: is an empty list" in error["message"]
    assert "(and 3 more)" in error["message"]
    assert [p["line"] for p in error["problems"]] == [3, 7, 8, 9, 10, 11]
    assert error["counts"]["valid"] == 5
    warned = [msg for level, msg, _ in context.emitted if level == "warn"]  # type: ignore[attr-defined]
    assert warned[0].startswith("line 3: ")


@pytest.mark.anyio
async def test_step_can_report_problems_without_failing(
    tmp_path: Path, context: StepContext
) -> None:
    write(tmp_path, [CHAT] * 3)
    output = await VALIDATE_TRAINING_DATA.run(
        {"file": "data.jsonl", "fail_on_problems": False, "result_format": "raw"}, context
    )
    assert output["status"] is None and output["headers"] == {}
    assert output["body"]["ok"] is False
    assert output["body"]["problems"][0]["line"] is None


@pytest.mark.anyio
async def test_step_reports_a_missing_file_as_a_step_error(context: StepContext) -> None:
    with pytest.raises(StepError) as caught:
        await VALIDATE_TRAINING_DATA.run({"file": "nope.jsonl"}, context)
    assert caught.value.code == "file_not_found"
    assert "nope.jsonl does not exist" in caught.value.message


# --- declaration and schema ---------------------------------------------------------------


def test_step_type_declaration_is_complete() -> None:
    assert STEP_TYPES == [VALIDATE_TRAINING_DATA]
    assert VALIDATE_TRAINING_DATA.problems() == []
    assert VALIDATE_TRAINING_DATA.effect == "none"
    assert VALIDATE_TRAINING_DATA.schema is None  # the built-in schema file


def test_schema_is_strict_documented_and_its_defaults_are_the_codes() -> None:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    assert schema["additionalProperties"] is False
    for name, prop in schema["properties"].items():
        assert prop.get("title") and prop.get("description"), name
    props = schema["properties"]
    assert props["min_examples"]["default"] == training_data.DEFAULT_MIN_EXAMPLES
    assert props["max_problems"]["default"] == training_data.DEFAULT_MAX_PROBLEMS
    assert (
        props["max_tokens_per_example"]["default"] == training_data.DEFAULT_MAX_TOKENS_PER_EXAMPLE
    )
    assert props["format"]["enum"] == ["auto", *training_data.FORMATS]
    # As the engine validates it (result_format comes from the shared definitions).
    validator = SchemaRegistry().validator(schema)
    assert not list(validator.iter_errors({"file": "a.jsonl", "result_format": "raw"}))
    for bad in ({}, {"file": "a.jsonl", "result_format": "json"}, {"file": "a", "epochs": 3}):
        assert list(validator.iter_errors(bad)), bad


@pytest.mark.parametrize("path", sorted(EXAMPLES_DATA.glob("*.jsonl")), ids=lambda path: path.name)
def test_the_example_data_files_are_valid(path: Path) -> None:
    report = check_training_data(path, min_examples=1 if "validation" in path.name else 10)
    assert report.ok, [str(p) for p in report.problems]
    assert report.format == ("completion" if "legacy" in path.name else "chat")
    assert report.valid == report.examples > 0


def test_there_are_example_data_files() -> None:
    # Guards the test above: an empty glob would make it pass without checking anything.
    assert len(list(EXAMPLES_DATA.glob("*.jsonl"))) >= 3
