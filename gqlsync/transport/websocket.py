"""GraphQL over WebSocket: both protocols, with Django users that stay current.

Strawberry's consumer speaks ``graphql-transport-ws`` and the legacy ``graphql-ws`` and
applies origin checks, the operation limit and the close codes. This subclass gives each
connection its user: a bearer token in the handshake's ``Authorization`` header or in
the ``connection_init`` payload (``{"authorization": "Bearer <token>"}``), else the Django
session. A presented token that does not authenticate closes the connection with
``4403 Forbidden`` (``graphql-transport-ws``) or a ``connection_error`` (``graphql-ws``).

The connection then follows its user: when the hub hears that the user logged out, was
deactivated or deleted, or changed password, the connection re-reads its credentials and
closes with ``4403`` if they no longer hold; after group or permission changes its
subscriptions are re-scoped (rows entering or leaving the user's view are announced).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser
from graphql import GraphQLError, OperationDefinitionNode, parse
from strawberry.channels import GraphQLWSConsumer
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http.exceptions import WebSocketDisconnected
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    Operation as TransportWSOperation,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.types.unset import UNSET, UnsetType

from gqlsync import auth
from gqlsync.conf import get_settings
from gqlsync.exceptions import SubscriptionEnded
from gqlsync.hub import Subscription, current_sender, frame_bytes, get_hub
from gqlsync.transport import subscribe
from gqlsync.transport.http import (
    _headers,
    consumer_channel_layer,
    same_origin,
    session_user_allowed,
)

logger = logging.getLogger("gqlsync.transport")

#: Close codes of graphql-transport-ws, by name (sent by Strawberry's handler and the hub).
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_INIT_TIMEOUT = 4408
CLOSE_SUBSCRIBER_EXISTS = 4409
CLOSE_TOO_MANY_INITS = 4429
#: graphql-transport-ws' "internal server error": the server failed, not the client
CLOSE_INTERNAL_ERROR = 4500
#: RFC 6455's "protocol error" and "internal error", the legacy protocol's answers to a
#: binary frame (as Strawberry's) and to an error of the server's own
CLOSE_PROTOCOL_ERROR = 1002
CLOSE_LEGACY_INTERNAL_ERROR = 1011
#: RFC 6455's "message too big", for a frame over ``MAX_DOCUMENT_BYTES``
CLOSE_MESSAGE_TOO_BIG = 1009
#: "Try Again Later" (IANA WebSocket close code registry): the server casts off a client
#: whose unwritten frames passed ``CONNECTION_QUEUE_BYTES``. A temporary condition of
#: that client, not a protocol error (1008 would be fatal to graphql-ws clients, and
#: 4400-4499 belong to graphql-transport-ws): graphql-ws and Apollo reconnect on it.
CLOSE_SLOW_CONSUMER = 1013


def _session_user(session_key: str) -> Any:
    """The user a stored session authenticates now (Django's own checks), or anonymous."""
    from django.conf import settings
    from django.contrib.auth import get_user
    from django.contrib.sessions.backends.base import SessionBase
    from django.utils.module_loading import import_string

    store: type[SessionBase] = import_string(settings.SESSION_ENGINE + ".SessionStore")

    class _Request:
        session = store(session_key)

    return get_user(_Request())  # type: ignore[arg-type]


#: scope key of the server's own ASGI ``send`` (see :func:`with_raw_send`)
RAW_SEND = "gqlsync.send"


def with_raw_send(app: Any) -> Any:
    """Keep the server's ``send`` in the scope, for event frames.

    Channels' session middleware wraps ``send`` to save sessions on HTTP responses; on a
    WebSocket it only inspects the session on every message. Event frames are most of
    what a busy socket sends, so the writer sends them with the server's own ``send``;
    the handshake, acks and closes still go through the middleware.
    """

    async def raw_send_app(scope: Any, receive: Any, send: Any) -> Any:
        return await app({**scope, RAW_SEND: send}, receive, send)

    return raw_send_app


class _Writer:
    """A socket's outbound queue for the frames of its shared subscriptions.

    A frame is written at once, from the hub's own loop, when nothing is queued ahead of
    it: the server's ``send`` completes without waiting unless the socket's buffer is
    full. Only then does a task take over, finish that write when the socket drains and
    write what queued behind it, in order, then end. So an idle socket holds no task,
    a fast one costs no task switch per frame, and a slow one only ever delays itself.

    It is bounded in bytes (:func:`~gqlsync.hub.frame_bytes`): the frames queued and the
    write in flight hold at most ``limit`` (``CONNECTION_QUEUE_BYTES``; one frame always
    fits when nothing waits). A frame that would pass it means the peer stopped reading:
    the writer drops everything it holds at once (each frame's ``sent()`` is called),
    writes nothing more, and calls ``overflow`` (the connection closes with
    :data:`CLOSE_SLOW_CONSUMER`), so the memory is freed even if the peer never reads
    again.
    """

    __slots__ = ("_bytes", "_closed", "_frames", "_inflight", "_limit", "_overflow", "_send",
                 "_task", "overflowed")

    def __init__(self, send: Callable[[dict[str, Any]], Awaitable[Any]],
                 limit: int | None = None,
                 overflow: Callable[[], None] | None = None) -> None:
        self._send = send
        #: frames waiting behind a write that had to wait (made then: most sockets never
        #: need one)
        self._frames: collections.deque[
            tuple[str, Callable[[], bool], Callable[[], None]]] | None = None
        self._task: asyncio.Task[None] | None = None
        #: the write that had to wait: its coroutine, what to call once it is done, and
        #: the frame's bytes
        self._inflight: tuple[Any, Callable[[], None], int] | None = None
        self._closed = False
        self._limit = (limit if limit is not None
                       else get_settings()["CONNECTION_QUEUE_BYTES"])
        self._overflow = overflow
        #: bytes of the frames queued and being written
        self._bytes = 0
        #: True once the bound was passed (the writer is then closed)
        self.overflowed = False

    @property
    def queued_bytes(self) -> int:
        """Bytes of the frames queued or being written, not written yet."""
        return self._bytes

    def enqueue(self, frame: str, done: Callable[[], bool], sent: Callable[[], None]) -> None:
        if self._closed:
            sent()
            return
        if self._task is not None:
            size = frame_bytes(frame)
            if self._bytes + size > self._limit:
                sent()
                self._shed()
                return
            if self._frames is None:
                self._frames = collections.deque()
            self._frames.append((frame, done, sent))
            self._bytes += size
            return
        if done():
            sent()
            return
        coroutine: Any = self._send({"type": "websocket.send", "text": frame})
        try:
            waiting = coroutine.send(None)
        except StopIteration:
            sent()
            return
        except Exception:  # the socket is gone: the handler's disconnect cleans up
            logger.debug("gqlsync: a frame could not be written", exc_info=True)
            self._closed = True
            sent()
            return
        size = frame_bytes(frame)
        self._inflight = (coroutine, sent, size)
        self._bytes += size
        self._task = asyncio.get_running_loop().create_task(self._finish(waiting))

    async def _finish(self, waiting: Any) -> None:
        """Drive the write that had to wait (as a task would), then write the queue."""
        try:
            while self._inflight is not None:
                if waiting is None:  # a bare yield
                    await asyncio.sleep(0)
                else:  # a future: resume once it is done; the write reads its outcome
                    waiting._asyncio_future_blocking = False
                    await asyncio.wait([waiting])
                try:
                    waiting = self._inflight[0].send(None)
                except StopIteration:
                    self._end_inflight()
            while self._frames:
                frame, done, frame_sent = self._frames.popleft()
                try:
                    if not done():
                        await self._send({"type": "websocket.send", "text": frame})
                finally:  # counted until written: the write holds it meanwhile
                    self._bytes -= frame_bytes(frame)
                    frame_sent()
        except Exception:
            logger.debug("gqlsync: a frame could not be written", exc_info=True)
            self._closed = True
        finally:  # done, failed or cancelled: nothing stays queued without a task
            self._task = None
            self._drop()

    def _end_inflight(self) -> None:
        if self._inflight is not None:
            coroutine, sent, size = self._inflight
            self._inflight = None
            self._bytes -= size
            coroutine.close()
            sent()

    def _drop(self) -> None:
        self._end_inflight()
        frames, self._frames = self._frames, None
        for frame, _, sent in frames or ():
            self._bytes -= frame_bytes(frame)
            sent()

    def purge(self) -> None:
        """Drop the queued frames of operations that ended: their memory is freed now,
        not when the peer reads up to them."""
        frames = self._frames
        if not frames:
            return
        kept: collections.deque[tuple[str, Callable[[], bool], Callable[[], None]]] = (
            collections.deque())
        for item in frames:
            if item[1]():
                self._bytes -= frame_bytes(item[0])
                item[2]()
            else:
                kept.append(item)
        self._frames = kept

    def _shed(self) -> None:
        """Past the bound: drop everything, write nothing more, tell the connection."""
        self.overflowed = True
        logger.warning(
            "gqlsync: a WebSocket client fell %d bytes behind (CONNECTION_QUEUE_BYTES=%d); "
            "closing it with %d", self._bytes, self._limit, CLOSE_SLOW_CONSUMER)
        self.close()
        if self._overflow is not None:
            self._overflow()

    def close(self) -> None:
        self._closed = True
        if self._task is not None:
            # (a task cancelled before its first step never runs its finally)
            self._task.cancel()
            self._task = None
        self._drop()


def _writer(consumer: Any) -> _Writer:
    writer: _Writer | None = getattr(consumer, "_gqlsync_writer", None)
    if writer is None:
        send = consumer.scope.get(RAW_SEND) or consumer.base_send
        writer = _Writer(send, overflow=getattr(consumer, "shed_slow_consumer", None))
        consumer._gqlsync_writer = writer
    return writer


class _Sender:
    """One operation's way out: its frames carry a pre-serialized payload (shared
    execution), so only the id differs between the frames of two sockets."""

    __slots__ = ("_prefix", "_writer", "done", "operation_name", "query", "variables")

    def __init__(self, consumer: Any, id: str, kind: str, query: str,
                 variables: dict[str, Any] | None, operation_name: str | None,
                 done: Callable[[], bool]) -> None:
        self._writer = _writer(consumer)
        self._prefix = '{"id":' + json.dumps(id) + ',"type":"' + kind + '","payload":'
        self.query, self.variables, self.operation_name = query, variables, operation_name
        self.done = done

    def frame(self, payload: str) -> str:
        return self._prefix + payload + "}"

    def enqueue(self, frame: str, sent: Callable[[], None]) -> None:
        self._writer.enqueue(frame, self.done, sent)


class _DirectOperation:
    """A generated subscription opened by the handler itself (``transport.subscribe``):
    no task, no generator; the hub writes its frames. It sits in the handler's
    ``operations`` like Strawberry's own, so duplicate ids (4409), the per-connection
    limit, ``complete`` and the connection's end treat both alike."""

    __slots__ = ("completed", "handler", "id", "subscription", "task")

    def __init__(self, handler: _TransportWSProtocol, id: str) -> None:
        self.handler = handler
        self.id = id
        self.completed = False
        self.subscription: Subscription | None = None
        self.task: asyncio.Task[None] | None = None  # read by Strawberry's shutdown()

    def forget(self) -> None:
        """The client completed it, or the connection ended: unsubscribe quietly."""
        self.completed = True
        operations = self.handler.all_operations()
        if operations.get(self.id) is self:
            del operations[self.id]
        if self.subscription is not None:
            get_hub().unsubscribe(self.subscription)
        # its frames still queued on the socket go now (they would be skipped anyway)
        writer: _Writer | None = getattr(
            cast(Any, self.handler.websocket).ws_consumer, "_gqlsync_writer", None)
        if writer is not None:
            writer.purge()

    def ended(self, error: BaseException) -> None:
        """The server ended it (slow consumer, permission withdrawn, shutdown): the same
        frames Strawberry sends when a subscription's stream raises, ``next`` with the
        error and then ``complete``, behind what is already queued for the socket."""
        if self.completed:
            return
        self.forget()
        logger.info("gqlsync: subscription %s ended: %s", self.id, error)
        consumer = cast(Any, self.handler.websocket).ws_consumer
        writer = _writer(consumer)
        graphql_error = error if isinstance(error, GraphQLError) else GraphQLError(str(error))
        error_payload = {"data": None, "errors": [graphql_error.formatted]}
        for message in ({"id": self.id, "type": "next", "payload": error_payload},
                        {"id": self.id, "type": "complete"}):
            writer.enqueue(json.dumps(message), _never, _nothing)


def _payload_problem(payload: Any) -> str | None:
    """What is wrong with an operation's payload (``subscribe``, legacy ``start``), or
    None: an object whose ``query`` is a string, ``variables`` and ``extensions`` objects
    or null, ``operationName`` a string or null (GraphQL over HTTP's request shape)."""
    if not isinstance(payload, dict):
        return "The payload must be an object"
    if not isinstance(payload.get("query"), str):
        return 'The payload\'s "query" must be a string'
    for key, kind, name in (("variables", dict, "an object"), ("extensions", dict, "an object"),
                            ("operationName", str, "a string")):
        value = payload.get(key)
        if value is not None and not isinstance(value, kind):
            return f'The payload\'s "{key}" must be {name} or null'
    return None


def _well_formed(message: Any) -> bool:
    """The shape the handler relies on: an object with a string ``type``; ``subscribe``
    and ``complete`` with a string ``id``, ``subscribe`` with a well-formed ``payload``
    (:func:`_payload_problem`). (Strawberry's handler turns a *missing* key into
    ``4400``; a wrong type would raise inside it, or further on.)"""
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return False
    kind = message["type"]
    if kind in ("subscribe", "complete") and not isinstance(message.get("id"), str):
        return False
    return kind != "subscribe" or _payload_problem(message.get("payload")) is None


#: the legacy protocol's message types (subscriptions-transport-ws, client to server)
_LEGACY_TYPES = ("connection_init", "connection_terminate", "start", "stop")


def _legacy_answer(message: Any) -> dict[str, Any] | None:
    """What the legacy ``graphql-ws`` protocol answers a frame it cannot handle, as the
    reference server (subscriptions-transport-ws) does, or None for a handled frame:
    not a JSON object, ``connection_error``; an unknown ``type``, ``error`` "Invalid
    message type!" (with the frame's id if it has one); ``start`` or ``stop`` without a
    string id, or a ``start`` whose payload is malformed, ``error``. The connection
    goes on."""
    if not isinstance(message, dict):
        return {"type": "connection_error",
                "payload": {"message": "A message must be a JSON object"}}
    kind, id = message.get("type"), message.get("id")
    with_id: dict[str, Any] = {"id": id} if isinstance(id, str) else {}
    if not isinstance(kind, str) or kind not in _LEGACY_TYPES:
        return {"type": "error", **with_id, "payload": {"message": "Invalid message type!"}}
    if kind in ("start", "stop") and not isinstance(id, str):
        return {"type": "error", "payload": {"message": f'A "{kind}" needs a string "id"'}}
    if kind == "start":
        problem = _payload_problem(message.get("payload"))
        if problem is not None:
            return {"type": "error", "id": id, "payload": {"message": problem}}
    return None


#: graphql-core's words (GraphQL spec, GetOperation): a document of several operations
#: runs none of them unless the request names one
MULTIPLE_OPERATIONS = "Must provide operation name if query contains multiple operations."


def _needs_operation_name(payload: dict[str, Any]) -> bool:
    """Does this document hold several operations, with no ``operationName``? Strawberry
    would run the first; the spec asks for an error. (Parsed here only when no name is
    given; a document that does not parse is left to Strawberry's answer.)"""
    query = payload.get("query")
    if payload.get("operationName") is not None or not isinstance(query, str):
        return False
    if query.count("{") < 2:  # each operation has a selection set
        return False
    max_tokens = get_settings()["MAX_QUERY_TOKENS"]
    if len(query) > _CACHED_DOCUMENT_SIZE:  # not kept: a client could pin megabytes
        return _operations_in.__wrapped__(query, max_tokens) > 1
    return _operations_in(query, max_tokens) > 1


#: documents up to this many characters have their operation count remembered
_CACHED_DOCUMENT_SIZE = 8 * 1024


@functools.lru_cache(maxsize=1024)
def _operations_in(query: str, max_tokens: int) -> int:
    """How many operations ``query`` defines (0 if it does not parse). Cached: a thousand
    clients subscribing with the same document parse it here once."""
    try:
        document = parse(query, no_location=True, max_tokens=max_tokens)
    except Exception:  # GraphQLSyntaxError, the token limit, too deep: Strawberry's answer
        return 0
    return sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)


def _never() -> bool:
    return False


def _nothing() -> None:
    return None


class _TransportWSProtocol(BaseGraphQLTransportWSHandler):  # type: ignore[misc]
    """Strawberry's graphql-transport-ws handler, offering each operation a sender, and
    opening generated subscriptions itself (no task or generators per subscription)."""

    async def handle_connection_init(self, message: Any) -> None:
        """Strawberry's, but a ``null`` payload is no payload: graphql-transport-ws allows
        ``payload`` to be absent or null (``4400`` is for a payload that is not an
        object)."""
        if message.get("payload", None) is None:
            message = {**message, "payload": {}}
        await super().handle_connection_init(message)

    async def handle_subscribe(self, message: Any) -> None:
        payload = message.get("payload")
        if (self.connection_acknowledged and isinstance(payload, dict)
                and message.get("id") not in self.operations
                and _needs_operation_name(payload)):
            # answered and forgotten at once: the id is free again
            error = GraphQLError(MULTIPLE_OPERATIONS)
            await self.send_message({"id": message["id"], "type": "error",
                                     "payload": [error.formatted]})
            return
        limit = self.max_subscriptions_per_connection
        if (not self.connection_acknowledged or not isinstance(payload, dict)
                or not isinstance(message.get("id"), str) or message["id"] in self.operations
                or (limit is not None and len(self.operations) >= limit)):
            await super().handle_subscribe(message)  # its close codes and errors
            return
        opening = await subscribe.prepare(
            self.schema, payload.get("query"), payload.get("variables"),
            payload.get("operationName"), self.context, self.root_value,
        )
        if opening is None:
            await super().handle_subscribe(message)
            return
        operation = _DirectOperation(self, message["id"])
        sender = _Sender(cast(Any, self.websocket).ws_consumer, operation.id, "next",
                         payload["query"], payload.get("variables"),
                         payload.get("operationName"), lambda: operation.completed)
        operations = self.all_operations()
        operations[operation.id] = operation
        try:
            subscription = await opening.opener(opening.info, sender, **opening.arguments)
        except Exception:  # refused (permissions...): Strawberry answers
            closed = operation.completed  # the connection ended while it was opening
            operation.forget()
            if not closed:
                await super().handle_subscribe(message)
            return
        operation.subscription = subscription
        subscription.on_end = operation.ended
        if operation.completed:  # the connection closed while it was opening
            get_hub().unsubscribe(subscription)
        elif subscription.ended:  # the hub ended it while it was registering
            queued = subscription.queue[0] if subscription.queue else None
            operation.ended(queued if isinstance(queued, BaseException)
                            else SubscriptionEnded("This subscription was ended."))

    def all_operations(self) -> dict[str, Any]:
        """Strawberry's operations and ours, by id."""
        return cast(dict[str, Any], self.operations)

    async def cleanup_operation(self, operation_id: str) -> None:
        operation = self.all_operations().get(operation_id)
        if isinstance(operation, _DirectOperation):
            operation.forget()
            return
        await super().cleanup_operation(operation_id)

    async def run_operation(self, operation: TransportWSOperation[Any, Any]) -> None:
        consumer = cast(Any, self.websocket).ws_consumer
        sender = _Sender(consumer, operation.id, "next", operation.query,
                         operation.variables, operation.operation_name,
                         # an id may be reused once completed: compare the operation itself
                         lambda: operation.completed
                         or self.operations.get(operation.id) is not operation)
        current_sender.set(sender)
        await super().run_operation(operation)


class _LegacyWSProtocol(BaseGraphQLWSHandler):  # type: ignore[misc]
    """Strawberry's legacy graphql-ws handler, offering each operation a sender. The
    consumer drives it one message at a time (see :meth:`GraphQLWSHandler._drive_legacy`):
    it never reads a queue of its own."""

    async def handle_connection_init(self, message: Any) -> None:
        """Strawberry's, once: a second ``connection_init`` would authenticate the
        connection again (as another user, with its first identity still followed by the
        hub) and start another keepalive task. It gets a ``connection_error``; the
        connection goes on as it was."""
        if self.connection_acknowledged:
            await self.send_message(cast(Any, {
                "type": "connection_error",
                "payload": {"message": "Too many initialisation requests"}}))
            return
        await super().handle_connection_init(message)

    async def handle_start(self, message: Any) -> None:
        payload = message["payload"]
        if self.connection_acknowledged and _needs_operation_name(payload):
            operation_id = message["id"]
            if operation_id in self.tasks:  # a start replaces the operation of its id
                await self.cleanup_operation(operation_id)
            await self.send_message({"type": "error", "id": operation_id,
                                     "payload": GraphQLError(MULTIPLE_OPERATIONS).formatted})
            return
        await super().handle_start(message)

    async def handle_async_results(
        self, operation_id: str, query: str, operation_name: str | None,
        variables: dict[str, Any] | None,
    ) -> None:
        consumer = cast(Any, self.websocket).ws_consumer
        sender = _Sender(consumer, operation_id, "data", query, variables, operation_name,
                         lambda: operation_id not in self.tasks)
        current_sender.set(sender)
        await super().handle_async_results(operation_id, query, operation_name, variables)


class GraphQLWSHandler(GraphQLWSConsumer):  # type: ignore[misc]
    """Strawberry's WebSocket consumer with the connection's user in the context.

    Both protocols' handlers are driven by Channels' own ``receive()``, one message
    after another as Strawberry's message loops would, instead of a task reading a
    queue: an idle connection holds no task of its own, and a frame the handler cannot
    take never kills it behind an open socket. The subprotocol and the handlers' every
    rule stay Strawberry's; the origin check also compares the scheme (see
    :func:`gqlsync.transport.http.own_origin`). Refused handshakes and unknown
    subprotocols take Strawberry's path unchanged.
    """

    graphql_transport_ws_handler_class = _TransportWSProtocol
    graphql_ws_handler_class = _LegacyWSProtocol

    channel_layer_alias = consumer_channel_layer

    user: Any = None
    _token: str | None = None
    _session_key: str | None = None
    _followed: Any = None
    #: the graphql-transport-ws or legacy graphql-ws handler this consumer drives, and
    #: whether it has ended
    _protocol: _TransportWSProtocol | None = None
    _legacy: _LegacyWSProtocol | None = None
    _protocol_ended = False
    #: counted in the hub's ``connected`` (its ``disconnected`` once released)
    _counted = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # made only for Strawberry's own loop (see connect)
        self.message_queue = cast(Any, None)

    async def connect(self) -> None:
        """Strawberry's ``run()`` up to creating the handler (see the class docstring)."""
        subprotocol = (await self.pick_websocket_subprotocol(self)
                       if self._check_websocket_origin(self) else None)
        if subprotocol not in (GRAPHQL_TRANSPORT_WS_PROTOCOL, GRAPHQL_WS_PROTOCOL):
            self.message_queue = asyncio.Queue()
            await super().connect()
            return
        root_value = await cast(Any, self).get_root_value(self)
        response = await self.create_websocket_response(self, subprotocol)
        get_hub().stats["connected"] += 1  # accepted: open until released
        self._counted = True
        websocket = self.websocket_adapter_class(self, self, response)
        context = await self.get_context(self, response=response)
        if subprotocol == GRAPHQL_WS_PROTOCOL:
            self._legacy = self.graphql_ws_handler_class(
                view=self, websocket=websocket, context=context, root_value=root_value,
                schema=self.schema, keep_alive=self.keep_alive,
                keep_alive_interval=self.keep_alive_interval,
                max_subscriptions_per_connection=self.max_subscriptions_per_connection,
            )
            return
        self._protocol = self.graphql_transport_ws_handler_class(
            view=self, websocket=websocket, context=context, root_value=root_value,
            schema=self.schema,
            connection_init_wait_timeout=self.connection_init_wait_timeout,
            max_subscriptions_per_connection=self.max_subscriptions_per_connection,
        )
        self._protocol.on_request_accepted()

    def _check_websocket_origin(self, request: Any) -> bool:
        """Strawberry's check (no ``Origin``: not a browser; ``Sec-Fetch-Site:
        same-origin``; ``allowed_origins``), but the same host under another scheme is
        another origin: ``https://host`` does not speak for ``ws://host``."""
        headers = _headers(self.scope)
        origin = headers.get("origin")
        if origin is None or headers.get("sec-fetch-site") == "same-origin":
            return True
        if same_origin(origin, self.scope) or self.is_websocket_origin_allowed(request, origin):
            return True
        logger.warning("gqlsync: refused a WebSocket from origin %r to host %r (add it to "
                       "ALLOWED_ORIGINS if its pages should connect)", origin,
                       headers.get("host"))
        return False

    async def _drive(self, text_data: str | None) -> None:
        """One message through the handler, as Strawberry's ``handle()`` loop does.

        Whatever the message, the handler is never left half-alive: a frame that is not
        a protocol message closes with ``4400`` (Strawberry's reasons), an error of the
        server's own with ``4500``, and either way every operation is cleaned up.
        """
        protocol = self._protocol
        assert protocol is not None
        if self._protocol_ended:
            return
        async with self._answering(CLOSE_INTERNAL_ERROR):
            problem = None
            message: Any = None
            if not text_data:
                problem = "WebSocket message type must be text"
            else:
                try:
                    message = self.decode_json(text_data)
                except (ValueError, RecursionError):  # JSONDecodeError, over-long ints
                    problem = "WebSocket message must be valid JSON"
                else:
                    if not _well_formed(message):
                        problem = "Failed to parse message"
            if problem is not None:
                await protocol.handle_invalid_message(problem)
                await self._end_protocol()
                return
            await protocol.handle_message(message)

    @contextlib.asynccontextmanager
    async def _answering(self, internal_error: int) -> AsyncIterator[None]:
        """Around one message: a client that left while we answered, or an error of the
        server's own (closed with ``internal_error``), ends the handler and cleans up
        every operation, so it is never left half-alive."""
        try:
            yield
        except (WebSocketDisconnected, OSError):
            logger.debug("gqlsync: the client left during a message", exc_info=True)
            await self._end_protocol()
        except Exception:
            logger.exception("gqlsync: a WebSocket message could not be handled")
            with contextlib.suppress(Exception):
                await self.close(code=internal_error, reason="Internal server error")
            await self._end_protocol()

    async def _drive_legacy(self, text_data: str | None) -> None:
        """One message through the legacy ``graphql-ws`` handler (see
        :func:`_legacy_answer` for frames it cannot take: they are answered and the
        connection goes on). A binary frame closes with ``1002`` (Strawberry's answer),
        an error of the server's own with ``1011``; when the connection closes, every
        operation is cleaned up."""
        legacy = self._legacy
        assert legacy is not None
        if self._protocol_ended or getattr(self, "_closed", False):
            return
        async with self._answering(CLOSE_LEGACY_INTERNAL_ERROR):
            if text_data is None:
                await self.close(code=CLOSE_PROTOCOL_ERROR,
                                 reason="WebSocket message type must be text")
                await self._end_protocol()
                return
            try:
                message: Any = self.decode_json(text_data)
            except (ValueError, RecursionError):  # JSONDecodeError, over-long ints, depth
                answer: dict[str, Any] | None = {
                    "type": "connection_error",
                    "payload": {"message": "A message must be valid JSON"}}
            else:
                answer = _legacy_answer(message)
            if answer is not None:
                await legacy.send_message(cast(Any, answer))
                return
            await legacy.handle_message(message)

    async def _end_protocol(self) -> None:
        if self._protocol_ended:
            return
        if self._protocol is not None:
            self._protocol_ended = True
            await self._protocol.shutdown()
        elif self._legacy is not None:  # as the end of Strawberry's handle()
            self._protocol_ended = True
            keep_alive = self._legacy.keep_alive_task
            if keep_alive is not None:
                keep_alive.cancel()
                with contextlib.suppress(BaseException):
                    await keep_alive
            await self._legacy.cleanup()

    async def get_context(self, request: Any, response: Any) -> Any:
        scope = self.scope
        user = scope.get("user") if session_user_allowed(scope) else None
        if user is not None and user.is_authenticated:
            session = scope.get("session")
            self._session_key = getattr(session, "session_key", None)
        self._context: dict[str, Any] = {
            "request": request, "ws": request, "connection": self,
            "user": user or AnonymousUser(), "rejected": False,
        }
        self._set_user(self._context["user"])
        try:  # a malformed bearer credential ("Bearer ") is refused, as a forged token
            token = auth.bearer_credential(_headers(scope).get("authorization"))
        except auth.InvalidToken:
            self._context["rejected"] = True
            return self._context
        if token is not None:
            await self._authenticate(token)
        return self._context

    def _set_user(self, user: Any) -> None:
        # strawberry-django's permission extensions read scope["user"]: keep them agreeing
        self.user = user
        self._context["user"] = user
        self.scope["user"] = user

    async def _authenticate(self, token: str) -> None:
        try:
            self._set_user(await sync_to_async(auth.user_for_token)(token))
            self._token, self._session_key = token, None
        except auth.InvalidToken:
            self._set_user(AnonymousUser())
            self._context["rejected"] = True

    async def on_ws_connect(self, context: Any) -> UnsetType | dict[str, object] | None:
        params: dict[str, Any] = context.get("connection_params") or {}
        value = params.get("authorization", params.get("Authorization"))
        if value is not None:
            token = auth.bearer(value)
            if token is None:
                context["rejected"] = True
            else:
                await self._authenticate(token)
        if context["rejected"]:
            raise ConnectionRejectionError({"message": "Invalid or expired token"})
        if self.user is not None and self.user.is_authenticated:
            self._followed = self.user.pk
            await get_hub().connect(self._followed, self)
        ack: UnsetType = UNSET  # connection_ack without a payload
        return ack

    async def receive(
        self, text_data: str | None = None, bytes_data: bytes | None = None
    ) -> None:
        size = len(text_data.encode()) if text_data is not None else len(bytes_data or b"")
        if size > get_settings()["MAX_DOCUMENT_BYTES"]:
            await self.close(code=CLOSE_MESSAGE_TOO_BIG, reason="Message too big")
            return
        if self._protocol is not None:
            await self._drive(text_data)
            return
        if self._legacy is not None:
            await self._drive_legacy(text_data)
            return
        await super().receive(text_data=text_data, bytes_data=bytes_data)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            # the consumer may end without a disconnect message (an error in Channels'
            # dispatch): the hub must forget it all the same
            self._release()
            if self._protocol is not None or self._legacy is not None:
                with contextlib.suppress(Exception):
                    await self._end_protocol()
            elif self.run_task is not None and not self.run_task.done():
                self.run_task.cancel()

    def _release(self) -> None:
        """Stop writing, stop following the user's identity, and count the connection
        closed (idempotent)."""
        writer: _Writer | None = getattr(self, "_gqlsync_writer", None)
        if writer is not None:
            writer.close()
        if self._followed is not None:
            get_hub().disconnect(self._followed, self)
            self._followed = None
        if self._counted:
            self._counted = False
            get_hub().stats["disconnected"] += 1

    async def disconnect(self, code: int) -> None:
        self._release()
        if self._protocol is not None or self._legacy is not None:
            await self._end_protocol()
            return
        if self.run_task is not None:  # Strawberry's own loop
            await super().disconnect(code)

    # -- the hub's Connection protocol ---------------------------------------------

    async def revalidate(self) -> bool:
        """Re-read this connection's credentials; False if they no longer hold."""
        if self._token is not None:
            try:
                user = await sync_to_async(auth.user_for_token)(self._token)
            except auth.InvalidToken:
                return False
        elif self._session_key is not None:
            user = await sync_to_async(_session_user)(self._session_key)
        else:
            return False
        if not user.is_authenticated or user.pk != self._followed:
            return False
        self._set_user(user)
        return True

    async def close_for(self, code: int, reason: str) -> None:
        await self.close(code=code, reason=reason)

    # -- slow consumers (the writer's overflow hook) ---------------------------------

    _shedding: asyncio.Task[None] | None = None

    def shed_slow_consumer(self) -> None:
        """The connection's unwritten frames passed ``CONNECTION_QUEUE_BYTES`` (its
        writer has dropped them): end its operations and close with
        :data:`CLOSE_SLOW_CONSUMER` now, not when a keepalive times out."""
        if self._shedding is None:
            get_hub().stats["slow_consumers"] += 1
            self._shedding = asyncio.get_running_loop().create_task(self._shed())

    async def _shed(self) -> None:
        # First what needs no write: the server's close waits for a paused peer's socket
        # to drain (uvicorn), and until then the hub would keep executing this
        # connection's subscriptions for frames nobody will read.
        self._release()
        hub = get_hub()
        for sub in hub.subscriptions_of(self):
            sub.ended = True  # no error frame: the close below says why
            hub.unsubscribe(sub)
        with contextlib.suppress(Exception):
            await self.close(code=CLOSE_SLOW_CONSUMER,
                             reason="Slow consumer: too many frames waiting")
        if self._protocol is not None or self._legacy is not None:
            with contextlib.suppress(Exception):
                await self._end_protocol()

    async def close(self, code: int | bool | None = None, reason: str | None = None) -> None:
        """Close once. Strawberry's legacy handler may close again after a rejected
        ``connection_init`` (the client sent ``start`` right behind it), and a second
        ``websocket.close`` is an ASGI error in the server."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        await super().close(code=code, reason=reason)
