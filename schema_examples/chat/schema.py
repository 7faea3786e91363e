from __future__ import annotations

import strawberry
import strawberry_django
from asgiref.sync import sync_to_async
from django.contrib.auth import authenticate
from django.db.models import Q
from graphql import GraphQLError
from strawberry.types import Info

import gqlsync
from gqlsync.auth import User
from schema_examples.chat.models import Message, Room
from schema_examples.chat.types import MessageType, RoomType
from schema_examples.validation import validated

MessageEvent = gqlsync.event_type(MessageType)


@strawberry.type
class LoginResult:
    token: str


def _member_room(user: User, name: str) -> Room:
    if not user.is_authenticated:
        raise GraphQLError("You must be signed in.", extensions={"code": "UNAUTHENTICATED"})
    room = Room.objects.filter(name=name, members=user.pk).first()
    if room is None:  # no such room, or not a member: the same answer, nothing leaks
        raise GraphQLError(f"You are not a member of room {name!r}.",
                           extensions={"code": "FORBIDDEN"})
    return room


def _login(username: str, password: str) -> str:
    user = authenticate(username=username, password=password)
    if user is None:
        raise GraphQLError("Invalid username or password.", extensions={"code": "BAD_LOGIN"})
    return gqlsync.make_token(user)


#: ``Message.text`` is a TextField (no ``max_length``): the demo bounds it here
MESSAGE_MAX_LENGTH = 4000


def _send(user: User, room: str, text: str) -> Message:
    target = _member_room(user, room)
    if len(text) > MESSAGE_MAX_LENGTH:
        raise GraphQLError(
            f"Invalid input: text: Ensure this value has at most {MESSAGE_MAX_LENGTH} "
            f"characters (it has {len(text)}).",
            extensions={"code": "BAD_USER_INPUT", "fields": {"text": [
                f"Ensure this value has at most {MESSAGE_MAX_LENGTH} characters."]}})
    message = Message(room=target, author=user, text=text)
    validated(message)  # the model's own rules (a blank text, ...)
    message.save()
    return message


@strawberry.type
class Query:
    # RoomType is protected: strawberry-django filters this list to the user's rooms
    rooms: list[RoomType] = strawberry_django.field()
    messages_cursor: str = gqlsync.cursor(MessageType)


@strawberry.type
class Mutation:
    @strawberry.mutation
    async def login(self, username: str, password: str) -> LoginResult:
        return LoginResult(token=await sync_to_async(_login)(username, password))

    @strawberry.mutation
    async def send_message(self, info: Info, room: str, text: str) -> MessageType:
        user = gqlsync.get_user(info)
        return await sync_to_async(_send)(user, room, text)  # type: ignore[return-value]


async def in_room(info: Info, room: str) -> Q:
    """``messageChanged(room:)``: members of the room only (checked once, when the client
    subscribes), then the room's messages. ``MessageType`` is protected, so each event is
    also judged by the members-only rule: a member removed from the room gets its
    messages as ``DELETED`` (or, when the room holds more than ``VIEW_KEYS_MAX`` of
    them, ``RESYNC``) and nothing more from it."""
    await sync_to_async(_member_room)(gqlsync.get_user(info), room)
    return Q(room__name=room)


@strawberry.type
class Subscription:
    # after: the cursor of the last event a reconnecting client received
    message_changed = gqlsync.subscription(MessageType, where=in_room)
