"""Faults: Redis restarting under two servers, a server killed mid-stream.

Both against a Redis of the test's own (its own port, its own process), so that it can
be stopped and started again without touching anything else on the machine. A client
(the graphql-ws recipe of the docs) follows the demo's books throughout, and its copy
must end up exactly the ``books`` query's:

- Redis restarts (empty, as a Redis without persistence does): the servers keep their
  sockets open, rejoin their groups by themselves, and tell every subscriber to resync
  (what was committed during the outage could neither be sent nor logged); the recipe
  refetches on the same socket, and later changes arrive live again.
- ``kill -9`` of the server a client is on while writes go on through the other: the
  recipe reconnects to the other with its cursor and loses nothing.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Server, free_port, node_available, start_server, stop_server
from tests.e2e.test_resume_clients import Follower, Writer, books, stop_quickly

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


class OwnRedis:
    """A redis-server process of this test's own, keeping nothing on disk."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.tmp = tmp
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.tmp)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            probe = subprocess.run(["redis-cli", "-p", str(self.port), "ping"],
                                   capture_output=True, text=True, check=False)
            if probe.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[OwnRedis]:
    if subprocess.run(["which", "redis-server"], capture_output=True, check=False).returncode:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed")
        pytest.skip("redis-server is not installed")
    redis = OwnRedis(tmp_path)
    redis.start()
    yield redis
    redis.stop()


@pytest.fixture
def servers(tmp_path: Path, own_redis: OwnRedis) -> Iterator[tuple[Server, Server]]:
    env = {"REDIS_URL": own_redis.url, "GQLSYNC_REDIS_PREFIX": f"f{uuid.uuid4().hex[:8]}"}
    db = tmp_path / "shared.sqlite3"
    pair = (start_server(tmp_path, db, env), start_server(tmp_path, db, env))
    yield pair
    for server in pair:
        if server.process.poll() is None:
            stop_quickly(server)


def wait_until(check: object, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting")


def test_a_redis_restart_keeps_the_sockets_and_tells_subscribers_to_resync(
    servers: tuple[Server, Server], own_redis: OwnRedis,
) -> None:
    node_available()
    a, b = servers
    writer = Writer()
    client = Follower("graphql-ws", a)
    try:
        client.wait_for("ready")
        a.wait_subscriptions(1)
        for i in range(3):
            writer.create(b, f"Before {i}")
        client.changes(3)

        own_redis.stop()
        committed_meanwhile = []
        for i in range(5):  # the writes commit; their events can go nowhere
            committed_meanwhile.append(writer.create(b, f"During {i}"))
        time.sleep(1)
        own_redis.start()  # empty: groups, log and all

        client.wait_for("resync", timeout=20)
        client.wait_for("refetch", timeout=20)
        wait_until(lambda: a.stats()["subscriptions"] == 1)
        assert set(committed_meanwhile) <= set(client.copy())
        assert a.stats()["outages"] >= 1

        for i in range(3):  # live again, through the restarted Redis
            writer.create(b, f"After {i}")
        client.changes(3)
        client.quiet()
        assert client.copy() == books(b)
        interrupted = [line for line in client.lines if line["event"] == "interrupted"]
        # the subscription was ended with RESYNC; the socket itself never closed
        assert all("RESYNC" in str(line) or "completed" in str(line) for line in interrupted)
    finally:
        client.close()


def test_kill_9_of_a_server_mid_stream_loses_nothing_for_a_client_that_moves(
    servers: tuple[Server, Server],
) -> None:
    node_available()
    a, b = servers
    writer = Writer()
    client = Follower("graphql-ws", a)
    try:
        client.wait_for("ready")
        a.wait_subscriptions(1)
        for i in range(5):
            writer.create(b, f"Before {i}")
        client.changes(5)
        for i in range(10):
            writer.create(b, f"Racing {i}")
        a.process.send_signal(signal.SIGKILL)  # mid-stream: some of these never went out
        a.process.wait(5)
        for i in range(10):
            writer.create(b, f"After the kill {i}")
        client.wait_for("interrupted", timeout=20)
        client.target(b)  # its next retry goes to B, with its last cursor
        wait_until(lambda: b.stats()["subscriptions"] == 1, timeout=20)
        wait_until(lambda: client.copy() == books(b), timeout=20)
        writer.create(b, "Live on B")
        wait_until(lambda: client.copy() == books(b), timeout=10)
        client.quiet()
        titles = [line["node"]["title"] for line in client.lines if line["event"] == "change"]
        assert len(titles) == len(set(titles)), "a change arrived twice"
    finally:
        client.close()
        stop_server(a) if a.process.poll() is None else None


BURST = """
import django, os
django.setup()
from django.db import transaction
from schema_examples.bookstore.models import Author, Book
lee = Author.objects.get(email="lee@child.com")
with transaction.atomic():
    for i in range(int(os.environ["BURST"])):
        Book.objects.create(title=f"Burst {i}", author=lee)
"""


@pytest.fixture
def small_servers(tmp_path: Path, own_redis: OwnRedis) -> Iterator[tuple[Server, dict[str, str]]]:
    """One server whose channel-layer channels hold 5 messages: a burst overflows them."""
    env = {"REDIS_URL": own_redis.url, "GQLSYNC_REDIS_PREFIX": f"f{uuid.uuid4().hex[:8]}",
           "GQLSYNC_REDIS_CAPACITY": "5", "GQLSYNC_DEMO_DB": str(tmp_path / "shared.sqlite3")}
    server = start_server(tmp_path, tmp_path / "shared.sqlite3", env)
    yield server, env
    stop_quickly(server)


def test_a_burst_the_layer_drops_is_healed_from_the_log(
    small_servers: tuple[Server, dict[str, str]],
) -> None:
    """300 books committed at once by another process: the layer drops most of the
    messages to the server's full channel; the server notices, replays them from the
    log, and the client's copy is exact, each book once."""
    node_available()
    server, env = small_servers
    client = Follower("graphql-ws", server)
    try:
        client.wait_for("ready")
        server.wait_subscriptions(1)
        writer_env = {**os.environ, **env, "BURST": "300",
                      "DJANGO_SETTINGS_MODULE": "schema_examples.settings"}
        subprocess.run([sys.executable, "-c", BURST], env=writer_env, check=True,
                       cwd=Path(__file__).resolve().parents[2], timeout=60)
        wait_until(lambda: client.copy() == books(server), timeout=30)
        stats = server.stats()
        assert stats["dropped"] > 0, stats  # the layer did drop: the test means something
        assert stats["healed"] > 0, stats
        client.quiet()
        titles = [line["node"]["title"] for line in client.lines if line["event"] == "change"]
        assert len(titles) == len(set(titles)) == 300
    finally:
        client.close()
