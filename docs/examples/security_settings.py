# settings/production.py: gqlsync's limits tightened for a public API
GQLSYNC = {
    # who may connect, and with what
    "ALLOWED_ORIGINS": ["https://app.example.com"],  # cross-origin pages that use cookies
    "TOKEN_MAX_AGE": 24 * 3600,  # make_token() tokens live one day
    "CONNECTION_INIT_TIMEOUT": 10.0,  # seconds to send connection_init
    # what one request may ask
    "MAX_QUERY_DEPTH": 8,
    "MAX_QUERY_TOKENS": 2000,
    "MAX_ALIASES": 10,
    "MAX_DOCUMENT_BYTES": 16 * 1024,
    "INTROSPECTION": False,  # no __schema for strangers (GraphiQL needs it)
    "GRAPHIQL": False,
    # what one socket may hold
    "MAX_SUBSCRIPTIONS_PER_CONNECTION": 20,
    "SUBSCRIPTION_QUEUE_SIZE": 500,
}


# tests/test_limits.py: the limits apply to the schema application() serves
import strawberry  # noqa: E402
from django.test import override_settings  # noqa: E402

import gqlsync.asgi  # noqa: E402


@strawberry.type
class Node:
    name: str = "n"

    @strawberry.field
    def child(self) -> "Node":
        return Node()


@strawberry.type
class Query:
    @strawberry.field
    def root(self) -> Node:
        return Node()


def nested(depth: int) -> str:
    return "{ root { " + "child { " * depth + "name" + " }" * depth + " } }"


def test_an_over_deep_query_is_refused() -> None:
    schema = strawberry.Schema(query=Query)
    with override_settings(GQLSYNC=GQLSYNC):
        gqlsync.asgi.application(schema)  # adds the limits, read from GQLSYNC now
    assert schema.execute_sync(nested(6)).errors is None
    refused = schema.execute_sync(nested(20))
    assert refused.data is None
    assert refused.errors is not None
    assert "exceeds maximum operation depth" in refused.errors[0].message
