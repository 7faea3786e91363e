"""Execute: a subscription's selection set, once per distinct (document, variables, scope).

Stock Strawberry runs every subscriber's selection set for every event. Subscribers that
sent the same document with the same variables and share a permission scope would get
the same bytes, so the hub runs it once for all of them (:func:`payload`), serializes
once, and each socket gets that payload with only its operation id around it
(:class:`FrameSender`).

Scope is what makes this safe: a :class:`~gqlsync.permissions.Permission` promises that
users with equal scope see the same rows and fields. Without a permission the scope is
the user.

Across scopes, the payload can differ only through what a resolver learns of *who is
asking*, and resolvers learn it from the context (``gqlsync.get_user(info)``,
strawberry-django's ``get_current_user``, a field-level permission extension, a
protected type's ``get_queryset``). So the hub runs the first scope's execution with a
context that notes every read (:class:`WatchedContext`): when the execution read
nothing of it, its bytes are what every other scope that receives the same row would
get, and they are sent to all of them. When it read anything, each scope is executed on
its own, and the document is remembered as one that reads the context (bounded, see
:func:`reads_context`). The only assumption is that resolvers find the user through
the context, not through a global (a thread-local "current user"); set
``SHARE_ACROSS_SCOPES`` to False for a schema whose resolvers do that.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from functools import lru_cache
from inspect import isawaitable
from typing import Any, Protocol

from graphql import DocumentNode, GraphQLSchema, parse
from graphql import execute as graphql_execute

logger = logging.getLogger("gqlsync.execute")


#: Attribute of a generated subscription field's resolver holding its *opener*:
#: ``await opener(info, sender, **arguments)`` registers the subscription with the hub
#: and returns it, without a generator (``gqlsync.transport.subscribe``).
OPENER = "_gqlsync_open"


class FrameSender(Protocol):
    """One operation's way out, given by the transport that runs it."""

    #: the document, raw variables and operation name the client sent
    query: str
    variables: dict[str, Any] | None
    operation_name: str | None

    def frame(self, payload: str) -> str:
        """The protocol message carrying ``payload`` (a JSON object) for this operation."""

    def enqueue(self, frame: str, sent: Callable[[], None]) -> None:
        """Queue a frame on the socket's outbound queue without waiting; ``sent()`` is
        called once it is written, or dropped: the operation ended, or the connection
        passed ``CONNECTION_QUEUE_BYTES`` and was closed (its whole queue is dropped at
        once). The queue is bounded in bytes, so a sender never holds memory for a peer
        that stopped reading."""


@dataclass(frozen=True, slots=True)
class SharedOperation:
    """What one shared subscriber runs; :meth:`key` groups identical ones."""

    schema: GraphQLSchema
    query: str
    variables_json: str
    variables: dict[str, Any] | None
    operation_name: str | None
    context: Any

    def key(self, scope: Hashable) -> Hashable:
        return (self.query, self.variables_json, self.operation_name, scope)

    @classmethod
    def of(cls, schema: GraphQLSchema, sender: FrameSender, context: Any) -> SharedOperation:
        variables = sender.variables or None
        return cls(schema, sender.query, json.dumps(variables, sort_keys=True, default=str),
                   variables, sender.operation_name, context)


class WatchedContext(dict[str, Any]):
    """A copy of a dict context that notes whether anything read a key of it.

    ``len()`` and truth tell nothing about who is asking and are not counted; every way
    of reading a key or a value is."""

    read = False

    def __getitem__(self, key: str) -> Any:
        self.read = True
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self.read = True
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self.read = True
        return super().__contains__(key)

    def __iter__(self) -> Any:
        self.read = True
        return super().__iter__()

    def keys(self) -> Any:
        self.read = True
        return super().keys()

    def values(self) -> Any:
        self.read = True
        return super().values()

    def items(self) -> Any:
        self.read = True
        return super().items()

    def copy(self) -> dict[str, Any]:
        self.read = True
        return dict(super().items())

    def __reduce__(self) -> Any:
        self.read = True
        return super().__reduce__()

    def __getattr__(self, name: str) -> Any:
        # ``context.request`` on a dict: AttributeError as on a dict, but noted
        self.read = True
        raise AttributeError(name)


#: documents (query, operation name) seen to read the context: executed per scope
#: without a trial (bounded; forgetting one only costs a trial execution)
_READS_CONTEXT: OrderedDict[tuple[str, str | None], None] = OrderedDict()
_READS_CONTEXT_SIZE = 1024


def reads_context(operation: SharedOperation) -> bool:
    """Has this document been seen reading the context (so its payload may differ per
    scope)?"""
    return (operation.query, operation.operation_name) in _READS_CONTEXT


def _noted_reading(operation: SharedOperation) -> None:
    key = (operation.query, operation.operation_name)
    _READS_CONTEXT[key] = None
    _READS_CONTEXT.move_to_end(key)
    if len(_READS_CONTEXT) > _READS_CONTEXT_SIZE:
        _READS_CONTEXT.popitem(last=False)


@lru_cache(maxsize=1024)
def _document(query: str) -> DocumentNode:
    return parse(query)


def _json(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, default=str)


async def payload(operation: SharedOperation, root: Any) -> str:
    """Run the subscription's selection set for one event (``root``), as JSON.

    ``root`` is what the subscription field yielded; the field's own resolver passes it
    through, as graphql-core does for each event of a subscription.
    """
    return await _run(operation, root, operation.context)


async def shareable_payload(operation: SharedOperation, root: Any) -> tuple[str, bool]:
    """:func:`payload`, and whether it is every scope's: True when the execution read
    nothing of the context (so nothing of who is asking)."""
    context = operation.context
    if not isinstance(context, dict):
        return await _run(operation, root, context), False
    watched = WatchedContext(context)
    body = await _run(operation, root, watched)
    if watched.read:
        _noted_reading(operation)
    return body, not watched.read


async def _run(operation: SharedOperation, root: Any, context: Any) -> str:
    result: Any = graphql_execute(
        operation.schema, _document(operation.query), root_value=root,
        context_value=context, variable_values=operation.variables,
        operation_name=operation.operation_name,
    )
    if isawaitable(result):
        result = await result
    body: dict[str, Any] = {"data": result.data}
    if result.errors:
        for error in result.errors:
            logger.warning("gqlsync: error in a subscription event: %s", error.message)
        body["errors"] = [error.formatted for error in result.errors]
    return _json(body)
