"""graphql-http's GraphQL-over-HTTP audit against the demo server, in CI.

``tests/e2e/js/audit.mjs`` runs ``auditServer`` of the npm package ``graphql-http``
(pinned in ``tests/e2e/js/package.json``) against the demo under uvicorn: about sixty
checks of media types, status codes and request parameters, each ``ok``, ``warn`` (a
SHOULD not met) or ``error`` (a MUST not met). The server must pass them all, warnings
included: those are where ``application/graphql-response+json`` clients are served.

Skipped without node or ``tests/e2e/js/node_modules``; a failure under ``CI=true``.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.conftest import CI
from tests.e2e.conftest import JS_DIR, Server, node_available

pytestmark = pytest.mark.e2e


def test_graphql_http_audit_has_no_warning_and_no_error(demo_server: Server) -> None:
    node_available()
    if not (JS_DIR / "node_modules" / "graphql-http").is_dir():
        message = "graphql-http is not installed (run npm ci in tests/e2e/js)"
        if CI:
            pytest.fail(message)
        pytest.skip(message)
    done = subprocess.run(
        ["node", str(JS_DIR / "audit.mjs"), "--url", demo_server.http_url],
        cwd=JS_DIR, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    failed = [r for r in results if r["status"] in ("warn", "error")]
    assert len(results) > 50, results  # the audit ran in full
    assert not failed, "graphql-http audit failures:\n" + "\n".join(
        f"  {r['status']} {r['id']} {r['name']}: {r['reason']} (HTTP {r['status_code']})"
        for r in failed
    )
    assert {r["status"] for r in results} <= {"ok", "notice"}
