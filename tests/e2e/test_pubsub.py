"""channels-redis' Pub/Sub layer works as the core layer does: across processes, once."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.e2e.conftest import Server, start_server, stop_server

pytestmark = pytest.mark.e2e

BOOK_CHANGED = "subscription { bookChanged { op node { title } } }"


@pytest.fixture
def pubsub_servers(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    require_service("Redis", "127.0.0.1", 6379)
    env = {"REDIS_URL": "redis://127.0.0.1:6379/0", "GQLSYNC_REDIS_LAYER": "pubsub",
           "GQLSYNC_REDIS_PREFIX": f"gqlsync-pubsub-{uuid.uuid4().hex[:8]}"}
    db = tmp_path / "shared.sqlite3"
    first = start_server(tmp_path, db, env)
    second = start_server(tmp_path, db, env)
    yield first, second
    stop_server(first)
    stop_server(second)


async def _subscribe(server: Server) -> tuple[object, str]:
    import websockets

    ws = await websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"])
    await ws.send(json.dumps({"type": "connection_init"}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    await ws.send(json.dumps({"id": "1", "type": "subscribe",
                              "payload": {"query": BOOK_CHANGED}}))
    return ws, server.ws_url


async def test_a_write_on_one_process_reaches_the_other_over_pubsub(
    pubsub_servers: tuple[Server, Server],
) -> None:
    import asyncio

    first, second = pubsub_servers
    ws_first, _ = await _subscribe(first)
    ws_second, _ = await _subscribe(second)
    try:
        await asyncio.to_thread(first.wait_subscriptions, 1)
        await asyncio.to_thread(second.wait_subscriptions, 1)
        titles = []
        for server, title in ((second, "via pubsub 1"), (first, "via pubsub 2")):
            await asyncio.to_thread(
                server.graphql,
                'mutation($t: String!) { createBook(title: $t, authorEmail: "lee@child.com")'
                " { id } }", {"t": title})
            titles.append(title)
        for ws in (ws_first, ws_second):
            got = [json.loads(await asyncio.wait_for(ws.recv(), 5))  # type: ignore[attr-defined]
                   ["payload"]["data"]["bookChanged"]["node"]["title"] for _ in titles]
            assert got == titles
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            stats = [s.stats() for s in pubsub_servers]
            if all(s["events"] >= 2 for s in stats):
                break
            await asyncio.sleep(0.05)
        assert [s["events"] for s in stats] == [2, 2]
        assert [s["dropped"] for s in stats] == [0, 0]
    finally:
        for ws in (ws_first, ws_second):
            await ws.close()  # type: ignore[attr-defined]

