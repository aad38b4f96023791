"""State: in memory and per backend by default; with a state directory it survives a
restart, and a job that was running carries on."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient

from steprun.runtime.local import LocalBackend
from tests.local.conftest import JOB_SECONDS, FakeClock, Mount, chat_lines, check_response

Start = Callable[[], httpx.Client]


@pytest.fixture
def start(mount: Mount, server_url: str, tmp_path: Path, clock: FakeClock) -> Iterator[Start]:
    """(Re)start a backend on the same state directory and clock; returns its client."""
    clients: list[httpx.Client] = []

    def _start() -> httpx.Client:
        mount.app = LocalBackend(job_seconds=JOB_SECONDS, state_dir=tmp_path, clock=clock).app
        client = httpx.Client(
            base_url=server_url, timeout=10, event_hooks={"response": [check_response]}
        )
        clients.append(client)
        return client

    yield _start
    for client in clients:
        client.close()
    mount.app = None


def upload(client: httpx.Client, content: bytes) -> str:
    response = client.post(
        "/v1/files", files={"file": ("t.jsonl", content)}, data={"purpose": "fine-tune"}
    )
    return str(response.json()["id"])


def test_files_jobs_models_and_ledger_survive_a_restart(
    start: Start, clock: FakeClock, tmp_path: Path
) -> None:
    before = start()
    file_id = upload(before, chat_lines(12))
    job = before.post(
        "/v1/fine_tuning/jobs", json={"model": "gpt-4o-mini", "training_file": file_id}
    )
    clock.advance(JOB_SECONDS + 1)
    model = before.get(f"/v1/fine_tuning/jobs/{job.json()['id']}").json()["fine_tuned_model"]
    events = before.get(f"/v1/fine_tuning/jobs/{job.json()['id']}/events").json()

    after = start()
    assert after.get(f"/v1/files/{file_id}/content").content == chat_lines(12)
    assert after.get(f"/v1/fine_tuning/jobs/{job.json()['id']}").json()["fine_tuned_model"] == model
    assert after.get(f"/v1/fine_tuning/jobs/{job.json()['id']}/events").json() == events
    assert model in {m["id"] for m in after.get("/v1/models").json()["data"]}
    question = {"model": model, "messages": [{"role": "user", "content": "code word number 3"}]}
    answer = after.post("/v1/chat/completions", json={**question, "temperature": 0}).json()
    assert answer["choices"][0]["message"]["content"] == "The code word number 3 is word3."
    assert after.get("/_steprun/ledger").json()["create_requests"]["/v1/fine_tuning/jobs"] == 1
    assert (tmp_path / "files" / file_id).exists()


def test_a_running_job_resumes_after_a_restart(start: Start, clock: FakeClock) -> None:
    before = start()
    file_id = upload(before, chat_lines(12))
    job_id = before.post(
        "/v1/fine_tuning/jobs", json={"model": "gpt-4o-mini", "training_file": file_id}
    ).json()["id"]
    clock.advance(JOB_SECONDS * 0.5)
    assert before.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] == "running"

    after = start()
    assert after.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] == "running"
    clock.advance(JOB_SECONDS * 0.6)
    assert after.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] == "succeeded"


def test_deletions_survive_a_restart(start: Start, tmp_path: Path) -> None:
    before = start()
    file_id = upload(before, chat_lines(1))
    before.delete(f"/v1/files/{file_id}")
    assert not (tmp_path / "files" / file_id).exists()
    assert start().get(f"/v1/files/{file_id}").status_code == 404


def test_state_of_another_format_is_refused_with_a_fix(tmp_path: Path) -> None:
    (tmp_path / "state.json").write_text(json.dumps({"version": 99}))
    with pytest.raises(ValueError, match="start with an empty --state directory"):
        LocalBackend(state_dir=tmp_path)


def test_two_backends_share_nothing(mount: Mount, server_url: str) -> None:
    first, second = LocalBackend(), LocalBackend()
    with httpx.Client(base_url=server_url, event_hooks={"response": [check_response]}) as client:
        mount.app = first.app
        file_id = upload(client, chat_lines(1))
        client.post("/_steprun/faults", json={"kind": "status", "status": 500, "times": None})
        mount.app = second.app
        assert client.get(f"/v1/files/{file_id}").status_code == 404
        assert client.get("/v1/models").status_code == 200
    mount.app = None


def test_job_seconds_must_be_positive() -> None:
    with pytest.raises(ValueError, match="job_seconds must be a positive number"):
        LocalBackend(job_seconds=0)


def test_the_state_never_holds_training_data(
    start: Start, clock: FakeClock, tmp_path: Path
) -> None:
    client = start()
    content = chat_lines(12, system="SECRET-SYSTEM-PROMPT")
    file_id = upload(client, content)
    job = client.post(
        "/v1/fine_tuning/jobs", json={"model": "gpt-4o-mini", "training_file": file_id}
    ).json()
    clock.advance(JOB_SECONDS + 1)
    assert client.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["status"] == "succeeded"
    holding = [
        path.relative_to(tmp_path).as_posix()
        for path in tmp_path.rglob("*")
        if path.is_file() and b"SECRET-SYSTEM-PROMPT" in path.read_bytes()
    ]
    assert holding == [f"files/{file_id}"]  # the upload itself, and nothing else


def test_a_model_answers_from_its_deleted_training_file_after_a_restart(
    start: Start, clock: FakeClock, tmp_path: Path
) -> None:
    before = start()
    file_id = upload(before, chat_lines(12))
    job_id = before.post(
        "/v1/fine_tuning/jobs", json={"model": "gpt-4o-mini", "training_file": file_id}
    ).json()["id"]
    clock.advance(JOB_SECONDS + 1)
    model = before.get(f"/v1/fine_tuning/jobs/{job_id}").json()["fine_tuned_model"]
    assert before.delete(f"/v1/files/{file_id}").json()["deleted"] is True

    after = start()
    assert after.get(f"/v1/files/{file_id}").status_code == 404
    question = {"model": model, "messages": [{"role": "user", "content": "code word number 5"}]}
    answer = after.post("/v1/chat/completions", json={**question, "temperature": 0}).json()
    assert answer["choices"][0]["message"]["content"] == "The code word number 5 is word5."


def test_the_state_is_readable_by_its_owner_only(start: Start, tmp_path: Path) -> None:
    state = tmp_path / "state"
    backend = LocalBackend(state_dir=state)
    assert backend.ctx.store.job_dir("ftjob-x").is_dir()
    with TestClient(backend.app) as client:  # in-process, as provider: local runs it
        file = client.post(
            "/v1/files", files={"file": ("t.jsonl", chat_lines(2))}, data={"purpose": "fine-tune"}
        )
    assert file.status_code == 200
    modes = {
        path.relative_to(state).as_posix(): path.stat().st_mode & 0o777
        for path in [state, *state.rglob("*")]
    }
    assert {name for name in modes if name.startswith("backend.db")} >= {
        "backend.db",
        "backend.db-wal",
    }
    assert modes == {name: 0o700 if (state / name).is_dir() else 0o600 for name in modes}, modes


def test_backends_sharing_a_state_folder_see_each_others_changes(
    tmp_path: Path, clock: FakeClock
) -> None:
    # Two processes on one folder (two `steprun` commands beside one run store) behave so:
    # each backend has its own database connection.
    first = TestClient(LocalBackend(job_seconds=JOB_SECONDS, state_dir=tmp_path, clock=clock).app)
    second = TestClient(LocalBackend(job_seconds=JOB_SECONDS, state_dir=tmp_path, clock=clock).app)
    file_id = upload(first, chat_lines(12))
    body = {"model": "gpt-4o-mini", "training_file": file_id}
    job_id = second.post("/v1/fine_tuning/jobs", json=body).json()["id"]
    clock.advance(JOB_SECONDS * 0.5)
    assert first.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] == "running"
    assert first.post(f"/v1/fine_tuning/jobs/{job_id}/cancel").json()["status"] == "cancelled"
    clock.advance(JOB_SECONDS)
    assert second.get(f"/v1/fine_tuning/jobs/{job_id}").json()["status"] == "cancelled"
    for client in (first, second):
        ledger = client.get("/_steprun/ledger").json()
        assert [job["id"] for job in ledger["jobs"]] == [job_id]
        assert ledger["create_requests"]["/v1/fine_tuning/jobs"] == 1
    second.delete(f"/v1/files/{file_id}")
    assert first.get(f"/v1/files/{file_id}").status_code == 404
