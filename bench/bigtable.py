"""``python -m bench.bigtable [--smoke]``: per-user views over a table of a million rows.

One PostgreSQL table (``bench_item``) holds ``rows`` items of room 0, every one of them
visible to every user of the scoped rule (:mod:`bench.app.rules`: the members of an
item's group see it; each user is their own permission scope, so each user's view is a
distinct SQL condition). A real uvicorn server (gqlsync, channels-redis) and real
WebSocket clients, as in the other scenarios. Two variants of the same server, in one
run:

- ``keys``: ``VIEW_KEYS_MAX`` past the table's size, so every view keeps the primary keys
  it lets through (gqlsync before issue #12: what a view cost at any size);
- ``no keys``: the default ``VIEW_KEYS_MAX``; a view past it keeps none.

For each variant: how long a new subscription of a new user (a new view) takes to be
live (the client sends ``subscribe``; the server's hub counts it registered), and the
server RSS each such scope adds (``probes`` of them, one after another). For ``no keys``
also ``scopes`` users at once: the server's RSS with all of them in place, then
``events`` updates of room-0 items, which every scope must receive exactly once
(nothing missing, nothing twice, nothing of another room).

The table is seeded once per database (``--rows`` items; about 10 s for a million) and
reused by later runs. Prints a markdown table, writes
``bench/results/bigtable-latest.json``, exits 1 on any missed or extra delivery.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import runner
from bench.clients import Clients

#: its own database (``BENCH_BIGTABLE_DB``): the other scenarios count on their table
DATABASE = os.environ.get("BENCH_BIGTABLE_DB", "gqlsync_bench_bigtable")
ROOM = "subscription($g: Int!) { itemChangedIn(room: $g) { op id node { id title group sentAt } } }"


@dataclass(frozen=True)
class Sizes:
    rows: int
    scopes: int
    probes: int
    events: int
    limit: float = 600.0


FULL = Sizes(rows=1_000_000, scopes=1000, probes=5, events=20)
SMOKE = Sizes(rows=20_000, scopes=50, probes=3, events=5, limit=120.0)
VARIANTS = {"keys": str(10**9), "no keys": ""}  # "": the default VIEW_KEYS_MAX


def seed(rows: int, users: int, tokens: Path) -> None:
    """(Sub-process, Django set up.) ``rows`` items of room 0, unless there already are;
    the users of :func:`bench.writer.make_users`, their tokens to ``tokens``; prints a
    staff user's token."""
    os.environ["BENCH_GQLSYNC_LAYER"] = "local"  # publish nothing
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.app.settings")
    import django

    django.setup()
    from django.db import connection

    from bench.app.models import Item
    from bench.writer import make_users, stats_token

    if Item.objects.filter(group=0).count() != rows:
        with connection.cursor() as cursor:
            cursor.execute("TRUNCATE bench_item")
            cursor.execute(
                "INSERT INTO bench_item (title, \"group\", sent_at) "
                "SELECT 'item ' || i, 0, 0 FROM generate_series(1, %s) AS i", [rows])
            cursor.execute("ANALYZE bench_item")
    tokens.write_text(json.dumps(make_users(users)))
    print(stats_token(), flush=True)  # gqlsync's /graphql/stats is staff-only


def _probe(server: runner.Server, token: str, expect: int, deadline: float,
           sockets: contextlib.ExitStack) -> float:
    """Open a socket as the token's user and subscribe; seconds until the server holds
    ``expect`` subscriptions (this one live). The socket stays open until ``sockets``
    closes."""
    from websockets.sync.client import connect

    ws = sockets.enter_context(connect(
        server.url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
        compression=None, open_timeout=30))
    ws.send(json.dumps({"type": "connection_init",
                        "payload": {"authorization": f"Bearer {token}"}}))
    ack = json.loads(ws.recv(30))
    if ack.get("type") != "connection_ack":
        raise runner.RunFailed(f"no connection_ack: {ack}")
    started = time.monotonic()
    ws.send(json.dumps({"id": "1", "type": "subscribe",
                        "payload": {"query": ROOM, "variables": {"g": 0}}}))
    while server.subscriptions() < expect:
        if time.monotonic() > deadline:
            raise runner.RunFailed("a probe subscription never went live")
        time.sleep(0.002)
    return time.monotonic() - started


def measure(variant: str, sizes: Sizes, tokens: list[str], redis: runner.Redis,
            env: dict[str, str], tmp: Path) -> dict[str, Any]:
    started = time.monotonic()
    deadline = started + sizes.limit
    name = f"bigtable-{uuid.uuid4().hex[:6]}"
    env = {**env, "REDIS_URL": redis.url, "BENCH_REDIS_PREFIX": f"bench-{name}",
           "BENCH_VIEW_KEYS_MAX": VARIANTS[variant]}
    row: dict[str, Any] = {"variant": variant, "rows": sizes.rows, "status": "ok"}
    server = runner.Server("gqlsync", env, tmp / f"{name}.log")
    probes = contextlib.ExitStack()
    try:
        server.wait_started(deadline)
        runner._warm_up(server)
        runner._wait(lambda: server.subscriptions() == 0, deadline, "warm-up ended")
        time.sleep(runner.SETTLE)
        rss_before = server.rss()
        live = [_probe(server, tokens[i], i + 1, deadline, probes)
                for i in range(sizes.probes)]
        time.sleep(runner.SETTLE)
        row["live_ms"] = [round(s * 1000, 1) for s in live]
        row["rss_per_scope"] = (server.rss() - rss_before) / sizes.probes
        row["scopes"] = sizes.probes
        probes.close()
        runner._wait(lambda: server.subscriptions() == 0, deadline, "probes ended")
        if variant == "no keys":
            _many(sizes, tokens, server, env, deadline, rss_before, row)
    except (runner.RunFailed, OSError) as error:
        row["status"] = f"failed: {error}"[:200]
        row["server_log"] = server.log.read_text(errors="replace")[-1500:]
    finally:
        probes.close()
        server.stop()
    row["seconds"] = time.monotonic() - started
    return row


def _many(sizes: Sizes, tokens: list[str], server: runner.Server, env: dict[str, str],
          deadline: float, rss_before: int, row: dict[str, Any]) -> None:
    """``scopes`` users at once, then ``events`` updates that reach every one of them."""
    run = runner.Run("bigtable", "gqlsync", n=sizes.scopes, k=1, events=sizes.events,
                     scoped=True)
    writer = subprocess.Popen(
        [sys.executable, "-m", "bench.writer", "write", "--publisher", "gqlsync",
         "--events", str(sizes.events), "--rate", "20", "--groups", "1",
         "--run", "bigtable"],
        cwd=runner.ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    clients = Clients(runner.plans(run, [server.url], tokens))
    try:
        subscribe_start = time.monotonic()
        runner._wait(lambda: server.subscriptions() >= sizes.scopes or not clients.alive(),
                     deadline, "not every scope subscribed")
        row["subscribe_all_s"] = time.monotonic() - subscribe_start
        time.sleep(runner.SETTLE)
        row["many_scopes"] = sizes.scopes
        row["rss_total"] = server.rss() - rss_before
        row["rss_server"] = server.rss()
        if runner._line(writer, deadline) != "ready":
            raise runner.RunFailed("the writer did not start")
        cpu_before = server.cpu()
        assert writer.stdin is not None
        writer.stdin.write("go\n")
        writer.stdin.flush()
        if not runner._line(writer, deadline):
            raise runner.RunFailed("the writer failed")
        row["expected"] = sizes.scopes * sizes.events
        try:
            runner._wait(lambda: clients.received() >= row["expected"], deadline,
                         "deliveries missing")
        except runner.RunFailed as error:
            row["status"] = str(error)
        row["cpu_s"] = server.cpu() - cpu_before
        time.sleep(runner.GRACE)
        tally = clients.finish()
        row.update({k: v for k, v in tally.items() if k != "latencies_ms"})
        latencies = sorted(tally["latencies_ms"])
        row["latency_ms"] = [runner._percentile(latencies, p) for p in (50, 99, 100)]
        problems = [f"{k} {row[k]}" for k in ("duplicates", "wrong_group", "error_count")
                    if row[k]]
        if row["delivered"] != row["expected"]:
            problems.append(f"delivered {row['delivered']} of {row['expected']}")
        if problems:
            row["status"] = "FAILED: " + ", ".join(problems)
    finally:
        clients.close()
        if writer.poll() is None:
            writer.kill()
            writer.wait(5)


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def table(rows: list[dict[str, Any]]) -> str:
    lines = ["| variant | visible rows | new scope live, median ms (each) | RSS per scope MB "
             "| scopes at once | RSS with them MB | deliveries exp/got | p50 ms | status |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        live = row.get("live_ms") or []
        lines.append("| " + " | ".join([
            row["variant"], f"{row['rows']:,}",
            f"{_f(statistics.median(live))} ({', '.join(_f(v) for v in live)})" if live
            else "-",
            _f(row["rss_per_scope"] / 2**20, 2) if "rss_per_scope" in row else "-",
            f"{row['many_scopes']:,}" if "many_scopes" in row else "-",
            _f(row["rss_total"] / 2**20) if "rss_total" in row else "-",
            f"{row['expected']:,}/{row['delivered']:,}" if "expected" in row else "-",
            _f((row.get("latency_ms") or [None])[0]),
            row["status"],
        ]) + " |")
    by = {row["variant"]: row for row in rows}
    if all(v in by and by[v].get("live_ms") for v in VARIANTS):
        ratio_live = (statistics.median(by["keys"]["live_ms"])
                      / max(statistics.median(by["no keys"]["live_ms"]), 1e-3))
        ratio_rss = by["keys"]["rss_per_scope"] / max(by["no keys"]["rss_per_scope"], 1)
        lines.append(f"\nkeys / no keys: {ratio_live:,.0f}x the time to go live, "
                     f"{ratio_rss:,.0f}x the RSS per scope")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.bigtable", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="20,000 rows, 50 scopes (CI)")
    parser.add_argument("--redis", help="Redis URL (default: a private redis-server)")
    parser.add_argument("--json", type=Path,
                        default=runner.ROOT / "bench" / "results" / "bigtable-latest.json")
    args = parser.parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    started = time.monotonic()
    env = runner.environment()
    if env["BENCH_DATABASE"] != "postgres":
        print("bench.bigtable needs PostgreSQL on 127.0.0.1:5432", file=sys.stderr)
        return 1
    env["BENCH_DB_NAME"] = DATABASE
    runner.ensure_database(DATABASE)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gqlsync-bigtable-") as tmp:
        tokens_file = Path(tmp) / "tokens.json"
        subprocess.run([sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
                       cwd=runner.ROOT, env={**env, "REDIS_URL": ""}, check=True, timeout=300)
        seeded = subprocess.run(
            [sys.executable, "-m", "bench.bigtable", "--seed", str(sizes.rows),
             str(max(sizes.scopes, sizes.probes)), str(tokens_file)],
            cwd=runner.ROOT, env={**env, "REDIS_URL": ""}, check=True, timeout=600,
            stdout=subprocess.PIPE, text=True)
        env["BENCH_STATS_TOKEN"] = seeded.stdout.strip().splitlines()[-1]
        tokens = json.loads(tokens_file.read_text())
        redis = runner.Redis(args.redis, Path(tmp))
        try:
            for variant in VARIANTS:
                row = measure(variant, sizes, tokens, redis, env, Path(tmp))
                rows.append(row)
                print(f"[bench.bigtable] {variant}: {row['status']} ({row['seconds']:.1f}s)",
                      file=sys.stderr, flush=True)
        finally:
            redis.close()
    print(table(rows))
    print(f"\n{time.monotonic() - started:.0f}s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"smoke": args.smoke, "rows": rows}, indent=1))
    failed = [row for row in rows if row["status"] != "ok"]
    for row in failed:
        print(f"FAILED: {row['variant']}: {row['status']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--seed":
        seed(int(sys.argv[2]), int(sys.argv[3]), Path(sys.argv[4]))
        sys.exit(0)
    sys.exit(main())
