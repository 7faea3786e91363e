# chat/schema.py: a subscription with an argument of its own and an access check
import strawberry
from asgiref.sync import sync_to_async
from django.db.models import Q
from graphql import GraphQLError
from strawberry.types import Info

import gqlsync
import gqlsync.asgi
from schema_examples.chat.models import Room
from schema_examples.chat.types import MessageType  # protected: members only


def in_room(info: Info, room: str) -> Q:
    """Runs once, when a client subscribes (a sync function runs off the event loop).
    Its annotated parameters become the field's arguments."""
    user = gqlsync.get_user(info)
    if not Room.objects.filter(name=room, members=user.pk).exists():
        raise GraphQLError(f"You are not a member of room {room!r}.",
                           extensions={"code": "FORBIDDEN"})
    return Q(room__name=room)  # the rows this subscription follows


@strawberry.type
class Query:
    ok: bool = True


@strawberry.type
class Subscription:
    # messageChanged(room: String!, id: ID, after: String): MessageEvent!
    message_changed = gqlsync.subscription(MessageType, where=in_room)


schema = strawberry.Schema(query=Query, subscription=Subscription)
application = gqlsync.asgi.application(schema)


# tests/test_rooms.py: the members of a room share one execution per message
import pytest  # noqa: E402

from gqlsync.hub import get_hub  # noqa: E402
from gqlsync.testing import GraphQLWSClient  # noqa: E402

ROOM = "subscription($room: String!) { messageChanged(room: $room) { op node { text } } }"


@pytest.mark.django_db(transaction=True)
async def test_members_receive_the_rooms_messages_and_others_are_refused() -> None:
    from django.contrib.auth import get_user_model

    from schema_examples.chat.models import Message
    from schema_examples.seed import seed

    await sync_to_async(seed)()  # users alice and bob, rooms general and secret
    alice, bob = [await sync_to_async(get_user_model().objects.get)(username=name)
                  for name in ("alice", "bob")]
    clients = {user.username: GraphQLWSClient(application, payload={
        "authorization": f"Bearer {gqlsync.make_token(user)}"}) for user in (alice, bob)}
    for client in clients.values():
        await client.connect()
    refused = await clients["bob"].subscribe(ROOM, {"room": "secret"})
    assert "not a member" in str(await refused.message())
    subs = [await client.subscribe(ROOM, {"room": "general"}) for client in clients.values()]
    executions = get_hub().stats["executions"]
    general = await Room.objects.aget(name="general")
    await Message.objects.acreate(room=general, author=alice, text="hi both")
    for sub in subs:
        assert (await sub.next())["data"]["messageChanged"] == {
            "op": "CREATED", "node": {"text": "hi both"}}
    assert get_hub().stats["executions"] == executions + 1  # two users, one execution
    for client in clients.values():
        await client.communicator.disconnect()
