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
        """(document, variables, operation name, schema, scope): two applications with
        their own schemas may receive the same document."""
        return (self.query, self.variables_json, self.operation_name, id(self.schema), scope)

    @classmethod
    def of(cls, schema: GraphQLSchema, sender: FrameSender, context: Any) -> SharedOperation:
        variables = sender.variables or None
        return cls(schema, sender.query, json.dumps(variables, sort_keys=True, default=str),
                   variables, sender.operation_name, context)


class WatchedContext(dict[str, Any]):
    """A dict context that notes whether anything read it.

    It holds no items of its own: every way Python code reads a dict is answered from
    the real context and noted (``[]``, ``get``, ``in``, iteration, ``keys``/``values``/
    ``items``, ``setdefault``, ``pop``, ``copy``, ``==``, ``repr``, ``|``). A C-level read
    that bypasses those methods (``dict.get(context, "user")``) finds nothing, so it can
    never carry one user's values into another's payload. Writes go to a private copy,
    never to the subscriber's context. ``len()`` and truth tell nothing about who is
    asking and are not counted."""

    def __init__(self, real: dict[str, Any]) -> None:
        super().__init__()
        self._real = real
        self._copied = False
        self.read = False

    def _seen(self) -> dict[str, Any]:
        self.read = True
        return self._real

    def _writable(self) -> dict[str, Any]:
        if not self._copied:
            self._real, self._copied = dict(self._real), True
        return self._real

    def __getitem__(self, key: str) -> Any:
        return self._seen()[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._seen().get(key, default)

    def __contains__(self, key: object) -> bool:
        return key in self._seen()

    def __iter__(self) -> Any:
        return iter(self._seen())

    def __len__(self) -> int:
        return len(self._real)

    def __bool__(self) -> bool:
        return bool(self._real)

    def keys(self) -> Any:
        return self._seen().keys()

    def values(self) -> Any:
        return self._seen().values()

    def items(self) -> Any:
        return self._seen().items()

    def copy(self) -> dict[str, Any]:
        return dict(self._seen())

    def setdefault(self, key: str, default: Any = None) -> Any:
        self.read = True
        return self._writable().setdefault(key, default)

    def pop(self, key: str, *default: Any) -> Any:
        self.read = True
        return self._writable().pop(key, *default)

    def popitem(self) -> tuple[str, Any]:
        self.read = True
        return self._writable().popitem()

    def __setitem__(self, key: str, value: Any) -> None:
        self._writable()[key] = value

    def __delitem__(self, key: str) -> None:
        self.read = True
        del self._writable()[key]

    def update(self, *args: Any, **kwargs: Any) -> None:
        self._writable().update(*args, **kwargs)

    def __eq__(self, other: object) -> bool:
        return self._seen() == other

    def __ne__(self, other: object) -> bool:
        return self._seen() != other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._seen())

    def __or__(self, other: Any) -> Any:
        return self._seen() | other

    def __ror__(self, other: Any) -> Any:
        return other | self._seen()

    def __reduce__(self) -> Any:
        return (dict, (dict(self._seen()),))

    def __getattr__(self, name: str) -> Any:
        # ``context.request`` on a dict: AttributeError as on a dict, but noted
        if name.startswith("__"):
            raise AttributeError(name)
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
