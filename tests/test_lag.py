"""A hub that handles events after later commits still gives exact transitions.

Each ``CREATED``/``UPDATED`` carries the state its commit wrote, and the hub judges the
change on it when the row has moved on (or is gone) by the time the event is handled.
Here the hub is held back while several commits land, as under a burst or a slow hub.
(Issue "A subscriber's copy never drifts", item 3.)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth import get_user_model

from gqlsync.hub import get_hub
from gqlsync.testing import GraphQLWSClient, Operation, login_session, settle
from schema_examples.chat.models import Message, Room

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("seeded")]

GENERAL = """subscription {
  messageChanged(room: "general") { op id node { text room { name } } } }"""


@pytest.fixture
async def held_back() -> AsyncIterator[asyncio.Event]:
    """While the event is clear, the hub receives events but handles none of them."""
    hub = get_hub()
    gate = asyncio.Event()
    gate.set()
    dispatch = hub.dispatch

    async def gated(message: dict[str, Any]) -> None:
        await gate.wait()
        await dispatch(message)

    hub.dispatch = gated  # type: ignore[method-assign]
    yield gate
    gate.set()


async def events(op: Operation) -> list[tuple[str, str, str]]:
    found = []
    while True:
        try:
            payload = await op.next(timeout=0.5)
        except TimeoutError:
            return found
        event = payload["data"]["messageChanged"]
        found.append((event["op"], event["node"]["text"], event["node"]["room"]["name"]))


async def test_a_message_created_updated_and_moved_away_in_a_burst(
    application: Any, held_back: asyncio.Event,
) -> None:
    """The issue's case: bob (general, not secret) must not keep a message that went to
    secret, nor ever see what it said there."""
    users = get_user_model().objects
    bob, alice = await users.aget(username="bob"), await users.aget(username="alice")
    general = await Room.objects.aget(name="general")
    secret = await Room.objects.aget(name="secret")
    _, cookie = await login_session(bob)
    async with GraphQLWSClient(application, headers=[cookie]) as client:
        sub = await client.subscribe(GENERAL)
        held_back.clear()
        message = await Message.objects.acreate(room=general, author=alice, text="hi")
        await sync_to_async(Message.objects.filter(pk=message.pk).update)(text="hi all")
        message.room, message.text = secret, "the secret plan"
        await message.asave(update_fields=["room", "text"])
        await asyncio.sleep(0.05)
        held_back.set()
        await settle()
        seen = await events(sub)
    assert seen == [("CREATED", "hi", "general"), ("UPDATED", "hi all", "general"),
                    ("DELETED", "hi all", "general")]


async def test_an_edit_overtaken_by_a_move_still_reaches_the_filter(
    application: Any, held_back: asyncio.Event,
) -> None:
    """The edit is judged on the state it wrote (in general), not on the row as the hub
    finds it (moved to secret): the subscriber gets the edit, then the move as DELETED."""
    users = get_user_model().objects
    alice = await users.aget(username="alice")
    general = await Room.objects.aget(name="general")
    secret = await Room.objects.aget(name="secret")
    message = await Message.objects.acreate(room=general, author=alice, text="draft")
    _, cookie = await login_session(alice)
    async with GraphQLWSClient(application, headers=[cookie]) as client:
        sub = await client.subscribe(GENERAL)
        held_back.clear()
        message.text = "final"
        await message.asave()
        message.room = secret
        await message.asave()
        await asyncio.sleep(0.05)
        held_back.set()
        await settle()
        assert await events(sub) == [("UPDATED", "final", "general"),
                                     ("DELETED", "final", "general")]


async def test_an_update_of_a_row_deleted_since_is_judged_on_what_it_wrote(
    application: Any, held_back: asyncio.Event,
) -> None:
    """A move to secret, then a delete, both before the hub looks: bob's copy loses the
    row with the state he saw, never with the secret one the delete carries."""
    users = get_user_model().objects
    bob, alice = await users.aget(username="bob"), await users.aget(username="alice")
    general = await Room.objects.aget(name="general")
    secret = await Room.objects.aget(name="secret")
    message = await Message.objects.acreate(room=general, author=alice, text="hello")
    _, cookie = await login_session(bob)
    async with GraphQLWSClient(application, headers=[cookie]) as client:
        sub = await client.subscribe(GENERAL)
        held_back.clear()
        message.room, message.text = secret, "only for secret"
        await message.asave()
        await message.adelete()
        await asyncio.sleep(0.05)
        held_back.set()
        await settle()
        assert await events(sub) == [("DELETED", "hello", "general")]
