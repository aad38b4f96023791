"""Reports: one per executed step and one per run, sent to every sink, always redacted.

Sinks: the console (human lines on stderr), a JSON Lines file (``--report FILE``), and the
``steprun_report`` hook for platforms that embed the runtime. A sink that fails never
changes the run's outcome; it is reported as a warning on the console.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import pluggy

from .durations import format_duration
from .errors import StoreError
from .secrets import Redactor
from .step import LEVELS

_MARK = {"succeeded": "✔", "error_handled": "↪", "failed": "✘"}


def timestamp(seconds: float) -> str:
    """ISO 8601 in UTC with milliseconds, as every report field uses."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds")


class Reporter:
    """Fans reports out to the sinks of one run."""

    def __init__(
        self,
        *,
        redactor: Redactor,
        hook: pluggy.PluginManager | None = None,
        console: IO[str] | None = None,
        report_file: Path | IO[str] | None = None,
    ) -> None:
        self.redactor = redactor
        self.hook = hook
        self.console = console
        self.reports: list[dict[str, Any]] = []
        self._tty: bool | None = None
        self._live: Any = None  # rich.live.Live while a progress line is shown
        self._progress_text = ""
        self._file: IO[str] | None = None
        self._owns_file = isinstance(report_file, Path)
        if report_file is not None and not isinstance(report_file, Path):
            self._file = report_file  # shared by the runs of one command; not ours to close
        elif report_file is not None:
            try:
                report_file.parent.mkdir(parents=True, exist_ok=True)
                self._file = report_file.open("w", encoding="utf-8")
            except OSError as exc:
                raise StoreError(
                    f"cannot write the report file {report_file}: {exc.strerror or exc}; "
                    "choose a writable path for --report"
                ) from None

    # -- console lines -------------------------------------------------------------

    def say(self, text: str) -> None:
        if self.console is not None:
            self._end_progress()
            print(self.redactor.text(text), file=self.console, flush=True)

    def log_line(
        self,
        step: str,
        level: str,
        message: str,
        fields: dict[str, Any],
        *,
        progress: bool = False,
    ) -> None:
        if self.console is None:
            return
        text = log_line_text(step, level, message, fields)
        if progress and self._terminal():
            self._show_progress(self.redactor.text(text))
        else:
            self.say(text)

    # A terminal shows a wait's progress as one line that updates in place (rich's Live);
    # a pipe or a CI log gets every line, so nothing there is lost or garbled.

    def _terminal(self) -> bool:
        if self._tty is None:
            isatty = getattr(self.console, "isatty", None)
            self._tty = bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"
        return self._tty

    def _show_progress(self, text: str) -> None:
        from rich.text import Text

        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=self.console, highlight=False, markup=False)
            self._live = Live(Text(text), console=console, auto_refresh=False, transient=True)
            self._live.start(refresh=True)
        else:
            self._live.update(Text(text), refresh=True)
        self._progress_text = text

    def _end_progress(self) -> None:
        """Replace the updating line by its last text, for good, before any other line."""
        if self._live is None:
            return
        live, self._live = self._live, None
        live.stop()
        if self.console is not None:
            print(self._progress_text, file=self.console, flush=True)

    # -- reports -------------------------------------------------------------------

    def step(self, report: dict[str, Any]) -> dict[str, Any]:
        report = self.redactor.data(report)
        self.reports.append(report)
        if self.console is not None:
            self.say(step_line_text(report))
        self._emit(report)
        return report

    def run(self, report: dict[str, Any]) -> dict[str, Any]:
        report = self.redactor.data(report)
        self.reports.append(report)
        self._emit(report)
        return report

    def _emit(self, report: dict[str, Any]) -> None:
        if self._file is not None:
            self._file.write(json.dumps(report, ensure_ascii=False, default=str) + "\n")
            self._file.flush()
        if self.hook is not None:
            try:
                self.hook.hook.steprun_report(report=report)
            except Exception as exc:  # a sink must never change a run's outcome
                self.say(
                    f"warning: a steprun_report hook failed: {exc.__class__.__name__}: "
                    f"{self.redactor.text(str(exc))}"
                )

    def close(self) -> None:
        self._end_progress()
        if self._file is not None and self._owns_file:
            self._file.close()
        self._file = None


def log_line_text(step: str, level: str, message: str, fields: dict[str, Any] | None) -> str:
    """A step's log line as the console (and `steprun logs`) prints it."""
    extra = ""
    if fields:
        extra = " " + " ".join(f"{k}={_compact(v)}" for k, v in fields.items())
    return f"    {step} {level:<5} {message}{extra}"


def step_line_text(report: dict[str, Any]) -> str:
    """A step's report as one console line: mark, step, status, duration, error."""
    mark = _MARK.get(report["status"], "·")
    line = (
        f"  {mark} {report['step']} {report['status']} in "
        f"{format_duration(report['duration_ms'] / 1000)}"
    )
    if report.get("error"):
        line += f": {report['error'].get('message')}"
    return line


def ensure_writable(report_file: Path | IO[str] | None) -> None:
    """Fail now, before a run is recorded, if ``--report`` names a file we cannot write."""
    if not isinstance(report_file, Path):
        return
    try:
        report_file.parent.mkdir(parents=True, exist_ok=True)
        with report_file.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise StoreError(
            f"cannot write the report file {report_file}: {exc.strerror or exc}; "
            "choose a writable path for --report"
        ) from None


def level_at_least(level: str, threshold: str) -> bool:
    return LEVELS[level] >= LEVELS[threshold]


def _compact(value: Any, limit: int = 120) -> str:
    """A field's value on one console line. A long mapping or list keeps whole items (never
    `"prompt_toke…`) and says how many it left out; the report keeps the full value."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) <= limit:
        return text
    if isinstance(value, dict | list):
        items = value.items() if isinstance(value, dict) else enumerate(value)
        parts: list[str] = []
        for key, item in items:
            part = json.dumps(item, default=str)
            part = f"{json.dumps(key)}: {part}" if isinstance(value, dict) else part
            if sum(len(p) + 2 for p in parts) + len(part) > limit - 20:
                break
            parts.append(part)
        left = len(value) - len(parts)
        opening, closing = ("{", "}") if isinstance(value, dict) else ("[", "]")
        return f"{opening}{', '.join(parts)}, … {left} more{closing}"
    return text[: limit - 1] + "…"


def default_console() -> IO[str]:
    return sys.stderr


__all__ = [
    "Reporter",
    "default_console",
    "ensure_writable",
    "level_at_least",
    "log_line_text",
    "step_line_text",
    "timestamp",
]
