"""Benchmark clients: worker processes holding many ``graphql-transport-ws`` sockets.

The same code subscribes to all three servers. Each worker opens its sockets (at most
``CONNECTING`` at a time), sends ``connection_init``, waits for ``connection_ack``, sends
its subscriptions and then only reads. For every ``next`` it records the receive time
minus the row's ``sentAt`` (both ``time.time()`` on this machine) and which event
(``node.title``) reached which subscription, so duplicates and events of another group
are caught. Progress goes to shared counters the runner polls; the full tally goes back
through a queue when the runner says stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import queue
import time
from array import array
from dataclasses import dataclass, field
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

#: every subscription receives every change
DOCUMENT_ALL = "subscription { itemChanged { op id node { id title group sentAt } } }"
#: only changes to items of group $g
DOCUMENT_GROUP = (
    "subscription($g: Int) { itemChanged(filters: {group: {exact: $g}}) "
    "{ op id node { id title group sentAt } } }"
)
#: the scoped scenarios: members of room $g only, each user their own scope
DOCUMENT_ROOM = (
    "subscription($g: Int!) { itemChangedIn(room: $g) "
    "{ op id node { id title group sentAt } } }"
)
CONNECTING = 50


@dataclass
class Plan:
    """One worker's sockets: (server url, the group of each subscription or None, the
    bearer token the socket signs in with or None). A socket with a token subscribes
    with :data:`DOCUMENT_ROOM`."""

    sockets: list[tuple[str, list[int | None], str | None]] = field(default_factory=list)


@dataclass
class Tally:
    delivered: int = 0
    duplicates: int = 0
    wrong_group: int = 0
    errors: list[str] = field(default_factory=list)
    latencies_ms: array = field(default_factory=lambda: array("d"))
    seen: set[tuple[int, str, str]] = field(default_factory=set)


def subscribe_message(sub_id: str, group: int | None, scoped: bool = False) -> str:
    if group is None:
        payload: dict[str, Any] = {"query": DOCUMENT_ALL}
    else:
        document = DOCUMENT_ROOM if scoped else DOCUMENT_GROUP
        payload = {"query": document, "variables": {"g": group}}
    return json.dumps({"id": sub_id, "type": "subscribe", "payload": payload})


async def _socket(index: int, url: str, groups: list[int | None], token: str | None,
                  tally: Tally, gate: asyncio.Semaphore, opened: list[ClientConnection],
                  ready: list[int]) -> None:
    async with gate:
        ws = await connect(url, subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
                           compression=None, ping_interval=None, open_timeout=60,
                           max_queue=None)
        opened.append(ws)
        init = {"authorization": f"Bearer {token}"} if token else {}
        await ws.send(json.dumps({"type": "connection_init", "payload": init}))
        ack = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if ack.get("type") != "connection_ack":
            raise RuntimeError(f"no connection_ack: {ack}")
        for number, group in enumerate(groups, 1):
            await ws.send(subscribe_message(str(number), group, scoped=token is not None))
    ready[0] += 1
    async for raw in ws:
        now = time.time()
        message = json.loads(raw)
        kind = message.get("type")
        if kind == "next" and "errors" not in message["payload"]:
            node = next(iter(message["payload"]["data"].values()))["node"]
            key = (index, message["id"], node["title"])
            if key in tally.seen:
                tally.duplicates += 1
                continue
            tally.seen.add(key)
            tally.delivered += 1
            tally.latencies_ms.append((now - node["sentAt"]) * 1000)
            wanted = groups[int(message["id"]) - 1]
            if wanted is not None and node["group"] != wanted:
                tally.wrong_group += 1
        elif kind == "ping":
            await ws.send('{"type":"pong"}')
        else:
            tally.errors.append(str(raw)[:300])


async def _run(plan: Plan, ready_count: Any, delivered_count: Any, stop: Any,
               results: Any) -> None:
    tally = Tally()
    gate = asyncio.Semaphore(CONNECTING)
    opened: list[ClientConnection] = []
    ready = [0]
    tasks = [asyncio.create_task(_socket(i, url, groups, token, tally, gate, opened, ready))
             for i, (url, groups, token) in enumerate(plan.sockets)]
    stopping = asyncio.get_running_loop().run_in_executor(None, stop.wait)
    while not stopping.done():
        ready_count.value = ready[0]
        delivered_count.value = tally.delivered + tally.duplicates
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                tally.errors.append(f"socket failed: {task.exception()!r}"[:300])
                tasks.remove(task)
                break
        await asyncio.sleep(0.05)
    results.put({
        "delivered": tally.delivered, "duplicates": tally.duplicates,
        "wrong_group": tally.wrong_group, "errors": tally.errors[:20],
        "error_count": len(tally.errors), "latencies_ms": tally.latencies_ms.tobytes(),
    })
    for task in tasks:
        task.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*(ws.close() for ws in opened),
                                              return_exceptions=True), 10)


def _worker(plan: Plan, ready_count: Any, delivered_count: Any, stop: Any,
            results: Any) -> None:
    try:
        import uvloop

        uvloop.run(_run(plan, ready_count, delivered_count, stop, results))
    except ImportError:
        asyncio.run(_run(plan, ready_count, delivered_count, stop, results))


class Clients:
    """Worker processes sharing the sockets of one run between them."""

    def __init__(self, plans: list[Plan]) -> None:
        context = multiprocessing.get_context("spawn")
        self.stop_event = context.Event()
        self.results: Any = context.Queue()
        self.ready = [context.Value("q", 0, lock=False) for _ in plans]
        self.counts = [context.Value("q", 0, lock=False) for _ in plans]
        self.processes = [
            context.Process(target=_worker, daemon=True,
                            args=(plan, ready, count, self.stop_event, self.results))
            for plan, ready, count in zip(plans, self.ready, self.counts, strict=True)
        ]
        for process in self.processes:
            process.start()

    def sockets_ready(self) -> int:
        return sum(value.value for value in self.ready)

    def received(self) -> int:
        """Deliveries so far, duplicates included."""
        return sum(value.value for value in self.counts)

    def alive(self) -> bool:
        return all(process.is_alive() for process in self.processes)

    def finish(self, timeout: float = 60) -> dict[str, Any]:
        """Stop reading; the workers' tallies summed (latencies as one array)."""
        self.stop_event.set()
        total: dict[str, Any] = {"delivered": 0, "duplicates": 0, "wrong_group": 0,
                                 "errors": [], "error_count": 0, "latencies_ms": array("d")}
        deadline = time.monotonic() + timeout
        for _ in self.processes:
            try:
                part = self.results.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                total["errors"].append("a client worker sent no results")
                total["error_count"] += 1
                continue
            for key in ("delivered", "duplicates", "wrong_group", "error_count"):
                total[key] += part[key]
            total["errors"] += part["errors"]
            total["latencies_ms"].frombytes(part["latencies_ms"])
        self.close()
        return total

    def close(self) -> None:
        self.stop_event.set()
        for process in self.processes:
            process.join(15)
            if process.is_alive():
                process.kill()
                process.join(5)
