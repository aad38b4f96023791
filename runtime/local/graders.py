"""Graders, as reinforcement fine-tuning uses them: ``/v1/fine_tuning/alpha/graders/validate``
and ``/run``, and the check of a job's ``method.reinforcement.grader``.

What runs here: ``string_check`` (``eq``, ``ne``, ``like``, ``ilike``), ``text_similarity``
(each metric computed on words: ``fuzzy_match`` as difflib's ratio, ``cosine`` on word
counts, which stands in for OpenAI's embeddings, ``bleu``, ``gleu``, ``meteor`` without
stemming or synonyms, ``rouge_1`` to ``rouge_5`` and ``rouge_l``), and ``multi`` (its
``calculate_output`` formula over the sub-graders' scores: numbers, names, ``+ - * /``,
``min``, ``max``, ``abs``, ``sqrt``, ``log``, ``exp``). What does not: ``python`` graders (a
server does not run code it is sent) and model graders (``score_model``, ``label_model``,
which need OpenAI's models); they validate, and a run reports a server error in
``metadata.errors`` with a reward of 0, as a failing grader does on OpenAI.

Templates: ``{{ sample.output_text }}``, ``{{ sample.output_json.<key>... }}`` and
``{{ item.<key>... }}`` are replaced by the sample and the dataset item.
"""

from __future__ import annotations

import ast
import difflib
import json
import math
import operator
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .context import Context, json_body
from .errors import invalid
from .params import ANY, STRING, Param, check

GRADER_TYPES = ("string_check", "text_similarity", "python", "score_model", "label_model", "multi")
METRICS = (
    "cosine", "fuzzy_match", "bleu", "gleu", "meteor",
    "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l",
)  # fmt: skip
_FIELDS: dict[str, tuple[dict[str, Param], tuple[str, ...]]] = {
    "string_check": (
        {
            "input": STRING,
            "reference": STRING,
            "operation": Param(("string",), enum=("eq", "ne", "like", "ilike")),
        },
        ("input", "reference", "operation"),
    ),
    "text_similarity": (
        {
            "input": STRING,
            "reference": STRING,
            "evaluation_metric": Param(("string",), enum=METRICS),
        },
        ("input", "reference", "evaluation_metric"),
    ),
    "python": ({"source": STRING, "image_tag": STRING}, ("source",)),
    "score_model": (
        {
            "model": STRING,
            "input": Param(("array",)),
            "range": Param(("array",)),
            "sampling_params": Param(("object",)),
        },
        ("input", "model"),
    ),
    "label_model": (
        {
            "model": STRING,
            "input": Param(("array",)),
            "labels": Param(("array",)),
            "passing_labels": Param(("array",)),
        },
        ("model", "input", "passing_labels", "labels"),
    ),
    "multi": (
        {"graders": Param(("object",)), "calculate_output": STRING},
        ("graders", "calculate_output"),
    ),
}
_TEMPLATE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_VARIABLE = re.compile(r"(sample|item)(\.[A-Za-z_][A-Za-z0-9_]*)*")
_ERRORS = (
    "formula_parse_error", "invalid_variable_error", "model_grader_parse_error",
    "model_grader_refusal_error", "model_grader_server_error", "other_error",
    "python_grader_runtime_error", "python_grader_server_error", "sample_parse_error",
    "truncated_observation_error", "unresponsive_reward_error",
)  # fmt: skip


# --- validation --------------------------------------------------------------------------------


def validate_grader(grader: Any, where: str = "grader") -> None:
    """Raise the API's 400 for the first problem of a grader definition."""
    if not isinstance(grader, dict):
        check({where: grader}, {where: Param(("object",), nullable=False)}, required=(where,))
        return
    kinds = {"type": Param(("string",), enum=GRADER_TYPES)}
    check(grader, kinds, required=("type",), prefix=f"{where}.", open=True)
    fields, required = _FIELDS[grader["type"]]
    check(grader, {"name": STRING, **fields}, required=("name", *required), prefix=f"{where}.",
          open=True)  # fmt: skip
    for name in ("input", "reference"):
        if isinstance(grader.get(name), str):
            _check_templates(grader[name], f"{where}.{name}")
    if grader["type"] == "multi":
        subgraders = _subgraders(grader)
        for name, sub in subgraders.items():
            validate_grader(sub, f"{where}.graders.{name}")
        try:
            _formula(grader["calculate_output"], {name: 0.5 for name in subgraders})
        except (SyntaxError, ValueError, KeyError, ZeroDivisionError) as exc:
            raise invalid(
                f"Invalid '{where}.calculate_output': {exc}. Use the sub-graders' names, "
                "numbers, + - * / and min, max, abs, sqrt, log, exp.",
                param=f"{where}.calculate_output",
                code="invalid_value",
            ) from None


def _subgraders(grader: Mapping[str, Any]) -> dict[str, Any]:
    graders = grader["graders"]
    # The guide gives a mapping of name to grader; the spec's schema a single grader.
    if "type" in graders and isinstance(graders["type"], str):
        return {str(graders.get("name", "grader")): graders}
    return dict(graders)


def _check_templates(text: str, where: str) -> None:
    for variable in _TEMPLATE.findall(text):
        if not _VARIABLE.fullmatch(variable):
            raise invalid(
                f"Invalid '{where}': the template variable '{variable}' is not in the 'sample' "
                "or 'item' namespace (e.g. {{ sample.output_text }}, {{ item.reference }}).",
                param=where,
                code="invalid_value",
            )


# --- running -----------------------------------------------------------------------------------


class _VariableMissing(Exception):
    pass


def _render(text: str, sample: dict[str, Any], item: Any) -> str:
    def value(match: re.Match[str]) -> str:
        root, *path = match.group(1).split(".")
        node: Any = {"sample": sample, "item": item}[root]
        for key in path:
            if not isinstance(node, dict) or key not in node:
                raise _VariableMissing(match.group(1))
            node = node[key]
        return node if isinstance(node, str) else json.dumps(node)

    return _TEMPLATE.sub(value, text)


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def _ngrams(words: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def _f1(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def _overlap(candidate: list[str], reference: list[str], n: int) -> tuple[float, float]:
    found, wanted = _ngrams(candidate, n), _ngrams(reference, n)
    common = sum((found & wanted).values())
    return (common / max(1, sum(found.values())), common / max(1, sum(wanted.values())))


def _lcs(a: list[str], b: list[str]) -> int:
    row = [0] * (len(b) + 1)
    for x in a:
        previous = 0
        for j, y in enumerate(b, 1):
            previous, row[j] = row[j], previous + 1 if x == y else max(row[j], row[j - 1])
    return row[-1]


def similarity(metric: str, output: str, reference: str) -> float:
    """A ``text_similarity`` score in [0, 1]."""
    if metric == "fuzzy_match":
        return difflib.SequenceMatcher(None, output, reference).ratio()
    candidate, wanted = _words(output), _words(reference)
    if not candidate or not wanted:
        return float(candidate == wanted)
    if metric == "cosine":
        a, b = Counter(candidate), Counter(wanted)
        dot = sum(a[w] * b[w] for w in a)
        return dot / math.sqrt(sum(v * v for v in a.values()) * sum(v * v for v in b.values()))
    if metric.startswith("rouge_") and metric != "rouge_l":
        return _f1(*_overlap(candidate, wanted, int(metric[-1])))
    if metric == "rouge_l":
        common = _lcs(candidate, wanted)
        return _f1(common / len(candidate), common / len(wanted))
    if metric == "gleu":
        return min(min(_overlap(candidate, wanted, n)) for n in range(1, 5))
    if metric == "meteor":
        precision, recall = _overlap(candidate, wanted, 1)
        if precision == 0 or recall == 0:
            return 0.0
        return 10 * precision * recall / (recall + 9 * precision)
    # bleu: geometric mean of 1- to 4-gram precisions (add-one smoothed), brevity penalty.
    logs = []
    for n in range(1, 5):
        grams = _ngrams(candidate, n)
        shared = grams & _ngrams(wanted, n)
        logs.append(math.log((sum(shared.values()) + 1) / (sum(grams.values()) + 1)))
    brevity = min(1.0, math.exp(1 - len(wanted) / len(candidate)))
    return brevity * math.exp(sum(logs) / 4)


_OPERATORS: dict[type, Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
}
_FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min, "max": max, "abs": abs, "sqrt": math.sqrt, "log": math.log, "exp": math.exp,
}  # fmt: skip


def _formula(text: str, scores: Mapping[str, float]) -> float:
    """Evaluate ``calculate_output``: arithmetic over the scores, nothing else."""

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
            return float(node.value)
        if isinstance(node, ast.Name):
            if node.id not in scores:
                raise KeyError(f"unknown name '{node.id}'")
            return scores[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            return -value(node.operand) if isinstance(node.op, ast.USub) else value(node.operand)
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _FUNCTIONS
            and not node.keywords
        ):
            return float(_FUNCTIONS[node.func.id](*(value(a) for a in node.args)))
        raise ValueError(f"'{ast.unparse(node)}' is not allowed in a formula")

    return value(ast.parse(text, mode="eval").body)


def _score(grader: dict[str, Any], sample: dict[str, Any], item: Any) -> tuple[float, str | None]:
    """(score, the error key when the grader could not score)."""
    kind = grader["type"]
    if kind == "python":
        return 0.0, "python_grader_server_error"
    if kind in ("score_model", "label_model"):
        return 0.0, "model_grader_server_error"
    try:
        if kind == "multi":
            scores = {
                name: _score(sub, sample, item)[0] for name, sub in _subgraders(grader).items()
            }
            return _formula(grader["calculate_output"], scores), None
        output = _render(grader["input"], sample, item)
        reference = _render(grader["reference"], sample, item)
    except _VariableMissing:
        return 0.0, "invalid_variable_error"
    except (ValueError, KeyError, ZeroDivisionError):
        return 0.0, "formula_parse_error"
    if kind == "string_check":
        operation = grader["operation"]
        if operation == "eq":
            return float(output == reference), None
        if operation == "ne":
            return float(output != reference), None
        if operation == "like":
            return float(reference in output), None
        return float(reference.casefold() in output.casefold()), None
    return similarity(grader["evaluation_metric"], output, reference), None


def run_grader(grader: dict[str, Any], model_sample: str, item: Any) -> dict[str, Any]:
    """The ``/graders/run`` answer for a (validated) grader."""
    started = time.perf_counter()
    try:
        output_json: Any = json.loads(model_sample)
    except ValueError:
        output_json = None
    sample = {"output_text": model_sample, "output_json": output_json}
    reward, error = _score(grader, sample, item if item is not None else {})
    errors: dict[str, Any] = dict.fromkeys(_ERRORS, False)
    details = {
        "python_grader_server_error": "the local backend does not run Python graders",
        "model_grader_server_error": "the local backend has no model to grade with",
    }
    if error is not None:
        errors[error] = True
    errors["python_grader_runtime_error_details"] = None
    errors["python_grader_server_error_type"] = None
    errors["model_grader_server_error_details"] = None
    if error == "python_grader_server_error":
        errors["python_grader_server_error_type"] = details[error]
    elif error == "model_grader_server_error":
        errors["model_grader_server_error_details"] = details[error]
    sub_rewards: dict[str, Any] = {}
    if grader["type"] == "multi":
        sub_rewards = {
            name: _score(sub, sample, item or {})[0] for name, sub in _subgraders(grader).items()
        }
    return {
        "reward": reward,
        "metadata": {
            "name": grader["name"],
            "type": grader["type"],
            "errors": errors,
            "execution_time": time.perf_counter() - started,
            "scores": {grader["name"]: reward},
            "token_usage": None,
            "sampled_model_name": None,
        },
        "sub_rewards": sub_rewards,
        "model_grader_token_usage_per_model": {},
    }


def routes(ctx: Context) -> list[Route]:
    async def validate(request: Request) -> Response:
        body = await json_body(request)
        check(body, {"grader": Param(("object",))}, required=("grader",))
        validate_grader(body["grader"])
        return JSONResponse({"grader": body["grader"]})

    async def run(request: Request) -> Response:
        body = await json_body(request)
        check(
            body,
            {"grader": Param(("object",)), "model_sample": STRING, "item": ANY},
            required=("grader", "model_sample"),
        )
        validate_grader(body["grader"])
        return JSONResponse(run_grader(body["grader"], body["model_sample"], body.get("item")))

    base = "/v1/fine_tuning/alpha/graders"
    return [
        Route(base + "/validate", validate, methods=["POST"]),
        Route(base + "/run", run, methods=["POST"]),
    ]


__all__ = ["GRADER_TYPES", "METRICS", "routes", "run_grader", "similarity", "validate_grader"]
