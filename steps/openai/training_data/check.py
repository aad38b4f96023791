"""The whole check of a training file, read once, streaming."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from steprun.runtime.errors import StepError

from .examples import CHECKS, FORMAT_WORDS, Problems, detect_format, key_list
from .limits import (
    DEFAULT_MAX_PROBLEMS,
    DEFAULT_MAX_TOKENS_PER_EXAMPLE,
    DEFAULT_MIN_EXAMPLES,
    FORMATS,
    MAX_PROBLEMS_PER_LINE,
    Format,
)
from .lines import parse_line
from .report import LineProblem, TrainingDataReport
from .tokens import TokenStats, default_epochs, example_tokens


@dataclass
class _Collector:
    """Problems in line order, capped; every problem is counted."""

    limit: int
    listed: list[LineProblem] = field(default_factory=list)
    count: int = 0

    def add(self, line: int | None, message: str) -> None:
        self.count += 1
        if len(self.listed) < self.limit:
            self.listed.append(LineProblem(line, message))

    def add_line(self, line: int, messages: list[str]) -> None:
        for message in messages[:MAX_PROBLEMS_PER_LINE]:
            self.add(line, message)
        if len(messages) > MAX_PROBLEMS_PER_LINE:
            hidden = len(messages) - MAX_PROBLEMS_PER_LINE
            # Counted, but summarised in one entry so one line cannot fill the list.
            self.count += hidden - 1
            self.add(line, f"... and {hidden} more problems on this line")


def check_training_data(
    path: Path,
    *,
    format: Format | Literal["auto"] = "auto",
    min_examples: int = DEFAULT_MIN_EXAMPLES,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
    max_tokens_per_example: int = DEFAULT_MAX_TOKENS_PER_EXAMPLE,
    n_epochs: int | None = None,
    display_name: str | None = None,
) -> TrainingDataReport:
    """Check a JSONL training file and estimate its tokens. Reads the file once, streaming.

    With ``format="auto"`` each line's format is recognised from its keys and the file's
    format is the one most lines use; lines in another format are problems (a file holds
    one format). Token statistics cover the valid examples of the file's format.
    Raises :class:`StepError` (type ``invalid_request_error``, code ``file_not_found`` or
    ``file_unreadable``) when the file cannot be read at all.
    """
    name = display_name or str(path)
    collector = _Collector(max_problems)
    stats: dict[Format, TokenStats] = {fmt: TokenStats() for fmt in FORMATS}
    lines_by_format: dict[Format, list[int]] = {fmt: [] for fmt in FORMATS}
    valid_by_format: dict[Format, int] = {fmt: 0 for fmt in FORMATS}
    first_seen: list[Format] = []
    lines = examples = 0
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
            if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
                collector.add(
                    1,
                    "the file is UTF-16 encoded (it starts with a UTF-16 byte order mark); "
                    "save it as UTF-8",
                )
                return _report(
                    name,
                    None,
                    0,
                    0,
                    0,
                    collector,
                    stats,
                    max_tokens_per_example,
                    n_epochs,
                    min_examples=0,
                )
            handle.seek(0)
            for number, raw in enumerate(handle, start=1):
                lines = number
                out = Problems()
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    out.add(
                        "",
                        "the file starts with a UTF-8 byte order mark (EF BB BF); "
                        "save it as UTF-8 without BOM",
                    )
                    raw = raw[3:]
                raw = raw.rstrip(b"\r\n")
                if not raw.strip():
                    collector.add(number, "is blank: a JSONL file has one JSON object per line")
                    continue
                examples += 1
                example = parse_line(raw, out)
                fmt: Format | None = None
                if example is not None:
                    found = detect_format(example)
                    if found is None:
                        out.add(
                            "",
                            "is in no known format: expected 'messages' (chat), 'prompt' and "
                            "'completion' (completion) or 'input', 'preferred_output' and "
                            f"'non_preferred_output' (preference); found keys {key_list(example)}",
                        )
                    elif format != "auto" and found != format:
                        out.add("", f"expected {FORMAT_WORDS[format]}, found {FORMAT_WORDS[found]}")
                    else:
                        fmt = found
                        CHECKS[fmt](example, out)
                        if fmt not in first_seen:
                            first_seen.append(fmt)
                        lines_by_format[fmt].append(number)
                if out.messages:
                    collector.add_line(number, out.messages)
                elif fmt is not None and example is not None:
                    valid_by_format[fmt] += 1
                    stats[fmt].add(example_tokens(fmt, example), max_tokens_per_example)
    except FileNotFoundError:
        raise StepError(
            f"training file {name} does not exist; check the path (a relative path is read "
            "from the flow file's folder)",
            type="invalid_request_error",
            code="file_not_found",
            param="file",
        ) from None
    except IsADirectoryError:
        raise StepError(
            f"training file {name} is a directory; give the path of a .jsonl file",
            type="invalid_request_error",
            code="file_unreadable",
            param="file",
        ) from None
    except OSError as exc:
        raise StepError(
            f"training file {name} cannot be read ({exc.strerror or exc.__class__.__name__}); "
            "check its permissions",
            type="invalid_request_error",
            code="file_unreadable",
            param="file",
        ) from None

    def majority(fmt: Format) -> tuple[int, int]:
        # The most lines decide; on a tie, the format met first.
        return len(lines_by_format[fmt]), -first_seen.index(fmt)

    chosen: Format | None = None
    if format != "auto":
        chosen = format
    elif first_seen:
        ranked: list[Format] = sorted(first_seen, key=majority)
        chosen = ranked[-1]
    if chosen is not None:
        _add_stray_lines(collector, chosen, lines_by_format)
    valid = valid_by_format[chosen] if chosen is not None else 0
    return _report(
        name,
        chosen,
        lines,
        examples,
        valid,
        collector,
        stats,
        max_tokens_per_example,
        n_epochs,
        min_examples=min_examples,
    )


def _add_stray_lines(
    collector: _Collector, chosen: Format, lines_by_format: dict[Format, list[int]]
) -> None:
    """Report the lines written in another format than the file's, in line order."""
    strays = [
        LineProblem(
            line,
            f"is {FORMAT_WORDS[fmt]} but the file is in {chosen} format (most examples are); "
            "a file holds one format",
        )
        for fmt in FORMATS
        if fmt != chosen
        for line in lines_by_format[fmt]
    ]
    if not strays:
        return
    # Both lists are in line order and the listed problems are the first `limit` of their
    # kind, so the first `limit` of the merge are the first `limit` of all problems.
    # sorted() is stable: problems of one line keep their order.
    merged = sorted([*collector.listed, *strays], key=lambda p: p.line or 0)
    collector.listed = merged[: collector.limit]
    collector.count += len(strays)


def _report(
    name: str,
    chosen: Format | None,
    lines: int,
    examples: int,
    valid: int,
    collector: _Collector,
    stats: dict[Format, TokenStats],
    max_tokens_per_example: int,
    n_epochs: int | None,
    *,
    min_examples: int,
) -> TrainingDataReport:
    if examples < min_examples:
        # A file-level problem goes first: it is the one to fix first.
        noun = "example" if examples == 1 else "examples"
        problem = LineProblem(
            None,
            f"the file has {examples} {noun}; fine-tuning needs at least {min_examples}",
        )
        collector.listed.insert(0, problem)
        del collector.listed[collector.limit :]
        collector.count += 1
    chosen_stats = stats[chosen] if chosen is not None else TokenStats()
    return TrainingDataReport(
        file=name,
        format=chosen,
        lines=lines,
        examples=examples,
        valid=max(valid, 0),
        problem_count=collector.count,
        problems=collector.listed,
        tokens=chosen_stats,
        max_tokens_per_example=max_tokens_per_example,
        n_epochs=n_epochs if n_epochs is not None else default_epochs(chosen_stats.count),
        n_epochs_source="config" if n_epochs is not None else "default",
    )


__all__ = [
    "check_training_data",
]
