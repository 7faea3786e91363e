"""Fixtures shared by the suite.

Services: PostgreSQL and Redis are used for real. On a laptop without them the tests that
need them skip; under ``CI=true`` a missing service is a failure, never a skip.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection

CI = os.environ.get("CI") == "true"


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def run_bench(module: str, json_path: Any, **env_extra: str) -> Any:
    """``python -m <module> --smoke --json <json_path>`` in a subprocess (the
    benchmarks' smoke tests): Redis and PostgreSQL must answer (under CI, or skip);
    returns the finished process. A bench starts a private redis-server when it can."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    if shutil.which("redis-server") is None:
        require_service("Redis", "127.0.0.1", 6379)
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.update(env_extra)
    return subprocess.run(
        [sys.executable, "-m", module, "--smoke", "--json", str(json_path)],
        cwd=Path(__file__).resolve().parents[1], env=env, capture_output=True, text=True,
        timeout=300,
    )


def require_service(name: str, host: str, port: int) -> None:
    """Skip (or, under CI, fail) unless ``host:port`` answers."""
    if reachable(host, port):
        return
    message = f"{name} is not running on {host}:{port}"
    if CI:
        pytest.fail(message + " (CI=true: a missing service is a failure)")
    pytest.skip(message)


@pytest.fixture
def postgres() -> None:
    """The test needs PostgreSQL transaction semantics."""
    if connection.vendor != "postgresql":
        if CI:
            pytest.fail("CI=true but the tests are not running on PostgreSQL")
        pytest.skip("PostgreSQL is not available; tests run on SQLite")


@pytest.fixture
def redis_url() -> str:
    require_service("Redis", "127.0.0.1", 6379)
    return "redis://127.0.0.1:6379/0"


@pytest.fixture
def seeded(transactional_db: Any) -> None:
    from schema_examples.seed import seed

    seed()


@pytest.fixture
def application() -> Any:
    from schema_examples.asgi import application

    return application


@pytest.fixture(autouse=True)
def _isolate() -> Iterator[None]:
    yield
    # Hubs are per event loop and die with each test's loop; drop the layer they used,
    # and close the database connection of asgiref's sync thread (async tests open it
    # there), or the test database cannot be dropped at the end.
    from asgiref.sync import SyncToAsync
    from channels.layers import channel_layers
    from django.db import connections

    channel_layers.backends.clear()
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()
