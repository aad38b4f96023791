"""eval.compare_answers and eval.write_report through the steps, on answer files as
openai.record_answers writes them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from steprun.runtime.errors import StepError
from steprun.runtime.schemas import SchemaRegistry
from steprun.runtime.step import StepContext, StepLogger
from steprun.steps.eval.compare import COMPARE_ANSWERS
from steprun.steps.eval.report import WRITE_REPORT
from steprun.steps.eval.scores import exact_match, similarity, token_f1

pytestmark = pytest.mark.anyio
SCHEMAS = SchemaRegistry()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def context(tmp_path: Path, lines: list[tuple[str, str]]) -> StepContext:
    return StepContext(
        run_id="run-1",
        flow="f",
        step_id="compare",
        step_type="eval.compare_answers",
        authorization=None,
        http=httpx.AsyncClient(),
        log=StepLogger("debug", lambda level, message, fields: lines.append((level, message))),
        base_dir=tmp_path,
    )


def answers(path: Path, model: str, texts: dict[int, str], prompts: dict[int, str]) -> None:
    rows = [
        {
            "index": i,
            "prompt_sha256": f"sha-{prompts[i]}",
            "model": model,
            "prompt": [{"role": "user", "content": prompts[i]}],
            "expected": f"expected {i}",
            "answer": text,
        }
        for i, text in texts.items()
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def check(step_type: str, config: dict[str, Any]) -> None:
    schema = SCHEMAS.builtin(f"{step_type}.schema.json") or {}
    assert not [e.message for e in SCHEMAS.validator(schema).iter_errors(config)]


def test_the_scores_follow_squad_and_difflib() -> None:
    assert exact_match("The link is valid.", "the link is  valid") == 1.0
    assert exact_match("Open settings", "Open the settings page") == 0.0
    # tokens: [open, settings] vs [open, settings, page]: P 2/3, R 1, F1 0.8
    assert token_f1("Open settings", "Open the settings page") == pytest.approx(0.8)
    assert token_f1("yes", "no") == 0.0
    assert similarity("reset link", "reset link") == 1.0
    assert similarity("abcd", "abxd") == pytest.approx(0.75)  # 2*3 matching / 8 characters


async def test_compare_scores_each_example_and_lists_what_is_missing(tmp_path: Path) -> None:
    prompts = {0: "password?", 1: "export?", 2: "delete?"}
    answers(
        tmp_path / "ref.jsonl",
        "ft:old",
        {0: "Use the reset link.", 1: "Open settings", 2: "No."},
        prompts,
    )
    answers(
        tmp_path / "new.jsonl",
        "ft:new",
        {0: "use the reset link", 1: "Open the settings page"},
        prompts,
    )
    config = {"reference": "ref.jsonl", "candidate": "new.jsonl"}
    check("eval.compare_answers", config)
    lines: list[tuple[str, str]] = []
    result = await COMPARE_ANSWERS.run(config, context(tmp_path, lines))
    assert (result["reference_model"], result["candidate_model"]) == ("ft:old", "ft:new")
    first, second = result["examples"]
    assert (first["prompt"], first["exact_match"], first["token_f1"]) == ("password?", 1.0, 1.0)
    assert (second["exact_match"], second["token_f1"]) == (0.0, 0.8)
    summary = result["summary"]
    assert summary["examples"] == 2 and summary["missing_in_candidate"] == [2]
    assert summary["exact_match"] == 0.5 and summary["token_f1"] == 0.9
    assert (
        "info",
        f"2 example(s): exact match 50%, token F1 0.900, similarity {summary['similarity']:.3f}",
    ) in lines


async def test_compare_refuses_answers_to_different_prompts(tmp_path: Path) -> None:
    answers(tmp_path / "ref.jsonl", "a", {0: "x"}, {0: "one"})
    answers(tmp_path / "new.jsonl", "b", {0: "x"}, {0: "two"})
    with pytest.raises(StepError) as caught:
        await COMPARE_ANSWERS.run(
            {"reference": "ref.jsonl", "candidate": "new.jsonl"}, context(tmp_path, [])
        )
    assert "example 0 has different prompts" in caught.value.message
    (tmp_path / "bad.jsonl").write_text('{"index": 0}\n')
    with pytest.raises(StepError) as bad:
        await COMPARE_ANSWERS.run(
            {"reference": "ref.jsonl", "candidate": "bad.jsonl"}, context(tmp_path, [])
        )
    assert f"candidate {tmp_path / 'bad.jsonl'}:1: expected a line written by" in bad.value.message


EVENTS = [
    {"object": "fine_tuning.job.event", "type": "message", "message": "done", "data": {}},
    {"type": "metrics", "data": {"step": 2, "train_loss": 1.5, "valid_loss": 1.7}},
    {"type": "metrics", "data": {"step": 1, "train_loss": 2.5}},
]


async def test_the_report_is_json_and_one_self_contained_page(tmp_path: Path) -> None:
    prompts = {0: "<b>bold?</b>"}
    answers(tmp_path / "ref.jsonl", "ft:old", {0: "<script>alert(1)</script>"}, prompts)
    answers(tmp_path / "new.jsonl", "ft:new", {0: "fine"}, prompts)
    comparison = await COMPARE_ANSWERS.run(
        {"reference": "ref.jsonl", "candidate": "new.jsonl"}, context(tmp_path, [])
    )
    config = {
        "comparison": comparison,
        "events": EVENTS,
        "json": "out/r.json",
        "html": "out/r.html",
    }
    check("eval.write_report", config)
    result = await WRITE_REPORT.run(config, context(tmp_path, []))
    assert result["chart"] == "plotly" and result["loss_points"] == 2
    report = json.loads((tmp_path / "out" / "r.json").read_text())
    assert report["loss_curve"] == [
        {"step": 1, "train_loss": 2.5, "valid_loss": None},
        {"step": 2, "train_loss": 1.5, "valid_loss": 1.7},
    ]
    assert report["examples"][0]["reference"] == "<script>alert(1)</script>"
    page = (tmp_path / "out" / "r.html").read_text()
    # Self-contained: no script, style or image is loaded from anywhere.
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)
    assert "plotly-graph-div" in page and "Plotly.newPlot" in page
    # What the models said is text, never markup.
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;b&gt;bold?&lt;/b&gt;" in page


async def test_the_report_refuses_what_is_not_a_comparison(tmp_path: Path) -> None:
    with pytest.raises(StepError) as caught:
        await WRITE_REPORT.run(
            {"comparison": {"data": []}, "json": "r.json", "html": "r.html"},
            context(tmp_path, []),
        )
    assert "comparison must be the output of eval.compare_answers" in caught.value.message
    assert not (tmp_path / "r.json").exists()
