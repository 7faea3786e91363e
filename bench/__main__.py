"""``python -m bench [--smoke] [--only SCENARIO ...] [--redis URL]``: run, print the table.

Every scenario (:mod:`bench.scenarios`) runs for each variant: (a) gqlsync, (b) the
baseline written the way Strawberry's docs teach, (c) the raw broadcast floor. Servers
are real uvicorn processes, clients real WebSocket connections in worker processes, the
writer a separate process saving through the ORM. Prints one markdown table, writes
``bench/results/latest.json`` and exits 1 if any run missed or duplicated a delivery.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from bench import report, runner
from bench.scenarios import SCENARIOS, cases, users, variants

VARIANTS = ("gqlsync", "baseline", "floor", "allowany")
PACKAGES = ("gqlsync", "strawberry-graphql", "strawberry-graphql-django", "django", "channels",
            "channels-redis", "redis", "uvicorn", "uvloop", "websockets", "psycopg")


def machine(redis: runner.Redis, env: dict[str, str]) -> dict[str, Any]:
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=runner.ROOT,
                            capture_output=True, text=True, check=False).stdout.strip()
    return {
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "platform": platform.platform(), "commit": commit,
        "redis_server": redis.client.info("server")["redis_version"],
        "database": "postgresql" if env["BENCH_DATABASE"] == "postgres" else "sqlite",
        "versions": versions,
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI): N = 50")
    parser.add_argument("--only", action="append", choices=SCENARIOS,
                        help="run this scenario only (repeatable)")
    parser.add_argument("--variant", action="append", choices=VARIANTS,
                        help="run this variant only (repeatable; ratios need all three)")
    parser.add_argument("--redis", help="Redis URL (default: a private redis-server if "
                        "one is installed, else redis://127.0.0.1:6379/0)")
    parser.add_argument("--json", type=Path,
                        default=runner.ROOT / "bench" / "results" / "latest.json")
    args = parser.parse_args()
    started = time.monotonic()
    env = runner.environment()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gqlsync-bench-") as tmp:
        redis = runner.Redis(args.redis, Path(tmp))
        try:
            facts = machine(redis, env)
            runner.prepare(env, users(args.smoke), Path(tmp))
            for scenario, runs in cases(args.smoke).items():
                if args.only and scenario not in args.only:
                    continue
                for case in runs:
                    for variant in variants(scenario):
                        if args.variant and variant not in args.variant:
                            continue
                        run = dataclasses.replace(case, variant=variant)
                        row = runner.measure(run, redis, env, Path(tmp))
                        rows.append(row)
                        print(f"[bench] {scenario} {variant} N={run.n} K={run.k} "
                              f"M={run.per_socket}: {row['status']} "
                              f"({row['seconds']:.1f}s)", file=sys.stderr, flush=True)
        finally:
            redis.close()
    elapsed = time.monotonic() - started
    print(report.table(rows))
    breakdown = report.commands_breakdown(rows)
    if breakdown:
        print("\nRedis commands per event (scale-out):\n" + breakdown)
    executions = report.executions(rows)
    if executions:
        print("\ngqlsync executions per event: " + executions)
    print(f"\n{facts['cpus']} CPUs, Python {facts['python']}, {facts['database']}, "
          f"Redis {facts['redis_server']}, commit {facts['commit']}; {elapsed:.0f}s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": facts, "smoke": args.smoke,
                                     "seconds": elapsed, "rows": rows}, indent=1))
    failed = [row for row in rows if row["status"] != "ok"]
    for row in failed:
        print(f"FAILED: {row['scenario']} {row['variant']} N={row['n']} K={row['k']}: "
              f"{row['status']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
