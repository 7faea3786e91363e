"""One measured run: a scenario's servers, clients and writer for one variant.

:func:`measure` starts everything fresh, waits until every subscription is in place,
takes the "before" readings, lets the writer go, waits until every expected delivery has
arrived (or the run's time limit passes), takes the "after" readings and tears everything
down. Nothing outlives it: every process it starts is stopped in ``finally``.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.clients import Clients, Plan

ROOT = Path(__file__).resolve().parent.parent
#: variant -> (ASGI application, the path answering {"subscriptions": n})
VARIANTS = {
    "gqlsync": ("bench.app.asgi_gqlsync:application", "/graphql/stats"),
    "baseline": ("bench.app.asgi_baseline:application", "/bench/stats"),
    "floor": ("bench.app.asgi_floor:application", "/bench/stats"),
    # the scoped scenario's reference: gqlsync's server, the same rooms, no rule at all
    "allowany": ("bench.app.asgi_gqlsync:application", "/graphql/stats"),
}
#: who publishes the writer's changes, per variant
PUBLISHERS = {"gqlsync": "gqlsync", "allowany": "gqlsync", "baseline": "baseline",
              "floor": "floor"}
CLIENT_WORKERS = 2
SETTLE = 0.5  # seconds between "all subscribed" and the first write
GRACE = 0.5  # seconds of listening on after the last expected delivery (duplicates)


@dataclass(frozen=True)
class Run:
    scenario: str
    variant: str
    n: int  # subscriptions
    k: int = 0  # distinct filters (0: no filter, every subscription gets every change)
    per_socket: int = 1
    servers: int = 1
    events: int = 20
    rate: float = 20.0
    limit: float = 300.0  # seconds for the whole run
    #: each subscription signs in as its own user and subscribes to ``itemChangedIn(room:)``
    #: under the per-user rule (not in the ``allowany`` variant, which is the reference)
    scoped: bool = False

    def signs_in(self) -> bool:
        return self.scoped and self.variant != "allowany"

    def groups(self) -> list[int | None]:
        """The filter of each subscription: spread evenly over K groups."""
        return [j % self.k if self.k else None for j in range(self.n)]

    def expected(self) -> int:
        writes = [i % max(self.k, 1) for i in range(self.events)]
        return sum(self.events if g is None else writes.count(g) for g in self.groups())


class RunFailed(Exception):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_seconds(process: psutil.Process) -> float:
    """CPU time of ``process`` (all its threads), in nanoseconds' precision where Linux
    offers it (``/proc/<pid>/task/*/schedstat``), else in clock ticks (psutil)."""
    try:
        total = 0
        for task in Path(f"/proc/{process.pid}/task").iterdir():
            total += int((task / "schedstat").read_text().split()[0])
        return total / 1e9
    except (OSError, ValueError, IndexError):
        times = process.cpu_times()
        return float(times.user + times.system)


class Redis:
    """A private redis-server (clean INFO counters), or the one at ``url``."""

    def __init__(self, url: str | None, tmp: Path) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        if url is None:
            if shutil.which("redis-server") is None:
                url = "redis://127.0.0.1:6379/0"
            else:
                port = free_port()
                self.process = subprocess.Popen(
                    ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(tmp)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                url = f"redis://127.0.0.1:{port}/0"
        self.url = url
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=10)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        pid = self.client.info("server")["process_id"]
        self.ps = psutil.Process(pid) if self.process is not None else None

    def commands(self) -> dict[str, int]:
        stats = self.client.info("commandstats")
        return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}

    def cpu(self) -> float:
        return 0.0 if self.ps is None else cpu_seconds(self.ps)

    def traffic(self) -> int:
        """Bytes into and out of Redis so far."""
        stats = self.client.info("stats")
        return int(stats["total_net_input_bytes"]) + int(stats["total_net_output_bytes"])

    def close(self) -> None:
        self.client.close()
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


class Server:
    def __init__(self, variant: str, env: dict[str, str], log: Path) -> None:
        app, self.stats_path = VARIANTS[variant]
        self.stats_token = env.get("BENCH_STATS_TOKEN")
        self.port = free_port()
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1",
             "--port", str(self.port), "--lifespan", "off", "--log-level", "warning",
             "--backlog", "4096"],
            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.process.pid)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql/"

    def stats(self) -> dict[str, int]:
        """The server's counters (gqlsync: its hub's; the others: subscriptions only)."""
        url = f"http://127.0.0.1:{self.port}{self.stats_path}"
        headers = {"authorization": f"Bearer {self.stats_token}"} if self.stats_token else {}
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                    timeout=5) as response:
            counters: dict[str, int] = json.load(response)
            return counters

    def subscriptions(self) -> int:
        return self.stats()["subscriptions"]

    def wait_started(self, deadline: float) -> None:
        while True:
            if self.process.poll() is not None:
                raise RunFailed(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                self.subscriptions()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RunFailed("server did not start in time") from None
                time.sleep(0.1)

    def cpu(self) -> float:
        return cpu_seconds(self.ps)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def stop(self) -> None:
        """Terminate; kill what lingers (the baseline's shutdown can hang on its tasks)."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(3)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def _warm_up(server: Server) -> None:
    """One subscription, opened and closed, so lazy imports don't count as per-socket RSS."""
    from websockets.sync.client import connect

    from bench.clients import subscribe_message

    with connect(server.url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                 compression=None, open_timeout=30) as ws:
        ws.send('{"type":"connection_init","payload":{}}')
        ws.recv(30)
        ws.send(subscribe_message("1", 0))
        time.sleep(0.2)


def _wait(condition: Any, deadline: float, what: str) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise RunFailed(f"timeout: {what}")
        time.sleep(0.05)


def plans(run: Run, urls: list[str], tokens: list[str] | None = None) -> list[Plan]:
    """Sockets of ``per_socket`` subscriptions, round-robin over servers and workers;
    with ``tokens``, socket ``s`` signs in as user ``s``."""
    groups = run.groups()
    result = [Plan() for _ in range(CLIENT_WORKERS)]
    for s, start in enumerate(range(0, run.n, run.per_socket)):
        result[s % CLIENT_WORKERS].sockets.append(
            (urls[s % len(urls)], groups[start:start + run.per_socket],
             tokens[s] if tokens is not None else None))
    return [plan for plan in result if plan.sockets]


def measure(run: Run, redis: Redis, base_env: dict[str, str], tmp: Path) -> dict[str, Any]:
    """Run ``run`` once; the raw readings (see :mod:`bench.report` for the table)."""
    started = time.monotonic()
    deadline = started + run.limit
    name = f"{run.scenario}-{run.variant}-{uuid.uuid4().hex[:6]}"
    env = {**base_env, "REDIS_URL": redis.url, "BENCH_REDIS_PREFIX": f"bench-{name}"}
    row: dict[str, Any] = {**run.__dict__, "expected": run.expected(), "status": "ok"}
    phases: dict[str, float] = row.setdefault("phases", {})

    def phase(name: str) -> None:
        phases[name] = round(time.monotonic() - started, 2)
    servers: list[Server] = []
    clients: Clients | None = None
    writer: subprocess.Popen[str] | None = None
    try:
        servers = [Server(run.variant, env, tmp / f"{name}-{i}.log") for i in range(run.servers)]
        writer = subprocess.Popen(
            [sys.executable, "-m", "bench.writer", "write",
             "--publisher", PUBLISHERS[run.variant],
             "--events", str(run.events), "--rate", str(run.rate),
             "--groups", str(max(run.k, 1)), "--run", name],
            cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for server in servers:
            server.wait_started(deadline)
            _warm_up(server)
        _wait(lambda: all(s.subscriptions() == 0 for s in servers), deadline, "warm-up ended")
        phase("started")
        time.sleep(SETTLE)
        rss_before = sum(s.rss() for s in servers)

        tokens = None
        if run.signs_in():
            tokens = json.loads(Path(env["BENCH_TOKENS"]).read_text())
            if len(tokens) < run.n:
                raise RunFailed(f"{len(tokens)} users prepared, {run.n} needed")
        clients = Clients(plans(run, [s.url for s in servers], tokens))
        sockets = -(-run.n // run.per_socket)
        connect_start = time.monotonic()
        _wait(lambda: clients.sockets_ready() >= sockets or not clients.alive(), deadline,
              "not every socket subscribed")
        if not clients.alive():
            raise RunFailed("a client worker died")
        _wait(lambda: sum(s.subscriptions() for s in servers) >= run.n, deadline,
              "servers never held every subscription")
        row["subscribe_s"] = time.monotonic() - connect_start
        phase("subscribed")
        time.sleep(SETTLE)
        row["rss_bytes"] = sum(s.rss() for s in servers) - rss_before
        if _line(writer, deadline) != "ready":
            raise RunFailed("the writer did not start")

        cpu_before = sum(s.cpu() for s in servers)
        redis_cpu_before, commands_before = redis.cpu(), redis.commands()
        traffic_before = redis.traffic()
        write_start = time.monotonic()
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
        done = _line(writer, deadline)
        if not done:
            raise RunFailed("the writer failed")
        row["writer"] = json.loads(done)
        row["write_s"] = time.monotonic() - write_start
        try:
            _wait(lambda: clients.received() >= row["expected"], deadline, "deliveries missing")
        except RunFailed as error:
            row["status"] = str(error)
        row["drain_s"] = time.monotonic() - write_start - row["write_s"]
        phase("delivered")
        row["cpu_s"] = sum(s.cpu() for s in servers) - cpu_before
        row["redis_cpu_s"] = redis.cpu() - redis_cpu_before
        row["redis_bytes"] = redis.traffic() - traffic_before
        commands_after = redis.commands()
        row["redis_commands"] = {
            k: v - commands_before.get(k, 0) for k, v in commands_after.items()
            if v - commands_before.get(k, 0) > 0 and k != "info"}
        time.sleep(GRACE)
        row["server_stats"] = [s.stats() for s in servers]
        tally = clients.finish()
        phase("clients finished")
        row.update({k: v for k, v in tally.items() if k != "latencies_ms"})
        latencies = sorted(tally["latencies_ms"])
        row["latency_ms"] = [_percentile(latencies, p) for p in (50, 99, 100)]
        _check(row)
    except (RunFailed, OSError) as error:
        row["status"] = f"failed: {error}"[:200]
        if clients is not None and "delivered" not in row:
            tally = clients.finish(timeout=20)
            row.update({k: v for k, v in tally.items() if k != "latencies_ms"})
        row["server_logs"] = [s.log.read_text(errors="replace")[-1500:] for s in servers]
    finally:
        if clients is not None:
            clients.close()
        if writer is not None and writer.poll() is None:
            writer.kill()
            writer.wait(5)
        for server in servers:
            server.stop()
        phase("stopped")
    row["seconds"] = time.monotonic() - started
    return row


def _line(process: subprocess.Popen[str], deadline: float) -> str:
    """The next line ``process`` prints, or "" at its exit or at ``deadline``."""
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], max(0.0, deadline - time.monotonic()))
    return process.stdout.readline().strip() if ready else ""


def _percentile(ordered: list[float], p: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def _check(row: dict[str, Any]) -> None:
    """delivered == expected, nothing twice, nothing of another group, no errors."""
    problems = []
    if row["delivered"] != row["expected"]:
        problems.append(f"delivered {row['delivered']} of {row['expected']}")
    for key in ("duplicates", "wrong_group", "error_count"):
        if row[key]:
            problems.append(f"{key} {row[key]}")
    if row["status"] != "ok":  # the run's time limit passed first
        problems.append(f"{row['status']} after {row['drain_s']:.0f}s of draining")
    dropped = sum(stats.get("dropped", 0) for stats in row.get("server_stats", []))
    if dropped:  # gqlsync's hub numbers the messages and counts the gaps
        problems.append(f"{dropped} messages lost on the way to the hub")
    if row["writer"]["drops"]:
        problems.append(f"{row['writer']['drops']} group messages dropped (over capacity)")
    if problems:
        row["status"] = "FAILED: " + ", ".join(problems)


def environment() -> dict[str, str]:
    """The environment of every process: the database chosen once, for all of them."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["DJANGO_SETTINGS_MODULE"] = "bench.app.settings"
    env["PYTHONPATH"] = str(ROOT)
    if _ensure_postgres():
        env["BENCH_DATABASE"] = "postgres"
    else:
        env["BENCH_DATABASE"] = str(Path(tempfile.gettempdir()) / f"gqlsync-bench-{os.getpid()}.db")
    return env


def _ensure_postgres() -> bool:
    try:
        ensure_database("gqlsync_bench")
        return True
    except Exception:
        return False


def ensure_database(name: str) -> None:
    """Create the PostgreSQL database ``name`` on 127.0.0.1 unless it exists."""
    import psycopg

    with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                         autocommit=True, connect_timeout=2) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                             [name]).fetchone()
        if not found:
            conn.execute(f'CREATE DATABASE "{name}"')


def prepare(env: dict[str, str], users: int, tmp: Path) -> None:
    """Migrate and create the items, ``users`` users with their room memberships and a
    staff user (no server is running yet); the staff user's token goes to
    ``env["BENCH_STATS_TOKEN"]``, the path of a JSON list of the users' tokens to
    ``env["BENCH_TOKENS"]``."""
    env["BENCH_TOKENS"] = str(tmp / "tokens.json")
    for command in (["-m", "django", "migrate", "--verbosity", "0"],
                    ["-m", "bench.writer", "prepare", "--users", str(users),
                     "--tokens", env["BENCH_TOKENS"]]):
        done = subprocess.run([sys.executable, *command], cwd=ROOT,
                              env={**env, "REDIS_URL": ""}, check=True, timeout=120,
                              stdout=subprocess.PIPE, text=True)
    # gqlsync's /graphql/stats is staff-only: the servers' stats are read with this token
    env["BENCH_STATS_TOKEN"] = done.stdout.strip().splitlines()[-1]
