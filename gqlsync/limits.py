"""Limits: how much one request may ask of the server.

``gqlsync.asgi.application()`` adds these to the schema it serves (unless you pass
``limits=False``), reading ``GQLSYNC`` settings:

- ``MAX_QUERY_DEPTH``: nesting of selections (introspection fields are not counted);
- ``MAX_QUERY_TOKENS``: tokens of a document, enforced by the parser, so an oversized
  document is refused before it is built;
- ``MAX_ALIASES``: aliases in one document (the cheap way to multiply a costly field);
- ``INTROSPECTION``: ``False`` refuses ``__schema``/``__type`` queries (GraphiQL then
  cannot load the schema); ``None`` follows ``settings.DEBUG``;
- ``MAX_DOCUMENT_BYTES``: the size of an HTTP body or one WebSocket message; larger
  ones get ``413`` or the WebSocket close code ``1009`` (message too big).

Each refusal is a GraphQL error naming the limit, never a partial execution.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from functools import partial
from typing import Any

from django.conf import settings as django_settings
from graphql import ASTValidationRule, DocumentNode
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaxTokensLimiter,
    SchemaExtension,
)
from strawberry.extensions.max_aliases import create_validator as aliases_validator
from strawberry.extensions.query_depth_limiter import create_validator as depth_validator
from strawberry.schema import BaseSchema

from gqlsync.conf import get_settings

_MARK = "_gqlsync_limits"


def introspection_allowed() -> bool:
    configured = get_settings()["INTROSPECTION"]
    return bool(django_settings.DEBUG) if configured is None else configured


def extensions() -> list[Any]:
    """Factories of the schema extensions enforcing the configured limits (factories, not
    instances: Strawberry gives each request its own, so concurrent ones never share)."""
    conf = get_settings()
    # The rule classes are built once here: Strawberry's limiters build a new class per
    # instance, and an open subscription keeps its request's extensions alive.
    rules: list[type[ASTValidationRule]] = [
        depth_validator(conf["MAX_QUERY_DEPTH"], None),
        aliases_validator(conf["MAX_ALIASES"]),
    ]
    found: list[Any] = [
        partial(AddValidationRules, rules),
        partial(MaxTokensLimiter, max_token_count=conf["MAX_QUERY_TOKENS"]),
    ]
    if not introspection_allowed():
        found.append(DisableIntrospection)
    return found


class SharedDocuments(SchemaExtension):
    """Identical documents share one parsed tree.

    Every open subscription keeps its parsed document; thousands of identical ones should
    hold one. Unlike Strawberry's ``ParserCache`` this only *fills* a document it has seen
    parse cleanly and lets Strawberry parse the rest itself, so a syntax error still takes
    the protocol's path (``4400`` on ``graphql-transport-ws``).
    """

    _documents: OrderedDict[tuple[str, str], DocumentNode] = OrderedDict()
    _size = 1024

    def on_parse(self) -> Iterator[None]:
        context = self.execution_context
        key = (context.query or "", repr(sorted(context.parse_options.items())))
        found = self._documents.get(key)
        if found is not None:
            self._documents.move_to_end(key)
            context.graphql_document = found
        yield
        if found is None and context.graphql_document is not None and context.query:
            self._documents[key] = context.graphql_document
            if len(self._documents) > self._size:
                self._documents.popitem(last=False)


def share_documents(schema: BaseSchema) -> None:
    """Add :class:`SharedDocuments` to ``schema`` once (``application()`` calls this)."""
    current = list(getattr(schema, "extensions", None) or ())
    if SharedDocuments not in current:
        current.append(SharedDocuments)
    schema.extensions = current  # type: ignore[attr-defined]


def apply(schema: BaseSchema) -> None:
    """Add the limit extensions to ``schema`` once (``application()`` calls this)."""
    if getattr(schema, _MARK, False):
        return
    schema_extensions = getattr(schema, "extensions", None)
    if not isinstance(schema_extensions, list):
        schema_extensions = list(schema_extensions or ())
    schema_extensions.extend(extensions())
    schema.extensions = schema_extensions  # type: ignore[attr-defined]
    setattr(schema, _MARK, True)
