"""The evaluation pack: compare two models' recorded answers, and write the report.

``eval.compare_answers`` scores a candidate's answers against recorded reference answers
(the files ``openai.record_answers`` writes); ``eval.write_report`` writes the comparison
and a fine-tuning job's loss curve as JSON and as one self-contained HTML page.
"""

from __future__ import annotations

from steprun.runtime.markers import hookimpl
from steprun.runtime.step import StepType

from . import compare, report

_MODULES = (compare, report)


@hookimpl
def steprun_step_types() -> list[StepType]:
    return [step_type for module in _MODULES for step_type in module.STEP_TYPES]


__all__: list[str] = []
