"""Execute: a subscription's selection set, once per distinct (document, variables, scope).

Stock Strawberry runs every subscriber's selection set for every event. Subscribers that
sent the same document with the same variables and share a permission scope would get
the same bytes, so the hub runs it once for all of them (:func:`payload`), serializes
once, and each socket gets that payload with only its operation id around it
(:class:`FrameSender`).

Scope is what makes this safe: a :class:`~gqlsync.permissions.Permission` promises that
users with equal scope see the same rows and fields. Without a permission the scope is
the user, so nothing is shared across users.
"""

from __future__ import annotations

import json
import logging
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
    result: Any = graphql_execute(
        operation.schema, _document(operation.query), root_value=root,
        context_value=operation.context, variable_values=operation.variables,
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
