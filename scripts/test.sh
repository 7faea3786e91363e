#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what it needs, starts the services
# it uses, then runs ruff, mypy, pytest (unit, PostgreSQL, Redis, real clients, Chromium)
# and the strict docs build. Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}

log() { printf '\n== %s\n' "$*"; }

# ---------------------------------------------------------------- system packages
need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs npm)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]} (apt)"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
fi

# ---------------------------------------------------------------- services
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
if ! port_open 6379; then
  log "starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
if ! port_open 5432; then
  log "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
for _ in $(seq 1 50); do port_open 6379 && port_open 5432 && break; sleep 0.2; done

# ---------------------------------------------------------------- python
if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$PY" -m venv .venv
fi
log "installing gqlsync[test,docs] into .venv"
if ! .venv/bin/pip install -q -e ".[test,docs,bench]" >.venv/pip.log 2>&1; then
  cat .venv/pip.log; exit 1
fi

# ---------------------------------------------------------------- node clients
if [ -f tests/e2e/js/package.json ]; then
  log "installing the JavaScript clients (npm ci)"
  (cd tests/e2e/js && npm ci --no-audit --no-fund --loglevel=error)
fi
if [ -f tests/e2e/codegen/package.json ]; then
  log "installing the typed-client recipe (npm ci)"
  (cd tests/e2e/codegen && npm ci --no-audit --no-fund --loglevel=error)
fi

# ---------------------------------------------------------------- checks
log "ruff"
.venv/bin/ruff check .
log "mypy (strict on gqlsync/)"
.venv/bin/mypy
log "pytest"
.venv/bin/pytest "$@"
log "mkdocs build --strict"
NO_MKDOCS_2_WARNING=1 .venv/bin/mkdocs build --strict --quiet --site-dir "$ROOT/.site"
log "all green"
