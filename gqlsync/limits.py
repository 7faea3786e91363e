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

from typing import Any

from django.conf import settings as django_settings
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
)
from strawberry.schema import BaseSchema

from gqlsync.conf import get_settings

_MARK = "_gqlsync_limits"


def introspection_allowed() -> bool:
    configured = get_settings()["INTROSPECTION"]
    return bool(django_settings.DEBUG) if configured is None else configured


def extensions() -> list[Any]:
    """The schema extensions enforcing the configured limits."""
    conf = get_settings()
    found: list[Any] = [
        QueryDepthLimiter(max_depth=conf["MAX_QUERY_DEPTH"]),
        MaxTokensLimiter(max_token_count=conf["MAX_QUERY_TOKENS"]),
        MaxAliasesLimiter(max_alias_count=conf["MAX_ALIASES"]),
    ]
    if not introspection_allowed():
        found.append(DisableIntrospection())
    return found


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
