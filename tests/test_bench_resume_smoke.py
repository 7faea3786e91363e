"""The resume benchmark at smoke size, so that ``bench/resume.py`` cannot rot.

Runs ``python -m bench.resume --smoke`` in a subprocess: the publishing runs, then a real
uvicorn server, real WebSocket clients resuming with ``after:`` from one cursor, and the
same clients refetching the list. It asserts correctness only, never timings: the run
exits 0, every subscriber received exactly its catch-up (one event per changed row it
held or may see, with the right op, nothing missing, nothing twice) and every refetch
returned the whole list.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import run_bench

pytestmark = pytest.mark.e2e


def test_bench_resume_smoke(tmp_path: Path) -> None:
    out = tmp_path / "resume.json"
    # a database of its own: suites running at once on this machine do not share it
    result = run_bench("bench.resume", out, BENCH_RESUME_DB=os.environ.get(
        "GQLSYNC_TEST_DB", "gqlsync_test") + "_resume")
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-5000:]
    assert "| what | filter | N |" in result.stdout
    report = json.loads(out.read_text())
    rows = report["catch_up"]
    assert {(r["kind"], r["filter"]) for r in rows} == {
        (kind, name) for kind in ("catch-up", "refetch") for name in ("all", "half")}
    for row in rows:
        assert row["status"] == "ok", row
        assert row["complete"] == row["n"], row
        if row["kind"] == "catch-up":
            assert row["changed_rows"] > 0
            # exactly one event per changed row, for every subscriber
            assert row["delivered"] == row["n"] * row["changed_rows"], row
            for key in ("missing", "extra", "wrong_op", "duplicates", "error_count"):
                assert row[key] == 0, (key, row)
    # layers x (no log, the log) x (1, 10 events per transaction)
    assert len(report["publish"]) == 8
