"""`steprun serve --state postgresql://…`: the service keeps its runs in PostgreSQL, and
what stays local (its token, webhook secret and records) in the state folder."""

from __future__ import annotations

import json
from pathlib import Path

from tests.runtime.stores import Postgres, Reader

from .conftest import TOKEN, Service, start_process, stop

FLOW = """
flow: service-on-postgres
inputs: {name: world}
steps:
  - id: greeting
    type: core.set
    config: {value: "Hello, {{ inputs.name }}!"}
"""


def test_runs_posted_to_a_service_on_postgresql_are_kept_there(
    tmp_path: Path, postgres: Postgres
) -> None:
    url = postgres.fresh()
    (tmp_path / "token").write_text(TOKEN + "\n")
    args = ["serve", "--port", "0", "--token-file", str(tmp_path / "token"), "--state", url]
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    proc, base = start_process(args, "steprun service listening", env)
    folder = tmp_path / "xdg" / "steprun"
    service = Service(
        url=base,
        state=folder,
        proc=proc,
        secret=(folder / "webhook.secret").read_text().strip(),
        args=args,
        env=env,
    )
    try:
        with service.client() as client:
            accepted = client.post("/v1/runs", json={"flow": FLOW, "inputs": {"name": "Ada"}})
            assert accepted.status_code == 202, accepted.text
            run_id = accepted.json()["id"]
            run = service.wait_for(run_id, "succeeded", "failed")
            listed = client.get("/v1/runs").json()
    finally:
        stop(proc)
    assert run["status"] == "succeeded", run
    assert run["merge_fields"]["greeting"] == "Hello, Ada!"
    assert run_id in json.dumps(listed)
    stored = Reader(url).query("SELECT status, inputs FROM runs WHERE id = ?", run_id)
    assert [(r[0], json.loads(r[1])) for r in stored] == [("succeeded", {"name": "Ada"})]
    assert (folder / "service.db").exists()  # its records, local, beside the secret
