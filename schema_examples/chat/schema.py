from __future__ import annotations

from collections.abc import AsyncGenerator

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


@strawberry.type
class Subscription:
    @strawberry.subscription
    async def message_changed(
        self, info: Info, room: str, after: str | None = None
    ) -> AsyncGenerator[MessageEvent, None]:  # type: ignore[valid-type]
        user = gqlsync.get_user(info)
        await sync_to_async(_member_room)(user, room)
        # MessageType is protected: only messages the user may see, re-checked per event;
        # after: the cursor of the last event a reconnecting client received
        async for change in gqlsync.listen(info, MessageType, where=Q(room__name=room),
                                           after=after):
            yield change
