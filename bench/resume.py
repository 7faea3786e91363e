"""``python -m bench.resume [--smoke]``: what the replay log and resuming cost.

Two measurements, each against a baseline doing the same work in the same run:

1. **Publishing** (``publish`` rows): the publishing process saves Items through the ORM,
   one event per transaction and ten per transaction, then publishes the captured
   events again through :func:`gqlsync.broker.publish` alone (no database). Each with
   ``GQLSYNC["LOG"] = None`` (the baseline), the memory log (in-memory layer) and the
   Redis log (channels-redis layer, the real deployment), the logs both below their cap
   and full (``LOG_MAX_EVENTS`` entries kept: every append trims). CPU and wall time of
   the publishing process per event, and Redis' CPU per event (``INFO cpu``); ratios
   over ``LOG = None`` on the same layer. Then Redis memory per logged event
   (``MEMORY USAGE`` of the stream over ``XLEN``).
2. **Catching up** (``catch-up`` / ``refetch`` rows): a real uvicorn server
   (``bench.app.asgi_resume``, channels-redis, the Redis log), ``changes`` committed
   while no one listens (creates, updates, deletes; some rows updated twice), then N
   real WebSocket clients (two worker processes) subscribe with ``after:`` the cursor
   from before the changes, all at the same moment and from the *same* cursor (what
   every client of a restarted server does). Each must receive exactly one event per
   changed row it held or may see (the writer works out which, and which op), nothing
   missing, nothing twice. The baseline: the same N clients each refetch the list
   (``POST /graphql/ { itemsCursor items { ... } }``, a new connection each). Unfiltered
   subscriptions (``all``), and filtered ones (``group < 5``, whose catch-up has the
   database judge each row's state at the cursor) against the filtered list.

Server CPU is the uvicorn process's (all threads); database CPU the PostgreSQL backends
serving this benchmark's database (sampled every 0.2 s, so a connection that lives
shorter than that is missed); Redis CPU the private ``redis-server``'s. Clients run on
the same two cores: wall times include waiting for them.

Prints a markdown table, writes ``bench/results/resume-latest.json`` and exits 1 when any
subscriber got anything but its exact catch-up (or any refetch a wrong list).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import multiprocessing
import os
import queue
import random
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = "bench.app.settings_resume"
APP = "bench.app.asgi_resume:application"
GROUPS = 10
WORKERS = 2
#: the filtered case: subscriptions and the refetched list keep items of groups below this
HALF = 5
SUBSCRIBE = (
    "subscription($after: String, $f: ItemFilter) { itemChanged(after: $after, filters: $f) "
    "{ op id cursor node { id title group sentAt } } }"
)
REFETCH = "query($f: ItemFilter) { itemsCursor items(filters: $f) { id title group sentAt } }"
FILTERS: dict[str, dict[str, Any] | None] = {"all": None, "half": {"group": {"lt": HALF}}}


@dataclass(frozen=True)
class Sizes:
    publish_events: int  # events published per publishing run
    rows: int  # items in the table (the list a client refetches)
    changes: int  # committed while the subscribers are away
    subscribers: tuple[int, ...]  # N of each catch-up run
    limit: float  # seconds a catch-up run (its catch-up and its refetch) may take
    full_logs: bool = True  # also publish to logs at their cap


FULL = Sizes(publish_events=2000, rows=5000, changes=1000, subscribers=(1, 1000), limit=1200)
SMOKE = Sizes(publish_events=100, rows=200, changes=50, subscribers=(8,), limit=60,
              full_logs=False)


# =========================================================================== roles
# ``python -m bench.resume --role R``: the subprocesses, each with Django set up.


def _django() -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    import django

    django.setup()


def _role_prepare(rows: int) -> None:
    """``rows`` items over ``GROUPS`` groups (published to a private layer: nowhere)."""
    os.environ["BENCH_GQLSYNC_LAYER"] = "local"
    _django()
    from bench.app.models import Item
    from bench.writer import stats_token

    Item.objects.all().delete()
    Item.objects.bulk_create([Item(title="new", group=i % GROUPS) for i in range(rows)],
                             batch_size=5000)
    print(stats_token(), flush=True)


def _role_write(changes: int, seed: int) -> None:
    """Take the cursor, commit ``changes`` (one per transaction), print what each filter
    must catch up: ``{pk: op}`` of every changed row it held at the cursor or sees now."""
    _django()
    from bench.app.models import Item
    from gqlsync import broker
    from gqlsync.log import get_log

    rng = random.Random(seed)
    before = dict(Item.objects.values_list("pk", "group"))
    log = get_log()
    assert log is not None, "the catch-up needs the log"
    cursor = log.head(broker.model_group("bench.item")).cursor()
    creates = deletes = changes // 5
    updated_rows = changes * 2 // 5
    twice = changes - creates - deletes - updated_rows
    pks = sorted(before)
    rng.shuffle(pks)
    doomed, touched = pks[:deletes], pks[deletes:deletes + updated_rows]
    first: list[tuple[str, Any]] = ([("create", None)] * creates + [("delete", pk) for pk in doomed]
                                    + [("update", pk) for pk in touched])
    rng.shuffle(first)
    plan = first + [("update", pk) for pk in rng.sample(touched, twice)]
    started = time.monotonic()
    for number, (kind, pk) in enumerate(plan):
        if kind == "create":
            Item.objects.create(title=f"c{number}", group=rng.randrange(GROUPS))
        elif kind == "delete":
            Item.objects.get(pk=pk).delete()
        else:
            item = Item.objects.get(pk=pk)
            item.title = f"u{number}"
            if rng.random() < 0.5:  # half the updates move the row to another group
                item.group = rng.randrange(GROUPS)
            item.save()
    seconds = time.monotonic() - started
    after = dict(Item.objects.values_list("pk", "group"))
    changed = (set(before) ^ set(after)) | set(touched)
    expected: dict[str, dict[str, str]] = {}
    counts: dict[str, int] = {}
    for name, filters in FILTERS.items():
        def keeps(group: int, filters: Any = filters) -> bool:
            return filters is None or group < HALF
        ops = {}
        for pk in changed:
            held = pk in before and keeps(before[pk])
            now = pk in after and keeps(after[pk])
            if now:
                ops[str(pk)] = "UPDATED" if held else "CREATED"
            elif held:
                ops[str(pk)] = "DELETED"
        expected[name] = ops
        counts[name] = sum(1 for g in after.values() if keeps(g))
    print(json.dumps({"cursor": cursor, "changes": len(plan), "changed_rows": len(changed),
                      "seconds": seconds, "expected": expected, "rows": counts}), flush=True)


def _redis_cpu() -> float:
    url = os.environ.get("REDIS_URL")
    if not url:
        return 0.0
    import redis

    info = redis.Redis.from_url(url).info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _role_publish(events: int, batch: int, prefill: bool) -> None:
    """Publish ``events`` in transactions of ``batch`` through the ORM, then the captured
    events again through the broker alone, each from plain synchronous code (a WSGI view,
    a worker, a management command) and from a ``sync_to_async`` thread of a running
    event loop (an ORM write in an ASGI view); print CPU and wall of each."""
    _django()
    from asgiref.sync import sync_to_async
    from django.db import transaction

    from bench.app.models import Item
    from gqlsync import broker
    from gqlsync.conf import get_settings
    from gqlsync.events import Event, new_cursor
    from gqlsync.log import get_log

    log = get_log()
    rows = list(Item.objects.order_by("pk")[:1000])
    captured: list[Event] = []
    broker.observers.append(captured.extend)

    def transactions(count: int, tag: str) -> None:
        for t in range(count):
            with transaction.atomic():
                for j in range(batch):
                    item = rows[(t * batch + j) % len(rows)]
                    item.title = f"{tag}-{t}-{j}"
                    item.sent_at = time.time()
                    item.save()

    def publish(batches: list[list[Event]]) -> None:
        for b in batches:
            broker.publish(b)

    transactions(max(5, 50 // batch), "warm")
    if prefill and log is not None:  # the log at its cap: from now on every append trims
        stream = broker.model_group("bench.item")
        bodies = [broker._log_body(e) for e in captured]
        cap = get_settings()["LOG_MAX_EVENTS"]
        for start in range(0, cap, 500):
            log.append(stream, [bodies[i % len(bodies)]
                                for i in range(start, min(cap, start + 500))])
    n_tx = events // batch
    result: dict[str, Any] = {"log": type(log).__name__ if log is not None else None}

    def measure(name: str, work: Any, *args: Any) -> None:
        cpu, wall, redis_cpu = time.process_time(), time.perf_counter(), _redis_cpu()
        work(*args)
        result[name] = {"events": n_tx * batch, "cpu_s": time.process_time() - cpu,
                        "wall_s": time.perf_counter() - wall,
                        "redis_cpu_s": _redis_cpu() - redis_cpu}

    async def in_loop() -> None:
        # as an ASGI view's ORM write runs: in sync_to_async's thread, the loop running
        await sync_to_async(transactions)(5, "warm-loop")
        for name, work, args in (("orm_loop", transactions, (n_tx, "l")),
                                 ("broker_loop", publish, (batches(),))):
            cpu, wall, redis_cpu = time.process_time(), time.perf_counter(), _redis_cpu()
            await sync_to_async(work)(*args)
            result[name] = {"events": n_tx * batch, "cpu_s": time.process_time() - cpu,
                            "wall_s": time.perf_counter() - wall,
                            "redis_cpu_s": _redis_cpu() - redis_cpu}

    captured.clear()
    measure("orm_sync", transactions, n_tx, "s")
    assert len(captured) == n_tx * batch, (len(captured), n_tx * batch)
    result["body_bytes"] = sum(len(json.dumps(broker._log_body(e), separators=(",", ":")))
                               for e in captured) / len(captured)
    template = list(captured)
    broker.observers.clear()

    def batches() -> list[list[Event]]:
        return [[dataclasses.replace(e, cursor=new_cursor()) for e in template[i:i + batch]]
                for i in range(0, len(template), batch)]

    measure("broker_sync", publish, batches())
    asyncio.run(in_loop())
    print(json.dumps(result), flush=True)


# =========================================================================== clients


async def _socket(index: int, url: str, payload: str, expected: dict[str, str],
                  ready: Any, done: Any, go: asyncio.Future[Any], tallies: list[dict[str, Any]],
                  gate: asyncio.Semaphore, opened: list[Any]) -> None:
    from websockets.asyncio.client import connect

    tally: dict[str, Any] = {"got": {}, "duplicates": 0, "errors": [], "start": None,
                             "done": None}
    tallies.append(tally)
    async with gate:
        ws = await connect(url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                           compression=None, ping_interval=None, open_timeout=60,
                           max_queue=None, max_size=None)
        opened.append(ws)
        await ws.send('{"type":"connection_init","payload":{}}')
        ack = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"no connection_ack: {ack}")
    ready.value += 1
    await asyncio.shield(go)
    got: dict[str, str] = tally["got"]
    tally["start"] = time.monotonic()
    await ws.send(payload)
    async for raw in ws:
        message = json.loads(raw)
        kind = message.get("type")
        if kind == "next" and "errors" not in message["payload"]:
            event = message["payload"]["data"]["itemChanged"]
            if event["id"] in got:
                tally["duplicates"] += 1
            got[event["id"]] = event["op"]
            if tally["done"] is None and len(got) >= len(expected):
                tally["done"] = time.monotonic()
                done.value += 1
        elif kind == "ping":
            await ws.send('{"type":"pong"}')
        else:
            tally["errors"].append(str(raw)[:300])


async def _resume_clients(url: str, sockets: int, payload: str, expected: dict[str, str],
                          ready: Any, done: Any, go: Any, stop: Any, results: Any) -> None:
    loop = asyncio.get_running_loop()
    going = loop.run_in_executor(None, go.wait)
    stopping = loop.run_in_executor(None, stop.wait)
    tallies: list[dict[str, Any]] = []
    opened: list[Any] = []
    gate = asyncio.Semaphore(50)
    tasks = [asyncio.create_task(_socket(i, url, payload, expected, ready, done, going,
                                         tallies, gate, opened)) for i in range(sockets)]
    await stopping
    failures = [repr(t.exception())[:300] for t in tasks
                if t.done() and not t.cancelled() and t.exception() is not None]
    summary: dict[str, Any] = {"subscribers": len(tallies), "complete": 0, "missing": 0,
                               "extra": 0, "wrong_op": 0, "duplicates": 0,
                               "errors": failures[:5], "error_count": len(failures),
                               "durations": [], "finished": [], "delivered": 0}
    for tally in tallies:
        got = tally["got"]
        summary["delivered"] += len(got) + tally["duplicates"]
        summary["missing"] += sum(1 for pk in expected if pk not in got)
        summary["extra"] += sum(1 for pk in got if pk not in expected)
        summary["wrong_op"] += sum(1 for pk, op in got.items()
                                   if pk in expected and expected[pk] != op)
        summary["duplicates"] += tally["duplicates"]
        summary["error_count"] += len(tally["errors"])
        summary["errors"] += tally["errors"][:2]
        if tally["done"] is not None:
            summary["complete"] += 1
            summary["durations"].append(tally["done"] - tally["start"])
            summary["finished"].append(tally["done"])
    summary["errors"] = summary["errors"][:10]
    results.put(summary)
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in opened),
                                              return_exceptions=True), 10)


async def _post(port: int, body: bytes) -> tuple[int, bytes]:
    """One HTTP/1.1 POST on a new connection (a client that just reconnected)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /graphql/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nAccept: application/json\r\n"
                 b"Connection: close\r\nContent-Length: " + str(len(body)).encode()
                 + b"\r\n\r\n" + body)
    await writer.drain()
    raw = await reader.read()
    writer.close()
    head, _, rest = raw.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head.lower():
        chunks = []
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            chunks.append(rest[:size])
            rest = rest[size + 2:]
        rest = b"".join(chunks)
    return status, rest


async def _refetch_clients(port: int, requests: int, body: bytes, rows: int, ready: Any,
                           done: Any, go: Any, stop: Any, results: Any) -> None:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(100)
    summary: dict[str, Any] = {"requests": requests, "complete": 0, "wrong": 0,
                               "errors": [], "error_count": 0, "durations": [],
                               "finished": []}

    async def one() -> None:
        async with gate:
            start = time.monotonic()
            try:
                status, data = await _post(port, body)
                answer = json.loads(data)
                items = answer["data"]["items"]
                if status != 200 or len(items) != rows or not answer["data"]["itemsCursor"]:
                    summary["wrong"] += 1
                    summary["errors"].append(f"{status}: {len(items)} rows of {rows}")
            except Exception as error:
                summary["error_count"] += 1
                summary["errors"].append(repr(error)[:300])
                return
            finish = time.monotonic()
            summary["complete"] += 1
            summary["durations"].append(finish - start)
            summary["finished"].append(finish)
            done.value += 1

    ready.value = 1
    await loop.run_in_executor(None, go.wait)
    await asyncio.gather(*(one() for _ in range(requests)))
    await loop.run_in_executor(None, stop.wait)
    summary["errors"] = summary["errors"][:10]
    results.put(summary)


def _client_process(kind: str, *args: Any) -> None:
    main = _resume_clients if kind == "resume" else _refetch_clients
    try:
        import uvloop

        uvloop.run(main(*args))
    except ImportError:
        asyncio.run(main(*args))


class Workers:
    """Client worker processes started together, released together (``go``)."""

    def __init__(self, kind: str, shares: list[int], args: tuple[Any, ...]) -> None:
        context = multiprocessing.get_context("spawn")
        self.go, self.stop = context.Event(), context.Event()
        self.results: Any = context.Queue()
        self.ready = [context.Value("q", 0, lock=False) for _ in shares]
        self.done = [context.Value("q", 0, lock=False) for _ in shares]
        self.processes = []
        for share, ready, done in zip(shares, self.ready, self.done, strict=True):
            before, after = args
            self.processes.append(context.Process(
                target=_client_process, daemon=True,
                args=(kind, *before, share, *after, ready, done, self.go, self.stop,
                      self.results)))
        for process in self.processes:
            process.start()

    def count(self, values: list[Any]) -> int:
        return sum(v.value for v in values)

    def alive(self) -> bool:
        return all(p.is_alive() for p in self.processes)

    def finish(self) -> list[dict[str, Any]]:
        self.stop.set()
        parts = []
        for _ in self.processes:
            try:
                parts.append(self.results.get(timeout=60))
            except queue.Empty:
                parts.append({"errors": ["a client worker sent no results"], "error_count": 1})
        self.close()
        return parts

    def close(self) -> None:
        self.stop.set()
        self.go.set()
        for process in self.processes:
            process.join(15)
            if process.is_alive():
                process.kill()
                process.join(5)


# =========================================================================== orchestration


class Failed(Exception):
    pass


def _wait(condition: Any, deadline: float, what: str) -> None:
    while not condition():
        if time.monotonic() > deadline:
            raise Failed(f"timeout: {what}")
        time.sleep(0.02)


def _shares(n: int) -> list[int]:
    workers = min(WORKERS, n)
    return [n // workers + (1 if i < n % workers else 0) for i in range(workers)]


def _run(args: list[str], env: dict[str, str], timeout: float = 600) -> str:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, check=False,
                          timeout=timeout, capture_output=True, text=True)
    if done.returncode != 0:
        raise Failed(f"{' '.join(args)} failed: {done.stderr[-2000:]}")
    return done.stdout.strip().splitlines()[-1]


class DatabaseCPU:
    """CPU of the PostgreSQL backends serving ``database``, sampled in a thread (a
    backend's time is kept from its last sample after it exits)."""

    def __init__(self, database: str | None) -> None:
        self.database = database
        self.seen: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _sample(self) -> None:
        import psutil  # type: ignore[import-untyped]

        for process in psutil.process_iter(["name", "cmdline", "cpu_times"]):
            try:
                if process.info["name"] != "postgres" and "postgres" not in str(
                        process.info["cmdline"]):
                    continue
                title = " ".join(process.info["cmdline"] or ())
                if f" {self.database} " not in f" {title} ":
                    continue
                times = process.info["cpu_times"]
                self.seen[process.pid] = float(times.user + times.system)
            except Exception:  # it exited meanwhile
                continue

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._sample()

    def __enter__(self) -> DatabaseCPU:
        if self.database:
            self._sample()
            self.start = dict(self.seen)
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._sample()

    def seconds(self) -> float | None:
        if not self.database:
            return None
        return sum(v - self.start.get(pid, 0.0) for pid, v in self.seen.items())


class Server:
    """``uvicorn bench.app.asgi_resume:application`` on a free port."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        import psutil  # type: ignore[import-untyped]

        from bench.runner import free_port

        self.port = free_port()
        self.log = log
        self.token = env["BENCH_STATS_TOKEN"]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", APP, "--host", "127.0.0.1", "--port",
             str(self.port), "--lifespan", "off", "--log-level", "warning", "--backlog", "4096"],
            cwd=ROOT, env=env, stdout=log.open("wb"), stderr=subprocess.STDOUT)
        self.ps = psutil.Process(self.process.pid)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/graphql/"

    def stats(self) -> dict[str, int]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}/graphql/stats",
                                         headers={"authorization": f"Bearer {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, int] = json.load(response)
            return answer

    def wait_started(self, deadline: float) -> None:
        while True:
            if self.process.poll() is not None:
                raise Failed(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                self.stats()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise Failed("the server did not start") from None
                time.sleep(0.1)

    def cpu(self) -> float:
        from bench.runner import cpu_seconds

        return cpu_seconds(self.ps)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def publish_costs(sizes: Sizes, env: dict[str, str], redis: Any) -> list[dict[str, Any]]:
    """Every (layer, log, batch) publishing run; each in a fresh process."""
    rows = []
    for layer in ("memory", "redis"):
        for batch in (1, 10):
            for log, prefill in (("none", False), ("auto", False), ("auto", True)):
                if prefill and not sizes.full_logs:
                    continue
                prefix = f"bench-resume-{uuid.uuid4().hex[:6]}"
                run_env = {**env, "BENCH_LOG": log, "BENCH_REDIS_PREFIX": prefix,
                           "REDIS_URL": redis.url if layer == "redis" else ""}
                args = ["-m", "bench.resume", "--role", "publish", "--events",
                        str(sizes.publish_events), "--batch", str(batch)]
                result = json.loads(_run([*args, "--prefill"] if prefill else args, run_env))
                row = {"layer": layer, "log": result["log"], "full": prefill, "batch": batch,
                       **result}
                if layer == "redis" and log == "auto":
                    keys = [k for k in redis.client.scan_iter(match=f"{prefix}*:log:*", count=1000)
                            if not k.endswith(b":meta")]
                    if keys:
                        length = redis.client.xlen(keys[0])
                        usage = redis.client.memory_usage(keys[0], samples=0)
                        row["stream"] = {"entries": length, "bytes": usage}
                    for key in redis.client.scan_iter(match=f"{prefix}*", count=1000):
                        redis.client.delete(key)
                rows.append(row)
                print(f"[resume] publish {layer} log={row['log']} full={prefill} "
                      f"batch={batch}", file=sys.stderr, flush=True)
    return rows


def _summed(parts: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if isinstance(value, list):
                total[key] = total.get(key, []) + value
            elif isinstance(value, int | float):
                total[key] = total.get(key, 0) + value
    return total


def _percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))]


def catch_up(sizes: Sizes, n: int, name: str, env: dict[str, str], redis: Any, tmp: Path,
             database: str | None, seed: int) -> list[dict[str, Any]]:
    """N subscribers resume from one cursor after ``changes``; then N refetches."""
    from bench.runner import Redis

    assert isinstance(redis, Redis)
    started = time.monotonic()
    deadline = started + sizes.limit
    prefix = f"bench-resume-{uuid.uuid4().hex[:6]}"
    run_env = {**env, "BENCH_LOG": "auto", "BENCH_REDIS_PREFIX": prefix, "REDIS_URL": redis.url}
    filters = FILTERS[name]
    resume_row: dict[str, Any] = {"kind": "catch-up", "filter": name, "n": n,
                                  "changes": sizes.changes, "status": "ok"}
    refetch_row: dict[str, Any] = {"kind": "refetch", "filter": name, "n": n,
                                   "changes": sizes.changes, "status": "ok"}
    server = Server(run_env, tmp / f"resume-{name}-{n}.log")
    workers: Workers | None = None
    try:
        server.wait_started(deadline)
        written = json.loads(_run(["-m", "bench.resume", "--role", "write", "--changes",
                                   str(sizes.changes), "--seed", str(seed)], run_env))
        expected: dict[str, str] = written["expected"][name]
        list_rows: int = written["rows"][name]
        for row in (resume_row, refetch_row):
            row.update(changed_rows=len(expected), list_rows=list_rows)
        variables: dict[str, Any] = {"after": written["cursor"]}
        if filters is not None:
            variables["f"] = filters
        payload = json.dumps({"id": "1", "type": "subscribe",
                              "payload": {"query": SUBSCRIBE, "variables": variables}})
        refetch_body = json.dumps({"query": REFETCH, "variables": {"f": filters}}).encode()

        # warm-up: one catch-up and one refetch, so imports and connections are not counted
        warm = Workers("resume", [1], ((server.url,), (payload, expected)))
        _wait(lambda: warm.count(warm.ready) == 1 or not warm.alive(), deadline, "warm-up")
        warm.go.set()
        _wait(lambda: warm.count(warm.done) == 1 or not warm.alive(), deadline,
              "warm-up catch-up")
        warm.finish()
        asyncio.run(_post(server.port, refetch_body))
        _wait(lambda: server.stats()["subscriptions"] == 0, deadline, "warm-up ended")

        # -- catch-up: N sockets open, then all subscribe with after: at once
        workers = Workers("resume", _shares(n), ((server.url,), (payload, expected)))
        _wait(lambda: workers.count(workers.ready) >= n or not workers.alive(), deadline,
              "sockets opened")
        time.sleep(0.5)
        stats_before, commands_before = server.stats(), redis.commands()
        cpu, redis_cpu = server.cpu(), redis.cpu()
        with DatabaseCPU(database) as db:
            go = time.monotonic()
            workers.go.set()
            try:
                _wait(lambda: workers.count(workers.done) >= n or not workers.alive(),
                      deadline, "catch-ups missing")
            except Failed as error:
                resume_row["status"] = str(error)
            elapsed = time.monotonic() - go
            resume_row["server_cpu_s"] = server.cpu() - cpu
        resume_row["db_cpu_s"] = db.seconds()
        resume_row["redis_cpu_s"] = redis.cpu() - redis_cpu
        commands_after, stats_after = redis.commands(), server.stats()
        resume_row["redis_commands"] = {
            k: v - commands_before.get(k, 0) for k, v in commands_after.items()
            if v - commands_before.get(k, 0) > 0 and k != "info"}
        resume_row["hub"] = {k: stats_after[k] - stats_before.get(k, 0)
                             for k in ("resumed", "deliveries", "executions", "errors")}
        time.sleep(0.5)  # anything more would be a duplicate
        tally = _summed(workers.finish())
        workers = None
        resume_row.update(
            total_s=(max(tally["finished"]) - go) if tally.get("finished") else elapsed,
            p50_s=_percentile(tally.get("durations", []), 50),
            p99_s=_percentile(tally.get("durations", []), 99),
            **{k: tally.get(k, 0) for k in ("complete", "delivered", "missing", "extra",
                                             "wrong_op", "duplicates", "error_count")},
            errors=tally.get("errors", [])[:5])
        _check(resume_row, n, ("missing", "extra", "wrong_op", "duplicates", "error_count"))
        resume_row["delivered_per_sub"] = resume_row["delivered"] / n

        # -- refetch: the same N clients each POST the list query, all at once
        workers = Workers("refetch", _shares(n), ((server.port,), (refetch_body, list_rows)))
        _wait(lambda: workers.count(workers.ready) >= len(workers.processes)
              or not workers.alive(), deadline, "refetch clients")
        time.sleep(0.3)
        cpu, redis_cpu = server.cpu(), redis.cpu()
        with DatabaseCPU(database) as db:
            go = time.monotonic()
            workers.go.set()
            try:
                _wait(lambda: workers.count(workers.done) >= n or not workers.alive(),
                      deadline, "refetches missing")
            except Failed as error:
                refetch_row["status"] = str(error)
            elapsed = time.monotonic() - go
            refetch_row["server_cpu_s"] = server.cpu() - cpu
        refetch_row["db_cpu_s"] = db.seconds()
        refetch_row["redis_cpu_s"] = redis.cpu() - redis_cpu
        tally = _summed(workers.finish())
        workers = None
        refetch_row.update(
            total_s=(max(tally["finished"]) - go) if tally.get("finished") else elapsed,
            p50_s=_percentile(tally.get("durations", []), 50),
            p99_s=_percentile(tally.get("durations", []), 99),
            complete=tally.get("complete", 0), wrong=tally.get("wrong", 0),
            error_count=tally.get("error_count", 0), errors=tally.get("errors", [])[:5])
        _check(refetch_row, n, ("wrong", "error_count"))
    except (Failed, OSError) as error:
        for row in (resume_row, refetch_row):
            if row["status"] == "ok":
                row["status"] = f"failed: {error}"[:300]
        resume_row["server_log"] = server.log.read_text(errors="replace")[-1500:]
    finally:
        if workers is not None:
            workers.close()
        server.stop()
        for key in redis.client.scan_iter(match=f"{prefix}*", count=1000):
            redis.client.delete(key)
    resume_row["seconds"] = refetch_row["seconds"] = time.monotonic() - started
    print(f"[resume] catch-up {name} N={n}: {resume_row['status']}, refetch: "
          f"{refetch_row['status']} ({resume_row['seconds']:.0f}s)", file=sys.stderr, flush=True)
    return [resume_row, refetch_row]


def _check(row: dict[str, Any], n: int, keys: tuple[str, ...]) -> None:
    problems = [f"{k} {row[k]}" for k in keys if row.get(k)]
    if row.get("complete", 0) != n:
        problems.append(f"complete {row.get('complete', 0)} of {n}")
    if row["status"] != "ok":
        problems.insert(0, row["status"])
    if problems:
        row["status"] = "FAILED: " + ", ".join(problems)


# =========================================================================== report


def _f(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


PATHS = (("orm_sync", "ORM, sync"), ("orm_loop", "ORM, in a loop"),
         ("broker_sync", "broker, sync"), ("broker_loop", "broker, in a loop"))


def publish_table(rows: list[dict[str, Any]]) -> str:
    """One row per (layer, log, events per transaction); per path: CPU and wall µs per
    event, and CPU over ``LOG = None``'s on the same layer and batch."""
    head = " | ".join(f"{label}: CPU / wall µs (CPU x)" for _, label in PATHS)
    lines = [f"| layer | log | events/tx | {head} | Redis CPU µs/event (ORM, sync) |",
             "|---|---|---|" + "---|" * (len(PATHS) + 1)]
    base = {(r["layer"], r["batch"]): r for r in rows if r["log"] is None}
    for row in rows:
        name = "none" if row["log"] is None else (
            ("memory" if row["log"] == "MemoryLog" else "redis")
            + (", full" if row["full"] else ""))
        cells = []
        for path, _ in PATHS:
            m = row[path]
            cpu, wall = m["cpu_s"] * 1e6 / m["events"], m["wall_s"] * 1e6 / m["events"]
            ref = base.get((row["layer"], row["batch"]))
            ratio = ""
            if ref is not None and row["log"] is not None:
                ratio = f" ({cpu / (ref[path]['cpu_s'] * 1e6 / ref[path]['events']):.2f}x)"
            cells.append(f"{_f(cpu, 0)} / {_f(wall, 0)}{ratio}")
        m = row["orm_sync"]
        redis_cpu = _f(m["redis_cpu_s"] * 1e6 / m["events"], 0) if row["layer"] == "redis" else "-"
        lines.append(f"| {row['layer']} | {name} | {row['batch']} | {' | '.join(cells)} | "
                     f"{redis_cpu} |")
    return "\n".join(lines)


def memory_line(rows: list[dict[str, Any]]) -> str:
    found = [r for r in rows if r.get("stream")]
    if not found:
        return ""
    parts = []
    for row in found:
        s = row["stream"]
        parts.append(f"{s['bytes'] / s['entries']:,.0f} B/entry ({s['entries']:,} entries, "
                     f"{s['bytes'] / 1e6:.2f} MB{', full' if row['full'] else ''}, "
                     f"events/tx {row['batch']})")
    body = sum(r["body_bytes"] for r in found) / len(found)
    return (f"Redis memory per logged Item event (MEMORY USAGE of the stream / XLEN; the "
            f"event's JSON body is {body:.0f} B): " + "; ".join(parts))


def catch_up_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| what | filter | N | changed rows / list rows | events per subscriber | "
             "server CPU ms/sub | DB CPU ms/sub | Redis CPU ms/sub | total s | p50 s | "
             "p99 s | Redis XRANGE/sub | executions/sub | status |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        n = row["n"]
        per = 1000 / n

        def ms(key: str, row: dict[str, Any] = row, per: float = per) -> str:
            value = row.get(key)
            return "-" if value is None else _f(value * per)
        resumed = row["kind"] == "catch-up"
        events = (_f(row.get("delivered_per_sub"), 0) if resumed
                  else f"{row.get('list_rows', 0):,} rows")
        xrange = (_f(row.get("redis_commands", {}).get("xrange", 0) / n, 2) if resumed else "-")
        executions = _f(row.get("hub", {}).get("executions", 0) / n, 0) if resumed else "-"
        lines.append(
            f"| {row['kind']} | {row['filter']} | {n:,} | {row.get('changed_rows', 0):,} / "
            f"{row.get('list_rows', 0):,} | {events} | {ms('server_cpu_s')} | {ms('db_cpu_s')} | "
            f"{ms('redis_cpu_s')} | {_f(row.get('total_s'), 2)} | {_f(row.get('p50_s'), 2)} | "
            f"{_f(row.get('p99_s'), 2)} | {xrange} | {executions} | {row['status']} |")
    return "\n".join(lines)


# =========================================================================== main


def _ensure_database(name: str) -> bool:
    try:
        import psycopg

        with psycopg.connect("host=127.0.0.1 user=postgres dbname=postgres",
                             autocommit=True, connect_timeout=2) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                 (name,)).fetchone()
            if not found:
                conn.execute(f'CREATE DATABASE "{name}"')
        return True
    except Exception:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.resume", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    parser.add_argument("--only", choices=("publish", "catch-up"), action="append")
    parser.add_argument("--subscribers", type=int, action="append",
                        help="N of the catch-up runs (repeatable; default 1 and 1,000)")
    parser.add_argument("--redis", help="Redis URL (default: a private redis-server)")
    parser.add_argument("--json", type=Path,
                        default=ROOT / "bench" / "results" / "resume-latest.json")
    parser.add_argument("--role", choices=("prepare", "write", "publish"), help=argparse.SUPPRESS)
    parser.add_argument("--rows", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--changes", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--events", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--prefill", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "prepare":
        _role_prepare(args.rows)
        return 0
    if args.role == "write":
        _role_write(args.changes, args.seed)
        return 0
    if args.role == "publish":
        _role_publish(args.events, args.batch, args.prefill)
        return 0

    from bench import runner
    from bench.__main__ import machine

    sizes = SMOKE if args.smoke else FULL
    if args.subscribers:
        sizes = dataclasses.replace(sizes, subscribers=tuple(args.subscribers))
    started = time.monotonic()
    env = runner.environment()
    env["DJANGO_SETTINGS_MODULE"] = SETTINGS
    database: str | None = None
    if env["BENCH_DATABASE"] == "postgres":
        database = env.setdefault("BENCH_RESUME_DB", "gqlsync_bench_resume")
        if not _ensure_database(database):
            raise SystemExit(f"cannot create the database {database}")
    publish_rows: list[dict[str, Any]] = []
    catch_rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gqlsync-bench-resume-") as tmp:
        redis = runner.Redis(args.redis, Path(tmp))
        try:
            facts = machine(redis, env)
            subprocess.run([sys.executable, "-m", "django", "migrate", "--verbosity", "0"],
                           cwd=ROOT, env={**env, "REDIS_URL": ""}, check=True, timeout=180)
            env["BENCH_STATS_TOKEN"] = _run(["-m", "bench.resume", "--role", "prepare",
                                             "--rows", str(sizes.rows)], {**env, "REDIS_URL": ""})
            if not args.only or "publish" in args.only:
                publish_rows = publish_costs(sizes, env, redis)
            if not args.only or "catch-up" in args.only:
                seed = 0
                for name in FILTERS:
                    for n in sizes.subscribers:
                        seed += 1
                        catch_rows += catch_up(sizes, n, name, env, redis, Path(tmp),
                                               database, seed)
        finally:
            redis.close()
    elapsed = time.monotonic() - started
    if publish_rows:
        print(f"Publishing ({sizes.publish_events:,} events per run)\n")
        print(publish_table(publish_rows))
        print("\n" + memory_line(publish_rows))
    if catch_rows:
        print(f"\nCatching up ({sizes.changes:,} changes missed; {sizes.rows:,} items at the "
              f"start)\n")
        print(catch_up_table(catch_rows))
    print(f"\n{facts['cpus']} CPUs, Python {facts['python']}, {facts['database']}, "
          f"Redis {facts['redis_server']}, commit {facts['commit']}; {elapsed:.0f}s")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"machine": facts, "smoke": args.smoke,
                                     "sizes": dataclasses.asdict(sizes), "seconds": elapsed,
                                     "publish": publish_rows, "catch_up": catch_rows},
                                    indent=1, default=str))
    failed = [r for r in catch_rows if r["status"] != "ok"]
    for row in failed:
        print(f"FAILED: {row['kind']} {row['filter']} N={row['n']}: {row['status']}",
              file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
