"""The benchmark at smoke size, so that ``bench/`` cannot rot.

Runs ``python -m bench --smoke`` (every scenario, every variant, N = 50) in a subprocess:
real uvicorn servers, WebSocket clients, a writer process and Redis. It checks that the
run exits 0, i.e. every subscription received every expected event exactly once, and that
the table was printed. It does not judge the timings: the table is for reading.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.e2e


def test_bench_smoke(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:  # else the bench starts a private one
        require_service("Redis", "127.0.0.1", 6379)
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--json", str(tmp_path / "smoke.json")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "| scenario | variant | N | K |" in result.stdout
    rows = json.loads((tmp_path / "smoke.json").read_text())["rows"]
    # the scoped scenario signs in 50 users, each their own scope, against allowany
    assert {r["variant"] for r in rows if r["scenario"] == "scoped"} == {
        "gqlsync", "baseline", "allowany"}
    for row in rows:
        if row["scenario"] == "scoped" and row["variant"] == "gqlsync":
            executions = sum(s["executions"] for s in row["server_stats"])
            assert executions == row["events"], "one execution per event for every scope"
