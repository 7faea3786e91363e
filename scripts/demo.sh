#!/usr/bin/env bash
# The demo, from a fresh machine: a virtualenv with gqlsync, then the schema_examples
# project on SQLite and the in-memory channel layer. GraphiQL's URL is printed.
# PORT (default 8000), GQLSYNC_DEMO_DB and REDIS_URL are honoured.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
.venv/bin/pip install -q -e ".[server]"
exec .venv/bin/python -m schema_examples
