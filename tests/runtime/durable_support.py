"""What the durable-run tests share: a real ``serve-local``, the real CLI, a run to kill.

Nothing here is a test double. The backend is ``steprun serve-local`` in its own process,
steprun runs as its console script in a child process that the tests SIGKILL, and the run
store is read exactly as any other client would (:class:`tests.runtime.stores.Reader`:
an SQLite file read-only, so that a test never checkpoints the WAL a killed run left for
its resumer; a PostgreSQL schema with psycopg). A workspace's store is an SQLite file
unless the test gives it a PostgreSQL URL.

Every child gets ``STEPRUN_STATE`` inside its workspace: a test never writes to the
user's ``~/.local/state``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import httpx

from tests.runtime.stores import Reader

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "fine_tune.yaml"
EXAMPLE_DATA = REPO / "examples" / "data"
# `python -m steprun...` has no __main__; the console script sits next to the interpreter.
STEPRUN = Path(sys.executable).parent / "steprun"
CREATE_PATH = "/v1/fine_tuning/jobs"

READY = re.compile(r"steprun local backend listening on (http://\S+/v1)")
RUN_LINE = re.compile(r"^run (run_[0-9a-f]+) of flow ", re.MULTILINE)
# The example's wait step polls every 15 s against a non-local authorization; the tests
# poll faster so that a 2-second job is a 2-second run.
EXAMPLE_WAIT = 'config: {job_id: "{{ job.id }}", max_wait: 2h}'


def child_env(state: str | Path, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
    """The environment of a steprun child: our variables cleared, its store in ``state``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPRUN_")}
    env["STEPRUN_STATE"] = str(state)
    env["STEPRUN_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    for key, value in (extra or {}).items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def wait_for(
    predicate: Callable[[], Any], what: str, timeout: float = 30.0, every: float = 0.02
) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(every)


def parse_time(text: str) -> float:
    """Seconds since the epoch of a report timestamp (ISO 8601, milliseconds)."""
    return datetime.fromisoformat(text).timestamp()


# -- the backend ---------------------------------------------------------------------------


@dataclass
class LocalServer:
    """One ``steprun serve-local`` process, driven over HTTP like any client would."""

    url: str  # http://127.0.0.1:PORT/v1
    job_seconds: float
    process: subprocess.Popen[bytes]

    @property
    def root(self) -> str:
        return self.url.removesuffix("/v1")

    def request(self, method: str, path: str, **options: Any) -> Any:
        response = httpx.request(
            method, self.root + path, headers={"Authorization": "Bearer sk-test"}, **options
        )
        response.raise_for_status()
        return response.json()

    def ledger(self) -> dict[str, Any]:
        ledger: dict[str, Any] = self.request("GET", "/_steprun/ledger")
        return ledger

    def create_requests(self) -> int:
        return int(self.ledger()["create_requests"][CREATE_PATH])

    def jobs_of(self, run_id: str) -> list[dict[str, Any]]:
        """Every job the server ever created that carries this run's tag."""
        return [
            job
            for job in self.ledger()["jobs"]
            if (job.get("metadata") or {}).get("steprun_run_id") == run_id
        ]

    def job(self, job_id: str) -> dict[str, Any]:
        job: dict[str, Any] = self.request("GET", f"/v1/fine_tuning/jobs/{job_id}")
        return job

    def uploads(self, filename: str) -> list[dict[str, Any]]:
        """Files uploaded from ``filename``: the step uploads ``a.jsonl`` as
        ``a.steprun-<tag>.jsonl``."""
        stem, _, extension = filename.rpartition(".")
        tagged = re.compile(rf"{re.escape(stem)}\.steprun-[0-9a-f]+\.{re.escape(extension)}")
        files = self.request("GET", "/v1/files", params={"limit": 10000})["data"]
        return [f for f in files if tagged.fullmatch(str(f.get("filename")))]

    def arm(self, **fault: Any) -> None:
        self.request("POST", "/_steprun/faults", json=fault)

    def clear_faults(self) -> None:
        self.request("DELETE", "/_steprun/faults")


@contextmanager
def serve_local(folder: Path, job_seconds: float) -> Iterator[LocalServer]:
    """Start ``steprun serve-local --port 0``; wait for its ready line; kill it at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"serve-local-{job_seconds:g}s.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(STEPRUN), "serve-local", "--port", "0", "--job-seconds", f"{job_seconds:g}"],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=child_env(folder / "unused-state.db"),
        )
    try:

        def ready() -> str | None:
            if process.poll() is not None:
                raise AssertionError(f"serve-local exited: {log.read_text()}")
            found = READY.search(log.read_text(encoding="utf-8", errors="replace"))
            return found[1] if found else None

        url = wait_for(ready, "serve-local's ready line", timeout=30)
        yield LocalServer(url=url, job_seconds=job_seconds, process=process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class LosingProxy:
    """A TCP proxy in front of serve-local that loses one answer, as a network can.

    Bytes pass both ways untouched, except on the first connection that carries
    ``request`` (a request line such as ``POST /v1/fine_tuning/jobs HTTP``): the request
    reaches the server, which does the work, and its answer is read and thrown away. The
    client is left waiting for a response that will never come: the instant between
    "sent" and "answered" that a crash can hit, held open for as long as a test needs.
    """

    def __init__(self, server: LocalServer, request: bytes) -> None:
        self._target = httpx.URL(server.url)
        self._request = request
        self._armed = True
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self.lost = threading.Event()  # set once an answer is being thrown away
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/v1"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        with self._lock:
            for sock in [self._listener, *self._sockets]:
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            upstream = socket.create_connection((self._target.host, self._target.port or 80))
            with self._lock:
                self._sockets += [client, upstream]
            losing = threading.Event()
            threading.Thread(target=self._up, args=(client, upstream, losing), daemon=True).start()
            threading.Thread(
                target=self._down, args=(upstream, client, losing), daemon=True
            ).start()

    def _up(self, client: socket.socket, upstream: socket.socket, losing: threading.Event) -> None:
        """Client to server: everything, noting the request whose answer is to be lost."""
        with suppress(OSError):
            while data := client.recv(65536):
                with self._lock:
                    if self._armed and self._request in data:
                        # Decided before the request goes on, so its answer cannot slip by.
                        self._armed = False
                        losing.set()
                        self.lost.set()
                upstream.sendall(data)
            upstream.shutdown(socket.SHUT_WR)

    def _down(
        self, upstream: socket.socket, client: socket.socket, losing: threading.Event
    ) -> None:
        with suppress(OSError):
            while data := upstream.recv(65536):
                if not losing.is_set():
                    client.sendall(data)
            client.shutdown(socket.SHUT_WR)


# -- the CLI -------------------------------------------------------------------------------


@dataclass
class Cli:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


@dataclass
class Child:
    """A steprun process the test may kill; its output goes to files (no pipe to fill)."""

    process: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stdout(self) -> str:
        return self.out.read_text(encoding="utf-8", errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(encoding="utf-8", errors="replace")

    def run_id(self) -> str | None:
        found = RUN_LINE.search(self.stderr())
        return found[1] if found else None

    def kill(self) -> None:
        """SIGKILL, as the OOM killer or a power cut would: no cleanup runs."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def wait(self, timeout: float = 60) -> int:
        return self.process.wait(timeout)

    def result(self) -> Cli:
        return Cli(self.process.returncode, self.stdout(), self.stderr())


_CHILDREN: list[Child] = []


def reap_children() -> None:
    """Kill and reap every child a test left running (it failed half-way)."""
    while _CHILDREN:
        _CHILDREN.pop().kill()


class Workspace:
    """One scenario's folder: its own run store, flow copy, data files and authorizations."""

    def __init__(
        self,
        root: Path,
        server: LocalServer | None = None,
        tag: str = "",
        state: str | Path | None = None,
    ) -> None:
        self.root = root
        self.server = server
        # Unique: the session's one serve-local sees the uploads of every test, and a test
        # runs once per store kind with the same workspace names.
        self.tag = tag or f"{root.name}-{uuid.uuid4().hex[:6]}"
        root.mkdir(parents=True, exist_ok=True)
        self._children = 0
        # The run store: an SQLite file in the workspace, or a PostgreSQL URL.
        self.state: str | Path = root / "state" / "runs.db" if state is None else state
        self.reader = Reader(self.state)

    def env(self, extra: Mapping[str, str | None] | None = None) -> dict[str, str]:
        return child_env(self.state, extra)

    def cli(
        self,
        *args: str | Path,
        env: Mapping[str, str | None] | None = None,
        timeout: float = 90,
    ) -> Cli:
        """Run ``steprun ARGS`` to its end; a Python traceback anywhere fails the test."""
        proc = subprocess.run(
            [str(STEPRUN), *map(str, args)],
            capture_output=True,
            text=True,
            env=self.env(env),
            cwd=self.root,
            timeout=timeout,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stdout, proc.stdout
        return Cli(proc.returncode, proc.stdout, proc.stderr)

    def spawn(self, *args: str | Path, env: Mapping[str, str | None] | None = None) -> Child:
        """Start ``steprun ARGS`` without waiting for it."""
        self._children += 1
        out = self.root / f"child-{self._children}.out"
        err = self.root / f"child-{self._children}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                [str(STEPRUN), *map(str, args)],
                stdout=stdout,
                stderr=stderr,
                env=self.env(env),
                cwd=self.root,
            )
        child = Child(process, out, err)
        _CHILDREN.append(child)
        return child

    # -- the flow ---------------------------------------------------------------------

    def fine_tune(
        self,
        *,
        poll_interval: str = "0.25s",
        max_poll_interval: str = "0.5s",
        api_key: str = "sk-test",
        base_url: str | None = None,
    ) -> list[str]:
        """The fine-tuning example, pointed at serve-local; returns the ``run`` arguments.

        The example itself, with two changes: the wait step polls at ``poll_interval``,
        and its data files carry this workspace's tag in their names, so that the
        server's file list shows what this run uploaded and nothing else.
        """
        assert self.server is not None, "a fine-tuning workspace needs serve-local"
        text = EXAMPLE.read_text(encoding="utf-8")
        assert EXAMPLE_WAIT in text, "the example's wait step changed; update EXAMPLE_WAIT"
        text = text.replace(
            EXAMPLE_WAIT,
            EXAMPLE_WAIT.removesuffix("}")
            + f", poll_interval: {poll_interval}, max_poll_interval: {max_poll_interval}}}",
        )
        data = self.root / "data"
        data.mkdir(exist_ok=True)
        for name in ("support", "support_validation"):
            original = f"data/{name}.jsonl"
            assert f": {original}\n" in text, f"the example no longer reads {original}"
            text = text.replace(f": {original}\n", f": data/{self.file(name)}\n")
            shutil.copyfile(EXAMPLE_DATA / f"{name}.jsonl", data / self.file(name))
        (self.root / "fine_tune.yaml").write_text(text, encoding="utf-8")
        (self.root / "auth.yaml").write_text(
            "fine_tuning:\n"
            "  provider: openai\n"
            f"  api_key: {api_key}\n"
            f"  base_url: {base_url or self.server.url}\n"
            "  max_retries: 2\n",
            encoding="utf-8",
        )
        return ["run", "fine_tune.yaml", "--authorizations", "auth.yaml"]

    def file(self, name: str) -> str:
        return f"{name}-{self.tag}.jsonl"

    # -- the store, as a reader -------------------------------------------------------

    def query(self, sql: str, *params: Any) -> Sequence[Any]:
        """Rows from the run store (read-only; none while it does not exist yet)."""
        return self.reader.query(sql, *params)

    def attempts(self, run_id: str | None = None) -> Sequence[Any]:
        if run_id is None:
            return self.query("SELECT * FROM attempts ORDER BY run_id, seq")
        return self.query("SELECT * FROM attempts WHERE run_id = ? ORDER BY seq", run_id)

    def step_started(self, step_id: str) -> Any:
        """The newest attempt of ``step_id`` if it is started and unfinished."""
        rows = self.query(
            "SELECT * FROM attempts WHERE step_id = ? ORDER BY run_id, seq DESC LIMIT 1", step_id
        )
        return rows[0] if rows and rows[0]["status"] == "started" else None

    def runs(self) -> list[dict[str, Any]]:
        found = self.cli("runs", "--json", "--limit", "1000")
        assert found.code == 0, found.stderr
        runs: list[dict[str, Any]] = found.json()
        return runs

    def show(self, run_id: str) -> dict[str, Any]:
        found = self.cli("show", run_id, "--json")
        assert found.code == 0, found.stderr
        shown: dict[str, Any] = found.json()
        return shown


# -- killing a run and resuming it -------------------------------------------------------


@dataclass
class Outcome:
    """What one kill scenario saw."""

    name: str
    run_id: str | None = None
    exit_code: int | None = None
    position: str | None = None  # the step the run was at when it died
    resumed: bool = False


def crash_and_resume(
    ws: Workspace,
    name: str,
    *,
    failpoint: str | None = None,
    kill_after: float | None = None,  # seconds after the run was stored
    kill_when: Callable[[Child], Any] | None = None,
    before_resume: Callable[[str], None] | None = None,
    resume_failpoints: Sequence[str] = (),
    base_url: str | None = None,
    log: IO[str] | None = None,
) -> Outcome:
    """Run the fine-tuning example, kill it (failpoint, delay or condition), resume it
    (killing the resumes at ``resume_failpoints`` first, if any).

    Then check what the issue promises: the resumed run succeeds with the answer in its
    merge fields, the server created exactly one job tagged with this run, the wait step
    watched that very job, and each data file was uploaded once.
    """
    assert ws.server is not None
    server = ws.server
    args = ws.fine_tune(base_url=base_url)
    outcome = Outcome(name)
    child = ws.spawn(*args, env={"STEPRUN_FAILPOINT": failpoint} if failpoint else None)
    if failpoint is not None:
        child.wait(60)
    elif kill_after is not None:
        # Counted from the moment the run is stored, not from the spawn: how long a busy
        # machine takes to start Python is not what these kills are about.
        wait_for(
            lambda: child.process.poll() is not None or ws.query("SELECT id FROM runs"),
            f"{name}: the run to be stored",
            timeout=60,
        )
        try:
            child.wait(kill_after)  # finished before the kill: nothing to resume
        except subprocess.TimeoutExpired:
            child.kill()
    else:
        assert kill_when is not None
        wait_for(
            lambda: child.process.poll() is not None or kill_when(child),
            f"{name}: the moment to kill",
            timeout=60,
        )
        child.kill()
    outcome.exit_code = child.process.returncode
    context = f"{name}: first process (exit {outcome.exit_code}):\n{child.stderr()[-3000:]}"
    if failpoint is not None or kill_when is not None:
        assert outcome.exit_code == -signal.SIGKILL, context

    # Read from the store itself (a CLI call per check would cost more than the run).
    runs = ws.query("SELECT id, status, position FROM runs")
    if not runs:
        # Killed before the run was stored: there is nothing to resume, and nothing was sent.
        assert child.run_id() is None, context
        return outcome
    assert len(runs) == 1, context
    run = runs[0]
    outcome.run_id = run_id = run["id"]
    outcome.position = run["position"]
    printed = child.run_id()
    assert printed in (None, run_id), context
    if before_resume is not None:
        before_resume(run_id)

    if run["status"] == "succeeded":
        fields = ws.show(run_id)["merge_fields"]
    else:
        assert run["status"] == "running", context
        for again in resume_failpoints:  # crash the resumes too, before the last one
            crashed = ws.cli("resume", run_id, env={"STEPRUN_FAILPOINT": again})
            context += f"\n{name}: resume killed at {again}:\n{crashed.stderr[-2000:]}"
            assert crashed.code == -signal.SIGKILL, context
        resumed = ws.cli("resume", run_id)
        outcome.resumed = True
        context += f"\n{name}: resume (exit {resumed.code}):\n{resumed.stderr[-3000:]}"
        assert resumed.code == 0, context
        assert f"resuming run {run_id}" in resumed.stderr, context
        fields = resumed.json()
    assert " answers: " in fields["answer"]["message"], context
    assert ws.query("SELECT status FROM runs")[0]["status"] == "succeeded", context

    jobs = server.jobs_of(run_id)
    assert len(jobs) == 1, f"{context}\n{name}: jobs of {run_id} on the server: {jobs}"
    assert fields["job"]["id"] == jobs[0]["id"] == fields["wait"]["id"], context
    assert fields["job"]["metadata"]["steprun_step_id"] == "job", context
    for data_file in ("support", "support_validation"):
        copies = server.uploads(ws.file(data_file))
        assert len(copies) == 1, f"{context}\n{name}: uploads of {ws.file(data_file)}: {copies}"
    if log is not None:
        print(
            f"{name}: exit {outcome.exit_code}, died at {outcome.position}, "
            f"resumed={outcome.resumed}",
            file=log,
        )
    return outcome


def in_wait(ws: Workspace) -> Callable[[Child], bool]:
    """True once the wait step has started and reported at least one poll."""

    def check(child: Child) -> bool:
        return ws.step_started("wait") is not None and "    wait info  ftjob-" in child.stderr()

    return check


__all__ = [
    "CREATE_PATH",
    "EXAMPLE",
    "STEPRUN",
    "Child",
    "Cli",
    "LocalServer",
    "LosingProxy",
    "Outcome",
    "Workspace",
    "child_env",
    "crash_and_resume",
    "in_wait",
    "parse_time",
    "reap_children",
    "serve_local",
    "wait_for",
]
