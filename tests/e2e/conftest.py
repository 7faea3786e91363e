"""Real servers for end-to-end tests: the demo under uvicorn, in its own process.

``demo_server`` starts ``python -m schema_examples`` on a free port with a fresh SQLite
file and the in-memory layer. ``redis_servers`` starts two such processes sharing one
database and one Redis, so a write served by one reaches subscribers of the other.
``wait_subscriptions`` polls a server's hub counters (``/graphql/stats``, as the demo's
staff user) until its subscriptions are in place, so a test never races its own subscribe.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import CI, require_service

ROOT = Path(__file__).resolve().parents[2]
JS_DIR = Path(__file__).resolve().parent / "js"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


#: the demo's staff user (``schema_examples/seed.py``): ``/graphql/stats`` is staff-only
STATS_USER = "carol"


@dataclass
class Server:
    port: int
    process: subprocess.Popen[bytes]
    log: Path
    #: a staff user's bearer token for ``/graphql/stats`` (fetched on first use)
    stats_token: str | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/graphql/"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql/"

    def stats(self) -> dict[str, Any]:
        """The hub's counters, read as the demo's staff user (the route is staff-only)."""
        if self.stats_token is None:
            self.stats_token = self.token(STATS_USER)
        request = urllib.request.Request(
            self.http_url + "stats", headers={"authorization": f"Bearer {self.stats_token}"})
        with urllib.request.urlopen(request, timeout=5) as response:
            data: dict[str, Any] = json.load(response)
            return data

    def graphql(
        self, query: str, variables: dict[str, Any] | None = None, token: str | None = None
    ) -> dict[str, Any]:
        headers = {"content-type": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        request = urllib.request.Request(
            self.http_url, json.dumps({"query": query, "variables": variables or {}}).encode(),
            headers,
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            data: dict[str, Any] = json.load(response)
            return data

    def token(self, username: str) -> str:
        result = self.graphql(
            "mutation($u: String!, $p: String!) { login(username: $u, password: $p) { token } }",
            {"u": username, "p": f"{username}-pass"},
        )
        token: str = result["data"]["login"]["token"]
        return token

    def wait_subscriptions(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.stats()["subscriptions"] >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"server never had {count} subscriptions: {self.stats()}")


def start_server(tmp: Path, db: Path, extra_env: dict[str, str] | None = None) -> Server:
    port = free_port()
    log = tmp / f"server-{port}.log"
    env = {**os.environ, "PORT": str(port), "GQLSYNC_DEMO_DB": str(db),
           "LOG_LEVEL": "warning", **(extra_env or {})}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "schema_examples"], cwd=ROOT, env=env,
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    server = Server(port, process, log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()}")
        try:
            server.stats()
            return server
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {log.read_text()}")


def stop_server(server: Server) -> None:
    server.process.terminate()
    try:
        server.process.wait(10)
    except subprocess.TimeoutExpired:
        server.process.kill()


@pytest.fixture
def demo_server(tmp_path: Path) -> Iterator[Server]:
    server = start_server(tmp_path, tmp_path / "demo.sqlite3")
    yield server
    stop_server(server)


@pytest.fixture
def redis_servers(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    require_service("Redis", "127.0.0.1", 6379)
    db = tmp_path / "shared.sqlite3"
    env = {"REDIS_URL": "redis://127.0.0.1:6379/0",
           "GQLSYNC_REDIS_PREFIX": f"gqlsync-test-{uuid.uuid4().hex[:8]}"}
    first = start_server(tmp_path, db, env)
    second = start_server(tmp_path, db, env)
    yield first, second
    stop_server(first)
    stop_server(second)


def node_available() -> None:
    """Skip (fail under CI) unless node and the npm clients are installed."""
    if shutil.which("node") is None or not (JS_DIR / "node_modules").is_dir():
        message = "node or tests/e2e/js/node_modules missing (run npm ci in tests/e2e/js)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)


# ---------------------------------------------------------------------------------------
# The contract's operations, and real JavaScript clients driven from Python.

import queue  # noqa: E402
import threading  # noqa: E402
from collections.abc import Callable  # noqa: E402

#: CI checks the shared contract out next to the clone: ``../shared/contract``.
CONTRACT_DIR = ROOT.parent / "shared" / "contract"

#: One script per client library in tests/e2e/js (see protocol.mjs there).
CLIENTS = ("graphql-ws", "apollo", "urql", "legacy")


def contract_operation(name: str) -> str:
    """The contract's operation ``name``, verbatim (as graphql-core prints it).

    Skips (fails under CI) when the contract is not checked out next to the clone.
    """
    from graphql import OperationDefinitionNode, parse, print_ast

    files = sorted(CONTRACT_DIR.glob("*.graphql"))
    if not files:
        message = f"the shared contract is missing: no {CONTRACT_DIR}/*.graphql"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    for path in files:
        for definition in parse(path.read_text()).definitions:
            if isinstance(definition, OperationDefinitionNode) and definition.name \
                    and definition.name.value == name:
                return print_ast(definition)
    raise LookupError(f"no operation {name!r} in {CONTRACT_DIR}")


class NodeClient:
    """One client script (``tests/e2e/js/<script>.mjs``) in its own node process.

    It prints one JSON object per line (``{"event": "next", "data": ...}``, ``"error"``,
    ``"complete"``, ``"closed"``, ``"exit"``); a thread reads them into a queue, so every
    wait here has a deadline and a stuck client fails the test instead of hanging it.
    """

    def __init__(self, script: str, url: str, query: str, *,
                 variables: dict[str, Any] | None = None, token: str | None = None,
                 count: int = 0, timeout: float = 30) -> None:
        self.script = script
        self.lines: list[dict[str, Any]] = []
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._stderr = b""
        args = ["node", str(JS_DIR / f"{script}.mjs"), "--url", url, "--query", query,
                "--variables", json.dumps(variables or {}), "--count", str(count),
                "--timeout", str(timeout)]
        if token is not None:
            args += ["--token", token]
        self.process = subprocess.Popen(
            args, cwd=JS_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            try:
                line = json.loads(raw)
            except ValueError:
                line = {"event": "garbage", "text": raw.decode(errors="replace")}
            self._queue.put(line)
        self._queue.put(None)  # end of output

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        self._stderr = self.process.stderr.read()

    def __repr__(self) -> str:
        return f"<{self.script} client: {self.lines}>"

    def _fail(self, why: str) -> AssertionError:
        return AssertionError(
            f"{self.script} client {why}; lines so far: {self.lines}; "
            f"stderr: {self._stderr.decode(errors='replace')[-2000:]}"
        )

    def next_line(self, timeout: float = 10) -> dict[str, Any]:
        """The next line the client prints; fails after ``timeout`` seconds or at its exit."""
        try:
            line = self._queue.get(timeout=timeout)
        except queue.Empty:
            raise self._fail(f"printed nothing within {timeout:.1f}s") from None
        if line is None:
            self._queue.put(None)  # keep reporting the end
            raise self._fail("exited")
        self.lines.append(line)
        return line

    def wait_for(self, event: str, timeout: float = 10) -> dict[str, Any]:
        """Skip lines until one of kind ``event`` (all lines stay in ``self.lines``)."""
        deadline = time.monotonic() + timeout
        while True:
            line = self.next_line(max(0.0, deadline - time.monotonic()))
            if line["event"] == event:
                return line

    def collect(self, event: str, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        """Read on until ``count`` lines of kind ``event`` have come in all; those lines."""
        deadline = time.monotonic() + timeout
        while len(found := [line for line in self.lines if line["event"] == event]) < count:
            self.next_line(max(0.0, deadline - time.monotonic()))
        return found

    def results(self, count: int, timeout: float = 10) -> list[dict[str, Any]]:
        """The data of the next ``count`` results; an error or a close first fails."""
        deadline = time.monotonic() + timeout
        data = []
        while len(data) < count:
            line = self.next_line(max(0.0, deadline - time.monotonic()))
            if line["event"] != "next":
                raise self._fail(f"sent {line} while {count} results were expected")
            data.append(without_typename(line["data"]))
        return data

    def error(self, timeout: float = 10) -> list[dict[str, Any]]:
        """The errors of the next line, which must be a failed operation."""
        line = self.next_line(timeout)
        if line["event"] != "error":
            raise self._fail(f"sent {line} where an error was expected")
        errors: list[dict[str, Any]] = line["errors"]
        return errors

    def pending(self, quiet: float = 0.3) -> list[dict[str, Any]]:
        """Lines that arrive within ``quiet`` seconds (to check that nothing more came)."""
        deadline = time.monotonic() + quiet
        lines = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                self._queue.put(None)
                break
            self.lines.append(line)
            lines.append(line)
        return lines

    def received(self) -> list[dict[str, Any]]:
        """Every result line printed so far (after a final ``pending()``)."""
        return [line for line in self.lines if line["event"] in ("next", "error")]

    def close(self) -> None:
        """Close stdin (the script then unsubscribes and exits); kill it if it lingers."""
        if self.process.poll() is None:
            try:
                assert self.process.stdin is not None
                self.process.stdin.close()
            except OSError:
                pass
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def without_typename(value: Any) -> Any:
    """``value`` without the ``__typename`` fields some clients (Apollo) add."""
    if isinstance(value, dict):
        return {k: without_typename(v) for k, v in value.items() if k != "__typename"}
    if isinstance(value, list):
        return [without_typename(v) for v in value]
    return value


@pytest.fixture
def node_client() -> Iterator[Callable[..., NodeClient]]:
    """Start client scripts: ``node_client("apollo", server.ws_url, query, token=...)``.

    Needs node and ``tests/e2e/js/node_modules`` (skips, or fails under CI, without).
    Every client still running at the end of the test is closed.
    """
    node_available()
    started: list[NodeClient] = []

    def start(script: str, url: str, query: str, **options: Any) -> NodeClient:
        client = NodeClient(script, url, query, **options)
        started.append(client)
        return client

    yield start
    for client in started:
        client.close()


def wait_subscriptions_exactly(server: Server, count: int, timeout: float = 10.0) -> None:
    """Wait until ``server`` has exactly ``count`` subscriptions (e.g. after one ended)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.stats()["subscriptions"] == count:
            return
        time.sleep(0.05)
    raise AssertionError(f"server never had exactly {count} subscriptions: {server.stats()}")


def server_env(server: Server, name: str) -> str | None:
    """An environment variable of a server process (Linux ``/proc``), e.g. its Redis prefix."""
    environ = Path(f"/proc/{server.process.pid}/environ")
    if not environ.exists():
        pytest.skip("reading a process's environment needs Linux /proc")
    for item in environ.read_bytes().split(b"\0"):
        key, _, value = item.partition(b"=")
        if key.decode() == name:
            return value.decode()
    return None
