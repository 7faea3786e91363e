# tests/test_rooms.py
import pytest
from django.contrib.auth import get_user_model

import gqlsync
from gqlsync.testing import GraphQLWSClient, settle
from schema_examples.asgi import application
from schema_examples.chat.models import Room
from schema_examples.schema import schema

ROOM = "subscription($room: String!) { messageChanged(room: $room) { op node { text } } }"
SEND = "mutation($room: String!) { sendMessage(room: $room, text: \"hi\") { text } }"


@pytest.mark.django_db(transaction=True)
async def test_an_anonymous_subscriber_is_refused():
    await Room.objects.acreate(name="general")
    async with GraphQLWSClient(application) as client:  # no token: anonymous
        subscription = await client.subscribe(ROOM, {"room": "general"})

        refused = await subscription.message()
        assert refused["type"] == "next"  # a refusal is a result, not an `error` message
        assert refused["payload"]["data"] is None
        assert refused["payload"]["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
        assert (await subscription.message())["type"] == "complete"

        invalid = await client.subscribe("subscription { messageChanged { op } }")
        assert (await invalid.message())["type"] == "error"  # no room: not a valid document


@pytest.mark.django_db(transaction=True)
async def test_members_send_and_receive_and_others_are_refused():
    alice = await get_user_model().objects.acreate(username="alice")
    bob = await get_user_model().objects.acreate(username="bob")
    general = await Room.objects.acreate(name="general")
    lobby = await Room.objects.acreate(name="lobby")
    await general.members.aadd(alice)
    await lobby.members.aadd(alice, bob)
    token = gqlsync.make_token(alice)
    async with GraphQLWSClient(application, payload={"authorization": f"Bearer {token}"}) as client:
        subscription = await client.subscribe(ROOM, {"room": "general"})

        # queries and mutations as a user: the user is the context's "user"
        refused = await schema.execute(SEND, {"room": "general"}, context_value={"user": bob})
        assert refused.errors[0].extensions["code"] == "FORBIDDEN"
        rooms = await schema.execute("{ rooms { name } }", context_value={"user": bob})
        assert rooms.data == {"rooms": [{"name": "lobby"}]}

        await schema.execute(SEND, {"room": "lobby"}, context_value={"user": bob})
        await settle()  # the hub has handled the lobby's message: none of it reached alice
        await subscription.nothing()

        sent = await schema.execute(SEND, {"room": "general"}, context_value={"user": alice})
        assert sent.errors is None
        assert (await subscription.next(timeout=5))["data"]["messageChanged"] == {
            "op": "CREATED", "node": {"text": "hi"},
        }
