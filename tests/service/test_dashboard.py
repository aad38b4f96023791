"""The dashboard in a real browser: Debian's Chromium driven by Playwright.

Logs in; runs the example fine-tuning flow on the embedded backend; checks the run page
shows every step and the job page draws one loss point per metrics event; cancels a
running job from its page; and pages without a session go to the login form. Screenshots
of each page are saved under tests/artifacts/dashboard/ (CI keeps them to look at).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import CANARY, TOKEN, Service, start_process, stop

playwright = pytest.importorskip("playwright.sync_api", reason="needs the test extra")
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip("Debian's chromium is not installed (.ci/run installs it)", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
ARTIFACTS = ROOT / "tests" / "artifacts" / "dashboard"
# As this machine's notes say Chromium must start here: no sandbox as root, and none of
# its background connections (this network is closed).
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def slow_backend() -> Iterator[str]:
    """serve-local whose jobs take two minutes: long enough to cancel one from a page."""
    proc, url = start_process(
        ["serve-local", "--port", "0", "--job-seconds", "120", "--api-key", CANARY],
        "listening on",
    )
    try:
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def dashboard(tmp_path_factory: pytest.TempPathFactory, slow_backend: str) -> Iterator[Service]:
    """`steprun serve` run from examples/, so the example flow finds its data files."""
    tmp = tmp_path_factory.mktemp("dashboard")
    (tmp / "token").write_text(TOKEN + "\n")
    (tmp / "auth.yaml").write_text(
        f"slow:\n  provider: openai\n  base_url: {slow_backend}/v1\n  api_key: ${{env:SLOW_KEY}}\n"
        "local:\n  provider: local\n"
    )
    args = [
        "serve",
        "--port",
        "0",
        "--token-file",
        str(tmp / "token"),
        "--authorizations",
        str(tmp / "auth.yaml"),
        "--state",
        str(tmp / "state" / "runs.db"),
    ]
    import os

    cwd = os.getcwd()
    os.chdir(EXAMPLES)
    try:
        proc, url = start_process(args, "steprun service listening", {"SLOW_KEY": CANARY})
    finally:
        os.chdir(cwd)
    service = Service(url=url, state=tmp / "state", proc=proc, secret="", args=args)
    try:
        yield service
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any, dashboard: Service) -> Iterator[Any]:
    context = browser.new_context(base_url=dashboard.url, viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page = context.new_page()
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.set_default_timeout(30_000)
    yield page
    context.close()
    # A Content-Security-Policy violation or a script error is a failure of the page.
    assert errors == [], errors


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Any) -> None:
    page.goto("/ui/")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/")


def start(dashboard: Service, flow: str, inputs: dict[str, Any] | None = None) -> str:
    with dashboard.client() as client:
        response = client.post("/v1/runs", json={"flow": flow, "inputs": inputs or {}})
        assert response.status_code == 202, response.text
        return str(response.json()["id"])


def test_pages_without_a_session_go_to_the_login_form(page: Any, dashboard: Service) -> None:
    for path in ("/ui/", "/ui/steps", "/ui/runs/run_x", "/ui/steps/core.set"):
        page.goto(path)
        assert "/ui/login" in page.url, path
        assert page.locator("input[name=token]").is_visible()
    page.fill("input[name=token]", "not-the-token-" + "x" * 20)
    page.click("button[type=submit]")
    assert page.get_by_role("alert").inner_text() == "That token is not this service's."
    shot(page, "login")
    cookies = page.context.cookies()
    assert not [c for c in cookies if c["name"] == "steprun_session"]


def test_the_example_run_its_steps_and_its_loss_curve(page: Any, dashboard: Service) -> None:
    run_id = start(dashboard, (EXAMPLES / "fine_tune.yaml").read_text())
    log_in(page)
    session = next(c for c in page.context.cookies() if c["name"] == "steprun_session")
    assert session["httpOnly"] and session["secure"] and session["sameSite"] == "Strict"
    page.wait_for_selector(f"a[href='/ui/runs/{run_id}']")
    shot(page, "runs")
    page.click(f"a[href='/ui/runs/{run_id}']")
    page.wait_for_selector("#run-status:text('succeeded')", timeout=90_000)
    steps = page.locator("#steps .step .name").all_inner_texts()
    with dashboard.client() as client:
        run = client.get(f"/v1/runs/{run_id}").json()
    assert steps == [s["step"] for s in run["steps"]]
    assert {"check", "upload", "job", "wait", "ask", "answer"} <= set(steps)
    shot(page, "run")

    page.click("ul.jobs a")
    page.wait_for_selector("#chart .main-svg")
    job_id = run["merge_fields"]["job"]["id"]
    with dashboard.client() as client:
        # The job is on the service's embedded backend; its events, through the same step
        # over the API, are the count to match: one train-loss point per metrics event.
        events = client.post(
            "/v1/steps/openai.list_fine_tuning_events",
            json={"config": {"job_id": job_id, "all": True}, "authorization": "local"},
        ).json()
    assert events["status"] == "succeeded", events
    metrics = [e for e in events["output"]["data"] if e.get("type") == "metrics"]
    drawn = page.evaluate("document.getElementById('chart').data[0].x.length")
    assert drawn == len(metrics) == int(page.locator("#job-points").inner_text()) > 0
    assert page.locator("#job-status").inner_text() == "succeeded"
    shot(page, "job")


def test_cancel_a_running_job_from_its_page(page: Any, dashboard: Service) -> None:
    # The example flow, its authorization redefined by the service's file: a backend
    # whose jobs take two minutes.
    flow = (
        (EXAMPLES / "fine_tune.yaml")
        .read_text()
        .replace("authorization: fine_tuning ", "authorization: slow ")
    )
    assert "authorization: slow" in flow
    run_id = start(dashboard, flow)
    log_in(page)
    page.goto(f"/ui/runs/{run_id}")
    page.wait_for_selector("ul.jobs a", timeout=60_000)
    page.click("ul.jobs a")
    page.wait_for_selector("#cancel-job button")
    shot(page, "job-running")
    page.click("#cancel-job button")
    page.wait_for_load_state()
    assert "/cancel" not in page.url, page.locator("main").inner_text()
    page.wait_for_selector("#job-status:text('cancelled')")
    assert page.locator("#cancel-job").count() == 0
    with dashboard.client() as client:
        deadline = time.monotonic() + 60
        while (run := client.get(f"/v1/runs/{run_id}").json())["status"] == "running":
            assert time.monotonic() < deadline
            time.sleep(0.3)
    assert run["merge_fields"]["wait"]["type"] == "fine_tuning_job_cancelled", run
    shot(page, "job-cancelled")


def test_a_form_needs_its_csrf_token(page: Any, dashboard: Service) -> None:
    flow = "flow: t\nsteps:\n  - id: a\n    type: core.set\n    config: {value: 1}\n"
    run_id = start(dashboard, flow)
    log_in(page)
    response = page.request.post(f"/ui/runs/{run_id}/cancel", form={"csrf": "forged"})
    assert response.status == 403
    response = page.request.post(f"/ui/runs/{run_id}/cancel", form={})
    assert response.status == 403


def test_the_step_catalog_shows_each_step_as_a_form(page: Any, dashboard: Service) -> None:
    log_in(page)
    page.goto("/ui/steps")
    page.click("a[href='/ui/steps/openai.create_fine_tuning_job']")
    page.wait_for_selector("form.step-form")
    assert page.locator("#f-training_file").is_visible()
    assert page.locator("label[for=f-training_file] .required").count() == 1
    assert page.locator("label[for=f-suffix] .required").count() == 0
    example = json.loads(page.locator("pre").last.inner_text())
    assert "training_file" in example
    shot(page, "step")
    headers = page.request.get("/ui/steps").headers
    assert "script-src 'self'" in headers["content-security-policy"]
