"""Limits: oversized or overly deep requests are refused with a clear answer."""

from __future__ import annotations

import json
from typing import Any

import pytest
import strawberry

import gqlsync.asgi
from gqlsync.testing import ClosedError, GraphQLWSClient
from gqlsync.transport.websocket import CLOSE_MESSAGE_TOO_BIG
from tests.test_transport import graphql, http

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded")]


@strawberry.type
class Node:
    @strawberry.field
    def child(self) -> Node:
        return Node()

    name: str = "n"


@strawberry.type
class Query:
    @strawberry.field
    def root(self) -> Node:
        return Node()


def app_with(settings: Any, **limits: Any) -> Any:
    settings.GQLSYNC = limits
    return gqlsync.asgi.application(strawberry.Schema(query=Query))


def nested(depth: int) -> str:
    return "{ root { " + "child { " * depth + "name" + " }" * depth + " } }"


async def test_a_query_deeper_than_the_limit_is_refused(settings: Any) -> None:
    app = app_with(settings, MAX_QUERY_DEPTH=5)
    assert "errors" not in await graphql(app, nested(3))
    result = await graphql(app, nested(8))
    assert result["data"] is None
    assert "exceeds maximum operation depth" in result["errors"][0]["message"]


async def test_a_document_with_too_many_tokens_is_refused(settings: Any) -> None:
    app = app_with(settings, MAX_QUERY_TOKENS=50)
    result = await graphql(app, "{ " + " ".join(f"a{i}: root {{ name }}" for i in range(30)) + " }")
    assert "token" in result["errors"][0]["message"].lower()


async def test_too_many_aliases_are_refused(settings: Any) -> None:
    app = app_with(settings, MAX_ALIASES=3)
    result = await graphql(app, "{ " + " ".join(f"a{i}: root {{ name }}" for i in range(5)) + " }")
    assert "aliases" in result["errors"][0]["message"].lower()


@pytest.mark.parametrize(("switch", "allowed"), [(True, True), (False, False)])
async def test_introspection_can_be_switched_off(
    settings: Any, switch: bool, allowed: bool
) -> None:
    app = app_with(settings, INTROSPECTION=switch)
    result = await graphql(app, "{ __schema { queryType { name } } }")
    assert ("errors" not in result) is allowed


async def test_introspection_follows_debug_by_default(settings: Any) -> None:
    settings.DEBUG = False
    app = app_with(settings)
    assert "errors" in await graphql(app, "{ __schema { queryType { name } } }")


async def test_an_oversized_http_body_is_413(settings: Any) -> None:
    app = app_with(settings, MAX_DOCUMENT_BYTES=1000)
    status, _ = await http(app, json.dumps({"query": "{ root { name } }", "x": "y" * 2000}
                                           ).encode())
    assert status == 413


async def test_an_oversized_websocket_message_closes_with_1009(settings: Any) -> None:
    app = app_with(settings, MAX_DOCUMENT_BYTES=1000)
    async with GraphQLWSClient(app) as client:
        await client.send({"id": "1", "type": "subscribe",
                           "payload": {"query": "{ root { name } }", "x": "y" * 2000}})
        with pytest.raises(ClosedError) as closed:
            await client.receive()
        assert closed.value.code == CLOSE_MESSAGE_TOO_BIG


async def test_the_subscription_limit_per_connection(settings: Any) -> None:
    from schema_examples.schema import schema

    settings.GQLSYNC = {"MAX_SUBSCRIPTIONS_PER_CONNECTION": 2}
    app = gqlsync.asgi.application(schema)
    async with GraphQLWSClient(app) as client:
        await client.subscribe("subscription { bookChanged { op } }")
        await client.subscribe("subscription { bookChanged { op } }")
        third = await client.subscribe("subscription { bookChanged { op } }")
        message = await third.message()
        assert message["type"] == "error"
        assert "limit" in message["payload"][0]["message"].lower()
