"""Template cost limits that cannot be bypassed (issue 8, item 3).

Each payload below once ran for minutes or took gigabytes before anything refused it, and
stalled every other run of an embedding process. Now each is refused before it builds
much, a step's and a run's timeout stop a rendering, and a costly rendering leaves the
event loop to the other runs.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from steprun.runtime import Runtime
from steprun.runtime.templates import MAX_BUILT, TemplateProblem, Templates
from tests.runtime.conftest import STEPRUN, make_runtime

_SQUARES = "".join(f"{{% set a{i + 1} = a{i} * a{i} %}}" for i in range(15))
_DOUBLINGS = "{% set ns = namespace(l=[1]) %}" + "{% set ns.l = [ns.l, ns.l] %}" * 40
_BIG = "{% set a = 'x' * 999999 %}"

# The issue's payloads, as written there.
PAYLOADS = {
    "squarings": "{% set a0 = 10 ** 1000 %}" + _SQUARES + "{{ a15 > 0 }}",
    "percent_tuple": _BIG + "{{ ('%s' * 1500) % (" + ", ".join(["a"] * 1500) + ") }}",
    "percent_mapping": _BIG + "{{ ('%(a)s' * 1500) % {'a': a} }}",
    "doublings_pprint": _DOUBLINGS + "{{ ns.l | pprint }}",
    "doublings_tojson": _DOUBLINGS + "{{ ns.l | tojson }}",
    "doublings_string": _DOUBLINGS + "{{ ns.l | string }}",
    "doublings_output": _DOUBLINGS + "the list: {{ ns.l }}",
    "doublings_value": _DOUBLINGS + "{{ ns.l }}",
}

# Each operation of these is allowed; there are just too many of them (about 20 s of work).
SLOW = "{% set big = 'a' * 999999 %}{% for i in range(40000) %}{{ big.count('ab') }}{% endfor %}"


@pytest.fixture
def templates() -> Templates:
    return Templates()


@pytest.mark.parametrize("name", PAYLOADS)
def test_each_payload_is_refused_before_it_is_built(templates: Templates, name: str) -> None:
    with pytest.raises(TemplateProblem) as caught:
        templates.render(PAYLOADS[name], {})
    assert caught.value.code == "template_not_allowed", caught.value.message
    assert "too costly for a template and was refused" in caught.value.message


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("{{ 2 ** 7000 * 2 ** 7000 }}", "multiplying integers"),
        ("{% set ns = namespace(n=2 ** 13990) %}{% for i in range(20) %}"
         "{% set ns.n = ns.n + ns.n %}{% endfor %}{{ ns.n > 0 }}", "an integer of more than"),
        ("{{ (1).from_bytes(range(256) | list * 100, 'big') > 0 }}", "an integer of"),
        ("{{ ('9' * 100000) | int }}", "int() of a text"),
        ("{% set ns = namespace(l=[]) %}{% for i in range(150) %}{% set ns.l = [ns.l] %}"
         "{% endfor %}{{ ns.l | length }}", "nested more than 100 levels"),
        ("{% set ns = namespace(l=[1]) %}" + "{% set ns.l = [ns.l, ns.l] %}" * 15
         + "{{ ns.l | pprint }}", "pprint of a value"),
        ("{{ ([1] * 100000) | map('center', 10000) | list | length }}", "the map filter"),
        ("{% set ns = namespace() %}{% for i in range(30) %}"
         "{% set ns.s = ('x' * 999990) ~ i %}{% endfor %}{{ ns.s | length }}",
         "after templates built"),
        (_BIG + "{% for i in range(30) %}{{ a[i:] | length }}{% endfor %}",
         "after templates built"),
    ],
    ids=["int_product", "int_doubling", "from_bytes", "int_of_text", "deep_list",
         "pprint_cost", "map_growth", "built_in_all", "slices"],
)  # fmt: skip
def test_other_ways_to_build_too_much_are_refused(
    templates: Templates, source: str, words: str
) -> None:
    with pytest.raises(TemplateProblem) as caught:
        templates.render(source, {})
    assert caught.value.code == "template_not_allowed", caught.value.message
    assert words in caught.value.message


def _doubled(times: int) -> list[Any]:
    value: list[Any] = [1]
    for _ in range(times):
        value = [value, value]
    return value


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ ('%s-%s' % ('a' * 400000, 'b' * 400000)) | length }}", 800001),
        ("{{ ('%(x)s%(x)s' % {'x': 'y' * 400000}) | length }}", 800000),
        ("{{ (2 ** 6000 * 2 ** 6000).bit_length() }}", 12001),
        ("{% set ns = namespace(l=[1]) %}" + "{% set ns.l = [ns.l, ns.l] %}" * 15
         + "{{ ns.l | tojson | length }}", str(len(json.dumps(_doubled(15))))),
        ("{{ [[1, 2], {'a': (3, 4)}] }}", [[1, 2], {"a": [3, 4]}]),
        ("{% set ns = namespace(s='') %}{% for i in range(3000) %}"
         "{% set ns.s = ns.s ~ 'x' %}{% endfor %}{{ ns.s | length }}", "3000"),
    ],
    ids=["percent", "percent_mapping", "int_product", "doubled_tojson", "literals", "grow"],
)  # fmt: skip
def test_what_stays_within_the_limits_still_renders(
    templates: Templates, source: str, expected: Any
) -> None:
    assert templates.render(source, {}) == expected


# -- through the CLI, as the issue ran them ------------------------------------------------


def _flow(steps: dict[str, str]) -> str:
    """Each step renders one template; its error exit leads on, like its success exit."""
    names = [*steps, "done"]
    lines = ["flow: costly", "steps:"]
    for name, following in itertools.pairwise(names):
        value = json.dumps(steps[name])
        lines += [f"  - id: {name}", "    type: core.set", f"    config: {{value: {value}}}"]
        lines += [f"    on_error: {following}"]
    lines += ["  - id: done", "    type: core.set", "    config: {value: done}"]
    return "\n".join(lines) + "\n"


def _run_measured(tmp_path: Path, flow: Path) -> tuple[int, dict[str, Any], str, float]:
    """``steprun run FLOW`` in a subprocess: exit code, merge fields, stderr, peak RSS in MB."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPRUN_")}
    env.update(STEPRUN_STATE=str(tmp_path / "runs.db"), STEPRUN_DISABLE_PLUGIN_AUTOLOAD="1")
    out, err = tmp_path / f"{flow.stem}.out", tmp_path / f"{flow.stem}.err"
    with out.open("w") as stdout, err.open("w") as stderr:
        child = subprocess.Popen(
            [str(STEPRUN), "run", str(flow)], stdout=stdout, stderr=stderr, env=env, cwd=tmp_path
        )
        # wait4 gives this child's own peak memory (ru_maxrss, in KiB on Linux).
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
    text = out.read_text(encoding="utf-8")
    return child.returncode, json.loads(text or "{}"), err.read_text(), usage.ru_maxrss / 1024


def test_the_issues_payloads_are_refused_through_the_cli_without_growing_memory(
    tmp_path: Path,
) -> None:
    baseline = tmp_path / "baseline.yaml"
    baseline.write_text(_flow({"small": "{{ [1, 2] | sum }}"}), encoding="utf-8")
    costly = tmp_path / "costly.yaml"
    costly.write_text(_flow(PAYLOADS), encoding="utf-8")

    code, fields, stderr, base_mb = _run_measured(tmp_path, baseline)
    assert (code, fields["small"]) == (0, 3), stderr
    code, fields, stderr, peak_mb = _run_measured(tmp_path, costly)

    assert code == 0, stderr  # every refusal took its step's error exit
    assert "Traceback" not in stderr
    for name in PAYLOADS:
        assert fields[name]["type"] == "template_error", fields[name]
        assert fields[name]["code"] == "template_not_allowed", fields[name]
    assert fields["done"] == "done"
    assert peak_mb - base_mb < 200, f"peak {peak_mb:.0f} MB against {base_mb:.0f} MB"


# -- timeouts and the event loop -----------------------------------------------------------

SLOW_FLOW = """
flow: slow
{run_timeout}
steps:
  - id: slow
    type: core.set
    {step_timeout}
    config: {{value: "{slow}"}}
    on_error: caught
  - id: caught
    type: core.set
    config: {{value: "{{{{ error.type }}}}"}}
"""


def _slow_flow(run_timeout: str = "", step_timeout: str = "") -> str:
    return SLOW_FLOW.format(run_timeout=run_timeout, step_timeout=step_timeout, slow=SLOW)


def test_a_rendering_alone_stops_after_its_second(runtime: Runtime) -> None:
    result = runtime.run_sync(_slow_flow(), console=io.StringIO())
    assert result.merge_fields["slow"]["code"] == "template_not_allowed"
    assert "ran for more than 1 s and was stopped" in result.merge_fields["slow"]["message"]


def test_a_steps_timeout_stops_its_rendering(runtime: Runtime) -> None:
    result = runtime.run_sync(_slow_flow(step_timeout="timeout: 200ms"), console=io.StringIO())
    error = result.merge_fields["slow"]
    assert (error["type"], error["code"]) == ("timeout", "timeout"), error
    assert "did not finish within its timeout" in error["message"]


def test_a_runs_timeout_stops_a_rendering(runtime: Runtime) -> None:
    result = runtime.run_sync(_slow_flow(run_timeout="timeout: 200ms"), console=io.StringIO())
    assert result.status == "failed"
    assert result.error is not None and result.error["code"] == "run_timeout", result.error


LIGHT = """
flow: light
steps:
  - id: a
    type: core.set
    config: {value: "{{ 1 + 1 }}"}
  - id: b
    type: core.set
    config: {value: "{{ a * 2 }}"}
"""


def test_other_runs_keep_moving_while_a_template_renders() -> None:
    """Before: the costly rendering held the event loop, and no other run moved."""

    async def main() -> tuple[dict[str, Any], list[float]]:
        async with make_runtime() as runtime:
            finished: list[float] = []
            slow = asyncio.create_task(runtime.run(_slow_flow(), console=io.StringIO()))

            async def light_runs() -> None:
                while not slow.done():
                    await runtime.run(LIGHT, console=io.StringIO())
                    finished.append(time.time())
                    # A flow of core.set steps never waits on anything: let the loop breathe.
                    await asyncio.sleep(0)

            await asyncio.gather(slow, light_runs())
            step = next(r for r in slow.result().reports if r.get("step") == "slow")
            return step, finished

    step, finished = asyncio.run(main())
    assert step["error"]["code"] == "template_not_allowed"  # it ran its whole second
    started, ended = _epoch(step["started_at"]), _epoch(step["ended_at"])
    during = [t for t in finished if started <= t <= ended]
    assert len(during) >= 5, f"{len(during)} light runs finished while the template rendered"


def _epoch(stamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def test_a_rendering_that_built_its_limit_says_how_to_fix_it(templates: Templates) -> None:
    source = (
        "{% set ns = namespace(s='') %}{% for i in range(20000) %}"
        "{% set ns.s = ns.s ~ 'xxxxxxxxxx' %}{% endfor %}"
    )
    with pytest.raises(TemplateProblem) as caught:
        templates.render(source, {})
    assert f"built {MAX_BUILT} characters" in caught.value.message
    assert "join lists" in caught.value.message
