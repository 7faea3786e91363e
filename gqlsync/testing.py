"""Testing helpers: see the events your code publishes, and subscribe in-process.

``capture_events()`` records what the write path publishes (after commit, coalesced)::

    with gqlsync.testing.capture_events() as events:
        with transaction.atomic():
            book.title = "New"
            book.save()
    assert [(e.op, e.pk) for e in events] == [(Op.UPDATED, book.pk)]

``GraphQLWSClient`` speaks ``graphql-transport-ws`` to your ASGI application in-process
(Channels' ``WebsocketCommunicator``), no server needed::

    async with GraphQLWSClient(application) as client:
        sub = await client.subscribe("subscription { bookChanged { op id } }")
        await sync_to_async(Book.objects.create)(title="T", author=author)
        assert (await sub.next())["data"]["bookChanged"]["op"] == "CREATED"
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from asgiref.testing import ApplicationCommunicator

from gqlsync import broker
from gqlsync.events import Event


@contextmanager
def capture_events() -> Iterator[list[Event]]:
    """Collect every event published inside the ``with`` block, in publish order."""
    seen: list[Event] = []

    def observe(events: Sequence[Event]) -> None:
        seen.extend(events)

    broker.observers.append(observe)
    try:
        yield seen
    finally:
        broker.observers.remove(observe)


class _WebSocket(ApplicationCommunicator):  # type: ignore[misc]
    """An ASGI WebSocket peer (Channels' ``WebsocketCommunicator`` without daphne)."""

    def __init__(
        self, application: Any, path: str, subprotocols: list[str],
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        scope = {
            "type": "websocket", "path": path, "raw_path": path.encode(),
            "query_string": b"", "headers": [(b"host", b"testserver"), *headers],
            "subprotocols": subprotocols, "client": ("127.0.0.1", 0),
            "server": ("testserver", 80),
        }
        super().__init__(application, scope)

    async def connect(self, timeout: float = 3.0) -> tuple[bool, Any]:
        await self.send_input({"type": "websocket.connect"})
        response = await self.next_output(timeout)
        if response["type"] == "websocket.close":
            return False, response.get("code", 1000)
        return True, response.get("subprotocol")

    async def next_output(self, timeout: float) -> dict[str, Any]:
        """The application's next message; unlike ``receive_output``, a timeout does not
        cancel the application (a test may wait for *nothing* and go on)."""
        if self.future.done():
            self.future.result()
        getter = asyncio.ensure_future(self.output_queue.get())
        done, _ = await asyncio.wait(
            {getter, self.future}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
        if getter in done:
            message: dict[str, Any] = getter.result()
            return message
        getter.cancel()
        if self.future.done():
            self.future.result()
            raise ClosedError(None, "the application ended")
        raise TimeoutError

    async def send_to(self, text_data: str) -> None:
        await self.send_input({"type": "websocket.receive", "text": text_data})

    async def disconnect(self, code: int = 1000, timeout: float = 3.0) -> None:
        if self.future.done():
            return
        await self.send_input({"type": "websocket.disconnect", "code": code})
        await self.wait(timeout)


async def settle(timeout: float = 5.0) -> None:
    """Wait until this process's hub has handled every event sent to it so far.

    For the in-memory channel layer (what tests use): the hub's channel is empty, its
    inbox is empty and no event is being dispatched, twice in a row.
    """
    from gqlsync.hub import get_hub

    hub = get_hub()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    calm = 0
    while calm < 2:
        if loop.time() > deadline:
            raise TimeoutError("the hub did not settle")
        channels = getattr(hub.layer, "channels", {})
        pending = channels.get(hub.channel) if hub.channel else None
        quiet = (pending is None or pending.empty()) and hub.idle()
        calm = calm + 1 if quiet else 0
        await asyncio.sleep(0.005)


async def login_session(user: Any) -> tuple[Any, tuple[bytes, bytes]]:
    """Log ``user`` in as Django's ``login()`` would; returns the session and the
    ``Cookie`` header that carries it (for ``GraphQLWSClient(headers=[...])``)."""
    from asgiref.sync import sync_to_async
    from django.conf import settings
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.utils.module_loading import import_string

    session = import_string(settings.SESSION_ENGINE + ".SessionStore")()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    await sync_to_async(session.save)()
    cookie = f"{settings.SESSION_COOKIE_NAME}={session.session_key}".encode()
    return session, (b"cookie", cookie)


class ClosedError(Exception):
    """The server closed the connection; ``code`` is the WebSocket close code."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"closed with {code} {reason}".strip())
        self.code = code
        self.reason = reason


class Operation:
    """One subscription on a :class:`GraphQLWSClient`: read its payloads with :meth:`next`."""

    def __init__(self, client: GraphQLWSClient, id: str) -> None:
        self.client = client
        self.id = id
        self.messages: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def next(self, timeout: float = 3.0) -> dict[str, Any]:
        """The next ``next`` payload; raises on ``error``/``complete`` or after ``timeout``."""
        message = await self.client._message_for(self, timeout)
        if message["type"] == "next":
            payload: dict[str, Any] = message["payload"]
            return payload
        raise AssertionError(f"expected a 'next' message, got {message}")

    async def message(self, timeout: float = 3.0) -> dict[str, Any]:
        """The next raw message for this operation (``next``, ``error`` or ``complete``)."""
        return await self.client._message_for(self, timeout)

    async def nothing(self, wait: float = 0.3) -> None:
        """Assert that nothing arrives for this operation within ``wait`` seconds."""
        try:
            message = await self.client._message_for(self, wait)
        except TimeoutError:
            return
        raise AssertionError(f"expected nothing, got {message}")

    async def complete(self) -> None:
        await self.client.send({"id": self.id, "type": "complete"})


class GraphQLWSClient:
    """A ``graphql-transport-ws`` client for an ASGI application, in-process."""

    def __init__(
        self,
        application: Any,
        path: str = "/graphql/",
        *,
        payload: dict[str, Any] | None = None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self.communicator = _WebSocket(
            application, path, subprotocols=["graphql-transport-ws"], headers=list(headers)
        )
        self.payload = payload
        self.operations: dict[str, Operation] = {}
        self._ids = itertools.count(1)
        self.closed: ClosedError | None = None

    async def __aenter__(self) -> GraphQLWSClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.communicator.disconnect()

    async def connect(self) -> dict[str, Any]:
        """Open the socket and send ``connection_init``; returns the ``connection_ack``."""
        connected, _ = await self.communicator.connect()
        if not connected:
            raise ClosedError(None, "handshake refused")
        init: dict[str, Any] = {"type": "connection_init"}
        if self.payload is not None:
            init["payload"] = self.payload
        await self.send(init)
        return await self.receive()

    async def send(self, message: dict[str, Any]) -> None:
        await self.communicator.send_to(text_data=json.dumps(message))

    async def receive(self, timeout: float = 3.0) -> dict[str, Any]:
        """The next message from the server; raises :class:`ClosedError` on close."""
        output = await self.communicator.next_output(timeout)
        if output["type"] == "websocket.close":
            self.closed = ClosedError(output.get("code"), output.get("reason", ""))
            raise self.closed
        message: dict[str, Any] = json.loads(output["text"])
        return message

    async def subscribe(
        self, query: str, variables: dict[str, Any] | None = None, *, settle: float = 0.05
    ) -> Operation:
        """Start an operation; waits ``settle`` seconds so the server has subscribed."""
        op = Operation(self, str(next(self._ids)))
        self.operations[op.id] = op
        await self.send({"id": op.id, "type": "subscribe",
                         "payload": {"query": query, "variables": variables or {}}})
        await asyncio.sleep(settle)
        return op

    async def _message_for(self, op: Operation, timeout: float) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while op.messages.empty():
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"no message for operation {op.id} in {timeout}s")
            try:
                message = await self.receive(remaining)
            except TimeoutError:
                raise TimeoutError(f"no message for operation {op.id} in {timeout}s") from None
            target = self.operations.get(str(message.get("id")))
            if target is not None:
                target.messages.put_nowait(message)
        return op.messages.get_nowait()
