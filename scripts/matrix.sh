#!/usr/bin/env bash
# The unit suite on other supported (Python, Django) pairs than the one scripts/test.sh
# uses, each in its own virtualenv (.venv-<pair>):
#
#   oldest   Python 3.11, Django 5.2.0 and every dependency at the lower end of its range
#            (ci/oldest.txt)
#   django60 Python 3.12, the newest Django 6.0
#   newest   Python 3.13, the newest release inside every range (Django 6.1)
#
# The benchmarks' smoke tests, the packaging test and the docs build do not depend on
# the pair and run in scripts/test.sh only.
# Usage: bash scripts/matrix.sh [pair...]   (default: all three)
# The interpreter is found on PATH (python3.X) or under pyenv. A missing interpreter is a
# skip on a laptop and a failure under CI=true. PostgreSQL and Redis must be up (test.sh
# starts them).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\n== %s\n' "$*"; }

find_python() {
  # pyenv's shims are on PATH for every version but run only the selected ones: a
  # candidate counts when it runs and says it is that version
  local version=$1 candidate
  local candidates=("$(command -v "python$version" 2>/dev/null || true)")
  if command -v pyenv >/dev/null 2>&1; then
    candidates+=("$(pyenv root)"/versions/"$version".*/bin/python"$version")
  fi
  for candidate in "${candidates[@]}"; do
    [ -n "$candidate" ] && [ -x "$candidate" ] || continue
    if "$candidate" -c "import sys; assert sys.version.startswith('$version.')" 2>/dev/null
    then echo "$candidate"; return; fi
  done
  return 1
}

run_pair() {
  local pair=$1 version=$2; shift 2
  local python
  if ! python=$(find_python "$version"); then
    if [ "${CI:-}" = true ]; then
      echo "Python $version is not installed: the $pair pair cannot be tested (CI=true)" >&2
      return 1
    fi
    log "skipping $pair: Python $version is not installed"
    return 0
  fi
  local venv=".venv-$pair"
  log "$pair: $("$python" --version) in $venv, installing $*"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  if ! "$venv/bin/pip" install -q "$@" >"$venv/pip.log" 2>&1; then
    cat "$venv/pip.log"; return 1
  fi
  "$venv/bin/python" -c 'import django, strawberry, channels, channels_redis, graphql, redis
from importlib.metadata import version as v
print("   ", ", ".join(f"{p} {v(p)}" for p in ("django", "strawberry-graphql",
      "strawberry-graphql-django", "channels", "channels-redis", "graphql-core", "redis")))'
  log "$pair: unit suite"
  GQLSYNC_TEST_DB="gqlsync_test_$pair" GQLSYNC_SYNC_EXAMPLES=${GQLSYNC_SYNC_EXAMPLES:-25} \
    GQLSYNC_PROPERTY_EXAMPLES=${GQLSYNC_PROPERTY_EXAMPLES:-25} \
    "$venv/bin/pytest" -q -p no:cacheprovider --ignore=tests/e2e \
    --ignore-glob='tests/test_bench_*' --deselect tests/test_packaging.py \
    --deselect tests/test_docs.py::test_mkdocs_build_strict tests
}

pairs=("$@")
[ ${#pairs[@]} -gt 0 ] || pairs=(oldest django60 newest)
for pair in "${pairs[@]}"; do
  case $pair in
    oldest) run_pair oldest 3.11 -c ci/oldest.txt -e ".[test]" ;;
    django60) run_pair django60 3.12 -e ".[test]" "django>=6.0,<6.1" ;;
    newest) run_pair newest 3.13 -e ".[test]" "django>=6.1,<6.2" ;;
    *) echo "unknown pair: $pair (oldest, django60, newest)" >&2; exit 2 ;;
  esac
done
log "matrix green: ${pairs[*]}"
