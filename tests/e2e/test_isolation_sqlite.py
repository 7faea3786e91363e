"""One subscriber can never hurt another, on SQLite, against a real server.

The demo server runs on SQLite, where Django's regex lookups run Python's ``re`` inside
the database: the case that silenced a whole process before filters were checked.
``tests/test_isolation.py`` covers PostgreSQL in-process with the same hostile cases.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from tests.e2e.conftest import Server
from tests.hostile import hostile_filters

pytestmark = pytest.mark.e2e

FILTERED = "subscription($f: BookFilter) { bookChanged(filters: $f) { op node { title } } }"
ALL = "subscription { bookChanged { op node { title } } }"
PER_SOCKET = 90  # under MAX_SUBSCRIPTIONS_PER_CONNECTION


async def _connect(server: Server) -> Any:
    import websockets

    ws = await websockets.connect(server.ws_url, subprotocols=["graphql-transport-ws"],
                                  max_size=None)
    await ws.send(json.dumps({"type": "connection_init"}))
    assert json.loads(await ws.recv())["type"] == "connection_ack"
    return ws


async def _drain(ws: Any, quiet: float = 0.5) -> list[dict[str, Any]]:
    messages = []
    while True:
        try:
            messages.append(json.loads(await asyncio.wait_for(ws.recv(), quiet)))
        except TimeoutError:
            return messages


async def test_hostile_filters_on_sqlite_leave_the_others_complete(demo_server: Server) -> None:
    from schema_examples.schema import schema

    cases = hostile_filters(schema._schema, "BookFilter")
    witness = await _connect(demo_server)
    await witness.send(json.dumps({"id": "w", "type": "subscribe", "payload": {"query": ALL}}))
    sockets = []
    try:
        for start in range(0, len(cases), PER_SOCKET):
            ws = await _connect(demo_server)
            sockets.append(ws)
            for i, (_, value) in enumerate(cases[start:start + PER_SOCKET], start):
                await ws.send(json.dumps({"id": str(i), "type": "subscribe", "payload": {
                    "query": FILTERED, "variables": {"f": value}}}))
        answers: dict[str, list[dict[str, Any]]] = {}
        for ws in sockets:
            for message in await _drain(ws):
                answers.setdefault(message["id"], []).append(message)
        refused = {int(i) for i, messages in answers.items()
                   if messages[0]["type"] == "error"
                   or messages[0].get("payload", {}).get("errors")}
        labels = [label for label, _ in cases]
        assert any("regex" in labels[i] for i in refused)
        accepted = len(cases) - len(refused)
        await asyncio.to_thread(demo_server.wait_subscriptions, accepted + 1)

        # a burst: create, rename, delete a book whose title feeds ^(a+)+$
        title = "a" * 28 + "!"
        created = await asyncio.to_thread(
            demo_server.graphql,
            'mutation($t: String!) { createBook(title: $t, authorEmail: "lee@child.com")'
            " { id } }", {"t": title})
        book_id = created["data"]["createBook"]["id"]
        await asyncio.to_thread(
            demo_server.graphql,
            'mutation($id: ID!) { updateBook(id: $id, title: "aaaa (%_%)") { id } }',
            {"id": book_id})
        await asyncio.to_thread(
            demo_server.graphql, "mutation($id: ID!) { deleteBook(id: $id) { id } }",
            {"id": book_id})
        got = []
        for _ in range(3):
            message = json.loads(await asyncio.wait_for(witness.recv(), 10))
            event = message["payload"]["data"]["bookChanged"]
            got.append((event["op"], event["node"]["title"]))
        assert got == [("CREATED", title), ("UPDATED", "aaaa (%_%)"),
                       ("DELETED", "aaaa (%_%)")]
        for ws in sockets:  # every accepted hostile subscription: events, or its own end
            for message in await _drain(ws, 0.2):
                assert message["type"] in ("next", "complete"), message
        # the server still answers everyone
        assert (await asyncio.to_thread(demo_server.graphql, "{ books { id } }"))["data"]
    finally:
        for ws in [witness, *sockets]:
            await ws.close()
