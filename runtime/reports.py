"""Reports: one per executed step and one per run, sent to every sink, always redacted.

Sinks: the console (human lines on stderr), a JSON Lines file (``--report FILE``), and the
``steprun_report`` hook for platforms that embed the runtime. A sink that fails never
changes the run's outcome; it is reported as a warning on the console.
"""

from __future__ import annotations

import json
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
            print(self.redactor.text(text), file=self.console, flush=True)

    def log_line(self, step: str, level: str, message: str, fields: dict[str, Any]) -> None:
        if self.console is None:
            return
        extra = ""
        if fields:
            extra = " " + " ".join(f"{k}={_compact(v)}" for k, v in fields.items())
        self.say(f"    {step} {level:<5} {message}{extra}")

    # -- reports -------------------------------------------------------------------

    def step(self, report: dict[str, Any]) -> dict[str, Any]:
        report = self.redactor.data(report)
        self.reports.append(report)
        if self.console is not None:
            mark = _MARK.get(report["status"], "·")
            line = (
                f"  {mark} {report['step']} {report['status']} in "
                f"{format_duration(report['duration_ms'] / 1000)}"
            )
            if report.get("error"):
                line += f": {report['error'].get('message')}"
            self.say(line)
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
        if self._file is not None and self._owns_file:
            self._file.close()
        self._file = None


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


def _compact(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 80 else text[:79] + "…"


def default_console() -> IO[str]:
    return sys.stderr


__all__ = ["Reporter", "default_console", "ensure_writable", "level_at_least", "timestamp"]
