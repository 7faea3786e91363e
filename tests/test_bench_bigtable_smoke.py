"""The bigtable benchmark at smoke size, so that ``bench/bigtable.py`` cannot rot.

Runs ``python -m bench.bigtable --smoke`` in a subprocess: 20,000 visible rows, a real
uvicorn server and real WebSocket clients, once with views keeping their keys and once
without. It asserts what must hold, never timings: every scope went live, each probe
scope of the keyless variant added less RSS than the keys of its view would take, and
every scope received every update exactly once.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import require_service, run_bench

pytestmark = pytest.mark.e2e


def test_bench_bigtable_smoke(tmp_path: Path) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    out = tmp_path / "bigtable.json"
    # a database of its own: suites running at once on this machine do not share it
    result = run_bench("bench.bigtable", out, BENCH_BIGTABLE_DB=os.environ.get(
        "GQLSYNC_TEST_DB", "gqlsync_test") + "_bigtable")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "| variant | visible rows |" in result.stdout
    rows = {row["variant"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"keys", "no keys"}
    for row in rows.values():
        assert row["status"] == "ok", row
        assert len(row["live_ms"]) == row["scopes"]
    keyless = rows["no keys"]
    assert keyless["delivered"] == keyless["expected"] == keyless["many_scopes"] * 5
    for key in ("duplicates", "wrong_group", "error_count"):
        assert keyless[key] == 0, (key, keyless)
